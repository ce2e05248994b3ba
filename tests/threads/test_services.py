"""Thread writes: create, transition, participants; each audited in its own transaction."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from messaging.models import ReadCursor
from orkiva.errors import DomainError, Forbidden, NotFound, ValidationFailed
from policy.identity import Actor
from policy.models import AuditEvent
from threads.models import Participant, Thread
from threads.services import participants_change, thread_create, thread_transition

pytestmark = pytest.mark.django_db


def test_create_makes_thread_participants_cursors_and_audit(coordinator):
    now = timezone.now() - timedelta(days=1)
    thread = thread_create(actor=coordinator, title="  Review #7 ", type="review",
                           participants=["executioner", "reviewer", "executioner"], now=now)
    thread.refresh_from_db()
    assert (thread.workspace_id, thread.title, thread.type, thread.status, thread.last_seq) == (
        "ws-main", "Review #7", "review", "open", 0)
    assert thread.created_at == thread.status_changed_at == now
    assert thread.created_by == "coordinator"
    assert sorted(Participant.objects.filter(thread=thread).values_list("agent_id", flat=True)) == ["executioner", "reviewer"]
    assert dict(ReadCursor.objects.filter(thread=thread).values_list("agent_id", "last_read_seq")) == {
        "executioner": 0, "reviewer": 0}
    audit = AuditEvent.objects.get(action="thread.create")
    assert audit.target_id == str(thread.pk) and audit.actor_id == "coordinator"
    assert audit.new_values["participants"] == ["executioner", "reviewer"]


@pytest.mark.parametrize(
    "fields,bad",
    [
        ({"title": "   "}, "title"),
        ({"title": "x" * 301}, "title"),
        ({"type": "Review"}, "type"),
        ({"type": "9lives"}, "type"),
        ({"participants": []}, "participants"),
        ({"participants": ["bad id"]}, "participants"),
        ({"participants": [f"a{i}" for i in range(33)]}, "participants"),
    ],
)
def test_create_validates(coordinator, fields, bad):
    kwargs = {"title": "t", "type": "review", "participants": ["a"], **fields}
    with pytest.raises(ValidationFailed) as exc:
        thread_create(actor=coordinator, **kwargs)
    assert bad in exc.value.details["fields"]
    assert not Thread.objects.exists()


def test_participants_cannot_create(executioner):
    with pytest.raises(Forbidden):
        thread_create(actor=executioner, title="t", type="review", participants=["a"])


def test_transition_writes_a_status_message_and_audit(thread, coordinator):
    moved = thread_transition(actor=coordinator, thread_id=thread.pk, status="blocked", reason="loop",
                              reason_code="no_progress")
    moved.refresh_from_db()
    assert (moved.status, moved.status_reason, moved.status_reason_code, moved.last_seq) == (
        "blocked", "loop", "no_progress", 1)
    audit = AuditEvent.objects.get(action="thread.transition")
    assert (audit.reason, audit.reason_code, audit.old_values, audit.new_values) == (
        "loop", "no_progress", {"status": "open"}, {"status": "blocked"})


def test_transition_of_another_workspace_thread_is_not_found(thread, outsider):
    with pytest.raises(NotFound):
        thread_transition(actor=outsider, thread_id=thread.pk, status="active")
    thread.refresh_from_db()
    assert thread.status == "open"


def test_participants_change(thread, coordinator):
    changed = participants_change(actor=coordinator, thread_id=thread.pk, add=["newbie"], remove=["reviewer"],
                                  reason="rotation")
    assert sorted(Participant.objects.filter(thread=changed).values_list("agent_id", flat=True)) == ["executioner", "newbie"]
    assert ReadCursor.objects.get(thread=thread, agent_id="newbie").last_read_seq == 0
    audit = AuditEvent.objects.get(action="thread.participants")
    assert audit.old_values == {"participants": ["executioner", "reviewer"]}
    assert audit.new_values == {"participants": ["executioner", "newbie"]}


@pytest.mark.parametrize(
    "add,remove,code,status",
    [(["bad id"], [], "validation_error", 400), ([], ["executioner", "reviewer"], "participants_empty", 409)],
)
def test_participants_change_validates(thread, coordinator, add, remove, code, status):
    with pytest.raises(DomainError) as exc:
        participants_change(actor=coordinator, thread_id=thread.pk, add=add, remove=remove)
    assert (exc.value.code, exc.value.status) == (code, status)


def test_a_participants_change_that_changes_nothing_answers_the_thread_and_audits_nothing(thread, coordinator):
    for add, remove in (([], []), (["executioner"], ["outsider"])):
        same = participants_change(actor=coordinator, thread_id=thread.pk, add=add, remove=remove)
        assert sorted(same._participant_ids) == ["executioner", "reviewer"]
    assert not AuditEvent.objects.filter(action="thread.participants").exists()


def test_participant_cannot_manage_participants(thread, executioner):
    with pytest.raises(Forbidden):
        participants_change(actor=executioner, thread_id=thread.pk, add=["friend"], remove=[])


def test_operator_acts_in_any_thread_of_its_workspace(thread):
    operator = Actor.operator(name="alice", workspace_id="ws-main")
    moved = thread_transition(actor=operator, thread_id=thread.pk, status="closed", reason="done by hand")
    assert moved.status == "closed"
    assert AuditEvent.objects.get(action="thread.transition").actor_role == "operator"
