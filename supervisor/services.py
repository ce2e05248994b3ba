"""Supervisor writes: the runtime registry, wake requests (trigger, auto-wake, operator) and the
wake chain itself, one step per call of `wake_advance` (django-q2 jobs call it; tests too)."""
from __future__ import annotations

import re
import shlex
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from messaging.selectors import cursor_position, unread_count
from orkiva import observability, sql
from orkiva.context import current_request_id
from orkiva.errors import Conflict, Forbidden, NotFound, RateLimited, ValidationFailed
from policy.audit import audit_record
from policy.identity import IDENTIFIER_HELP, ROLE_PARTICIPANT, TOKEN_ROLES, Actor, is_identifier
from policy.roles import Op, authorize
from policy.services import token_issue
from sessions.models import RUNTIME_TYPES
from sessions.selectors import latest_resumable_session
from sessions.services import session_heartbeat
from supervisor import reasons, runner, tmux
from supervisor.collision import DEFER, INJECT, CollisionPolicy, collision_decide
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
    WakeAttempt,
    WakeRequest,
)
from supervisor.selectors import ack_signal, last_activity, runtime_of, runtime_state, wake_get
from threads import transitions
from threads.models import Participant, Thread
from threads.selectors import participant_ids, thread_get
from threads.summary import summary_of, summary_text

SYSTEM_ID, SYSTEM_ROLE = "supervisor", "system"


def supervisor_actor(workspace_id: str) -> Actor:
    """Who the supervisor acts as when it issues tokens for the agents it wakes."""
    return Actor.operator(name="supervisor", workspace_id=workspace_id)


# --- runtime registry -------------------------------------------------------------------------------


def check_runtime_input(*, session_id: str, runtime_type: str, pty_backend: str, pty_target: str) -> None:
    errors: dict[str, str] = {}
    if session_id and not is_identifier(session_id):
        errors["session_id"] = IDENTIFIER_HELP
    if runtime_type not in RUNTIME_TYPES:
        errors["runtime_type"] = f"one of {', '.join(RUNTIME_TYPES)}"
    if pty_backend not in PTY_BACKENDS:
        errors["pty_backend"] = f"one of {', '.join(PTY_BACKENDS)}"
    if pty_target and not re.match(r"^[A-Za-z0-9_\-$%@]+:[0-9@]+\.[0-9%]+$", pty_target):
        errors["pty_target"] = "a tmux target session:window.pane"
    if errors:
        raise ValidationFailed("The runtime is not valid.", details={"fields": errors})


def _runtime_snapshot(runtime: Runtime) -> dict[str, Any]:
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
    }


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
    runtime = Runtime.objects.select_for_update().filter(workspace_id=actor.workspace_id, agent_id=actor.agent_id).first()
    old = _runtime_snapshot(runtime) if runtime else None
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
        new=_runtime_snapshot(runtime),
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
    runtime = Runtime.objects.select_for_update().filter(workspace_id=workspace_id, agent_id=agent_id).first()
    if runtime is None:
        raise NotFound("No such runtime.", code="runtime_not_found", details={"agent_id": agent_id})
    moment = now or timezone.now()
    old = _runtime_snapshot(runtime)
    runtime.state, runtime.updated_at = ST_DEREGISTERED, moment
    runtime.save(update_fields=["state", "updated_at"])
    audit_record(
        actor=actor,
        workspace_id=workspace_id,
        action="runtime.deregister",
        target_type="runtime",
        target_id=agent_id,
        reason=reason,
        old=old,
        new=_runtime_snapshot(runtime),
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
        runtime = Runtime.objects.select_for_update().filter(workspace_id=workspace_id, agent_id=agent_id).first()
        if runtime is None:
            raise NotFound("No such runtime.", code="runtime_not_found", details={"agent_id": agent_id})
        old = _runtime_snapshot(runtime)
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
            new=_runtime_snapshot(runtime),
            now=moment,
        )
        if not paused:
            held = list(
                WakeRequest.objects.filter(
                    workspace_id=workspace_id, agent_id=agent_id, status=reasons.QUEUED, reason_code=reasons.R_PAUSED
                ).values_list("pk", flat=True)
            )
            WakeRequest.objects.filter(pk__in=held).update(next_attempt_at=moment, updated_at=moment)
            for pk in held:
                _enqueue_on_commit(pk)
    return runtime


@transaction.atomic
def wake_cancel(*, operator: Actor, wake_id, reason: str, now: datetime | None = None) -> WakeRequest:
    """Stop an active wake (an operator's recovery from a stuck one). Final status `cancelled`;
    a step running at that moment finishes its side effect, is recorded, and changes nothing."""
    if not reason.strip():
        raise ValidationFailed("A reason is required.", code="reason_required")
    wake = wake_get(actor=operator, wake_id=wake_id)
    wake = WakeRequest.objects.select_for_update().get(pk=wake.pk)
    if wake.status in reasons.FINAL_STATUSES:
        raise Conflict(
            f"The wake is already {wake.status}.", code="wake_already_final",
            details={"wake_id": str(wake.pk), "status": wake.status},
        )
    moment = now or timezone.now()
    old_status = wake.status
    wake.status, wake.reason_code, wake.stage = reasons.CANCELLED, reasons.R_OPERATOR_CANCELLED, reasons.STAGE_DONE
    wake.finished_at, wake.next_attempt_at, wake.updated_at = moment, None, moment
    wake.save(update_fields=["status", "reason_code", "stage", "finished_at", "next_attempt_at", "updated_at"])
    _attempt(wake, step="request", outcome=reasons.CANCELLED, reason_code=reasons.R_OPERATOR_CANCELLED, now=moment,
             actor=operator, reason=reason.strip(), detail={"cancelled_by": operator.agent_id, "was": old_status})
    _count_finished_on_commit(wake, now=moment)
    return wake


