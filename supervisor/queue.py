"""The queue of wake jobs: each step of a wake is a django-q2 job on the ORM broker, enqueued now
or delayed until the step is due (supervisor.tasks holds the jobs themselves)."""
from __future__ import annotations

from datetime import timedelta

from django.utils import timezone
from django_q.brokers import get_broker
from django_q.brokers.orm import ORM
from django_q.tasks import async_task

WAKE_TASK = "supervisor.tasks.wake_run"


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
