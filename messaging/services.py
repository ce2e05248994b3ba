"""Messaging writes: posting (ordered, idempotent), status messages, and cursor acks."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from messaging import kinds
from messaging.models import Message, ReadCursor
from messaging.selectors import unread_count
from orkiva import observability
from orkiva.errors import Conflict, PayloadTooLarge, ValidationFailed
from policy import controls
from policy.identity import Actor
from policy.roles import Op
from threads import transitions
from threads.models import Thread
from threads.selectors import thread_get


@dataclass(frozen=True)
class PostResult:
    message: Message
    replay: bool


@dataclass(frozen=True)
class CursorState:
    thread: Thread
    last_read_seq: int
    unread_count: int


IDEMPOTENCY_KEY_MAX = 255


def check_idempotency_key(key: str | None) -> str | None:
    """Keys are 1-255 printable characters (they travel in headers and logs)."""
    if key is None:
        return None
    if not isinstance(key, str) or not 1 <= len(key) <= IDEMPOTENCY_KEY_MAX or not key.isprintable():
        raise ValidationFailed(
            f"An idempotency key is 1-{IDEMPOTENCY_KEY_MAX} printable characters.",
            code="invalid_idempotency_key",
        )
    return key


def request_fingerprint(*, body: str, kind: str, in_reply_to: int | None) -> str:
    """What makes two posts with one idempotency key 'the same request'."""
    canonical = json.dumps({"body": body, "kind": kind, "in_reply_to": in_reply_to}, sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


def check_message_input(*, body: str, kind: str) -> None:
    if kind not in kinds.POSTABLE_KINDS:
        raise ValidationFailed(
            f"kind must be one of {', '.join(kinds.POSTABLE_KINDS)}.",
            details={"fields": {"kind": list(kinds.POSTABLE_KINDS)}},
        )
    if not body.strip():
        raise ValidationFailed("The message body is empty.", details={"fields": {"body": "must not be blank"}})
    limit = settings.ORKIVA_MAX_MESSAGE_BODY_CHARS
    if len(body) > limit:
        raise PayloadTooLarge(
            f"The message body is {len(body)} characters; the limit is {limit}.",
            code="body_too_large",
            details={"limit": limit, "length": len(body)},
        )


def check_thread_accepts_posts(thread: Thread) -> None:
    if thread.status == transitions.CLOSED:
        raise Conflict("The thread is closed.", code="thread_closed", details={"status": thread.status})
    if thread.status == transitions.BLOCKED:
        raise Conflict(
            "The thread is blocked; an operator or coordinator must unblock it.",
            code="thread_blocked",
            details={"status": thread.status, "reason_code": thread.status_reason_code, "reason": thread.status_reason},
        )


@dataclass(frozen=True)
class ReplyEffect:
    """What a reply does to the open item it answers: the item's new state."""

    target_pk: int
    new_state: str
    target_sender: str

    @property
    def settles(self) -> bool:
        return self.new_state in kinds.SETTLED_STATES

    def is_progress_by(self, replier: str) -> bool:
        """Settling another agent's item is progress; settling one's own (ask, then answer it) is
        not, or one agent alone could keep a loop from ever tripping the controls."""
        return self.settles and self.target_sender != replier


def _append(*, thread: Thread, sender: str, kind: str, body: str, in_reply_to: int | None,
            idempotency_key: str | None, request_hash: str, now: datetime,
            reply_effect: ReplyEffect | None = None, turns_since_progress: int | None = None) -> Message:
    """Allocate the next seq and insert. The caller holds the thread row's lock.

    `turns_since_progress` (posts only) is written in the same UPDATE that bumps `last_seq`.
    """
    seq = thread.last_seq + 1
    previous_ordinal = (
        Message.objects.filter(thread=thread, sender=sender).order_by("-seq").values_list("sender_ordinal", flat=True).first()
    )
    updates = {"last_seq": seq, "updated_at": now}
    if turns_since_progress is not None:
        updates["turns_since_progress"] = thread.turns_since_progress = turns_since_progress
    Thread.objects.filter(pk=thread.pk).update(**updates)
    thread.last_seq, thread.updated_at = seq, now
    message = Message.objects.create(
        thread=thread,
        seq=seq,
        sender=sender,
        sender_ordinal=(previous_ordinal or 0) + 1,
        kind=kind,
        body=body,
        in_reply_to=in_reply_to,
        item_state=kinds.initial_item_state(kind),
        idempotency_key=idempotency_key,
        request_hash=request_hash,
        finding_fingerprint=controls.finding_fingerprint(body) if kind == kinds.FINDING else "",
        created_at=now,
    )
    if reply_effect is not None:
        Message.objects.filter(pk=reply_effect.target_pk).update(item_state=reply_effect.new_state)
    return message


def _reply_effect(*, thread: Thread, target_seq: int | None, reply_kind: str) -> ReplyEffect | None:
    if target_seq is None:
        return None
    target = Message.objects.filter(thread=thread, seq=target_seq).only("kind", "item_state", "sender").first()
    if target is None:
        return None
    new_state = kinds.REPLY_EFFECTS.get((target.kind, reply_kind))
    # A settled item stays settled: a late fix does not reopen a resolved finding.
    if new_state and target.item_state in kinds.UNSETTLED_STATES and target.item_state != new_state:
        return ReplyEffect(target_pk=target.pk, new_state=new_state, target_sender=target.sender)
    return None


