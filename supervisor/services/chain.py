"""The wake chain: inject (inject.py), resume, spawn (runs.py), one step per call of `wake_advance`
(django-q2 jobs call it; tests too). Side effects run outside transactions, under the wake's lease;
each step's outcome is applied to the row in one short transaction."""
from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db import DatabaseError, transaction
from django.utils import timezone

from policy.identity import ROLE_PARTICIPANT, Actor
from sessions.services import session_heartbeat
from supervisor import reasons
from supervisor.models import AGENT_APPROVAL, AGENT_BUSY, Runtime, WakeRequest
from supervisor.services.inject import step_inject
from supervisor.services.runs import step_resume, step_spawn
from supervisor.services.steps import Step, finish
from supervisor.services.signals import HELD_WHILE_BUSY
from supervisor.services.trace import attempt_record, count_finished_on_commit, runtime_for_update, wakes_release
from supervisor.services.wakes import ACK_TURN, wakes_for_unread


logger = logging.getLogger("orkiva.supervisor")
DELIVERIES = (reasons.DELIVERED, reasons.RESUMED, reasons.SPAWNED)


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
        # This step may deliver anew: only a sign from now on acks it. A turn started by this wake's own
        # prompt (its marker) stays: it says the prompt was taken, whenever it came.
        if wake.status != reasons.AWAITING_ACK and wake.ack_signal != ACK_TURN:
            wake.acked_at, wake.ack_signal = None, ""
            fields += ["acked_at", "ack_signal"]
        wake.save(update_fields=fields)
    step = Step()
    try:
        if wake.stage == reasons.STAGE_INJECT:
            step_inject(wake, step, moment)
        elif wake.stage == reasons.STAGE_RESUME:
            step_resume(wake, step, moment)
        elif wake.stage == reasons.STAGE_SPAWN:
            step_spawn(wake, step, moment)
    except DatabaseError:
        raise  # the database's failure, not the wake's: the lease runs out and the sweep runs it again
    except Exception as exc:
        # A bug: the wake fails, recorded and logged with its traceback, rather than being run again
        # by every sweep for ever; the job fails too (django-q2 keeps the traceback).
        logger.exception("wake step failed", extra={"wake_id": str(wake.pk), "stage": wake.stage})
        step = Step()
        step.attempt(wake.stage, reasons.OUT_FAILED, reasons.R_INTERNAL_ERROR,
                     {"error": f"{type(exc).__name__}: {exc}"[:500]})
        finish(step, status=reasons.FAILED, path=wake.stage, reason_code=reasons.R_INTERNAL_ERROR, now=moment)
        _apply(wake, step, moment)
        raise
    _apply(wake, step, moment)
    _apply_to_agent(wake, step, moment)
    if step.held_by_state:
        _release_if_idle_since(wake)
    if wake.status in DELIVERIES:
        _follow_up(wake, moment)
    return wake, True


@transaction.atomic
def _apply(wake: WakeRequest, step: Step, now: datetime) -> None:
    """Write a step's outcome: the fields the step changed, its attempts and audit rows; release the
    lease. What an operator changed meanwhile stays (a force, a reason), and
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
    if wake.status in reasons.FINAL_STATUSES and current != reasons.CANCELLED:  # a cancel was counted by its own
        count_finished_on_commit(wake, now=now)


@transaction.atomic
def _apply_to_agent(wake: WakeRequest, step: Step, now: datetime) -> None:
    """What the step learned about the agent: a session it started, a turn it started. Its own
    transaction, locking the runtime first, as the agent's signals do (signals.runtime_signal:
    runtime, session, then wakes), never while a wake row is locked: no lock-order deadlock."""
    if step.record_session is None and step.agent_busy_since is None:
        return
    runtime = runtime_for_update(workspace_id=wake.workspace_id, agent_id=wake.agent_id)
    if step.record_session:
        session_id, runtime_type, workdir = step.record_session
        agent = Actor(agent_id=wake.agent_id, workspace_id=wake.workspace_id, role=ROLE_PARTICIPANT, session_id=session_id)
        session_heartbeat(actor=agent, session_id=session_id, runtime_type=runtime_type, resumable=True,
                          workdir=workdir, now=now)
        if runtime is not None:
            Runtime.objects.filter(pk=runtime.pk).update(session_id=session_id)
    # a turn we started: busy, unless the agent said otherwise since
    if step.agent_busy_since is not None and runtime is not None and (
        runtime.agent_state_at is None or runtime.agent_state_at < step.agent_busy_since
    ):
        Runtime.objects.filter(pk=runtime.pk).update(agent_state=AGENT_BUSY, agent_state_at=step.agent_busy_since)


def _release_if_idle_since(wake: WakeRequest) -> None:
    """The step held the wake for a busy agent, reading the runtime before the agent's `idle` came in
    (whose release found the wake still leased, not queued): let it run now rather than at the sweep."""
    state = Runtime.objects.filter(workspace_id=wake.workspace_id, agent_id=wake.agent_id).values_list(
        "agent_state", flat=True).first()
    if state in (AGENT_BUSY, AGENT_APPROVAL):
        return
    with transaction.atomic():
        wakes_release(workspace_id=wake.workspace_id, agent_id=wake.agent_id, reason_codes=HELD_WHILE_BUSY,
                      now=timezone.now())


def _follow_up(wake: WakeRequest, now: datetime) -> None:
    """A post that landed while this wake was under way collapsed onto it, perhaps after the agent had
    read the thread: an agent that reports its state gets a wake of its own for what came after its
    ack (held while it is busy; not typed if it reads the thread to the end meanwhile)."""
    state_source = Runtime.objects.filter(workspace_id=wake.workspace_id, agent_id=wake.agent_id).values_list(
        "state_source", flat=True).first()
    if state_source:
        with transaction.atomic():
            wakes_for_unread(workspace_id=wake.workspace_id, agent_id=wake.agent_id, thread_id=wake.thread_id,
                             now=now)
