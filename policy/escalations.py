"""Escalations and the operator's answers to them: open, resolve, escalate, unblock, override.

Every change writes its audit row in the same transaction. Functions named `*_locked` or that
take a `thread` expect the caller to hold that thread's row lock (threads.selectors.thread_get
with lock=True) inside its transaction.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from orkiva import observability
from orkiva.errors import Conflict, ValidationFailed
from policy.audit import audit_record
from policy.identity import Actor
from policy.models import Escalation
from policy.roles import Op
from threads import transitions
from threads.models import Thread

# Reason codes: the three automatic controls, and an operator's own escalation.
LOOP_THRESHOLD, NO_PROGRESS, REPEATED_FINDING, OPERATOR = "loop_threshold", "no_progress", "repeated_finding", "operator"
REASON_CODES = (LOOP_THRESHOLD, NO_PROGRESS, REPEATED_FINDING, OPERATOR)
# Reason codes of the thread status changes and resolutions the operator commands make.
OPERATOR_UNBLOCK, OPERATOR_OVERRIDE, OPERATOR_BLOCK = "operator_unblock", "operator_override", "operator_escalation"
UNBLOCK_TARGETS = (transitions.ACTIVE, transitions.DISPUTED)


def escalation_open(
    *,
    actor: Actor,
    thread: Thread,
    reason_code: str,
    reason: str,
    now: datetime,
    blocking: bool = False,
    details: dict[str, Any] | None = None,
) -> Escalation:
    """Open an escalation on a locked thread; audited, counted once the transaction commits."""
    escalation = Escalation.objects.create(
        thread=thread,
        workspace_id=thread.workspace_id,
        reason_code=reason_code,
        blocking=blocking,
        reason=reason,
        details=details or {},
        opened_by=actor.agent_id,
        opened_at=now,
    )
    _audit_escalation(
        actor=actor, escalation=escalation, action="escalation.open", reason=reason, reason_code=reason_code,
        new={"blocking": blocking, "details": details or {}}, now=now,
    )
    transaction.on_commit(lambda: observability.escalation_opened(reason_code=reason_code), robust=True)
    return escalation


def escalations_resolve(
    *,
    actor: Actor,
    thread: Thread,
    resolution: str,
    resolution_code: str,
    now: datetime,
    reason_codes: tuple[str, ...] | None = None,
) -> list[Escalation]:
    """Resolve the thread's open escalations (only those with `reason_codes`, if given); each audited."""
    queryset = Escalation.objects.filter(thread=thread, status=Escalation.STATUS_OPEN)
    if reason_codes is not None:
        queryset = queryset.filter(reason_code__in=reason_codes)
    found = list(queryset.order_by("id"))
    if not found:
        return []
    Escalation.objects.filter(pk__in=[e.pk for e in found]).update(
        status=Escalation.STATUS_RESOLVED,
        resolved_by=actor.agent_id,
        resolved_at=now,
        resolution=resolution,
        resolution_code=resolution_code,
    )
    for escalation in found:
        escalation.status, escalation.resolved_by, escalation.resolved_at = Escalation.STATUS_RESOLVED, actor.agent_id, now
        escalation.resolution, escalation.resolution_code = resolution, resolution_code
        _audit_escalation(
            actor=actor, escalation=escalation, action="escalation.resolve", reason=resolution,
            reason_code=resolution_code, old={"status": Escalation.STATUS_OPEN},
            new={"status": Escalation.STATUS_RESOLVED}, now=now,
        )
    return found


def _audit_escalation(*, actor: Actor, escalation: Escalation, action: str, reason: str, reason_code: str,
                      now: datetime, new: dict[str, Any], old: dict[str, Any] | None = None) -> None:
    """Escalation rows are audited against the escalation, naming their thread (so a thread's
    audit trail, `orkiva_inspect audit --thread-id`, includes them)."""
    audit_record(
        actor=actor,
        workspace_id=escalation.workspace_id,
        action=action,
        target_type="escalation",
        target_id=str(escalation.pk),
        reason=reason,
        reason_code=reason_code,
        old=old,
        new={"thread_id": str(escalation.thread_id), **new},
        now=now,
    )


def escalations_after_transition(
    *, actor: Actor, thread: Thread, old: str, new: str, reason: str, now: datetime, progress: bool
) -> list[Escalation]:
    """A move that is progress (threads.services.is_progress_move) ends a loop escalation.
    Leaving `blocked` (someone with authority let the thread continue) or closing the thread
    ends every open escalation."""
    if new == transitions.BLOCKED:
        return []
    if new == transitions.CLOSED or old == transitions.BLOCKED:
        codes = None
        code = "thread_closed" if new == transitions.CLOSED else "thread_unblocked"
    elif progress:
        codes, code = (LOOP_THRESHOLD,), "progress"
    else:
        return []
    return escalations_resolve(
        actor=actor,
        thread=thread,
        resolution=reason or f"The thread moved from {old} to {new}.",
        resolution_code=code,
        reason_codes=codes,
        now=now,
    )


