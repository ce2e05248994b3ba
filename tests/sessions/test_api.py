"""/v1 session endpoints: heartbeat and lookup by agent id."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone

from policy.audit import audit_tallies_flush
from policy.identity import Actor
from policy.models import AuditEvent
from sessions.models import AgentSession
from tests.conftest import client_for

pytestmark = pytest.mark.django_db


def test_heartbeat_and_lookup(executioner, reviewer, auditor):
    response = client_for(executioner).post(
        "/v1/sessions/heartbeat", {"session_id": "019a-codex", "runtime_type": "codex", "resumable": True}, format="json"
    )
    assert response.status_code == 200
    body = response.json()
    assert (body["agent_id"], body["workspace_id"], body["session_id"], body["runtime_type"], body["resumable"]) == (
        "executioner", "ws-main", "019a-codex", "codex", True)
    assert body["last_heartbeat_at"].endswith("Z") and body["schema_version"] == 1
    again = client_for(executioner).post("/v1/sessions/heartbeat", {"session_id": "019a-codex"}, format="json")
    assert again.status_code == 200 and AgentSession.objects.count() == 1
    for reader in (reviewer, auditor):
        found = client_for(reader).get("/v1/sessions/executioner")
        assert found.status_code == 200
        assert found.json()["latest_resumable"]["session_id"] == "019a-codex"
        assert [s["session_id"] for s in found.json()["sessions"]] == ["019a-codex"]


def test_lookup_across_workspaces_is_exactly_not_found_and_audited(executioner, outsider):
    client_for(executioner).post("/v1/sessions/heartbeat", {"session_id": "s1"}, format="json")
    mine = client_for(Actor("someone", "ws-main", "participant", "x")).get("/v1/sessions/executioner")
    assert mine.status_code == 200
    theirs = client_for(outsider).get("/v1/sessions/executioner")
    assert theirs.status_code == 404 and theirs.json()["error"]["code"] == "agent_not_found"
    denied = AuditEvent.objects.get(action="workspace.denied")
    assert (denied.actor_id, denied.workspace_id, denied.target_type, denied.target_id, denied.reason_code) == (
        "coordinator", "ws-other", "agent", "executioner", "cross_workspace")
    # Once the agent is gone from ws-main too: the same answer, and nothing more audited.
    AgentSession.objects.all().delete()
    missing = client_for(outsider).get("/v1/sessions/executioner")
    strip = lambda r: (r.status_code, {k: v for k, v in r.json().items() if k != "request_id"})  # noqa: E731
    assert strip(theirs) == strip(missing)
    assert AuditEvent.objects.filter(action="workspace.denied").count() == 1


def test_heartbeat_for_another_agent_is_refused_and_audited(executioner):
    for field, value in (("agent_id", "reviewer"), ("workspace_id", "ws-other")):
        response = client_for(executioner).post(
            "/v1/sessions/heartbeat", {"session_id": "s1", field: value}, format="json"
        )
        assert response.status_code == 403 and response.json()["error"]["code"] == "claim_mismatch"
        assert response.json()["error"]["details"] == {"field": field}
    rows = AuditEvent.objects.filter(action="session.heartbeat", reason_code="claim_mismatch")
    assert rows.count() == 1  # the repeat within the window is counted, not written (policy.audit)
    audit_tallies_flush(now=timezone.now() + timedelta(seconds=settings.ORKIVA_AUDIT_REFUSAL_WINDOW_SECONDS + 1))
    assert sum(rows.values_list("count", flat=True)) == 2
    assert not AgentSession.objects.exists()


def test_heartbeat_naming_itself_is_fine(executioner):
    response = client_for(executioner).post(
        "/v1/sessions/heartbeat", {"session_id": "s1", "agent_id": "executioner", "workspace_id": "ws-main"},
        format="json",
    )
    assert response.status_code == 200
