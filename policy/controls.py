"""The rate and loop controls every post passes, inside its transaction and under the thread's lock.

- Rate limits: posts per agent per thread and per agent per workspace in fixed windows, counted
  by one atomic UPSERT in the database (so every bridge process shares them). A refused post
  rolls back with its transaction, so refusals do not count against the window.
- Loop controls: `Thread.turns_since_progress` counts posts since the last progress: a status
  change that settles the work (to resolved or closed) or comes from a coordinator or operator,
  or a reply that settles another agent's open item (a `resolution` to a finding, an `answer`
  to a question). At the loop threshold an escalation opens; at the no-progress limit the thread is
  blocked. The n-th finding with the same normalized body (since the thread last left `blocked`)
  blocks it too. The post that reaches a limit is stored; the thread blocks after it, so the
  next post gets 409 thread_blocked.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from datetime import datetime

from django.db import connection, transaction

from messaging import kinds
from messaging.models import Message
from orkiva import observability, sql
from orkiva.errors import RateLimited
from policy.config import policy_config
from policy.escalations import (
    LOOP_THRESHOLD,
    NO_PROGRESS,
    REPEATED_FINDING,
    escalation_open,
    escalations_resolve,
)
from policy.identity import Actor
from policy.models import RateCounter
from threads.models import Thread

SCOPE_THREAD, SCOPE_WORKSPACE = "thread", "workspace"


# --- rate limits ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class RateCount:
    """A post's count in its rate windows: the UPSERT that counts it (`sql`, `params`) and what
    `rate_limit_check` needs to judge the counts it returns. The post's statements may run the
    UPSERT as part of another statement (messaging.services)."""

    keys: dict[str, str]  # scope -> counter key
    limits: dict[str, int]
    window: int
    epoch: float
    sql: str
    params: list


def _upsert_sql(rows: int) -> str:
    q = connection.ops.quote_name
    table, key, start, count = q(RateCounter._meta.db_table), q("key"), q("window_start"), q("count")
    values = ", ".join(["(%s, %s, 1)"] * rows)
    # A newer window restarts the count; the same window adds one. One statement, atomic per row.
    return (
        f"INSERT INTO {table} ({key}, {start}, {count}) VALUES {values} "
        f"ON CONFLICT ({key}) DO UPDATE SET "
        f"{count} = CASE WHEN excluded.{start} > {table}.{start} THEN 1 ELSE {table}.{count} + 1 END, "
        f"{start} = CASE WHEN excluded.{start} > {table}.{start} THEN excluded.{start} ELSE {table}.{start} END "
        f"RETURNING {key}, {count}, {start}"
    )


def rate_keys(*, actor: Actor, thread: Thread) -> dict[str, str]:
    # "|" is in no identifier (policy.identity): workspace "a:b" with agent "c" and workspace "a"
    # with agent "b:c" must not share a counter.
    return {
        SCOPE_THREAD: f"thread|{thread.pk}|{actor.agent_id}",
        SCOPE_WORKSPACE: f"workspace|{thread.workspace_id}|{actor.agent_id}",
    }


def rate_count(*, actor: Actor, thread: Thread, now: datetime) -> RateCount | None:
    """How to count this post in its windows (None when every rate limit is off).

    Run the UPSERT inside the post's transaction: the count commits with the post or rolls back
    with it (a refused post, an idempotent replay), so only stored posts count."""
    config = policy_config()
    limits = {SCOPE_THREAD: config.rate_limit_thread_posts, SCOPE_WORKSPACE: config.rate_limit_workspace_posts}
    keys = {scope: key for scope, key in rate_keys(actor=actor, thread=thread).items() if limits[scope] > 0}
    if not keys:
        return None
    window = config.rate_limit_window_seconds
    epoch = now.timestamp()
    window_start = int(epoch) - int(epoch) % window
    params: list = []
    for key in keys.values():
        params += [key, window_start]
    return RateCount(keys=keys, limits=limits, window=window, epoch=epoch,
                     sql=sql.statement("rate_upsert", lambda: _upsert_sql(len(keys)), len(keys)), params=params)


def rate_limit_check(count: RateCount, rows: list[tuple]) -> None:
    """Judge the UPSERT's rows (key, count, window_start): raise RateLimited (429, Retry-After) if a
    limit is passed; the caller's transaction then rolls back, the count with it."""
    counted = {row[0]: (row[1], row[2]) for row in rows}
    for scope, key in count.keys.items():
        posts, start = counted[key]
        if posts > count.limits[scope]:
            retry_after = max(1, math.ceil(start + count.window - count.epoch))
            observability.rate_limited(scope=scope)
            raise RateLimited(
                f"Too many posts: at most {count.limits[scope]} per {count.window} s per agent in this {scope}. "
                f"Retry in {retry_after} s.",
                details={"scope": scope, "limit": count.limits[scope], "window_seconds": count.window,
                         "retry_after_seconds": retry_after},
                headers={"Retry-After": str(retry_after)},
            )


