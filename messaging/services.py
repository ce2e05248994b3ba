"""Messaging writes: posting (ordered, idempotent), status messages, and cursor acks."""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import datetime
from functools import partial

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from messaging import kinds
from messaging.models import Message, ReadCursor
from messaging.selectors import unread_count
from messaging.signals import THREAD_CHANNEL, thread_advanced
from orkiva import observability, sql
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
# 1-255 characters and no control characters (C0, DEL, C1): keys travel in headers and logs. A rule
# a schema can state (REST's OpenAPI document and MCP's input schemas both do).
IDEMPOTENCY_KEY_RE = re.compile(rf"[^\x00-\x1f\x7f-\x9f]{{1,{IDEMPOTENCY_KEY_MAX}}}")


def check_idempotency_key(key: str | None) -> str | None:
    if key is None:
        return None
    if not isinstance(key, str) or IDEMPOTENCY_KEY_RE.fullmatch(key) is None:
        raise ValidationFailed(
            f"An idempotency key is 1-{IDEMPOTENCY_KEY_MAX} characters, none of them control characters.",
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
            idempotency_key: str | None, request_hash: str, now: datetime, previous_ordinal: int | None,
            reply_effect: ReplyEffect | None = None, turns_since_progress: int | None = None) -> Message:
    """Allocate the next seq and insert. The caller holds the thread row's lock and has read the
    sender's `previous_ordinal` under it (`_post_context`).

    `turns_since_progress` (posts only) is written in the same UPDATE that bumps `last_seq`. Every
    post runs these statements: hand-written (orkiva.sql), and on PostgreSQL sent as one. Once it
    commits, waiters learn of it: every process's through the insert's NOTIFY (PostgreSQL), this
    process's through `thread_advanced`, sent by the callers on commit (`_auto_wake_on_commit`, `status_message_append`).
    """
    seq = thread.last_seq + 1
    turns = turns_since_progress is not None
    bump_params = [seq, sql.param(Thread, "updated_at", now), *([turns_since_progress] if turns else []),
                   sql.param(Thread, "id", thread.pk)]
    values = {
        "thread_id": thread.pk, "seq": seq, "sender": sender, "kind": kind, "body": body,
        "in_reply_to": in_reply_to, "sender_ordinal": (previous_ordinal or 0) + 1,
        "item_state": kinds.initial_item_state(kind), "idempotency_key": idempotency_key,
        "request_hash": request_hash,
        "finding_fingerprint": controls.finding_fingerprint(body) if kind == kinds.FINDING else "",
        "created_at": now,
    }
    insert_params = [sql.param(Message, name, values[name]) for name in _INSERTED]
    writes = [(sql.statement("thread_bump", lambda: _thread_bump_sql(turns=turns), turns), bump_params)]
    if reply_effect is not None:
        writes.append((sql.statement("item_state_update", _item_state_update_sql),
                       [reply_effect.new_state, reply_effect.target_pk]))
    ((pk, *_),) = sql.run_after(writes, sql.statement("message_insert", _message_insert_sql), insert_params)
    if turns:
        thread.turns_since_progress = turns_since_progress
    thread.last_seq, thread.updated_at = seq, now
    message = Message.from_db(connection.alias, None, [pk, *(values[name] for name in _INSERTED)])
    message.thread = thread
    return message


# Message's concrete fields after the primary key, in the model's order (Message.from_db takes them so).
_INSERTED = sql.field_names(Message)[1:]


def _thread_bump_sql(*, turns: bool) -> str:
    assignments = [f"{sql.column(Thread, 'last_seq')} = %s", f"{sql.column(Thread, 'updated_at')} = %s"]
    if turns:
        assignments.append(f"{sql.column(Thread, 'turns_since_progress')} = %s")
    return f"UPDATE {sql.table(Thread)} SET {', '.join(assignments)} WHERE {sql.column(Thread, 'id')} = %s"


def _message_insert_sql() -> str:
    """The insert; on PostgreSQL it also NOTIFYs the bridge processes' listeners, delivered when
    the post commits (orkiva.mcp.waiting): in the same statement, no round trip of its own."""
    returning = sql.column(Message, "id")
    if connection.vendor == "postgresql":
        thread, seq = sql.column(Message, "thread"), sql.column(Message, "seq")
        returning += f", pg_notify('{THREAD_CHANNEL}', {thread}::text || ':' || {seq}::text)"
    return (
        f"INSERT INTO {sql.table(Message)} ({sql.columns(Message, _INSERTED)}) "
        f"VALUES ({', '.join(['%s'] * len(_INSERTED))}) RETURNING {returning}"
    )


def _item_state_update_sql() -> str:
    return (f"UPDATE {sql.table(Message)} SET {sql.column(Message, 'item_state')} = %s "
            f"WHERE {sql.column(Message, 'id')} = %s")


@dataclass(frozen=True)
class PostContext:
    previous_ordinal: int | None  # the sender's latest ordinal in the thread
    original_pk: int | None  # the sender's earlier post with this idempotency key
    rate_rows: list[tuple]  # the rate-limit UPSERT's rows (controls.rate_limit_check judges them)


