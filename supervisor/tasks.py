"""django-q2 jobs of the supervisor (`manage.py qcluster`). Thin: they take ids, call a service,
and schedule the next step. Safe to run twice (services.wake_advance holds a lease)."""
from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.utils import timezone
from django_q.brokers import get_broker
from django_q.brokers.orm import ORM
from django_q.tasks import async_task

logger = logging.getLogger("orkiva.supervisor")

WAKE_TASK = "supervisor.tasks.wake_run"
SWEEP_TASK = "supervisor.tasks.supervisor_sweep"
SWEEP_SCHEDULE = "orkiva-supervisor-sweep"


class _DelayedORM(ORM):
    """The ORM broker delivers a queue row once its `lock` has passed: a row written with a
    future lock is a delayed job, so a deferred wake frees its worker instead of sleeping."""

    def __init__(self, *, delay_seconds: float, list_key: str | None = None):
        super().__init__(list_key=list_key)
        self.delay_seconds = delay_seconds

    def enqueue(self, task):
        package = self.get_connection().create(
            key=self.list_key, payload=task, lock=timezone.now() + timedelta(seconds=self.delay_seconds)
        )
        return package.pk


def enqueue_wake(wake_id, *, delay_seconds: float = 0.0) -> str:
    """Queue the wake's next step, now or after `delay_seconds` (call it after the commit)."""
    options = {"task_name": f"wake-{wake_id}", "group": "orkiva-wake"}
    broker = get_broker()
    if delay_seconds > 0 and isinstance(broker, ORM):
        options["broker"] = _DelayedORM(delay_seconds=delay_seconds, list_key=broker.list_key)
    return async_task(WAKE_TASK, str(wake_id), **options)


def wake_run(wake_id: str) -> str | None:
    """One step of a wake's chain; queues the next step when there is one."""
    from supervisor import reasons
    from supervisor.services import wake_advance

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
    queued wakes whose pane may have gone quiet)."""
    from supervisor.selectors import wakes_due
    from supervisor.services import runtimes_expire

    now = timezone.now()
    counts = runtimes_expire(now=now)
    due = wakes_due(now=now)
    for wake_id in due:
        enqueue_wake(wake_id)
    return {**counts, "requeued": len(due)}


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
