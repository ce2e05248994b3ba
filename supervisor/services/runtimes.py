"""The runtime registry: agents register, heartbeat and deregister their runtimes; operators pause
them; the sweep applies the heartbeat policy."""
from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from orkiva.errors import Forbidden, NotFound, ValidationFailed
from policy.audit import audit_record
from policy.identity import IDENTIFIER_HELP, Actor, is_identifier
from policy.roles import Op, authorize
from sessions.models import RUNTIME_TYPES
from supervisor import reasons, tmux
from supervisor.models import (
    MANAGED,
    PTY_BACKENDS,
    PTY_NONE,
    PTY_TMUX,
    ST_ACTIVE,
    ST_DEREGISTERED,
    ST_EXPIRED,
    ST_IDLE,
    ST_OFFLINE,
    UNMANAGED,
    Runtime,
)
from supervisor.selectors import runtime_of
from supervisor.services.credentials import credential_revoke
from supervisor.services.trace import SYSTEM_ID, SYSTEM_ROLE, runtime_for_update, runtime_snapshot, wakes_release


PANE_TARGET = re.compile(r"(?:[A-Za-z0-9_\-$%@]+:[0-9@]+\.[0-9%]+|%[0-9]+)")


def is_pane_target(value: str) -> bool:
    return bool(PANE_TARGET.fullmatch(value))


def check_runtime_input(*, session_id: str, runtime_type: str, pty_backend: str, pty_target: str) -> None:
    errors: dict[str, str] = {}
    if session_id and not is_identifier(session_id):
        errors["session_id"] = IDENTIFIER_HELP
    if runtime_type not in RUNTIME_TYPES:
        errors["runtime_type"] = f"one of {', '.join(RUNTIME_TYPES)}"
    if pty_backend not in PTY_BACKENDS:
        errors["pty_backend"] = f"one of {', '.join(PTY_BACKENDS)}"
    if pty_target and not is_pane_target(pty_target):
        errors["pty_target"] = "a tmux target: session:window.pane, or a pane id such as %3"
    if errors:
        raise ValidationFailed("The runtime is not valid.", details={"fields": errors})




@transaction.atomic
def runtime_register(
    *,
    actor: Actor,
    runtime_type: str,
    session_id: str = "",
    pid: int | None = None,
    pty_backend: str = PTY_NONE,
    pty_target: str = "",
    host: str = "",
    now: datetime | None = None,
) -> Runtime:
    """An agent registers its own runtime (identity from the token). Self-registered runtimes are
    unmanaged: the supervisor never types into a pane it did not start. Re-registering a runtime
    the supervisor launched keeps it managed and keeps its target."""
    authorize(actor, Op.SESSION_HEARTBEAT)
    check_runtime_input(session_id=session_id, runtime_type=runtime_type, pty_backend=pty_backend, pty_target=pty_target)
    moment = now or timezone.now()
    runtime = runtime_for_update(workspace_id=actor.workspace_id, agent_id=actor.agent_id)
    old = runtime_snapshot(runtime) if runtime else None
    if runtime is None:
        runtime = Runtime(workspace_id=actor.workspace_id, agent_id=actor.agent_id, registered_at=moment)
        runtime.management_mode = UNMANAGED
    was_managed = runtime.management_mode == MANAGED and runtime.state != ST_DEREGISTERED
    if not was_managed:
        runtime.management_mode = UNMANAGED
        runtime.pty_backend, runtime.pty_target = pty_backend, pty_target
        runtime.host = host
    runtime.runtime_type = runtime_type
    runtime.session_id = session_id or runtime.session_id
    runtime.pid = pid if pid is not None else runtime.pid
    runtime.state, runtime.last_heartbeat_at, runtime.updated_at = ST_ACTIVE, moment, moment
    runtime.save()
    audit_record(
        actor=actor,
        action="runtime.register",
        target_type="runtime",
        target_id=f"{actor.agent_id}",
        old=old,
        new=runtime_snapshot(runtime),
        now=moment,
    )
    return runtime


def runtime_heartbeat(*, actor: Actor, session_id: str = "", now: datetime | None = None) -> Runtime:
    """The caller's runtime is alive (no audit row: heartbeats are frequent and carry no decision)."""
    authorize(actor, Op.SESSION_HEARTBEAT)
    if session_id and not is_identifier(session_id):
        raise ValidationFailed("Not a valid session id.", details={"fields": {"session_id": IDENTIFIER_HELP}})
    moment = now or timezone.now()
    runtime = runtime_of(workspace_id=actor.workspace_id, agent_id=actor.agent_id)
    if runtime is None or runtime.state == ST_DEREGISTERED:
        raise NotFound(
            "No runtime is registered for you; register it first (POST /v1/runtimes).",
            code="runtime_not_found",
            details={"agent_id": actor.agent_id},
        )
    values: dict[str, Any] = {"last_heartbeat_at": moment, "state": ST_ACTIVE, "updated_at": moment}
    if session_id:
        values["session_id"] = session_id
    Runtime.objects.filter(pk=runtime.pk).update(**values)
    runtime.refresh_from_db()
    return runtime