def _post_context(*, thread: Thread, sender: str, idempotency_key: str | None,
                  rate: controls.RateCount | None = None) -> PostContext:
    """Under the thread's lock: the sender's latest ordinal and earlier post with this idempotency
    key (None without a key or a match), and the post counted in its rate windows (`rate`), in one
    statement on PostgreSQL. Read after the lock is taken, so a concurrent post of the thread is
    seen once it committed. The count is undone with the transaction if the post is not stored."""
    thread_param, sender_param = sql.param(Message, "thread", thread.pk), sql.param(Message, "sender", sender)
    params = [thread_param, sender_param, thread_param, sender_param, idempotency_key]
    query = sql.statement("post_context", _post_context_sql)
    rows = sql.select_with((rate.sql, rate.params) if rate else None, query, params)
    previous_ordinal, original_pk = rows[0][:2]
    return PostContext(previous_ordinal=previous_ordinal, original_pk=original_pk,
                       rate_rows=[row[2:] for row in rows] if rate else [])


def _post_context_sql() -> str:
    message = sql.table(Message)
    thread, sender = sql.column(Message, "thread"), sql.column(Message, "sender")
    return (
        f"SELECT (SELECT {sql.column(Message, 'sender_ordinal')} FROM {message} WHERE {thread} = %s AND {sender} = %s "
        f"ORDER BY {sql.column(Message, 'seq')} DESC LIMIT 1), "
        f"(SELECT {sql.column(Message, 'id')} FROM {message} WHERE {thread} = %s AND {sender} = %s "
        f"AND {sql.column(Message, 'idempotency_key')} = %s)"
    )


def _reply_effect(*, thread: Thread, target_seq: int | None, reply_kind: str) -> ReplyEffect | None:
    if target_seq is None:
        return None
    target = sql.fetchone(sql.statement("reply_target", _reply_target_sql),
                          [sql.param(Message, "thread", thread.pk), target_seq])
    if target is None:
        return None
    target_pk, target_kind, target_state, target_sender = target
    new_state = kinds.REPLY_EFFECTS.get((target_kind, reply_kind))
    # A settled item stays settled: a late fix does not reopen a resolved finding.
    if new_state and target_state in kinds.UNSETTLED_STATES and target_state != new_state:
        return ReplyEffect(target_pk=target_pk, new_state=new_state, target_sender=target_sender)
    return None


def _reply_target_sql() -> str:
    return (
        f"SELECT {sql.columns(Message, ('id', 'kind', 'item_state', 'sender'))} FROM {sql.table(Message)} "
        f"WHERE {sql.column(Message, 'thread')} = %s AND {sql.column(Message, 'seq')} = %s"
    )


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
    moment = now or timezone.now()
    rate = controls.rate_count(actor=actor, thread=thread, now=moment)
    context = _post_context(thread=thread, sender=actor.agent_id, idempotency_key=idempotency_key, rate=rate)
    if context.original_pk is not None:
        original = Message.objects.get(pk=context.original_pk)
        if original.request_hash != request_hash:
            raise Conflict(
                "This idempotency key was used for a different message.",
                code="idempotency_conflict",
                details={"idempotency_key": idempotency_key, "original_seq": original.seq},
            )
        transaction.set_rollback(True)  # a replay stores nothing: its rate count is undone
        return PostResult(message=original, replay=True)
    check_thread_accepts_posts(thread)
    if in_reply_to is not None and not 1 <= in_reply_to <= thread.last_seq:
        # 409: a well-formed seq the thread's present state does not have
        raise Conflict(
            f"in_reply_to must name an existing message of this thread (1..{thread.last_seq}).",
            code="invalid_reply_target",
            details={"in_reply_to": in_reply_to, "last_seq": thread.last_seq},
        )
    if rate is not None:
        controls.rate_limit_check(rate, context.rate_rows)
    effect = _reply_effect(thread=thread, target_seq=in_reply_to, reply_kind=kind)
    progress = effect is not None and effect.is_progress_by(actor.agent_id)
    turns_before = thread.turns_since_progress
    message = _append(
        thread=thread, sender=actor.agent_id, kind=kind, body=body, in_reply_to=in_reply_to,
        idempotency_key=idempotency_key, request_hash=request_hash, now=moment,
        previous_ordinal=context.previous_ordinal, reply_effect=effect,
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
    (status, last_seq), which saves re-reading the row on every post. The same callback first tells
    this process's waiters (`thread_advanced`)."""
    from supervisor.services import wakes_for_post

    def committed() -> None:
        thread_advanced.send(sender=Message, thread_id=thread.pk, seq=thread.last_seq)
        wakes_for_post(thread_id=thread.pk, sender=sender, thread=thread)

    transaction.on_commit(committed, robust=True)


def status_message_append(*, thread: Thread, actor: Actor, old: str, new: str, reason: str, now: datetime) -> Message:
    """Record a status change in the thread's own history. The caller holds the thread's lock."""
    text = f"Status changed from {old} to {new}."
    if reason:
        text += f" Reason: {reason}"
    context = _post_context(thread=thread, sender=actor.agent_id, idempotency_key=None)
    message = _append(thread=thread, sender=actor.agent_id, kind=kinds.STATUS, body=text, in_reply_to=None,
                      idempotency_key=None, request_hash="", now=now, previous_ordinal=context.previous_ordinal)
    transaction.on_commit(partial(thread_advanced.send, sender=Message, thread_id=thread.pk, seq=message.seq),
                          robust=True)
    return message


def cursor_ack(*, actor: Actor, thread_id, seq: int, now: datetime | None = None) -> CursorState:
    """Move the actor's read cursor forward to `seq`; an older seq leaves it where it is."""
    thread = thread_get(actor=actor, thread_id=thread_id, op=Op.CURSOR_ACK)
    if seq < 0 or seq > thread.last_seq:
        raise Conflict(  # 409: a well-formed seq past the thread's present last_seq
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
