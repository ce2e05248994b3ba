"""Messaging reads. None of them changes state: reading never moves a cursor."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from django.conf import settings
from django.db import connection
from django.db.models import Count, F, Subquery, Window
from django.db.models.functions import RowNumber

from messaging import kinds
from messaging.models import Message, ReadCursor
from orkiva import observability, sql
from policy.identity import Actor
from policy.roles import Op, Scope, scope_for
from threads.models import Participant, Thread
from threads.selectors import thread_get


@dataclass(frozen=True)
class MessagePage:
    thread: Thread
    messages: list[Message]
    last_read_seq: int
    unread_count: int
    next_after_seq: int


def cursor_position(*, thread: Thread, agent_id: str) -> int:
    value = ReadCursor.objects.filter(thread=thread, agent_id=agent_id).values_list("last_read_seq", flat=True).first()
    return value or 0


def unread_count(*, thread: Thread, agent_id: str, last_read_seq: int) -> int:
    """Messages after the cursor not sent by the reader. Seqs are gapless, so this is
    (last_seq - cursor) minus the reader's own messages after the cursor, which is the
    ordinal of its latest message minus the ordinal of its last one at or before the cursor:
    one query of two index probes, flat in the thread's length."""
    if thread.last_seq <= last_read_seq:
        return 0
    own = Message.objects.filter(thread=thread, sender=agent_id).order_by("-seq").values("sender_ordinal")
    latest, at_cursor = (
        Thread.objects.filter(pk=thread.pk)
        .annotate(latest=Subquery(own[:1]), at_cursor=Subquery(own.filter(seq__lte=last_read_seq)[:1]))
        .values_list("latest", "at_cursor")
        .get()
    )
    return thread.last_seq - last_read_seq - ((latest or 0) - (at_cursor or 0))


def message_page(*, actor: Actor, thread_id, after_seq: int | None, limit: int) -> MessagePage:
    """Up to `limit` messages after `after_seq` (default: the caller's cursor), in seq order, and
    no more than ORKIVA_READ_MAX_BYTES of bodies: a page ends before the message that would pass
    the budget (the first is always in, whatever its size). `next_after_seq` continues from there."""
    thread = thread_get(actor=actor, thread_id=thread_id, op=Op.MESSAGE_READ)
    cursor = cursor_position(thread=thread, agent_id=actor.agent_id)
    start = cursor if after_seq is None else after_seq
    messages = messages_within_budget(thread=thread, after_seq=start, limit=limit,
                                      max_bytes=settings.ORKIVA_READ_MAX_BYTES)
    observability.messages_read(count=len(messages))
    return MessagePage(
        thread=thread,
        messages=messages,
        last_read_seq=cursor,
        unread_count=unread_count(thread=thread, agent_id=actor.agent_id, last_read_seq=cursor),
        next_after_seq=messages[-1].seq if messages else start,
    )


def message_pages(*, thread_id, reads: Sequence[tuple[Actor, int, int]]) -> list[MessagePage | None]:
    """The pages of several readers of one thread at once, as `message_page` would give each (reads
    are `(actor, after_seq, limit)`): the waiters one post woke. The thread, its participants and
    the readers' cursors are read once, the messages once per distinct `(after_seq, limit)`.

    A reader this cannot clear by itself (another workspace, not a participant, a denied role: all
    of which `message_page` answers with its own error, audited) gets None: read it alone."""
    thread = Thread.objects.filter(pk=thread_id).first()
    if thread is None:
        return [None] * len(reads)
    participants = set(Participant.objects.filter(thread=thread).values_list("agent_id", flat=True))
    cleared = [_may_read(actor, thread, participants) for actor, _, _ in reads]
    agents = {actor.agent_id for (actor, _, _), ok in zip(reads, cleared) if ok}
    cursors = dict(ReadCursor.objects.filter(thread=thread, agent_id__in=agents).values_list("agent_id", "last_read_seq"))
    windows: dict[tuple[int, int], list[Message]] = {}
    unread: dict[str, int] = {}
    pages: list[MessagePage | None] = []
    for (actor, after_seq, limit), ok in zip(reads, cleared):
        if not ok:
            pages.append(None)
            continue
        cursor = cursors.get(actor.agent_id, 0)
        if (after_seq, limit) not in windows:
            windows[after_seq, limit] = messages_within_budget(
                thread=thread, after_seq=after_seq, limit=limit, max_bytes=settings.ORKIVA_READ_MAX_BYTES)
        if actor.agent_id not in unread:
            unread[actor.agent_id] = unread_count(thread=thread, agent_id=actor.agent_id, last_read_seq=cursor)
        messages = windows[after_seq, limit]
        observability.messages_read(count=len(messages))
        pages.append(MessagePage(thread=thread, messages=messages, last_read_seq=cursor,
                                 unread_count=unread[actor.agent_id],
                                 next_after_seq=messages[-1].seq if messages else after_seq))
    return pages


