"""The inject step: paste the wake's prompt into the agent's managed pane and see it submitted, or
hold it, or move the chain on to resume.

In order: the runtime must be a live managed tmux pane of this host, not paused. An agent that
reports its state (supervisor/clis) and is busy or waiting for an approval is not typed into: the
wake is held until the agent is idle. The screen is read next (an approval prompt takes Enter for
"Allow"; a dialog takes any key; a human's draft must never be merged into). Then collision control
(a human typing). The prompt goes in as one bracketed paste, Enter follows, and the step waits until
the TUI took it (the turn started, or the prompt left the input line) before it waits for the ack."""
from __future__ import annotations

import time
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from supervisor import reasons, tmux
from supervisor.clis import cli_for
from supervisor.clis.base import APPROVAL, BUSY, DIALOG, DRAFT, UNKNOWN, AgentCli, Screen
from supervisor.collision import DEFER, INJECT, CollisionPolicy, collision_decide
from supervisor.models import (
    AGENT_APPROVAL, AGENT_BUSY, PTY_TMUX, ST_DEREGISTERED, ST_EXPIRED, ST_OFFLINE, UNMANAGED, Runtime, WakeRequest,
)
from messaging.selectors import cursor_position, unread_count
from supervisor.selectors import runtime_of, wake_ack
from supervisor.services.steps import Step, finish, to_stage
from supervisor.services.trace import guidance_for, wake_ref_of
from supervisor.services.wakes import ACK_TURN

HELD_BY_SCREEN = {APPROVAL: reasons.R_AWAITING_APPROVAL, BUSY: reasons.R_AGENT_BUSY, DIALOG: reasons.R_DIALOG_OPEN}
HELD_BY_STATE = {AGENT_BUSY: reasons.R_AGENT_BUSY, AGENT_APPROVAL: reasons.R_AWAITING_APPROVAL}
# a queued wake looks again at each sweep, and goes in only when nothing stands in the way
QUEUED_LOOKING = (reasons.R_MAX_DEFER, reasons.R_INPUT_NOT_EMPTY)
ENTER_RETRY_SECONDS = 1.0
ENTERS_MAX = 3


