"""django-q2 jobs of the supervisor (`manage.py qcluster`). Thin: they take ids, call a service,
and schedule the next step. Safe to run twice (services.wake_advance holds a lease)."""
from __future__ import annotations

import logging

from django.conf import settings
from django.utils import timezone

from policy.audit import audit_tallies_flush
from supervisor import reasons
from supervisor.queue import enqueue_wake
from supervisor.selectors import wakes_due
from supervisor.services import runtimes_expire, wake_advance, wakes_missed

logger = logging.getLogger("orkiva.supervisor")

SWEEP_TASK = "supervisor.tasks.supervisor_sweep"
SWEEP_SCHEDULE = "orkiva-supervisor-sweep"


def wake_run(wake_id: str) -> str | None:
    """One step of a wake's chain; queues the next step when there is one."""
    wake, advanced = wake_advance(wake_id=wake_id)
    if wake is None:
        return None
    if advanced and wake.status in reasons.ACTIVE_STATUSES and wake.next_attempt_at is not None:
        delay = (wake.next_attempt_at - timezone.now()).total_seconds()
        if not (wake.status == reasons.QUEUED):  # queued wakes wait for the sweep (or an operator)
            enqueue_wake(wake.pk, delay_seconds=max(delay, 0.0))
    return wake.status


def supervisor_sweep() -> dict:
    """The periodic sweep: the runtime heartbeat policy, then re-queue overdue wakes (lost jobs,
    queued wakes whose pane may have gone quiet), then the auto-wakes a post never made (its rule
    failed in a database blip: wakes_missed), and last the repeated refusals of windows that are
    over, appended to the audit log as one row each (audit_tallies_flush)."""
    now = timezone.now()
    counts = runtimes_expire(now=now)
    due = wakes_due(now=now)
    for wake_id in due:
        enqueue_wake(wake_id)
    missed = wakes_missed(now=now)
    return {**counts, "requeued": len(due), "missed": len(missed), "audit_windows": audit_tallies_flush(now=now)}


def schedules_ensure(*, using: str = "default") -> None:
    """Create or update the sweep's schedule (idempotent; called after `migrate`)."""
    from django_q.models import Schedule

    Schedule.objects.using(using).update_or_create(
        name=SWEEP_SCHEDULE,
        defaults={
            "func": SWEEP_TASK,
            "schedule_type": Schedule.MINUTES,
            "minutes": settings.ORKIVA_WAKE_SWEEP_MINUTES,
            "repeats": -1,
        },
    )