def _may_read(actor: Actor, thread: Thread, participants: set[str]) -> bool:
    if actor.workspace_id != thread.workspace_id:
        return False
    scope = scope_for(actor, Op.MESSAGE_READ)  # as thread_get authorizes
    if scope is Scope.MEMBER:
        return actor.agent_id in participants
    return scope is not Scope.DENY


def messages_within_budget(*, thread: Thread, after_seq: int, limit: int, max_bytes: int) -> list[Message]:
    """The first `limit` messages after `after_seq`, cut where their bodies' UTF-8 bytes would pass
    `max_bytes`; one statement (orkiva.sql), the sizes summed over those `limit` rows only."""
    rows = sql.fetchall(sql.statement("message_page", _page_sql),
                        [sql.param(Message, "thread", thread.pk), after_seq, limit, max_bytes])
    messages = [sql.instance(Message, _MESSAGE_FIELDS, row) for row in rows]
    for message in messages:
        message.thread = thread
    return messages


_MESSAGE_FIELDS = sql.field_names(Message)


def _page_sql() -> str:
    columns, body, seq = sql.columns(Message), sql.column(Message, "body"), sql.column(Message, "seq")
    # The body's stored size in bytes, without reading a large (TOASTed) value on PostgreSQL.
    size = f"octet_length({body})" if connection.vendor == "postgresql" else f"length(CAST({body} AS BLOB))"
    first = (f"SELECT {columns} FROM {sql.table(Message)} WHERE {sql.column(Message, 'thread')} = %s "
             f"AND {seq} > %s ORDER BY {seq} LIMIT %s")
    sized = f"SELECT {columns}, SUM({size}) OVER (ORDER BY {seq}) - {size} AS before_bytes FROM ({first}) AS m"
    return f"SELECT {columns} FROM ({sized}) AS w WHERE before_bytes < %s ORDER BY {seq}"


def has_messages_after(*, thread: Thread, after_seq: int) -> bool:
    return Thread.objects.filter(pk=thread.pk, last_seq__gt=after_seq).exists()


def open_items(*, thread: Thread) -> list[Message]:
    return list(
        Message.objects.filter(thread=thread, item_state__in=kinds.UNSETTLED_STATES).order_by("seq")
    )


def last_message_by_sender(*, thread: Thread) -> dict[str, Message]:
    ranked = Message.objects.filter(thread=thread).annotate(
        rank=Window(RowNumber(), partition_by=[F("sender")], order_by=F("seq").desc())
    )
    return {m.sender: m for m in ranked.filter(rank=1)}


def counts_by_kind(*, thread: Thread) -> dict[str, int]:
    rows = Message.objects.filter(thread=thread).values("kind").annotate(n=Count("id")).order_by()
    found = {row["kind"]: row["n"] for row in rows}
    return {kind: found.get(kind, 0) for kind in kinds.KINDS}


def cursor_positions(*, thread: Thread) -> dict[str, int]:
    return dict(ReadCursor.objects.filter(thread=thread).values_list("agent_id", "last_read_seq"))