def message_post(
    *,
    actor: Actor,
    thread_id,
    body: str,
    kind: str = kinds.MESSAGE,
    in_reply_to: int | None = None,
    idempotency_key: str | None = None,
    now: datetime | None = None,
) -> PostResult:
    """Post a message as `actor`. Seqs are gapless per thread; a retried idempotency key replays.

    Concurrent retries of one key serialize on the thread row's lock, so exactly one row is made.
    """
    check_message_input(body=body, kind=kind)
    check_idempotency_key(idempotency_key)
    result = _message_post_locked(
        actor=actor, thread_id=thread_id, body=body, kind=kind, in_reply_to=in_reply_to,
        idempotency_key=idempotency_key,
        request_hash=request_fingerprint(body=body, kind=kind, in_reply_to=in_reply_to),
        now=now,
    )
    observability.message_posted(kind=kind, replay=result.replay)
    return result


@transaction.atomic
def _message_post_locked(*, actor: Actor, thread_id, body: str, kind: str, in_reply_to: int | None,
                         idempotency_key: str | None, request_hash: str, now: datetime | None) -> PostResult:
    thread = thread_get(actor=actor, thread_id=thread_id, op=Op.MESSAGE_POST, lock=True)
    if idempotency_key is not None:
        original = Message.objects.filter(thread=thread, sender=actor.agent_id, idempotency_key=idempotency_key).first()
        if original is not None:
            if original.request_hash != request_hash:
                raise Conflict(
                    "This idempotency key was used for a different message.",
                    code="idempotency_conflict",
                    details={"idempotency_key": idempotency_key, "original_seq": original.seq},
                )
            return PostResult(message=original, replay=True)
    check_thread_accepts_posts(thread)
    if in_reply_to is not None and not 1 <= in_reply_to <= thread.last_seq:
        raise ValidationFailed(
            f"in_reply_to must name an existing message of this thread (1..{thread.last_seq}).",
            code="invalid_reply_target",
            details={"in_reply_to": in_reply_to, "last_seq": thread.last_seq},
        )
    moment = now or timezone.now()
    controls.check_rate_limit(actor=actor, thread=thread, now=moment)
    effect = _reply_effect(thread=thread, target_seq=in_reply_to, reply_kind=kind)
    progress = effect is not None and effect.is_progress_by(actor.agent_id)
    turns_before = thread.turns_since_progress
    message = _append(
        thread=thread, sender=actor.agent_id, kind=kind, body=body, in_reply_to=in_reply_to,
        idempotency_key=idempotency_key, request_hash=request_hash, now=moment, reply_effect=effect,
        turns_since_progress=controls.turns_after_post(thread, progress=progress),
    )
    # The post is stored; a control reached by it escalates or blocks the thread in this transaction.
    controls.post_controls_apply(thread=thread, message=message, progress=progress, turns_before=turns_before,
                                 now=moment)
    _auto_wake_on_commit(thread=thread, sender=actor.agent_id)
    return PostResult(message=message, replay=False)


def _auto_wake_on_commit(*, thread: Thread, sender: str) -> None:
    """The supervisor's auto-wake rule runs once the post is committed (never on replays or acks);
    its failure is logged and never fails the post. It gets the thread as this post committed it
    (status, last_seq), which saves re-reading the row on every post."""
    from supervisor.services import wakes_for_post

    transaction.on_commit(lambda: wakes_for_post(thread_id=thread.pk, sender=sender, thread=thread), robust=True)


def status_message_append(*, thread: Thread, actor: Actor, old: str, new: str, reason: str, now: datetime) -> Message:
    """Record a status change in the thread's own history. The caller holds the thread's lock."""
    text = f"Status changed from {old} to {new}."
    if reason:
        text += f" Reason: {reason}"
    return _append(thread=thread, sender=actor.agent_id, kind=kinds.STATUS, body=text, in_reply_to=None,
                   idempotency_key=None, request_hash="", now=now)


def cursor_ack(*, actor: Actor, thread_id, seq: int, now: datetime | None = None) -> CursorState:
    """Move the actor's read cursor forward to `seq`; an older seq leaves it where it is."""
    thread = thread_get(actor=actor, thread_id=thread_id, op=Op.CURSOR_ACK)
    if seq < 0 or seq > thread.last_seq:
        raise ValidationFailed(
            f"seq must be between 0 and the thread's last_seq ({thread.last_seq}).",
            code="seq_out_of_range",
            details={"seq": seq, "last_seq": thread.last_seq},
        )
    moment = now or timezone.now()
    cursor = _cursor_for(thread=thread, agent_id=actor.agent_id, now=moment)
    # Forward only, without a lock: the conditional update is atomic in the database.
    ReadCursor.objects.filter(pk=cursor.pk, last_read_seq__lt=seq).update(last_read_seq=seq, updated_at=moment)
    cursor.refresh_from_db(fields=["last_read_seq", "updated_at"])
    observability.cursor_acked()
    return CursorState(
        thread=thread,
        last_read_seq=cursor.last_read_seq,
        unread_count=unread_count(thread=thread, agent_id=actor.agent_id, last_read_seq=cursor.last_read_seq),
    )


def _cursor_for(*, thread: Thread, agent_id: str, now: datetime) -> ReadCursor:
    try:
        with transaction.atomic():
            cursor, _ = ReadCursor.objects.get_or_create(thread=thread, agent_id=agent_id, defaults={"updated_at": now})
    except IntegrityError:  # a concurrent first ack created it
        cursor = ReadCursor.objects.get(thread=thread, agent_id=agent_id)
    return cursor


def cursors_create(*, thread: Thread, agent_ids: list[str], now: datetime) -> None:
    """Start every new participant's cursor at 0 (inside the thread's creating transaction)."""
    ReadCursor.objects.bulk_create(
        [ReadCursor(thread=thread, agent_id=a, last_read_seq=0, updated_at=now) for a in agent_ids],
        ignore_conflicts=True,
    )