def step_inject(wake: WakeRequest, step: Step, now: datetime) -> None:
    runtime = runtime_of(workspace_id=wake.workspace_id, agent_id=wake.agent_id)
    if wake.status == reasons.AWAITING_ACK:
        return check_ack(wake, step, now, runtime)
    if wake.status == reasons.QUEUED and wake.queued_at and (
        (now - wake.queued_at).total_seconds() >= settings.ORKIVA_WAKE_QUEUE_TTL_SECONDS
    ):
        step.attempt("inject", reasons.OUT_EXPIRED, reasons.R_QUEUE_EXPIRED)
        finish(step, status=reasons.EXPIRED, path="inject", reason_code=reasons.R_QUEUE_EXPIRED, now=now)
        return
    skip = None
    if runtime is None:
        skip = reasons.R_NO_RUNTIME
    elif runtime.state in (ST_DEREGISTERED, ST_EXPIRED, ST_OFFLINE):
        skip = reasons.R_RUNTIME_INACTIVE
    elif runtime.management_mode == UNMANAGED:
        step.attempt("inject", reasons.OUT_SKIPPED, reasons.R_UNMANAGED, {"guidance": guidance_for(runtime)})
        to_stage(step, reasons.STAGE_RESUME, reason_code=reasons.R_UNMANAGED, now=now, status=reasons.UNMANAGED_RUNTIME)
        return
    elif runtime.pty_backend != PTY_TMUX or not runtime.pty_target:
        skip = reasons.R_NOT_TMUX
    elif runtime.host and runtime.host != tmux.supervisor_host():
        skip = reasons.R_OTHER_HOST
    if skip:
        step.attempt("inject", reasons.OUT_SKIPPED, skip, {"runtime_state": runtime.state if runtime else None})
        to_stage(step, reasons.STAGE_RESUME, reason_code=skip, now=now)
        return
    if runtime.paused:
        return _hold(wake, step, now, reasons.R_PAUSED, {})
    target, socket_path = runtime.pty_target, runtime.tmux_socket
    pane = tmux.pane_state(target, socket_path)
    # the pane's process is the one registered: tmux reuses pane ids (and names) for new panes
    if not pane.exists or pane.dead or (runtime.pid and pane.pid and pane.pid != runtime.pid):
        code = reasons.R_TARGET_DEAD if pane.exists and pane.dead else reasons.R_TARGET_MISSING
        step.attempt("inject", reasons.OUT_FAILED, code, {"pty_target": target, "pane_pid": pane.pid,
                                                          "runtime_pid": runtime.pid})
        to_stage(step, reasons.STAGE_RESUME, reason_code=code, now=now)
        return
    if wake.ack_signal == ACK_TURN:  # a prompt of this wake was taken after all, later than the step waited
        step.attempt("inject", reasons.OUT_ACKED, reasons.R_ACKED, {"signal": ACK_TURN})
        finish(step, status=reasons.DELIVERED, path="inject", reason_code=reasons.R_ACKED, now=now)
        return
    if wake.source == reasons.SOURCE_AUTO and wake.status == reasons.QUEUED and _read_meanwhile(wake):
        step.attempt("inject", reasons.OUT_ACKED, reasons.R_ALREADY_READ, {})
        finish(step, status=reasons.DELIVERED, path="inject", reason_code=reasons.R_ALREADY_READ, now=now)
        return
    held = _held_by_state(runtime, now)
    if held:
        step.held_by_state = True
        return _hold(wake, step, now, held, {"agent_state": runtime.agent_state, "state_source": runtime.state_source})
    cli = cli_for(runtime.runtime_type)
    screen = _screen(cli, target, socket_path)
    ours = bool(cli) and cli.holds(screen, pasted_before=wake.inject_attempts > 0)  # a paste the TUI did not take
    if screen.state in HELD_BY_SCREEN:
        return _hold(wake, step, now, HELD_BY_SCREEN[screen.state], {"screen": screen.state, "seen": screen.evidence})
    if screen.state == UNKNOWN and cli is not None and socket_path:
        # A pane the user started is expected to show their CLI; anything else there (a shell, another
        # program that took the pane over) is not typed into.
        return _hold(wake, step, now, reasons.R_SCREEN_UNRECOGNIZED, {"screen": screen.state, "seen": screen.evidence})
    activity = tmux.client_activity(target, socket_path)
    policy = CollisionPolicy.from_settings()
    if wake.status == reasons.QUEUED:
        # a queued wake has deferred its fill: each look goes in only when nothing stands in the way
        deferred_since = now - timedelta(seconds=policy.max_defer) if wake.reason_code in QUEUED_LOOKING else None
    else:
        deferred_since = wake.deferred_since
    decision = collision_decide(client_activity=activity, now=now, deferred_since=deferred_since, force=wake.force,
                                policy=policy, draft=screen.state == DRAFT and not ours)
    detail = {"pty_target": target, "client_activity": activity, "last_activity_age": decision.last_activity_age,
              "screen": screen.state}
    if decision.action == DEFER:
        step.attempt("inject", reasons.OUT_DEFERRED, decision.reason_code, {**detail, "retry_in": decision.retry_in})
        step.changes.update(status=reasons.DEFERRED, reason_code=decision.reason_code,
                            deferred_since=deferred_since or now,
                            next_attempt_at=now + timedelta(seconds=decision.retry_in))
        return
    if decision.action != INJECT:  # queue: a human kept typing, or kept a draft, for the whole max defer
        if wake.status != reasons.QUEUED:
            step.attempt("inject", reasons.OUT_QUEUED, decision.reason_code, detail)
        step.changes.update(status=reasons.QUEUED, reason_code=decision.reason_code, queued_at=wake.queued_at or now,
                            deferred_since=None, next_attempt_at=now)
        return
    attempts = wake.inject_attempts + 1
    step.changes["inject_attempts"] = attempts
    pasted_at = timezone.now()
    try:
        if not ours:
            tmux.paste(target, wake.prompt, socket_path)
        submitted = _submit(wake, cli, target, socket_path, shown_before=screen.above.count(wake_ref_of(wake.trace_id)))
    except tmux.TmuxFailed as exc:
        step.attempt("inject", reasons.OUT_FAILED, reasons.R_SEND_FAILED, {**detail, "stderr": exc.stderr})
        # the pane was alive a moment ago: never a resume beside it
        return _retry_or_move_on(step, attempts, reasons.R_SEND_FAILED, now, pane_alive=True)
    detail.update(attempt=attempts, submitted=submitted["by"], enters=submitted["enters"])
    if submitted["by"] is None:
        step.attempt("inject", reasons.OUT_FAILED, reasons.R_NOT_SUBMITTED, detail)
        return _retry_or_move_on(step, attempts, reasons.R_NOT_SUBMITTED, now, pane_alive=True)
    step.attempt("inject", reasons.OUT_INJECTED, decision.reason_code, detail)
    step.agent_busy_since = pasted_at if runtime.state_source else None
    step.changes.update(
        status=reasons.AWAITING_ACK, reason_code=decision.reason_code, injected_at=now, deferred_since=None,
        submitted_at=now if submitted["by"] != "unverified" else None,
        ack_deadline=now + timedelta(seconds=settings.ORKIVA_WAKE_ACK_TIMEOUT_SECONDS),
        next_attempt_at=now + timedelta(seconds=min(settings.ORKIVA_WAKE_ACK_POLL_SECONDS,
                                                    settings.ORKIVA_WAKE_ACK_TIMEOUT_SECONDS)),
    )