@dataclass
class LaunchResult:
    runtime: Runtime
    token_expires_at: datetime
    session_name: str
    attach_command: str


def runtime_launch(
    *,
    operator: Actor,
    agent_id: str,
    workspace_id: str,
    runtime_type: str,
    command: str,
    session_id: str = "",
    workdir: str = "",
    role: str = ROLE_PARTICIPANT,
    reason: str = "",
    now: datetime | None = None,
) -> LaunchResult:
    """Start an agent in a named tmux target on the supervisor's server, with a short-lived token in
    its environment (ORKIVA_TOKEN, ORKIVA_URL), and register it as managed."""
    errors: dict[str, str] = {}
    for name, value in (("agent_id", agent_id), ("workspace_id", workspace_id)):
        if not is_identifier(value):
            errors[name] = IDENTIFIER_HELP
    if runtime_type not in RUNTIME_TYPES:
        errors["runtime"] = f"one of {', '.join(RUNTIME_TYPES)}"
    if role not in TOKEN_ROLES:
        errors["role"] = f"one of {', '.join(TOKEN_ROLES)}"
    try:
        argv = shlex.split(command or "")
    except ValueError as exc:
        argv = []
        errors["command"] = f"not parseable: {exc}"
    if not argv and "command" not in errors:
        errors["command"] = "the agent command to run, e.g. \"codex\""
    if session_id and not is_identifier(session_id):
        errors["session_id"] = IDENTIFIER_HELP
    if errors:
        raise ValidationFailed("The launch request is not valid.", details={"fields": errors})
    existing = runtime_of(workspace_id=workspace_id, agent_id=agent_id)
    if existing and existing.management_mode == MANAGED and existing.state not in (ST_DEREGISTERED, ST_EXPIRED, ST_OFFLINE):
        pane = tmux.pane_state(existing.pty_target) if existing.pty_target else None
        if pane is not None and pane.exists and not pane.dead:
            raise Conflict(
                "That agent already runs as a managed runtime; deregister it first.",
                code="runtime_already_managed",
                details={"pty_target": existing.pty_target},
            )
    moment = now or timezone.now()
    token_session = session_id or f"rt-{uuid.uuid4().hex[:12]}"
    minted = token_issue(
        issuer=operator,
        agent_id=agent_id,
        workspace_id=workspace_id,
        role=role,
        session_id=token_session,
        ttl_seconds=settings.ORKIVA_RUNTIME_TOKEN_TTL_SECONDS,
        reason=reason or "runtime launch",
        now=moment,
    )
    session_name = tmux.session_name_for(workspace_id=workspace_id, agent_id=agent_id)
    tmux.kill_session(session_name)  # a dead pane left over from an earlier launch
    env = {
        "ORKIVA_TOKEN": minted.token,
        "ORKIVA_URL": settings.ORKIVA_PUBLIC_URL,
        "ORKIVA_AGENT_ID": agent_id,
        "ORKIVA_WORKSPACE_ID": workspace_id,
        "ORKIVA_SESSION_ID": token_session,
    }
    try:
        launched = tmux.launch(session_name=session_name, argv=argv, env=env, workdir=workdir or None)
    except tmux.TmuxFailed as exc:
        raise Conflict(f"tmux could not start the agent: {exc}", code="launch_failed", details={"stderr": exc.stderr}) from None
    try:
        runtime = _runtime_register_managed(
            operator=operator,
            agent_id=agent_id,
            workspace_id=workspace_id,
            runtime_type=runtime_type,
            session_id=session_id,
            pid=launched.pid,
            pty_target=launched.target,
            workdir=workdir,
            reason=reason,
            now=moment,
        )
    except Exception:
        tmux.kill_session(session_name)
        raise
    socket_flag = f"-L {shlex.quote(settings.ORKIVA_TMUX_SOCKET)} " if settings.ORKIVA_TMUX_SOCKET else ""
    return LaunchResult(
        runtime=runtime,
        token_expires_at=minted.expires_at,
        session_name=session_name,
        attach_command=f"tmux {socket_flag}attach -t {shlex.quote(session_name)}",
    )


