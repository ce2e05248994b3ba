"""Shared by the supervisor's services: who the supervisor acts as, a wake's trace rows (attempt
and audit), and what waits for the commit (the job, the finished-wake metric)."""
from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from django.db import transaction

from orkiva import observability
from policy.audit import audit_record
from policy.identity import SUPERVISOR_AGENT_ID, Actor
from supervisor import reasons
from supervisor.queue import enqueue_wake
from supervisor.models import Runtime, WakeAttempt, WakeRequest


SYSTEM_ID, SYSTEM_ROLE = SUPERVISOR_AGENT_ID, "system"
WAKE_REF_PREFIX = "w-"


# Control characters (newline and tab aside): a prompt is pasted into a terminal, where ESC could end
# the bracketed paste early and turn the rest of the text into keystrokes.
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def typeable(text: str) -> str:
    """Text safe to paste into an agent's terminal: control characters become spaces."""
    return _CONTROLS.sub(" ", text)


def wake_ref_of(trace_id: str) -> str:
    """The marker a wake's prompt carries (`{wake_ref}`), so the turn it starts can be told from any
    other (supervisor/hook.py reports it with the turn)."""
    return f"{WAKE_REF_PREFIX}{trace_id[:12]}"


def runtime_for_update(*, workspace_id: str, agent_id: str) -> Runtime | None:
    """The agent's runtime row, locked until the transaction ends: the one place a Runtime is locked.
    FOR NO KEY UPDATE on PostgreSQL: a wake inserted meanwhile names the runtime in a foreign key,
    whose check takes KEY SHARE on it; with FOR UPDATE a post's wake and the agent's turn-end signal
    could deadlock. Lock order: runtime, then its sessions, then wakes."""
    return Runtime.objects.select_for_update(no_key=True).filter(workspace_id=workspace_id, agent_id=agent_id).first()


def supervisor_actor(workspace_id: str) -> Actor:
    """Who the supervisor acts as when it issues tokens for the agents it wakes."""
    return Actor.operator(name="supervisor", workspace_id=workspace_id)


def enqueue_on_commit(wake_id, delay_seconds: float = 0.0) -> None:
    transaction.on_commit(lambda: enqueue_wake(wake_id, delay_seconds=delay_seconds), robust=True)


def attempt_record(
    wake: WakeRequest, *, step: str, outcome: str, reason_code: str, now: datetime, detail: dict | None = None,
    started: datetime | None = None, actor: Actor | None = None, reason: str = "",
) -> WakeAttempt:
    """Record one step of a wake and its audit row (the caller is inside the transaction)."""
    attempt = WakeAttempt.objects.create(
        wake=wake, step=step, outcome=outcome, reason_code=reason_code, detail=detail or {},
        started_at=started or now, finished_at=now,
    )
    audit_record(
        actor=actor,
        actor_id=None if actor else SYSTEM_ID,
        actor_role=None if actor else SYSTEM_ROLE,
        workspace_id=wake.workspace_id,
        action=f"wake.{step}",
        target_type="wake",
        target_id=str(wake.pk),
        reason=reason,
        reason_code=reason_code,
        new={"outcome": outcome, "status": wake.status, "agent_id": wake.agent_id, "thread_id": str(wake.thread_id),
             "trace_id": wake.trace_id},
        now=now,
    )
    return attempt


def guidance_for(runtime: Runtime) -> str:
    return reasons.MANAGED_GUIDANCE.format(
        agent_id=runtime.agent_id, workspace_id=runtime.workspace_id, runtime_type=runtime.runtime_type
    )


def count_finished_on_commit(wake: WakeRequest, *, now: datetime) -> None:
    """A wake reached its final status: count it, by path and outcome, with its duration, once committed."""
    seconds = (now - wake.created_at).total_seconds()
    path, outcome = wake.path or "none", wake.status
    transaction.on_commit(lambda: observability.wake_finished(path=path, outcome=outcome, seconds=seconds),
                          robust=True)

def runtime_snapshot(runtime: Runtime) -> dict[str, Any]:
    return {
        "session_id": runtime.session_id,
        "runtime_type": runtime.runtime_type,
        "management_mode": runtime.management_mode,
        "pty_backend": runtime.pty_backend,
        "pty_target": runtime.pty_target,
        "pid": runtime.pid,
        "host": runtime.host,
        "paused": runtime.paused,
        "state": runtime.state,
        "tmux_socket": runtime.tmux_socket,
        "workdir": runtime.workdir,
        "state_source": runtime.state_source,
    }


def wakes_release(*, workspace_id: str, agent_id: str, reason_codes: tuple[str, ...], now: datetime) -> list:
    """Run now the agent's wakes queued for one of `reason_codes` (a pause lifted, the agent idle
    again). The caller holds a transaction; the jobs are enqueued when it commits."""
    held = list(
        WakeRequest.objects.filter(
            workspace_id=workspace_id, agent_id=agent_id, status=reasons.QUEUED, reason_code__in=reason_codes
        ).values_list("pk", flat=True)
    )
    WakeRequest.objects.filter(pk__in=held).update(next_attempt_at=now, updated_at=now)
    for pk in held:
        enqueue_on_commit(pk)
    return held