def _held_by_state(runtime: Runtime, now: datetime) -> str | None:
    """The agent's own signals say it is busy or waiting for an approval (and said so recently
    enough to be believed: a Stop can be lost, an interrupted turn sends none)."""
    if not runtime.state_source or runtime.agent_state_at is None:
        return None
    if (now - runtime.agent_state_at).total_seconds() >= settings.ORKIVA_WAKE_BUSY_MAX_SECONDS:
        return None
    return HELD_BY_STATE.get(runtime.agent_state)


def _hold(wake: WakeRequest, step: Step, now: datetime, reason_code: str, detail: dict) -> None:
    """Queue the wake until what holds it ends: an operator lifts a pause, the agent reports it is
    idle (signals.runtime_signal), or the sweep looks again."""
    if not (wake.status == reasons.QUEUED and wake.reason_code == reason_code):
        step.attempt("inject", reasons.OUT_QUEUED, reason_code, detail)
    step.changes.update(status=reasons.QUEUED, reason_code=reason_code, queued_at=wake.queued_at or now,
                        next_attempt_at=now + timedelta(minutes=settings.ORKIVA_WAKE_SWEEP_MINUTES))


def _screen(cli: AgentCli | None, target: str, socket_path: str) -> Screen:
    if cli is None:
        return Screen(UNKNOWN, evidence="no CLI to read the screen of")
    try:
        return cli.screen(tmux.capture(target, socket_path, screen=True))
    except tmux.TmuxFailed:
        return Screen(UNKNOWN, evidence="the screen could not be read")


def _submit(wake: WakeRequest, cli: AgentCli | None, target: str, socket_path: str, *, shown_before: int) -> dict:
    """Press Enter, then wait until the TUI took the prompt: its turn started (the hook's ack, or a
    read of the thread), the screen shows a turn running or an approval asked for, or the wake's
    marker shows above the input line once more than before. While the input line still holds the
    paste, Enter again (a TUI may swallow an Enter that follows a paste too closely). A screen this
    CLI's reader does not know (a stand-in reading lines) cannot tell: `unverified`."""
    marker = wake_ref_of(wake.trace_id)
    deadline = time.monotonic() + settings.ORKIVA_WAKE_SUBMIT_TIMEOUT_SECONDS
    enters = 0
    while True:
        tmux.press_enter(target, socket_path)
        enters += 1
        again_at = time.monotonic() + ENTER_RETRY_SECONDS
        while True:
            if wake_ack(wake, heartbeats=False):
                return {"by": "signal", "enters": enters}
            screen = _screen(cli, target, socket_path)
            if screen.state == UNKNOWN:
                return {"by": "unverified", "enters": enters}
            if screen.state in (BUSY, APPROVAL) or screen.above.count(marker) > shown_before:
                return {"by": "screen", "enters": enters}
            now = time.monotonic()
            if now >= deadline:
                return {"by": None, "enters": enters}
            if now >= again_at and enters < ENTERS_MAX and cli is not None and cli.holds(screen, pasted_before=True):
                break
            time.sleep(0.1)


def _read_meanwhile(wake: WakeRequest) -> bool:
    """An auto wake held while the agent was busy: the agent has since read the thread to the end
    (acked it), so the prompt would tell it nothing."""
    thread = wake.thread
    read_to = cursor_position(thread=thread, agent_id=wake.agent_id)
    return unread_count(thread=thread, agent_id=wake.agent_id, last_read_seq=read_to) == 0


def _retry_or_move_on(step: Step, attempts: int, code: str, now: datetime, *, pane_alive: bool = False) -> None:
    if attempts < settings.ORKIVA_WAKE_INJECT_ATTEMPTS:
        step.changes.update(status=reasons.PENDING, reason_code=code,
                            next_attempt_at=now + timedelta(seconds=settings.ORKIVA_WAKE_INJECT_BACKOFF_SECONDS))
    elif pane_alive:  # the agent's TUI holds its session: a resume or spawn would run beside it
        finish(step, status=reasons.FAILED, path="inject", reason_code=code, now=now)
    else:
        to_stage(step, reasons.STAGE_RESUME, reason_code=code, now=now)


def check_ack(wake: WakeRequest, step: Step, now: datetime, runtime: Runtime | None) -> None:
    signal = wake_ack(wake, since=wake.injected_at)
    if signal:
        step.attempt("inject", reasons.OUT_ACKED, reasons.R_ACKED, {"signal": signal})
        finish(step, status=reasons.DELIVERED, path="inject", reason_code=reasons.R_ACKED, now=now)
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
        return
    pane = tmux.pane_state(runtime.pty_target, runtime.tmux_socket) if runtime and runtime.pty_target else None
    if pane is not None and pane.exists and not pane.dead:
        # Typed, never acknowledged, and the agent still runs in its pane holding its session: a resume
        # or a spawn would run a second agent beside it. The wake fails; an operator looks (runbook).
        finish(step, status=reasons.FAILED, path="inject", reason_code=reasons.R_UNACKNOWLEDGED, now=now)
        return
    to_stage(step, reasons.STAGE_RESUME, reason_code=reasons.R_ACK_TIMEOUT, now=now)
