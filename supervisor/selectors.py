"""Supervisor reads: runtime state from heartbeats, ack signals after an injection, wake lookup, due wakes."""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Max, Q

from orkiva.errors import NotFound
from policy.identity import Actor
from policy.roles import Op
from sessions.models import AgentSession
from supervisor import reasons
from supervisor.models import ST_ACTIVE, ST_DEREGISTERED, ST_EXPIRED, ST_IDLE, ST_OFFLINE, Runtime, WakeRequest
from threads.selectors import thread_get


def last_activity(runtime: Runtime | None, *, workspace_id: str, agent_id: str) -> datetime | None:
    """The newest sign of life of the agent: its runtime's or any of its sessions' heartbeat, or a
    signal of its CLI (hooks)."""
    session_beat = AgentSession.objects.filter(workspace_id=workspace_id, agent_id=agent_id).aggregate(
        m=Max("last_heartbeat_at")
    )["m"]
    own = (runtime.last_heartbeat_at, runtime.agent_state_at) if runtime else ()
    beats = [b for b in (session_beat, *own) if b is not None]
    return max(beats) if beats else None


def runtime_state(runtime: Runtime, *, now: datetime, activity: datetime | None = None) -> str:
    """active / idle by heartbeat age; offline, expired and deregistered as stored."""
    if runtime.state in (ST_DEREGISTERED, ST_EXPIRED, ST_OFFLINE):
        return runtime.state
    beat = activity if activity is not None else runtime.last_heartbeat_at
    if beat is not None and (now - beat).total_seconds() < settings.ORKIVA_RUNTIME_IDLE_SECONDS:
        return ST_ACTIVE
    return ST_IDLE


def runtime_of(*, workspace_id: str, agent_id: str) -> Runtime | None:
    return Runtime.objects.filter(workspace_id=workspace_id, agent_id=agent_id).first()


def runtime_list(*, workspace_id: str | None = None) -> list[Runtime]:
    queryset = Runtime.objects.all()
    if workspace_id:
        queryset = queryset.filter(workspace_id=workspace_id)
    return list(queryset.order_by("workspace_id", "agent_id"))


def heartbeat_signal(*, workspace_id: str, agent_id: str, since: datetime) -> str | None:
    """A heartbeat of the agent (its runtime's or a session's) after `since`, or None."""
    if Runtime.objects.filter(workspace_id=workspace_id, agent_id=agent_id, last_heartbeat_at__gt=since).exists():
        return "runtime_heartbeat"
    if AgentSession.objects.filter(workspace_id=workspace_id, agent_id=agent_id, last_heartbeat_at__gt=since).exists():
        return "session_heartbeat"
    return None


def wake_ack(wake: WakeRequest, *, since: datetime | None = None, heartbeats: bool = True) -> str | None:
    """What acknowledged the wake's delivery that began at `since`: the agent's own sign for the
    wake's thread, marked on the row (`wakes_acknowledge`: a read, an ack, a turn started), or (with
    `heartbeats`, and `since`) a heartbeat of the agent after it. None: nothing yet."""
    marked = WakeRequest.objects.filter(pk=wake.pk).values_list("acked_at", "ack_signal").first()
    if marked and marked[0] is not None:
        return marked[1]
    if not heartbeats or since is None:
        return None
    return heartbeat_signal(workspace_id=wake.workspace_id, agent_id=wake.agent_id, since=since)


def wake_get(*, actor: Actor, wake_id) -> WakeRequest:
    """A wake of the actor's workspace that the actor may see (read access to its thread)."""
    try:
        pk = uuid.UUID(str(wake_id))
    except (ValueError, TypeError, AttributeError):
        pk = None
    wake = (
        WakeRequest.objects.filter(pk=pk, workspace_id=actor.workspace_id).select_related("thread").first()
        if pk
        else None
    )
    if wake is None:
        raise NotFound("No such wake.", code="wake_not_found", details={"wake_id": str(wake_id)})
    thread_get(actor=actor, thread_id=wake.thread_id, op=Op.THREAD_READ)
    return wake


def wake_attempts(wake: WakeRequest) -> list:
    cached = getattr(wake, "_attempts", None)
    if cached is None:
        cached = list(wake.attempts.order_by("id"))
        wake._attempts = cached
    return cached


def wakes_due(*, now: datetime, grace_seconds: float = 30, limit: int = 200) -> list[uuid.UUID]:
    """Active wakes whose next step is overdue and that no worker holds: lost jobs, queued wakes."""
    cutoff = now - timedelta(seconds=grace_seconds)
    return list(
        WakeRequest.objects.filter(status__in=reasons.ACTIVE_STATUSES, next_attempt_at__lte=cutoff)
        .filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now))
        .order_by("next_attempt_at")
        .values_list("pk", flat=True)[:limit]
    )
