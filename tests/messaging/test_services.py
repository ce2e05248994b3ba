"""Messaging writes: ordered posts, reply links, open items, idempotency, cursor acks."""
from __future__ import annotations

import pytest

from messaging.models import Message, ReadCursor
from messaging.services import cursor_ack, message_post
from orkiva.errors import Conflict, Forbidden, NotFound, PayloadTooLarge, ValidationFailed
from threads.services import thread_transition

pytestmark = pytest.mark.django_db


def post(actor, thread, body="hi", **kw):
    return message_post(actor=actor, thread_id=str(thread.pk), body=body, **kw)


def test_seqs_start_at_one_and_are_gapless(thread, executioner, reviewer):
    seqs = [post(a, thread).message.seq for a in (executioner, reviewer, executioner, reviewer, reviewer)]
    assert seqs == [1, 2, 3, 4, 5]
    thread.refresh_from_db()
    assert thread.last_seq == 5
    assert list(Message.objects.filter(thread=thread).order_by("seq").values_list("sender_ordinal", flat=True)) == [
        1, 1, 2, 2, 3]


def test_seqs_are_per_thread(coordinator, executioner):
    from tests.factories import ThreadFactory

    a = ThreadFactory(coordinator=coordinator, participants=["executioner"])
    b = ThreadFactory(coordinator=coordinator, participants=["executioner"])
    assert [post(executioner, a).message.seq, post(executioner, b).message.seq, post(executioner, a).message.seq] == [1, 1, 2]


@pytest.mark.parametrize("target", [0, 2, 99])
def test_in_reply_to_must_name_an_existing_seq(thread, executioner, target):
    post(executioner, thread)
    with pytest.raises(Conflict) as exc:  # 409: a seq the thread does not have yet
        post(executioner, thread, in_reply_to=target)
    assert exc.value.code == "invalid_reply_target"
    thread.refresh_from_db()
    assert thread.last_seq == 1


def test_in_reply_to_is_recorded(thread, executioner, reviewer):
    post(executioner, thread)
    assert post(reviewer, thread, in_reply_to=1).message.in_reply_to == 1


@pytest.mark.parametrize(
    "kwargs,error,code",
    [
        ({"body": "   "}, ValidationFailed, "validation_error"),
        ({"kind": "status"}, ValidationFailed, "validation_error"),
        ({"kind": "shout"}, ValidationFailed, "validation_error"),
        ({"idempotency_key": ""}, ValidationFailed, "invalid_idempotency_key"),
        ({"idempotency_key": "k" * 256}, ValidationFailed, "invalid_idempotency_key"),
        ({"idempotency_key": "line\nbreak"}, ValidationFailed, "invalid_idempotency_key"),
    ],
)
def test_post_validation(thread, executioner, kwargs, error, code):
    kwargs = {"body": "hello", **kwargs}
    with pytest.raises(error) as exc:
        message_post(actor=executioner, thread_id=str(thread.pk), **kwargs)
    assert exc.value.code == code
    assert not Message.objects.exists()


def test_body_limit(thread, executioner, settings):
    settings.ORKIVA_MAX_MESSAGE_BODY_CHARS = 10
    assert post(executioner, thread, body="x" * 10).message.seq == 1
    with pytest.raises(PayloadTooLarge) as exc:
        post(executioner, thread, body="x" * 11)
    assert exc.value.code == "body_too_large" and exc.value.status == 413
    assert exc.value.details == {"limit": 10, "length": 11}


def test_closed_and_blocked_threads_refuse_posts(thread, coordinator, executioner):
    thread_transition(actor=coordinator, thread_id=thread.pk, status="blocked", reason="loop")
    with pytest.raises(Conflict) as exc:
        post(executioner, thread)
    assert exc.value.code == "thread_blocked"
    thread_transition(actor=coordinator, thread_id=thread.pk, status="closed", reason="done")
    with pytest.raises(Conflict) as exc:
        post(executioner, thread)
    assert exc.value.code == "thread_closed"


def test_non_member_and_auditor_cannot_post(thread, auditor):
    from tests.factories import ActorFactory

    with pytest.raises(Forbidden):
        post(ActorFactory(agent_id="stranger"), thread)
    with pytest.raises(Forbidden):
        post(auditor, thread)


def test_other_workspace_cannot_post(thread, outsider):
    with pytest.raises(NotFound):
        post(outsider, thread)


# --- open items ---------------------------------------------------------------------------------

def state_of(thread, seq):
    return Message.objects.get(thread=thread, seq=seq).item_state


