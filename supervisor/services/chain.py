"""The wake chain: inject, resume, spawn, one step per call of `wake_advance` (django-q2 jobs call
it; tests too). Side effects run outside transactions, under the wake's lease."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from policy.identity import ROLE_PARTICIPANT, Actor, is_identifier
from policy.services import token_issue
from sessions.selectors import latest_resumable_session
from sessions.services import session_heartbeat
from supervisor import reasons, runner, tmux
from supervisor.collision import DEFER, INJECT, CollisionPolicy, collision_decide
from supervisor.models import PTY_TMUX, ST_DEREGISTERED, ST_EXPIRED, ST_OFFLINE, UNMANAGED, Runtime, WakeRequest
from supervisor.selectors import last_activity, runtime_of, wake_ack
from supervisor.services.trace import attempt_record, count_finished_on_commit, guidance_for, supervisor_actor
from threads.models import Thread
from threads.summary import summary_of, summary_text


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
        fields = ["lease_until"]
        if wake.status != reasons.AWAITING_ACK:  # this step may deliver anew: only a sign from now on acks it
            wake.acked_at, wake.ack_signal = None, ""
            fields += ["acked_at", "ack_signal"]
        wake.save(update_fields=fields)
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
        step.attempt("inject", reasons.OUT_SKIPPED, reasons.R_UNMANAGED, {"guidance": guidance_for(runtime)})
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
    signal = wake_ack(wake, since=wake.injected_at)
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
        attempt_record(wake, step=a["step"], outcome=a["outcome"], reason_code=a["reason_code"], now=now,
                 detail=a["detail"], started=a["started"])
    if step.record_session:
        session_id, runtime_type = step.record_session
        agent = Actor(agent_id=wake.agent_id, workspace_id=wake.workspace_id, role=ROLE_PARTICIPANT, session_id=session_id)
        session_heartbeat(actor=agent, session_id=session_id, runtime_type=runtime_type, resumable=True, now=now)
        Runtime.objects.filter(workspace_id=wake.workspace_id, agent_id=wake.agent_id).update(session_id=session_id)
    if wake.status in reasons.FINAL_STATUSES and current != reasons.CANCELLED:  # a cancel was counted by its own
        count_finished_on_commit(wake, now=now)