@transaction.atomic
def runtime_deregister(
    *, actor: Actor, workspace_id: str, agent_id: str, reason: str = "", now: datetime | None = None
) -> Runtime:
    """Deregister a runtime (the agent itself, or an operator). Active wakes stop being injected."""
    if not actor.is_operator and (actor.agent_id, actor.workspace_id) != (agent_id, workspace_id):
        raise Forbidden("You may deregister only your own runtime.", code="forbidden")
    runtime = runtime_for_update(workspace_id=workspace_id, agent_id=agent_id)
    if runtime is None:
        raise NotFound("No such runtime.", code="runtime_not_found", details={"agent_id": agent_id})
    moment = now or timezone.now()
    old = runtime_snapshot(runtime)
    runtime.state, runtime.updated_at = ST_DEREGISTERED, moment
    runtime.save(update_fields=["state", "updated_at"])
    credential_revoke(runtime, reason=f"runtime deregistered: {reason}" if reason else "runtime deregistered",
                      now=moment, actor=actor if actor.is_operator else None)
    audit_record(
        actor=actor,
        workspace_id=workspace_id,
        action="runtime.deregister",
        target_type="runtime",
        target_id=agent_id,
        reason=reason,
        old=old,
        new=runtime_snapshot(runtime),
        now=moment,
    )
    return runtime


def runtime_set_paused(
    *, operator: Actor, workspace_id: str, agent_id: str, paused: bool, reason: str, now: datetime | None = None
) -> Runtime:
    """Pause or resume injection into a runtime. Resuming releases the wakes held for it."""
    if not reason.strip():
        raise ValidationFailed("A reason is required.", code="reason_required")
    moment = now or timezone.now()
    with transaction.atomic():
        runtime = runtime_for_update(workspace_id=workspace_id, agent_id=agent_id)
        if runtime is None:
            raise NotFound("No such runtime.", code="runtime_not_found", details={"agent_id": agent_id})
        old = runtime_snapshot(runtime)
        runtime.paused, runtime.updated_at = paused, moment
        runtime.save(update_fields=["paused", "updated_at"])
        audit_record(
            actor=operator,
            workspace_id=workspace_id,
            action="runtime.pause" if paused else "runtime.resume",
            target_type="runtime",
            target_id=agent_id,
            reason=reason,
            old=old,
            new=runtime_snapshot(runtime),
            now=moment,
        )
        if not paused:
            wakes_release(workspace_id=workspace_id, agent_id=agent_id, reason_codes=(reasons.R_PAUSED,), now=moment)
    return runtime


def runtimes_expire(*, now: datetime | None = None) -> dict[str, int]:
    """The heartbeat policy, run by the scheduled sweep: silent runtimes go idle, then expire;
    managed runtimes of this host whose pane is gone go offline."""
    moment = now or timezone.now()
    idle_before = moment - timedelta(seconds=settings.ORKIVA_RUNTIME_IDLE_SECONDS)
    expire_before = moment - timedelta(seconds=settings.ORKIVA_RUNTIME_EXPIRE_SECONDS)
    counts = {"idle": 0, "expired": 0, "offline": 0}
    live = Runtime.objects.filter(state__in=(ST_ACTIVE, ST_IDLE))
    counts["idle"] = live.filter(state=ST_ACTIVE, last_heartbeat_at__lt=idle_before).update(state=ST_IDLE, updated_at=moment)
    # A managed pane of this host is alive as long as its process is (checked below): a dormant agent
    # at its prompt sends nothing, and must not expire for it. Others expire when silent; one never
    # heard from since registration counts from its registration.
    panes = Q(management_mode=MANAGED, pty_backend=PTY_TMUX, host=tmux.supervisor_host())
    silent = Q(last_heartbeat_at__lt=expire_before) | Q(last_heartbeat_at__isnull=True, registered_at__lt=expire_before)
    for runtime in live.filter(silent).exclude(panes):
        counts["expired"] += _runtime_state_change(runtime, ST_EXPIRED, reasons.R_STALE_SESSION, moment)
    for runtime in Runtime.objects.filter(panes, state__in=(ST_ACTIVE, ST_IDLE)):
        pane = tmux.pane_state(runtime.pty_target, runtime.tmux_socket)
        if not pane.exists or pane.dead:
            code = reasons.R_TARGET_MISSING if not pane.exists else reasons.R_TARGET_DEAD
            counts["offline"] += _runtime_state_change(runtime, ST_OFFLINE, code, moment)
    return counts


@transaction.atomic
def _runtime_state_change(runtime: Runtime, state: str, reason_code: str, now: datetime) -> int:
    """The runtime ended (expired, offline): recorded, audited, and its credential revoked."""
    # the same registration still (a launch meanwhile registers it anew: that one is not ended)
    changed = Runtime.objects.filter(pk=runtime.pk, state=runtime.state, registered_at=runtime.registered_at).update(
        state=state, updated_at=now)
    if changed:
        credential_revoke(runtime, reason=f"runtime {state}", now=now)
        audit_record(
            actor=None,
            actor_id=SYSTEM_ID,
            actor_role=SYSTEM_ROLE,
            workspace_id=runtime.workspace_id,
            action="runtime.state",
            target_type="runtime",
            target_id=runtime.agent_id,
            reason_code=reason_code,
            old={"state": runtime.state},
            new={"state": state},
            now=now,
        )
    return changed
