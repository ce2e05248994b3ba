"""Thread reads: the workspace-guarded lookup (with or without the row lock), lists, the summary."""
from __future__ import annotations

import uuid
from typing import Any

from orkiva import sql
from orkiva.errors import NotFound
from policy.identity import Actor
from policy.roles import Op, Scope, authorize, scope_for
from threads.models import Participant, Thread


def _parse_thread_id(thread_id: Any) -> uuid.UUID | None:
    if isinstance(thread_id, uuid.UUID):
        return thread_id
    try:
        return uuid.UUID(str(thread_id))
    except (ValueError, TypeError, AttributeError):
        return None


def _not_found(actor: Actor, thread_id: Any, *, owner: str | None = None, looked_up: bool = True) -> NotFound:
    """No such thread in the actor's workspace. Same code and message whether there is none or it is
    another workspace's (`owner`), and the same work on both paths, so neither the answer nor its
    timing tells them apart: one audit statement each. A cross-workspace attempt is recorded in the
    caller's workspace (`workspace.denied`) and in the probed one (`workspace.probed`), whose
    operator should see it; an unknown id is recorded as `thread.not_found`."""
    target = {"target_type": "thread", "target_id": str(thread_id)}
    if owner is not None:
        audit: list[dict[str, Any]] | dict[str, Any] | None = [
            {"actor": actor, "action": "workspace.denied", **target, "reason_code": "cross_workspace",
             "reason": "Attempt to reach a thread of another workspace."},
            {"actor": actor, "workspace_id": owner, "action": "workspace.probed", **target,
             "reason_code": "cross_workspace", "new": {"from_workspace": actor.workspace_id},
             "reason": f"A caller of workspace {actor.workspace_id} tried to reach this thread."},
        ]
    elif looked_up:
        audit = {"actor": actor, "action": "thread.not_found", **target, "reason_code": "unknown_thread",
                 "reason": "No thread with this id."}
    else:
        audit = None  # not an id at all: no thread could have it, nothing was looked up
    return NotFound("No such thread.", code="thread_not_found", details={"thread_id": str(thread_id)}, audit=audit)


def thread_get(*, actor: Actor, thread_id: Any, op: Op, lock: bool = False) -> Thread:
    """The thread `thread_id` in the actor's workspace, authorized for `op`.

    With lock=True the row is locked (select_for_update) and the caller must be inside a
    transaction: this is the only place a Thread row is locked.
    """
    pk = _parse_thread_id(thread_id)
    if pk is None:
        raise _not_found(actor, thread_id, looked_up=False)
    member_scope = scope_for(actor, op) is Scope.MEMBER
    # Every post, read, ack and summary passes here: hand-written statements (orkiva.sql).
    keys = [sql.param(Thread, "id", pk), sql.param(Thread, "workspace_id", actor.workspace_id)]
    if lock:
        row = sql.fetchone(sql.statement("thread_lock", lambda: _thread_sql(lock=True)), keys)
    else:  # the caller's membership comes with the row
        row = sql.fetchone(sql.statement("thread_get", lambda: _thread_sql(lock=False)),
                           [sql.param(Participant, "agent_id", actor.agent_id), *keys])
    if row is None:
        raise _not_found(actor, thread_id,
                         owner=Thread.objects.filter(pk=pk).values_list("workspace_id", flat=True).first())
    names = sql.field_names(Thread)
    thread = sql.instance(Thread, names, row[:len(names)])
    if not member_scope:
        authorize(actor, op, target=str(thread.pk))
    elif lock:
        # Under READ COMMITTED a statement that waited for the row lock sees the row as the lock
        # holder committed it, but its subqueries as they were before the wait: a participant
        # removed meanwhile would still count. So membership is read once the lock is held.
        is_participant = sql.fetchone(
            sql.statement("participant_exists", _participant_exists_sql),
            [sql.param(Participant, "thread", thread.pk), sql.param(Participant, "agent_id", actor.agent_id)],
        ) is not None
        authorize(actor, op, is_participant=is_participant, target=str(thread.pk))
    else:
        authorize(actor, op, is_participant=bool(row[-1]), target=str(thread.pk))
    return thread


def _thread_sql(*, lock: bool) -> str:
    """SELECT the thread's columns by id and workspace: locked, or with whether an agent is one of
    its participants (a locking statement's subqueries would not see what committed while it waited)."""
    thread, participant = sql.table(Thread), sql.table(Participant)
    membership = "" if lock else (
        f", EXISTS(SELECT 1 FROM {participant} "
        f"WHERE {participant}.{sql.column(Participant, 'thread')} = {thread}.{sql.column(Thread, 'id')} "
        f"AND {participant}.{sql.column(Participant, 'agent_id')} = %s)"
    )
    return (
        f"SELECT {sql.columns(Thread, prefix=thread + '.')}{membership} "
        f"FROM {thread} WHERE {thread}.{sql.column(Thread, 'id')} = %s "
        f"AND {thread}.{sql.column(Thread, 'workspace_id')} = %s" + (sql.for_update() if lock else "")
    )


def _participant_exists_sql() -> str:
    return (f"SELECT 1 FROM {sql.table(Participant)} WHERE {sql.column(Participant, 'thread')} = %s "
            f"AND {sql.column(Participant, 'agent_id')} = %s")


def participant_ids(thread: Thread) -> frozenset[str]:
    cached = getattr(thread, "_participant_ids", None)
    if cached is None:
        cached = frozenset(Participant.objects.filter(thread=thread).values_list("agent_id", flat=True))
        thread._participant_ids = cached
    return cached


def participant_list(thread: Thread) -> list[str]:
    return sorted(participant_ids(thread))


def thread_list(
    *, actor: Actor, status: str | None = None, participant: str | None = None, limit: int, offset: int
) -> tuple[list[Thread], int]:
    """Threads of the actor's workspace the actor may see, most recently updated first, and the total."""
    scope = authorize(actor, Op.THREAD_LIST)
    queryset = Thread.objects.filter(workspace_id=actor.workspace_id)
    if scope is Scope.MEMBER:
        queryset = queryset.filter(participants__agent_id=actor.agent_id)
    if status:
        queryset = queryset.filter(status=status)
    if participant:
        queryset = queryset.filter(participants__agent_id=participant)
    total = queryset.count()
    threads = list(queryset.order_by("-updated_at", "pk")[offset : offset + limit])
    by_thread: dict[uuid.UUID, set[str]] = {t.pk: set() for t in threads}
    for thread_pk, agent_id in Participant.objects.filter(thread__in=threads).values_list("thread_id", "agent_id"):
        by_thread[thread_pk].add(agent_id)
    for thread in threads:
        thread._participant_ids = frozenset(by_thread[thread.pk])
    return threads, total