@transaction.atomic
def _runtime_register_managed(
    *, operator: Actor, agent_id: str, workspace_id: str, runtime_type: str, session_id: str, pid: int | None,
    pty_target: str, workdir: str, reason: str, now: datetime,
) -> Runtime:
    runtime = Runtime.objects.select_for_update().filter(workspace_id=workspace_id, agent_id=agent_id).first()
    old = _runtime_snapshot(runtime) if runtime else None
    if runtime is None:
        runtime = Runtime(workspace_id=workspace_id, agent_id=agent_id)
    runtime.session_id = session_id or (runtime.session_id if old else "")
    runtime.runtime_type = runtime_type
    runtime.pid, runtime.pty_backend, runtime.pty_target = pid, PTY_TMUX, pty_target
    runtime.management_mode, runtime.host, runtime.workdir = MANAGED, tmux.supervisor_host(), workdir
    runtime.paused, runtime.state = False, ST_IDLE
    runtime.last_heartbeat_at = None  # launched, not heard from yet
    runtime.registered_at = runtime.updated_at = now
    runtime.save()
    audit_record(
        actor=operator,
        workspace_id=workspace_id,
        action="runtime.launch",
        target_type="runtime",
        target_id=agent_id,
        reason=reason,
        old=old,
        new=_runtime_snapshot(runtime),
        now=now,
    )
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
    # a runtime never heard from since registration counts from its registration
    silent = Q(last_heartbeat_at__lt=expire_before) | Q(last_heartbeat_at__isnull=True, registered_at__lt=expire_before)
    for runtime in live.filter(silent):
        counts["expired"] += _runtime_state_change(runtime, ST_EXPIRED, reasons.R_STALE_SESSION, moment)
    for runtime in Runtime.objects.filter(
        state__in=(ST_ACTIVE, ST_IDLE), management_mode=MANAGED, pty_backend=PTY_TMUX, host=tmux.supervisor_host()
    ):
        pane = tmux.pane_state(runtime.pty_target)
        if not pane.exists or pane.dead:
            code = reasons.R_TARGET_MISSING if not pane.exists else reasons.R_TARGET_DEAD
            counts["offline"] += _runtime_state_change(runtime, ST_OFFLINE, code, moment)
    return counts


@transaction.atomic
def _runtime_state_change(runtime: Runtime, state: str, reason_code: str, now: datetime) -> int:
    changed = Runtime.objects.filter(pk=runtime.pk, state=runtime.state).update(state=state, updated_at=now)
    if changed:
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


# --- wake requests --------------------------------------------------------------------------------------


def dedupe_key_for(*, workspace_id: str, agent_id: str, thread_id) -> str:
    return f"wake:{workspace_id}:{agent_id}:{thread_id}"


def _one_line(text: str) -> str:
    """Typed into a pane, a newline would submit early: prompts are one line."""
    return " ".join(text.split())


def wake_prompt(*, thread: Thread, agent_id: str, reason: str) -> str:
    values = {
        "thread_id": str(thread.pk),
        "title": thread.title,
        "agent_id": agent_id,
        "workspace_id": thread.workspace_id,
        "reason": f" Reason: {reason}" if reason.strip() else "",
    }
    return _one_line(settings.ORKIVA_WAKE_PROMPT.format_map(values))


def _enqueue_on_commit(wake_id, delay_seconds: float = 0.0) -> None:
    from supervisor.tasks import enqueue_wake

    transaction.on_commit(lambda: enqueue_wake(wake_id, delay_seconds=delay_seconds), robust=True)


