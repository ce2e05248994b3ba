"""Retention: the purge that ORKIVA_RETENTION_MODE=expire allows and `indefinite` (the default) forbids."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from orkiva.errors import Conflict
from policy.audit import audit_record
from policy.config import RETENTION_INDEFINITE, policy_config
from policy.identity import Actor
from policy.models import RateCounter

THREAD_IDS_IN_AUDIT = 1000  # the audit row lists at most this many purged thread ids


@dataclass(frozen=True)
class PurgeResult:
    cutoff: datetime
    thread_ids: list[str]
    messages: int
    dry_run: bool


def check_retention_allows_purge() -> None:
    config = policy_config()
    if config.retention_mode == RETENTION_INDEFINITE:
        raise Conflict(
            "Retention is indefinite (ORKIVA_RETENTION_MODE=indefinite): nothing may be purged.",
            code="retention_indefinite",
            details={"retention_mode": config.retention_mode},
        )


@transaction.atomic
def retention_purge(*, operator: Actor, reason: str, dry_run: bool = False, now: datetime | None = None) -> PurgeResult:
    """Delete closed threads (their messages, cursors, wakes, escalations) untouched for
    ORKIVA_RETENTION_DAYS. The audit log is never purged; one audit row records the purge."""
    from messaging.models import Message
    from threads import transitions
    from threads.models import Thread

    check_retention_allows_purge()
    moment = now or timezone.now()
    cutoff = moment - timedelta(days=policy_config().retention_days)
    expired = Thread.objects.filter(status=transitions.CLOSED, updated_at__lt=cutoff)
    thread_ids = [str(pk) for pk in expired.order_by("updated_at").values_list("pk", flat=True)]
    messages = Message.objects.filter(thread_id__in=expired.values("pk")).count()
    if not dry_run and thread_ids:
        Thread.objects.filter(pk__in=thread_ids).delete()
    if not dry_run:
        # Rate-limit counters idle since before the cutoff count nothing any more.
        RateCounter.objects.filter(window_start__lt=int(cutoff.timestamp())).delete()
        audit_record(
            actor=operator,
            workspace_id="",
            action="retention.purge",
            target_type="threads",
            target_id=str(len(thread_ids)),
            reason=reason,
            reason_code="retention_expired",
            old={"thread_ids": thread_ids[:THREAD_IDS_IN_AUDIT], "messages": messages},
            new={"cutoff": cutoff.isoformat(), "threads_deleted": len(thread_ids)},
            now=moment,
        )
    return PurgeResult(cutoff=cutoff, thread_ids=thread_ids, messages=messages, dry_run=dry_run)
