"""orkiva_issue_token / orkiva_revoke_token as real manage.py subprocesses on the test database."""
from __future__ import annotations

from datetime import datetime, timedelta

import httpx
import pytest
from django.utils import timezone

from orkiva.versioning import SCHEMA_VERSION
from policy.models import AuditEvent, Revocation
from policy.tokens import verify_token
from tests.live import run_manage_json

pytestmark = pytest.mark.django_db(transaction=True)

ISSUE = ("orkiva_issue_token", "--agent-id", "executioner", "--workspace-id", "ws-main", "--role", "participant",
         "--session-id", "sess-1")


def issue(*extra):
    code, doc = run_manage_json(*ISSUE, *extra)
    assert code == 0, doc
    return doc


def test_issue_prints_a_working_token_and_audits():
    before = timezone.now().replace(microsecond=0)
    doc = issue("--operator", "alice")
    assert set(doc) >= {"token", "jti", "expires_at"} and doc["schema_version"] == SCHEMA_VERSION
    expires_at = datetime.fromisoformat(doc["expires_at"].replace("Z", "+00:00"))
    # Default TTL is short: 15 minutes.
    assert timedelta(seconds=899) <= expires_at - before <= timedelta(seconds=905)
    actor = verify_token(doc["token"])
    assert (actor.agent_id, actor.workspace_id, actor.role, actor.session_id, actor.jti) == (
        "executioner", "ws-main", "participant", "sess-1", doc["jti"])
    event = AuditEvent.objects.get(action="token.issue")
    assert (event.actor_id, event.actor_role, event.target_id, event.workspace_id) == (
        "operator:alice", "operator", doc["jti"], "ws-main")
    assert doc["token"] not in str(event.new_values)  # the token itself is never stored


def test_issue_with_ttl():
    doc = issue("--ttl", "60")
    actor_expiry = datetime.fromisoformat(doc["expires_at"].replace("Z", "+00:00"))
    assert actor_expiry - timezone.now() <= timedelta(seconds=61)


@pytest.mark.parametrize(
    "args",
    [
        ("--agent-id", "bad id", "--workspace-id", "w", "--role", "participant", "--session-id", "s"),
        ("--agent-id", "a", "--workspace-id", "w", "--role", "admin", "--session-id", "s"),
        ("--agent-id", "a", "--workspace-id", "w", "--role", "participant", "--session-id", "s", "--ttl", "0"),
        ("--agent-id", "a", "--workspace-id", "w", "--role", "participant"),
    ],
    ids=["bad-agent-id", "bad-role", "zero-ttl", "missing-session"],
)
def test_issue_refuses_bad_input_with_exit_2(args):
    code, doc = run_manage_json("orkiva_issue_token", *args)
    assert code == 2
    assert doc["error"]["code"] in {"validation_error", "usage_error"}
    assert not AuditEvent.objects.filter(action="token.issue").exists()


def test_revoke_without_reason_exits_2_and_changes_nothing():
    doc = issue()
    for reason in (None, "", "   "):
        extra = () if reason is None else ("--reason", reason)
        code, body = run_manage_json("orkiva_revoke_token", "--jti", doc["jti"], *extra)
        assert code == 2, body
        assert body["error"]["code"] == "reason_required"
    assert not Revocation.objects.exists()
    assert not AuditEvent.objects.filter(action="token.revoke").exists()
    verify_token(doc["token"])  # still valid


def test_revoke_by_jti(tmp_path):
    doc = issue()
    code, body = run_manage_json("orkiva_revoke_token", "--jti", doc["jti"], "--reason", "leaked in a log",
                                 "--operator", "bob")
    assert code == 0, body
    assert body["schema_version"] == SCHEMA_VERSION  # every command's JSON says its version
    assert (body["revoked"], body["kind"], body["value"], body["reason"], body["revoked_by"]) == (
        True, "jti", doc["jti"], "leaked in a log", "operator:bob")
    event = AuditEvent.objects.get(action="token.revoke")
    assert (event.target_type, event.target_id, event.reason, event.actor_id) == (
        "jti", doc["jti"], "leaked in a log", "operator:bob")
    from rest_framework.test import APIClient

    refused = APIClient().get("/v1/threads", HTTP_AUTHORIZATION=f"Bearer {doc['token']}")
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "token_revoked"


def test_revoke_by_session_needs_the_workspace_and_then_works():
    doc = issue()
    code, body = run_manage_json("orkiva_revoke_token", "--session-id", "sess-1", "--reason", "host lost")
    assert code == 2 and body["error"]["code"] == "usage_error"
    assert not Revocation.objects.exists()
    code, body = run_manage_json("orkiva_revoke_token", "--session-id", "sess-1", "--workspace-id", "ws-main",
                                 "--reason", "host lost")
    assert code == 0, body
    assert (body["kind"], body["value"], body["workspace_id"]) == ("session", "sess-1", "ws-main")
    from orkiva.errors import Unauthenticated

    with pytest.raises(Unauthenticated) as exc:
        verify_token(doc["token"])
    assert exc.value.code == "token_revoked"
    assert AuditEvent.objects.filter(action="token.revoke", target_type="session", target_id="sess-1").count() == 1


def test_revoke_needs_exactly_one_target():
    code, body = run_manage_json("orkiva_revoke_token", "--reason", "x")
    assert code == 2 and body["error"]["code"] == "usage_error"
    code, body = run_manage_json("orkiva_revoke_token", "--jti", "a", "--session-id", "b", "--reason", "x")
    assert code == 2
    assert not Revocation.objects.exists()


def test_issued_token_works_against_a_real_bridge(tmp_path):
    from tests.live import bridge_server

    doc = issue()
    with bridge_server(tmp_path) as bridge:
        response = httpx.get(f"{bridge.base_url}/v1/threads", headers={"Authorization": f"Bearer {doc['token']}"})
        assert response.status_code == 200, bridge.log()
        code, _ = run_manage_json("orkiva_revoke_token", "--jti", doc["jti"], "--reason", "rotate")
        assert code == 0
        response = httpx.get(f"{bridge.base_url}/v1/threads", headers={"Authorization": f"Bearer {doc['token']}"})
        assert response.status_code == 401 and response.json()["error"]["code"] == "token_revoked"
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
