"""Thread reads: the workspace-guarded lookup, lists by scope, and the deterministic summary."""
from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from messaging.services import cursor_ack, message_post
from orkiva.errors import Forbidden, NotFound
from policy.models import AuditEvent
from policy.roles import Op
from tests.factories import ThreadFactory
from threads.selectors import thread_get, thread_list
from threads.services import thread_transition
from threads.summary import summary_text, thread_summary

pytestmark = pytest.mark.django_db


def test_thread_get_in_workspace(thread, executioner):
    assert thread_get(actor=executioner, thread_id=str(thread.pk), op=Op.THREAD_READ).pk == thread.pk


@pytest.mark.parametrize("thread_id", ["garbage", "", 12345, None])
def test_thread_get_of_no_id_at_all_is_not_found_unaudited(executioner, thread_id):
    with pytest.raises(NotFound) as exc:
        thread_get(actor=executioner, thread_id=thread_id, op=Op.THREAD_READ)
    assert exc.value.code == "thread_not_found" and exc.value.audit is None


def test_thread_get_of_an_unknown_id_is_not_found_and_audited(executioner):
    with pytest.raises(NotFound) as exc:
        thread_get(actor=executioner, thread_id=str(uuid.uuid4()), op=Op.THREAD_READ)
    assert exc.value.code == "thread_not_found" and exc.value.audit["action"] == "thread.not_found"


def test_thread_get_other_workspace_is_not_found_and_audited_in_both_workspaces(thread, outsider):
    with pytest.raises(NotFound) as exc:
        thread_get(actor=outsider, thread_id=thread.pk, op=Op.THREAD_READ)
    assert exc.value.code == "thread_not_found"
    assert [(a["action"], a.get("workspace_id")) for a in exc.value.audit] == [
        ("workspace.denied", None), ("workspace.probed", "ws-main")]


def test_thread_get_non_member_participant_is_forbidden(thread):
    from tests.factories import ActorFactory

    stranger = ActorFactory(agent_id="stranger", workspace_id="ws-main")
    with pytest.raises(Forbidden) as exc:
        thread_get(actor=stranger, thread_id=thread.pk, op=Op.THREAD_READ)
    assert exc.value.code == "not_a_participant"


def test_thread_list_scopes(coordinator, executioner, auditor, outsider):
    mine = ThreadFactory(coordinator=coordinator, participants=["executioner"])
    theirs = ThreadFactory(coordinator=coordinator, participants=["reviewer"])
    ThreadFactory(coordinator=outsider, participants=["executioner"])
    ids = lambda actor, **kw: [t.pk for t in thread_list(actor=actor, limit=50, offset=0, **kw)[0]]  # noqa: E731
    assert set(ids(executioner)) == {mine.pk}
    assert set(ids(coordinator)) == set(ids(auditor)) == {mine.pk, theirs.pk}
    assert set(ids(coordinator, participant="reviewer")) == {theirs.pk}
    thread_transition(actor=coordinator, thread_id=theirs.pk, status="active")
    assert set(ids(coordinator, status="active")) == {theirs.pk}
    threads, total = thread_list(actor=coordinator, limit=1, offset=0)
    assert total == 2 and len(threads) == 1


def test_summary(coordinator, executioner, reviewer):
    thread = ThreadFactory(coordinator=coordinator, participants=["executioner", "reviewer"])
    t = str(thread.pk)
    base = timezone.now() - timedelta(hours=1)
    message_post(actor=executioner, thread_id=t, body="ready for review", now=base)                         # 1
    message_post(actor=reviewer, thread_id=t, body="null deref", kind="finding", now=base)                   # 2
    message_post(actor=reviewer, thread_id=t, body="why x?", kind="question", now=base)                     # 3
    message_post(actor=reviewer, thread_id=t, body="off by one", kind="finding", now=base)                  # 4
    message_post(actor=executioner, thread_id=t, body="fixed", kind="fix", in_reply_to=2, now=base)         # 5
    message_post(actor=executioner, thread_id=t, body="because", kind="answer", in_reply_to=3, now=base)    # 6
    message_post(actor=reviewer, thread_id=t, body="ok " * 200, kind="resolution", in_reply_to=4, now=base)  # 7
    cursor_ack(actor=executioner, thread_id=t, seq=4)
    changed = base + timedelta(minutes=1)
    thread_transition(actor=coordinator, thread_id=t, status="active", reason="go", now=changed)           # 8

    summary = thread_summary(actor=reviewer, thread_id=t)
    assert summary["status"] == "active" and summary["status_reason"] == "go"
    assert summary["status_changed_at"] == changed.isoformat().replace("+00:00", "Z")
    participants = {p["agent_id"]: p for p in summary["participants"]}
    # executioner read up to 4; after it: 5, 6 (own), 7 (reviewer), 8 (coordinator's status message) -> 2 unread
    assert participants["executioner"]["last_read_seq"] == 4 and participants["executioner"]["unread_count"] == 2
    # reviewer never acked: 8 messages, 4 of its own -> 4 unread
    assert participants["reviewer"]["unread_count"] == 4
    assert participants["executioner"]["last_message"]["seq"] == 6
    assert participants["reviewer"]["last_message"]["seq"] == 7
    assert participants["reviewer"]["last_message"]["excerpt"].endswith("…")
    assert len(participants["reviewer"]["last_message"]["excerpt"]) == 280
    assert [(i["seq"], i["kind"], i["state"]) for i in summary["open_items"]] == [(2, "finding", "addressed")]
    assert (summary["open_findings"], summary["open_questions"]) == (1, 0)
    assert summary["counts"]["messages"] == 8
    assert summary["counts"]["by_kind"] == {"message": 1, "finding": 2, "fix": 1, "question": 1, "answer": 1,
                                            "resolution": 1, "status": 1}
    assert summary["schema_version"] == 1
    # Deterministic: asking twice gives the same document, and the text rendering names the open item.
    assert thread_summary(actor=reviewer, thread_id=t) == summary
    assert "#2 finding by reviewer [addressed]" in summary_text(summary)


def test_summary_of_another_workspace_is_not_found(thread, outsider):
    with pytest.raises(NotFound):
        thread_summary(actor=outsider, thread_id=thread.pk)
    assert not AuditEvent.objects.filter(action="thread.read").exists()