# --- the operator's commands (orkiva_escalate, orkiva_unblock, orkiva_override) -------------------
@dataclass
class ThreadAction:
    """What an operator action did to a thread: its status before, the escalations it resolved."""

    thread: Thread
    old_status: str
    turns_before: int
    resolved: list[Escalation] = field(default_factory=list)
    escalation: Escalation | None = None


def _locked_thread(actor: Actor, thread_id) -> Thread:
    from threads.selectors import thread_get

    return thread_get(actor=actor, thread_id=thread_id, op=Op.THREAD_TRANSITION, lock=True)


def _check_reason(reason: str) -> str:
    if not reason.strip():
        raise ValidationFailed("An operator action needs a non-empty reason.", code="reason_required")
    return reason.strip()


@transaction.atomic
def escalation_raise(
    *, operator: Actor, thread_id, reason: str, block: bool = False, now: datetime | None = None
) -> ThreadAction:
    """An operator (or coordinator) escalates a thread, optionally blocking it until unblocked."""
    from threads.services import thread_status_apply

    reason = _check_reason(reason)
    moment = now or timezone.now()
    thread = _locked_thread(operator, thread_id)
    old = thread.status
    if old == transitions.CLOSED:
        raise Conflict("The thread is closed.", code="thread_closed", details={"status": old})
    blocks = block and old != transitions.BLOCKED
    escalation = escalation_open(
        actor=operator, thread=thread, reason_code=OPERATOR, reason=reason, blocking=blocks, now=moment,
        details={"requested_block": block},
    )
    if blocks:
        thread_status_apply(
            actor=operator, thread=thread, status=transitions.BLOCKED, reason=f"{reason} (escalation {escalation.pk})",
            reason_code=OPERATOR_BLOCK, now=moment, audit_new={"escalation_id": escalation.pk},
        )
    return ThreadAction(thread=thread, old_status=old, turns_before=thread.turns_since_progress, escalation=escalation)


@transaction.atomic
def thread_unblock(
    *, operator: Actor, thread_id, reason: str, status: str = transitions.ACTIVE, now: datetime | None = None
) -> ThreadAction:
    """Let a thread continue: leave `blocked` (to `status`), reset its progress counters, and
    resolve its open escalations. A thread that is not blocked but has open escalations (a loop
    warning) gets its counters reset and escalations resolved without a status change."""
    from policy.controls import progress_restart  # controls imports this module
    from threads.services import thread_transition_locked

    reason = _check_reason(reason)
    if status not in UNBLOCK_TARGETS:
        raise ValidationFailed(
            f"Unblock to one of {', '.join(UNBLOCK_TARGETS)}; use orkiva_override for other moves.",
            details={"fields": {"status": list(UNBLOCK_TARGETS)}},
        )
    moment = now or timezone.now()
    thread = _locked_thread(operator, thread_id)
    old, turns = thread.status, thread.turns_since_progress
    if old == transitions.BLOCKED:
        resolved = thread_transition_locked(
            actor=operator, thread=thread, status=status, reason=reason, reason_code=OPERATOR_UNBLOCK, now=moment
        )
    else:
        resolved = escalations_resolve(
            actor=operator, thread=thread, resolution=reason, resolution_code=OPERATOR_UNBLOCK, now=moment
        )
        if not resolved and turns == 0:
            raise Conflict(
                f"The thread is {old}, with no open escalation and no turns to reset.",
                code="nothing_to_unblock",
                details={"status": old},
            )
        # The same restart as leaving `blocked` (threads.services.thread_status_apply).
        thread.save(update_fields=progress_restart(thread, findings=True))
    audit_record(
        actor=operator,
        action="thread.unblock",
        target_type="thread",
        target_id=str(thread.pk),
        reason=reason,
        reason_code=OPERATOR_UNBLOCK,
        old={"status": old, "turns_since_progress": turns},
        new={"status": thread.status, "turns_since_progress": 0, "escalations_resolved": [e.pk for e in resolved]},
        now=moment,
    )
    return ThreadAction(thread=thread, old_status=old, turns_before=turns, resolved=resolved)


@transaction.atomic
def thread_override(*, operator: Actor, thread_id, status: str, reason: str, now: datetime | None = None) -> ThreadAction:
    """Force a status with authority (e.g. close a disputed thread). The transition table still
    holds (a closed thread stays closed); the authority rules are the operator's to pass."""
    from threads.services import thread_transition_locked

    reason = _check_reason(reason)
    moment = now or timezone.now()
    thread = _locked_thread(operator, thread_id)
    old, turns = thread.status, thread.turns_since_progress
    resolved = thread_transition_locked(
        actor=operator, thread=thread, status=status, reason=reason, reason_code=OPERATOR_OVERRIDE, now=moment
    )
    return ThreadAction(thread=thread, old_status=old, turns_before=turns, resolved=resolved)