def _attempt(
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


def _wake_create(
    *,
    thread: Thread,
    agent_id: str,
    source: str,
    requested_by: str,
    actor: Actor | None,
    reason: str,
    force: bool,
    now: datetime,
) -> WakeRequest:
    """Create a wake, or return the one it collapses onto (`wake.deduped` says which).
    The caller holds a transaction; the job is enqueued when it commits."""
    workspace_id = thread.workspace_id
    key = dedupe_key_for(workspace_id=workspace_id, agent_id=agent_id, thread_id=thread.pk)
    existing = WakeRequest.objects.select_for_update().filter(dedupe_key=key, status__in=reasons.ACTIVE_STATUSES).first()
    if existing is None and not force:
        window = now - timedelta(seconds=settings.ORKIVA_WAKE_DEDUPE_WINDOW_SECONDS)
        existing = WakeRequest.objects.filter(dedupe_key=key, created_at__gte=window).order_by("-created_at").first()
    if existing is not None:
        if force and not existing.force and existing.status in reasons.ACTIVE_STATUSES:
            existing.force, existing.updated_at = True, now
            existing.reason = reason or existing.reason
            existing.save(update_fields=["force", "reason", "updated_at"])
            _attempt(existing, step="request", outcome=reasons.OUT_CREATED, reason_code=reasons.R_FORCED, now=now,
                     actor=actor, reason=reason, detail={"forced_by": requested_by})
            if existing.status == reasons.QUEUED and existing.reason_code == reasons.R_MAX_DEFER:
                WakeRequest.objects.filter(pk=existing.pk).update(next_attempt_at=now)
                _enqueue_on_commit(existing.pk)
        existing.deduped = True
        return existing
    window_start = now - timedelta(seconds=settings.ORKIVA_WAKE_RATE_WINDOW_SECONDS)
    recent = WakeRequest.objects.filter(workspace_id=workspace_id, agent_id=agent_id, created_at__gte=window_start).count()
    if recent >= settings.ORKIVA_WAKE_RATE_LIMIT:
        raise RateLimited(
            f"{agent_id} was woken {recent} times in the last {int(settings.ORKIVA_WAKE_RATE_WINDOW_SECONDS)}s.",
            code="wake_rate_limited",
            details={"agent_id": agent_id, "limit": settings.ORKIVA_WAKE_RATE_LIMIT,
                     "window_seconds": settings.ORKIVA_WAKE_RATE_WINDOW_SECONDS},
            audit={"actor": actor, "actor_id": None if actor else requested_by, "actor_role": None if actor else SYSTEM_ROLE,
                   "workspace_id": workspace_id, "action": "wake.rate_limited", "target_type": "agent",
                   "target_id": agent_id},
        )
    runtime = runtime_of(workspace_id=workspace_id, agent_id=agent_id)
    wake = WakeRequest(
        workspace_id=workspace_id,
        agent_id=agent_id,
        thread=thread,
        runtime=runtime,
        source=source,
        requested_by=requested_by,
        reason=reason,
        force=force,
        dedupe_key=key,
        trace_id=uuid.uuid4().hex,
        request_id=current_request_id() or "",
        status=reasons.PENDING,
        stage=reasons.STAGE_INJECT,
        reason_code=reasons.R_CREATED,
        prompt=wake_prompt(thread=thread, agent_id=agent_id, reason=reason),
        next_attempt_at=now,
        created_at=now,
        updated_at=now,
    )
    try:
        with transaction.atomic():
            wake.save(force_insert=True)
    except IntegrityError:  # a concurrent request created the active wake first
        winner = WakeRequest.objects.filter(dedupe_key=key, status__in=reasons.ACTIVE_STATUSES).first()
        if winner is None:
            raise
        winner.deduped = True
        return winner
    _attempt(wake, step="request", outcome=reasons.OUT_CREATED, reason_code=reasons.R_CREATED, now=now, actor=actor,
             reason=reason, detail={"source": source, "requested_by": requested_by, "force": force})
    if runtime is not None and runtime.management_mode == UNMANAGED:
        # Deterministic and immediate: never typed into; the chain starts at resume.
        wake.status, wake.stage, wake.reason_code = reasons.UNMANAGED_RUNTIME, reasons.STAGE_RESUME, reasons.R_UNMANAGED
        wake.save(update_fields=["status", "stage", "reason_code"])
        _attempt(wake, step="inject", outcome=reasons.OUT_SKIPPED, reason_code=reasons.R_UNMANAGED, now=now,
                 detail={"guidance": _guidance(runtime)})
    _enqueue_on_commit(wake.pk)
    transaction.on_commit(lambda: observability.wake_requested(source=source), robust=True)
    wake.deduped = False
    return wake


def _guidance(runtime: Runtime) -> str:
    return reasons.MANAGED_GUIDANCE.format(
        agent_id=runtime.agent_id, workspace_id=runtime.workspace_id, runtime_type=runtime.runtime_type
    )


@transaction.atomic
def wake_trigger(
    *, actor: Actor, thread_id, agent_id: str, reason: str = "", force: bool = False, now: datetime | None = None
) -> WakeRequest:
    """Ask the supervisor to wake `agent_id` about a thread: `trigger_participant`, REST and the
    operator command all come here. Answers at once; the chain runs in the supervisor's jobs."""
    thread = thread_get(actor=actor, thread_id=thread_id, op=Op.WAKE_TRIGGER)
    if not is_identifier(agent_id):
        raise ValidationFailed("Not a valid agent id.", details={"fields": {"agent_id": IDENTIFIER_HELP}})
    if agent_id not in participant_ids(thread):
        raise ValidationFailed(
            f"{agent_id} is not a participant of this thread.", code="agent_not_in_thread",
            details={"agent_id": agent_id},
        )
    reason = (reason or "").strip()
    if len(reason) > 1000:
        raise ValidationFailed("The reason is at most 1000 characters.", details={"fields": {"reason": "too long"}})
    if force:
        if not actor.is_operator:
            raise Forbidden(
                "Only an operator may force a wake past a typing human.", code="force_requires_operator",
                audit={"actor": actor, "action": "wake.force.denied", "target_type": "thread",
                       "target_id": str(thread.pk)},
            )
        if not reason:
            raise ValidationFailed("A forced wake needs a reason.", code="reason_required")
    source = reasons.SOURCE_OPERATOR if actor.is_operator else reasons.SOURCE_TRIGGER
    return _wake_create(
        thread=thread, agent_id=agent_id, source=source, requested_by=actor.agent_id, actor=actor,
        reason=reason, force=force, now=now or timezone.now(),
    )


def wakes_for_post(*, thread_id, sender: str, now: datetime | None = None, thread: Thread | None = None) -> list[WakeRequest]:
    """The auto-wake rule, run when a post commits: wake each other participant whose runtime is
    idle or offline and who has unread messages in the thread. Never the sender; agents with no
    registered (or a deregistered) runtime are not woken automatically.

    `thread` is the post's thread as it committed (the post passes it: no re-read); without it the
    thread is read. One query finds the candidate runtimes; nothing more runs when there are none."""
    if not settings.ORKIVA_WAKE_AUTO:
        return []
    moment = now or timezone.now()
    if thread is None:
        thread = Thread.objects.filter(pk=thread_id).first()
    # A blocked thread (policy stopped the agents) or a closed one wakes nobody: the woken agent
    # could only meet 409 thread_blocked, and waking each other is how a loop keeps going.
    if thread is None or thread.status in (transitions.BLOCKED, transitions.CLOSED):
        return []
    # Every post runs this query, and in most it finds nobody: hand-written (orkiva.sql), ids only.
    candidates = sql.fetchall(
        sql.statement("wake_candidates", _wake_candidates_sql),
        [thread.workspace_id, ST_DEREGISTERED, sql.param(Participant, "thread", thread.pk), sender],
    )
    if not candidates:
        return []
    woken = []
    for runtime in Runtime.objects.filter(pk__in=[pk for (pk,) in candidates]).order_by("agent_id"):
        activity = last_activity(runtime, workspace_id=thread.workspace_id, agent_id=runtime.agent_id)
        if runtime_state(runtime, now=moment, activity=activity) == ST_ACTIVE:
            continue
        last_read = cursor_position(thread=thread, agent_id=runtime.agent_id)
        if unread_count(thread=thread, agent_id=runtime.agent_id, last_read_seq=last_read) == 0:
            continue
        try:
            with transaction.atomic():
                wake = _wake_create(
                    thread=thread, agent_id=runtime.agent_id, source=reasons.SOURCE_AUTO, requested_by=sender,
                    actor=None, reason="", force=False, now=moment,
                )
        except RateLimited as err:
            from orkiva.errors import report_error

            report_error(err)  # audited and counted; the post itself stands
            continue
        woken.append(wake)
    return woken


def _wake_candidates_sql() -> str:
    """The ids of the runtimes (not deregistered) of a thread's participants other than the sender."""
    runtime, participant = sql.table(Runtime), sql.table(Participant)
    agent = sql.column(Runtime, "agent_id")
    return (
        f"SELECT {sql.column(Runtime, 'id')} FROM {runtime} WHERE {sql.column(Runtime, 'workspace_id')} = %s "
        f"AND {sql.column(Runtime, 'state')} <> %s AND {agent} IN (SELECT {sql.column(Participant, 'agent_id')} "
        f"FROM {participant} WHERE {sql.column(Participant, 'thread')} = %s "
        f"AND {sql.column(Participant, 'agent_id')} <> %s)"
    )


# --- the wake chain -----------------------------------------------------------------------------------


@dataclass
class _Step:
    """What one step decided, applied to the row in one short transaction."""

    attempts: list[dict] = field(default_factory=list)
    changes: dict[str, Any] = field(default_factory=dict)
    record_session: tuple[str, str] | None = None  # (session_id, runtime_type) of a spawned session

    def attempt(self, step: str, outcome: str, reason_code: str, detail: dict | None = None, started=None) -> None:
        self.attempts.append(
            {"step": step, "outcome": outcome, "reason_code": reason_code, "detail": detail or {}, "started": started}
        )


def wake_advance(*, wake_id, now: datetime | None = None) -> tuple[WakeRequest | None, bool]:
    """Run the wake's next due step. Returns the wake and whether a step ran.

    Safe to run twice: a wake that is final, not due, or held by another worker's lease is left alone.
    Side effects (tmux, subprocesses) run outside any transaction, under the lease.
    """
    moment = now or timezone.now()
    lease = timedelta(seconds=settings.ORKIVA_WAKE_COMMAND_TIMEOUT_SECONDS + 60)
    with transaction.atomic():
        wake = WakeRequest.objects.select_for_update().filter(pk=wake_id).first()
        if wake is None or wake.status in reasons.FINAL_STATUSES:
            return wake, False
        if (wake.lease_until and wake.lease_until > moment) or (wake.next_attempt_at and wake.next_attempt_at > moment):
            return wake, False
        wake.lease_until = moment + lease
        wake.save(update_fields=["lease_until"])
    step = _Step()
    try:
        if wake.stage == reasons.STAGE_INJECT:
            _step_inject(wake, step, moment)
        elif wake.stage == reasons.STAGE_RESUME:
            _step_resume(wake, step, moment)
        elif wake.stage == reasons.STAGE_SPAWN:
            _step_spawn(wake, step, moment)
    finally:
        _apply(wake, step, moment)
    return wake, True


def _finish(step: _Step, *, status: str, path: str, reason_code: str, now: datetime) -> None:
    step.changes.update(status=status, path=path, reason_code=reason_code, stage=reasons.STAGE_DONE,
                        finished_at=now, next_attempt_at=None)


def _to_stage(step: _Step, stage: str, *, reason_code: str, now: datetime, status: str | None = None) -> None:
    status = status or {reasons.STAGE_RESUME: reasons.RESUMING, reasons.STAGE_SPAWN: reasons.SPAWNING}[stage]
    step.changes.update(stage=stage, status=status, reason_code=reason_code, next_attempt_at=now)


def _step_inject(wake: WakeRequest, step: _Step, now: datetime) -> None:
    runtime = runtime_of(workspace_id=wake.workspace_id, agent_id=wake.agent_id)
    if wake.status == reasons.AWAITING_ACK:
        return _check_ack(wake, step, now)
    if wake.status == reasons.QUEUED and wake.queued_at and (
        (now - wake.queued_at).total_seconds() >= settings.ORKIVA_WAKE_QUEUE_TTL_SECONDS
    ):
        step.attempt("inject", reasons.OUT_EXPIRED, reasons.R_QUEUE_EXPIRED)
        _finish(step, status=reasons.EXPIRED, path="inject", reason_code=reasons.R_QUEUE_EXPIRED, now=now)
        return
    skip = None
    if runtime is None:
        skip = reasons.R_NO_RUNTIME
    elif runtime.state in (ST_DEREGISTERED, ST_EXPIRED, ST_OFFLINE):
        skip = reasons.R_RUNTIME_INACTIVE
    elif runtime.management_mode == UNMANAGED:
        step.attempt("inject", reasons.OUT_SKIPPED, reasons.R_UNMANAGED, {"guidance": _guidance(runtime)})
        _to_stage(step, reasons.STAGE_RESUME, reason_code=reasons.R_UNMANAGED, now=now, status=reasons.UNMANAGED_RUNTIME)
        return
    elif runtime.pty_backend != PTY_TMUX or not runtime.pty_target:
        skip = reasons.R_NOT_TMUX
    elif runtime.host and runtime.host != tmux.supervisor_host():
        skip = reasons.R_OTHER_HOST
    if skip:
        step.attempt("inject", reasons.OUT_SKIPPED, skip, {"runtime_state": runtime.state if runtime else None})
        _to_stage(step, reasons.STAGE_RESUME, reason_code=skip, now=now)
        return
    if runtime.paused:
        if not (wake.status == reasons.QUEUED and wake.reason_code == reasons.R_PAUSED):
            step.attempt("inject", reasons.OUT_QUEUED, reasons.R_PAUSED)
        step.changes.update(status=reasons.QUEUED, reason_code=reasons.R_PAUSED, queued_at=wake.queued_at or now,
                            next_attempt_at=now + timedelta(minutes=settings.ORKIVA_WAKE_SWEEP_MINUTES))
        return
    target = runtime.pty_target
    pane = tmux.pane_state(target)
    if not pane.exists or pane.dead:
        code = reasons.R_TARGET_MISSING if not pane.exists else reasons.R_TARGET_DEAD
        step.attempt("inject", reasons.OUT_FAILED, code, {"pty_target": target})
        _to_stage(step, reasons.STAGE_RESUME, reason_code=code, now=now)
        return
    activity = tmux.client_activity(target)
    # A queued wake has deferred its fill: each sweep looks once, injecting only into a quiet pane.
    policy = CollisionPolicy.from_settings()
    deferred_since = (
        now - timedelta(seconds=policy.max_defer)
        if (wake.status, wake.reason_code) == (reasons.QUEUED, reasons.R_MAX_DEFER)
        else None
        if wake.status == reasons.QUEUED
        else wake.deferred_since
    )
    decision = collision_decide(
        client_activity=activity, now=now, deferred_since=deferred_since, force=wake.force, policy=policy,
    )
    detail = {"pty_target": target, "client_activity": activity, "last_activity_age": decision.last_activity_age}
    if decision.action == DEFER:
        step.attempt("inject", reasons.OUT_DEFERRED, decision.reason_code, {**detail, "retry_in": decision.retry_in})
        step.changes.update(status=reasons.DEFERRED, reason_code=decision.reason_code,
                            deferred_since=deferred_since or now,
                            next_attempt_at=now + timedelta(seconds=decision.retry_in))
        return
    if decision.action != INJECT:  # queue: a human kept typing for the whole max defer
        if wake.status != reasons.QUEUED:
            step.attempt("inject", reasons.OUT_QUEUED, decision.reason_code, detail)
        step.changes.update(status=reasons.QUEUED, reason_code=decision.reason_code, queued_at=wake.queued_at or now,
                            deferred_since=None, next_attempt_at=now)
        return
    attempts = wake.inject_attempts + 1
    try:
        tmux.type_line(target, wake.prompt)
    except tmux.TmuxFailed as exc:
        step.attempt("inject", reasons.OUT_FAILED, reasons.R_SEND_FAILED, {**detail, "stderr": exc.stderr})
        step.changes["inject_attempts"] = attempts
        if attempts < settings.ORKIVA_WAKE_INJECT_ATTEMPTS:
            step.changes.update(status=reasons.PENDING, reason_code=reasons.R_SEND_FAILED,
                                next_attempt_at=now + timedelta(seconds=settings.ORKIVA_WAKE_INJECT_BACKOFF_SECONDS))
        else:
            _to_stage(step, reasons.STAGE_RESUME, reason_code=reasons.R_SEND_FAILED, now=now)
        return
    step.attempt("inject", reasons.OUT_INJECTED, decision.reason_code, {**detail, "attempt": attempts})
    step.changes.update(
        status=reasons.AWAITING_ACK, reason_code=decision.reason_code, inject_attempts=attempts, injected_at=now,
        ack_deadline=now + timedelta(seconds=settings.ORKIVA_WAKE_ACK_TIMEOUT_SECONDS), deferred_since=None,
        next_attempt_at=now + timedelta(seconds=min(settings.ORKIVA_WAKE_ACK_POLL_SECONDS,
                                                    settings.ORKIVA_WAKE_ACK_TIMEOUT_SECONDS)),
    )


def _check_ack(wake: WakeRequest, step: _Step, now: datetime) -> None:
    signal = ack_signal(workspace_id=wake.workspace_id, agent_id=wake.agent_id, thread_id=wake.thread_id,
                        since=wake.injected_at)
    if signal:
        step.attempt("inject", reasons.OUT_ACKED, reasons.R_ACKED, {"signal": signal})
        _finish(step, status=reasons.DELIVERED, path="inject", reason_code=reasons.R_ACKED, now=now)
        return
    if now < wake.ack_deadline:
        step.changes["next_attempt_at"] = min(now + timedelta(seconds=settings.ORKIVA_WAKE_ACK_POLL_SECONDS),
                                              wake.ack_deadline)
        return
    step.attempt("inject", reasons.OUT_NO_ACK, reasons.R_ACK_TIMEOUT,
                 {"attempt": wake.inject_attempts, "timeout_seconds": settings.ORKIVA_WAKE_ACK_TIMEOUT_SECONDS})
    if wake.inject_attempts < settings.ORKIVA_WAKE_INJECT_ATTEMPTS:
        step.changes.update(status=reasons.PENDING, reason_code=reasons.R_ACK_TIMEOUT,
                            next_attempt_at=now + timedelta(seconds=settings.ORKIVA_WAKE_INJECT_BACKOFF_SECONDS))
    else:
        _to_stage(step, reasons.STAGE_RESUME, reason_code=reasons.R_ACK_TIMEOUT, now=now)


def _runtime_type_for(runtime: Runtime | None, session) -> str:
    if runtime is not None:
        return runtime.runtime_type
    return session.runtime_type if session is not None else "codex"


def _agent_env(wake: WakeRequest, *, session_id: str, now: datetime) -> dict[str, str]:
    """A fresh short-lived token for the woken agent: its old one has likely expired."""
    minted = token_issue(
        issuer=supervisor_actor(wake.workspace_id), agent_id=wake.agent_id, workspace_id=wake.workspace_id,
        role=ROLE_PARTICIPANT, session_id=session_id if is_identifier(session_id) else f"wake-{wake.trace_id[:12]}",
        ttl_seconds=settings.ORKIVA_RUNTIME_TOKEN_TTL_SECONDS, reason=f"wake {wake.pk}", now=now,
    )
    return {
        "ORKIVA_TOKEN": minted.token,
        "ORKIVA_URL": settings.ORKIVA_PUBLIC_URL,
        "ORKIVA_AGENT_ID": wake.agent_id,
        "ORKIVA_WORKSPACE_ID": wake.workspace_id,
        "ORKIVA_WAKE_ID": str(wake.pk),
        "ORKIVA_TRACE_ID": wake.trace_id,
    }


def _fields(wake: WakeRequest, **extra: str) -> dict[str, str]:
    return {"thread_id": str(wake.thread_id), "agent_id": wake.agent_id, "workspace_id": wake.workspace_id, **extra}


def _step_resume(wake: WakeRequest, step: _Step, now: datetime) -> None:
    runtime = runtime_of(workspace_id=wake.workspace_id, agent_id=wake.agent_id)
    session = latest_resumable_session(workspace_id=wake.workspace_id, agent_id=wake.agent_id)
    session_id = session.session_id if session else (runtime.session_id if runtime else "")
    beat = last_activity(runtime, workspace_id=wake.workspace_id, agent_id=wake.agent_id)
    runtime_type = _runtime_type_for(runtime, session)
    template = runner.command_template(runtime_type, "resume")
    skip, detail = None, {"session_id": session_id or None, "last_heartbeat_at": beat.isoformat() if beat else None}
    if not session_id:
        skip = reasons.R_NO_SESSION
    elif beat is None or (now - beat).total_seconds() > settings.ORKIVA_WAKE_STALE_HEARTBEAT_SECONDS:
        skip = reasons.R_STALE_SESSION
    elif not template:
        skip = reasons.R_NO_COMMAND
    if skip:
        step.attempt("resume", reasons.OUT_SKIPPED, skip, {**detail, "runtime_type": runtime_type})
        _to_stage(step, reasons.STAGE_SPAWN, reason_code=skip, now=now)
        return
    argv = runner.render(template, **_fields(wake, session_id=session_id, prompt=wake.prompt))
    result = runner.run_command(
        argv, env=_agent_env(wake, session_id=session_id, now=now), workdir=runtime.workdir if runtime else None,
        timeout=settings.ORKIVA_WAKE_COMMAND_TIMEOUT_SECONDS,
    )
    attempts = wake.resume_attempts + 1
    step.changes["resume_attempts"] = attempts
    if result.ok:
        step.attempt("resume", reasons.OUT_SUCCEEDED, reasons.R_RESUME_OK, {**result.as_detail(), "attempt": attempts})
        _finish(step, status=reasons.RESUMED, path="resume", reason_code=reasons.R_RESUME_OK, now=now)
        return
    code = (reasons.R_RESUME_TIMEOUT if result.timed_out
            else reasons.R_COMMAND_NOT_FOUND if result.not_found else reasons.R_RESUME_FAILED)
    step.attempt("resume", reasons.OUT_FAILED, code, {**result.as_detail(), "attempt": attempts})
    if attempts < settings.ORKIVA_WAKE_RESUME_ATTEMPTS and not result.not_found:
        backoff = settings.ORKIVA_WAKE_RESUME_BACKOFF_SECONDS * attempts
        step.changes.update(status=reasons.RESUMING, reason_code=code, next_attempt_at=now + timedelta(seconds=backoff))
    else:
        _to_stage(step, reasons.STAGE_SPAWN, reason_code=code, now=now)


def _step_spawn(wake: WakeRequest, step: _Step, now: datetime) -> None:
    runtime = runtime_of(workspace_id=wake.workspace_id, agent_id=wake.agent_id)
    session = latest_resumable_session(workspace_id=wake.workspace_id, agent_id=wake.agent_id)
    runtime_type = _runtime_type_for(runtime, session)
    template = runner.command_template(runtime_type, "spawn")
    if not template:
        step.attempt("spawn", reasons.OUT_SKIPPED, reasons.R_NO_COMMAND, {"runtime_type": runtime_type})
        _finish(step, status=reasons.FAILED, path="spawn", reason_code=reasons.R_CHAIN_EXHAUSTED, now=now)
        return
    thread = Thread.objects.get(pk=wake.thread_id)
    text = summary_text(summary_of(thread))
    prompt = settings.ORKIVA_WAKE_SPAWN_PROMPT.format_map(_fields(wake, summary=text, title=thread.title))
    argv = runner.render(template, **_fields(wake, prompt=prompt, session_id=""))
    result = runner.run_command(
        argv, env=_agent_env(wake, session_id="", now=now), workdir=runtime.workdir if runtime else None,
        timeout=settings.ORKIVA_WAKE_COMMAND_TIMEOUT_SECONDS,
    )
    if result.ok:
        step.attempt("spawn", reasons.OUT_SUCCEEDED, reasons.R_SPAWN_OK, result.as_detail())
        if result.session_id and is_identifier(result.session_id):
            step.record_session = (result.session_id, runtime_type)
        _finish(step, status=reasons.SPAWNED, path="spawn", reason_code=reasons.R_SPAWN_OK, now=now)
        return
    code = (reasons.R_SPAWN_TIMEOUT if result.timed_out
            else reasons.R_COMMAND_NOT_FOUND if result.not_found else reasons.R_SPAWN_FAILED)
    step.attempt("spawn", reasons.OUT_FAILED, code, result.as_detail())
    _finish(step, status=reasons.FAILED, path="spawn", reason_code=code, now=now)


@transaction.atomic
def _apply(wake: WakeRequest, step: _Step, now: datetime) -> None:
    """Write a step's outcome: the fields the step changed, its attempts and audit rows, the new
    session; release the lease. What an operator changed meanwhile stays (a force, a reason), and
    an operator's cancel wins: what the step did is recorded, the status stays."""
    current = WakeRequest.objects.select_for_update().filter(pk=wake.pk).values_list("status", flat=True).first()
    if current is None:  # the wake (or its thread) is gone
        return
    if current == reasons.CANCELLED:
        wake.status = current
        WakeRequest.objects.filter(pk=wake.pk).update(lease_until=None)  # a spawned session is still real
    else:
        for name, value in step.changes.items():
            setattr(wake, name, value)
        wake.lease_until, wake.updated_at = None, timezone.now() if now is None else now
        wake.save(update_fields=[*step.changes, "lease_until", "updated_at"])
    for a in step.attempts:
        _attempt(wake, step=a["step"], outcome=a["outcome"], reason_code=a["reason_code"], now=now,
                 detail=a["detail"], started=a["started"])
    if step.record_session:
        session_id, runtime_type = step.record_session
        agent = Actor(agent_id=wake.agent_id, workspace_id=wake.workspace_id, role=ROLE_PARTICIPANT, session_id=session_id)
        session_heartbeat(actor=agent, session_id=session_id, runtime_type=runtime_type, resumable=True, now=now)
        Runtime.objects.filter(workspace_id=wake.workspace_id, agent_id=wake.agent_id).update(session_id=session_id)
    if wake.status in reasons.FINAL_STATUSES and current != reasons.CANCELLED:  # a cancel was counted by its own
        _count_finished_on_commit(wake, now=now)


def _count_finished_on_commit(wake: WakeRequest, *, now: datetime) -> None:
    """A wake reached its final status: count it, by path and outcome, with its duration, once committed."""
    seconds = (now - wake.created_at).total_seconds()
    path, outcome = wake.path or "none", wake.status
    transaction.on_commit(lambda: observability.wake_finished(path=path, outcome=outcome, seconds=seconds),
                          robust=True)