# --- loop controls -------------------------------------------------------------------------------
def normalized_body(body: str) -> str:
    """What makes two findings 'identical': case-folded, runs of whitespace collapsed."""
    return " ".join(body.casefold().split())


def finding_fingerprint(body: str) -> str:
    return hashlib.sha256(normalized_body(body).encode("utf-8", "surrogatepass")).hexdigest()


def progress_restart(thread: Thread, *, findings: bool) -> list[str]:
    """Restart a locked thread's loop counters (in memory); returns the fields to save. `findings`
    restarts the count of repeated findings too (the thread leaves `blocked`, or is unblocked)."""
    thread.turns_since_progress = 0
    if not findings:
        return ["turns_since_progress"]
    thread.findings_since_seq = thread.last_seq
    return ["turns_since_progress", "findings_since_seq"]


def turns_after_post(thread: Thread, *, progress: bool) -> int:
    """The thread's turns since progress once this post is in."""
    return 0 if progress else thread.turns_since_progress + 1


def post_controls_apply(*, thread: Thread, message: Message, progress: bool, turns_before: int, now: datetime) -> None:
    """After a post is stored (same transaction, thread locked, `thread.turns_since_progress`
    already counting it): resolve a loop escalation on progress, or escalate, or block."""
    config = policy_config()
    system = Actor.system(workspace_id=thread.workspace_id)
    if progress:
        if config.loop_threshold_turns and turns_before >= config.loop_threshold_turns:
            escalations_resolve(
                actor=system, thread=thread, resolution="An open item was settled: the thread is making progress.",
                resolution_code="progress", reason_codes=(LOOP_THRESHOLD,), now=now,
            )
        return
    turns = thread.turns_since_progress
    if config.loop_threshold_turns and turns == config.loop_threshold_turns:
        escalation_open(
            actor=system, thread=thread, reason_code=LOOP_THRESHOLD, now=now,
            reason=f"{turns} turns without progress (no status change, no open item settled).",
            details={"turns": turns, "threshold": config.loop_threshold_turns, "seq": message.seq},
        )
    if message.kind == kinds.FINDING and config.repeated_finding_limit:
        repeats = list(
            Message.objects.filter(
                thread=thread, kind=kinds.FINDING, finding_fingerprint=message.finding_fingerprint,
                seq__gt=thread.findings_since_seq,
            ).order_by("seq").values_list("seq", flat=True)
        )
        if len(repeats) >= config.repeated_finding_limit:
            thread_block_auto(
                thread=thread, reason_code=REPEATED_FINDING, now=now,
                reason=f"The same finding was posted {len(repeats)} times (seqs {', '.join(map(str, repeats))}).",
                details={"repeats": len(repeats), "limit": config.repeated_finding_limit, "seqs": repeats},
            )
            return
    if config.no_progress_block_turns and turns >= config.no_progress_block_turns:
        thread_block_auto(
            thread=thread, reason_code=NO_PROGRESS, now=now,
            reason=f"{turns} turns without progress (no status change, no open item settled).",
            details={"turns": turns, "limit": config.no_progress_block_turns, "seq": message.seq},
        )


def thread_block_auto(*, thread: Thread, reason_code: str, reason: str, details: dict, now: datetime) -> None:
    """Policy blocks a locked thread: a blocking escalation, the status change (with its status
    message and audit row), all in the caller's transaction; counted once it commits."""
    from threads import transitions
    from threads.services import thread_status_apply

    system = Actor.system(workspace_id=thread.workspace_id)
    escalation = escalation_open(
        actor=system, thread=thread, reason_code=reason_code, reason=reason, blocking=True, details=details, now=now
    )
    thread_status_apply(
        actor=system, thread=thread, status=transitions.BLOCKED, reason=f"{reason} Escalation {escalation.pk}.",
        reason_code=reason_code, now=now, action="thread.auto_block", audit_new={"escalation_id": escalation.pk},
    )
    transaction.on_commit(lambda: observability.thread_auto_blocked(reason_code=reason_code), robust=True)