def test_finding_open_until_resolution_and_fix_addresses_it(thread, executioner, reviewer):
    post(reviewer, thread, "bug", kind="finding")                       # 1
    assert state_of(thread, 1) == "open"
    post(executioner, thread, "chat", kind="message", in_reply_to=1)    # a plain reply changes nothing
    post(executioner, thread, "answer?", kind="answer", in_reply_to=1)  # wrong kind for a finding
    assert state_of(thread, 1) == "open"
    post(executioner, thread, "patched", kind="fix", in_reply_to=1)
    assert state_of(thread, 1) == "addressed"
    post(reviewer, thread, "confirmed", kind="resolution", in_reply_to=1)
    assert state_of(thread, 1) == "resolved"
    post(executioner, thread, "late fix", kind="fix", in_reply_to=1)   # settled stays settled
    assert state_of(thread, 1) == "resolved"


def test_finding_resolved_without_fix(thread, executioner, reviewer):
    post(reviewer, thread, "bug", kind="finding")
    post(reviewer, thread, "not a bug after all", kind="resolution", in_reply_to=1)
    assert state_of(thread, 1) == "resolved"


def test_question_open_until_answer(thread, executioner, reviewer):
    post(reviewer, thread, "why?", kind="question")
    post(executioner, thread, "a fix?", kind="fix", in_reply_to=1)
    post(executioner, thread, "resolution?", kind="resolution", in_reply_to=1)
    assert state_of(thread, 1) == "open"
    post(executioner, thread, "because", kind="answer", in_reply_to=1)
    assert state_of(thread, 1) == "answered"


def test_plain_messages_have_no_item_state(thread, executioner):
    post(executioner, thread, "hello")
    assert state_of(thread, 1) == ""


# --- idempotency --------------------------------------------------------------------------------

def test_same_key_same_payload_replays(thread, executioner):
    first = post(executioner, thread, "once", idempotency_key="k-1")
    again = post(executioner, thread, "once", idempotency_key="k-1")
    assert (first.replay, again.replay) == (False, True)
    assert again.message.pk == first.message.pk and Message.objects.count() == 1


@pytest.mark.parametrize("change", [{"body": "other"}, {"kind": "finding"}, {"in_reply_to": 1}])
def test_same_key_different_payload_conflicts(thread, executioner, change):
    post(executioner, thread, "first")
    post(executioner, thread, "once", idempotency_key="k-2")
    with pytest.raises(Conflict) as exc:
        message_post(actor=executioner, thread_id=str(thread.pk), **{"body": "once", "idempotency_key": "k-2", **change})
    assert exc.value.code == "idempotency_conflict" and exc.value.details["original_seq"] == 2
    assert Message.objects.count() == 2


def test_keys_are_scoped_to_sender_and_thread(thread, executioner, reviewer, coordinator):
    from tests.factories import ThreadFactory

    other = ThreadFactory(coordinator=coordinator, participants=["executioner"])
    a = post(executioner, thread, "x", idempotency_key="same")
    b = post(reviewer, thread, "x", idempotency_key="same")
    c = post(executioner, other, "x", idempotency_key="same")
    assert not (a.replay or b.replay or c.replay)
    assert len({a.message.pk, b.message.pk, c.message.pk}) == 3


def test_replay_works_after_the_thread_closed(thread, coordinator, executioner):
    """A retry of a post that succeeded answers with the original even if the thread moved on."""
    first = post(executioner, thread, "last words", idempotency_key="k-close")
    thread_transition(actor=coordinator, thread_id=thread.pk, status="closed", reason="done")
    again = post(executioner, thread, "last words", idempotency_key="k-close")
    assert again.replay and again.message.pk == first.message.pk


# --- cursors --------------------------------------------------------------------------------------

def test_ack_moves_forward_only(thread, executioner, reviewer):
    for _ in range(3):
        post(reviewer, thread)
    assert cursor_ack(actor=executioner, thread_id=thread.pk, seq=2).last_read_seq == 2
    older = cursor_ack(actor=executioner, thread_id=thread.pk, seq=1)
    assert (older.last_read_seq, older.unread_count) == (2, 1)
    assert cursor_ack(actor=executioner, thread_id=thread.pk, seq=0).last_read_seq == 2
    assert cursor_ack(actor=executioner, thread_id=thread.pk, seq=3).unread_count == 0
    assert ReadCursor.objects.get(thread=thread, agent_id="executioner").last_read_seq == 3


@pytest.mark.parametrize("seq", [4, 2**62, -1])
def test_ack_out_of_range(thread, executioner, reviewer, seq):
    for _ in range(3):
        post(reviewer, thread)
    with pytest.raises(Conflict) as exc:  # 409: past the thread's present last_seq
        cursor_ack(actor=executioner, thread_id=thread.pk, seq=seq)
    assert exc.value.code == "seq_out_of_range"
    assert ReadCursor.objects.get(thread=thread, agent_id="executioner").last_read_seq == 0


def test_coordinator_ack_creates_its_cursor(thread, coordinator, reviewer):
    post(reviewer, thread)
    assert not ReadCursor.objects.filter(thread=thread, agent_id="coordinator").exists()
    assert cursor_ack(actor=coordinator, thread_id=thread.pk, seq=1).last_read_seq == 1
    assert ReadCursor.objects.get(thread=thread, agent_id="coordinator").last_read_seq == 1
