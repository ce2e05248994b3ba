"""The status state machine: every (from, to) cell of the 6 statuses, through POST /v1/threads/{id}/status."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from messaging.models import Message
from policy.identity import Actor
from policy.models import AuditEvent
from tests.conftest import client_for
from tests.factories import ThreadFactory
from threads import transitions
from threads.models import Thread
from threads.services import thread_transition

pytestmark = pytest.mark.django_db

DOCS_API = Path(__file__).resolve().parents[2] / "docs" / "api.md"
COORDINATOR = Actor(agent_id="coordinator", workspace_id="ws-main", role="coordinator", session_id="s-c")
PARTICIPANT = Actor(agent_id="executioner", workspace_id="ws-main", role="participant", session_id="s-p")

CELLS = [(a, b) for a in transitions.STATUSES for b in transitions.STATUSES]


def thread_in(status: str) -> Thread:
    thread = ThreadFactory(coordinator=COORDINATOR, participants=["executioner", "reviewer"])
    if status != transitions.OPEN:
        thread = thread_transition(actor=COORDINATOR, thread_id=thread.pk, status=status, reason="set-up")
    assert thread.status == status
    return thread


@pytest.mark.parametrize("current,target", CELLS, ids=[f"{a}->{b}" for a, b in CELLS])
@pytest.mark.parametrize("actor", [COORDINATOR, PARTICIPANT], ids=["coordinator", "participant"])
def test_transition_cell(actor, current, target):
    thread = thread_in(current)
    seq_before = thread.last_seq
    response = client_for(actor).post(
        f"/v1/threads/{thread.pk}/status", {"status": target, "reason": "because"}, format="json"
    )
    body = response.json()
    thread.refresh_from_db()
    if target not in transitions.ALLOWED[current]:
        assert response.status_code == 409, body
        assert body["error"]["code"] == "invalid_transition"
        assert body["error"]["details"]["allowed"] == list(transitions.ALLOWED[current])
        assert (body["error"]["details"]["from"], body["error"]["details"]["to"]) == (current, target)
        assert thread.status == current and thread.last_seq == seq_before
    elif actor is PARTICIPANT and transitions.needs_authority(current, target):
        assert response.status_code == 403, body
        assert body["error"]["code"] == "forbidden_transition"
        assert thread.status == current
        assert AuditEvent.objects.filter(action="thread.transition.denied", target_id=str(thread.pk)).exists()
    else:
        assert response.status_code == 200, body
        assert body["status"] == target and thread.status == target
        # The change is in the thread's own history and in the audit log, old and new values.
        status_message = Message.objects.get(thread=thread, seq=thread.last_seq)
        assert status_message.kind == "status" and status_message.sender == actor.agent_id
        assert f"from {current} to {target}" in status_message.body
        audit = AuditEvent.objects.filter(action="thread.transition", target_id=str(thread.pk)).last()
        assert (audit.old_values, audit.new_values, audit.actor_id) == ({"status": current}, {"status": target}, actor.agent_id)


def test_closed_is_final():
    assert transitions.ALLOWED[transitions.CLOSED] == ()
    thread = thread_in(transitions.CLOSED)
    for target in transitions.STATUSES:
        response = client_for(COORDINATOR).post(
            f"/v1/threads/{thread.pk}/status", {"status": target, "reason": "reopen"}, format="json"
        )
        assert response.status_code == 409 and response.json()["error"]["details"]["allowed"] == []


def test_participant_cannot_close_a_disputed_thread():
    thread = thread_in(transitions.DISPUTED)
    response = client_for(PARTICIPANT).post(
        f"/v1/threads/{thread.pk}/status", {"status": "closed", "reason": "I win"}, format="json"
    )
    assert response.status_code == 403 and response.json()["error"]["code"] == "forbidden_transition"
    audit = AuditEvent.objects.get(action="thread.transition.denied")
    assert (audit.actor_id, audit.old_values, audit.new_values) == ("executioner", {"status": "disputed"}, {"status": "closed"})
    thread.refresh_from_db()
    assert thread.status == "disputed"


def test_coordinator_closes_a_disputed_thread_only_with_a_reason():
    thread = thread_in(transitions.DISPUTED)
    client = client_for(COORDINATOR)
    for payload in ({"status": "closed"}, {"status": "closed", "reason": "   "}):
        response = client.post(f"/v1/threads/{thread.pk}/status", payload, format="json")
        # 409: the thread's present status is what makes the move need a reason
        assert response.status_code == 409 and response.json()["error"]["code"] == "reason_required"
    thread.refresh_from_db()
    assert thread.status == "disputed"
    response = client.post(f"/v1/threads/{thread.pk}/status", {"status": "closed", "reason": "ruled"}, format="json")
    assert response.status_code == 200
    assert response.json()["status_reason"] == "ruled"
    assert AuditEvent.objects.filter(action="thread.transition", reason="ruled", new_values={"status": "closed"}).exists()


def test_auditor_cannot_transition():
    thread = thread_in(transitions.OPEN)
    auditor = Actor(agent_id="executioner", workspace_id="ws-main", role="auditor", session_id="s-a")
    response = client_for(auditor).post(f"/v1/threads/{thread.pk}/status", {"status": "active"}, format="json")
    assert response.status_code == 403 and response.json()["error"]["code"] == "forbidden"


def test_unknown_status_is_a_validation_error():
    thread = thread_in(transitions.OPEN)
    response = client_for(COORDINATOR).post(f"/v1/threads/{thread.pk}/status", {"status": "done"}, format="json")
    assert response.status_code == 400 and response.json()["error"]["code"] == "validation_error"


def test_status_changed_at_moves_with_the_status():
    from datetime import timedelta

    from django.utils import timezone

    thread = thread_in(transitions.OPEN)
    later = timezone.now() + timedelta(minutes=5)
    thread = thread_transition(actor=PARTICIPANT, thread_id=thread.pk, status="active", now=later)
    thread.refresh_from_db()
    assert thread.status_changed_at == later


def test_docs_transition_table_matches_the_code():
    text = DOCS_API.read_text()
    start = text.index("<!-- transitions -->")
    rows = []
    for line in text[start:].splitlines()[1:]:
        if line.startswith("|"):
            rows.append([c.strip().strip("`") for c in line.strip().strip("|").split("|")])
        elif rows:
            break
    rows = [r for r in rows if not all(re.fullmatch(r":?-+:?", c) for c in r)][1:]
    documented = {r[0]: tuple(t.strip().strip("`") for t in r[1].split(",") if t.strip() and t.strip() != "(none: final)") for r in rows}
    assert documented == transitions.ALLOWED
