"""Writing the audit log: one function for changes, one for refused attempts."""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from orkiva.context import current_request_id
from orkiva.errors import encodable
from policy.identity import Actor
from policy.models import AuditEvent, AuditTally


def storable(value: Any) -> Any:
    """`value` with its strings made storable in any database: refused attempts record what the
    client sent, and PostgreSQL rejects NUL in text and JSON, lone surrogates everywhere."""
    if isinstance(value, str):
        return encodable(value.replace("\x00", "\\x00"))
    if isinstance(value, dict):
        return {storable(k): storable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [storable(v) for v in value]
    return value


def audit_record(
    *,
    actor: Actor | None,
    action: str,
    workspace_id: str | None = None,
    target_type: str = "",
    target_id: str = "",
    reason: str = "",
    reason_code: str = "",
    old: dict[str, Any] | None = None,
    new: dict[str, Any] | None = None,
    actor_id: str | None = None,
    actor_role: str | None = None,
    now: datetime | None = None,
) -> AuditEvent:
    """Append one audit row. Call it inside the write's transaction so both commit or neither."""
    event = _event(actor=actor, action=action, workspace_id=workspace_id, target_type=target_type,
                   target_id=target_id, reason=reason, reason_code=reason_code, old=old, new=new, actor_id=actor_id,
                   actor_role=actor_role, now=now)
    event.save(force_insert=True)
    return event


def _event(
    *, actor: Actor | None, action: str, workspace_id: str | None = None, target_type: str = "", target_id: str = "",
    reason: str = "", reason_code: str = "", old: dict[str, Any] | None = None, new: dict[str, Any] | None = None,
    actor_id: str | None = None, actor_role: str | None = None, now: datetime | None = None,
) -> AuditEvent:
    return AuditEvent(
        created_at=now or timezone.now(),
        workspace_id=workspace_id if workspace_id is not None else (actor.workspace_id if actor else ""),
        actor_id=actor_id or (actor.agent_id if actor else "system"),
        actor_role=actor_role or (actor.role if actor else "system"),
        action=action,
        target_type=target_type,
        target_id=storable(str(target_id)),
        reason=storable(reason or ""),
        reason_code=reason_code,
        request_id=current_request_id() or "",
        old_values=storable(old or {}),
        new_values=storable(new or {}),
    )


def _tally_key(event: AuditEvent) -> tuple[str, str, str, str]:
    return event.workspace_id, event.actor_id, event.action, event.reason_code


def audit_refusal(err, *, now: datetime | None = None) -> list[AuditEvent]:
    """Record a refused attempt (cross-workspace, claim mismatch, role denial) after its rollback:
    its row, or its rows (a cross-workspace attempt is on both workspaces' record).

    Repeats are summed, not written row by row: the first refusal of an actor, action and reason
    in a workspace's record writes its row (with its target and request id) and opens a window of
    ORKIVA_AUDIT_REFUSAL_WINDOW_SECONDS; the repeats within it are counted (AuditTally), and once
    it is over they are appended as one row with their count (`audit_tallies_flush`, run by the
    next such refusal and by the supervisor's sweep). Every refusal is on the record, as a row or
    in a count; the log stays append-only. One refusal costs the same statements whether it writes
    one row or two: one look-up of its windows, then one insert, or one count."""
    moment = now or timezone.now()
    specs = err.audit if isinstance(err.audit, list) else [err.audit]
    events = [_event(**{"reason_code": err.code, "reason": err.message, "now": moment, **spec}) for spec in specs]
    window = settings.ORKIVA_AUDIT_REFUSAL_WINDOW_SECONDS
    if window <= 0:
        return AuditEvent.objects.bulk_create(events)
    with transaction.atomic():
        keys = {_tally_key(e): e for e in events}
        match = Q()
        for workspace_id, actor_id, action, reason_code in keys:
            match |= Q(workspace_id=workspace_id, actor_id=actor_id, action=action, reason_code=reason_code)
        open_since = moment - timedelta(seconds=window)
        tallies = {(t.workspace_id, t.actor_id, t.action, t.reason_code): t
                   for t in AuditTally.objects.select_for_update().filter(match)}
        over = [t for t in tallies.values() if t.window_start <= open_since]
        if over:  # this actor's previous window is over: its repeats go on the record first
            _flush(over, moment)
            tallies = {k: t for k, t in tallies.items() if t.window_start > open_since}
        counted = [tallies[k].pk for k in keys if k in tallies]
        if counted:
            AuditTally.objects.filter(pk__in=counted).update(
                repeats=F("repeats") + 1, last_request_id=current_request_id() or "", last_at=moment)
        fresh = [e for k, e in keys.items() if k not in tallies]
        if not fresh:
            return []
        written = AuditEvent.objects.bulk_create(fresh)
        AuditTally.objects.bulk_create([
            AuditTally(workspace_id=e.workspace_id, actor_id=e.actor_id, actor_role=e.actor_role, action=e.action,
                       reason_code=e.reason_code, window_start=moment, first_request_id=e.request_id)
            for e in fresh
        ], ignore_conflicts=True)  # a concurrent first refusal opened it: that one counts from now
        return written


def _flush(tallies: list[AuditTally], now: datetime) -> None:
    """Append one row per window that counted repeats, dated now (its window is in `new`, so a
    reader polling with --since sees it); close the windows."""
    AuditEvent.objects.bulk_create([
        AuditEvent(
            created_at=now, workspace_id=t.workspace_id, actor_id=t.actor_id, actor_role=t.actor_role,
            action=t.action, reason_code=t.reason_code, count=t.repeats, request_id=t.last_request_id,
            reason=f"{t.repeats} more refusals like the first of this window, summed up (targets not kept).",
            new_values={"window_start": t.window_start.isoformat(), "window_end": t.last_at.isoformat(),
                        "first_request_id": t.first_request_id, "last_request_id": t.last_request_id},
        )
        for t in tallies if t.repeats
    ])
    AuditTally.objects.filter(pk__in=[t.pk for t in tallies]).delete()


def audit_tallies_flush(*, now: datetime | None = None) -> int:
    """Put the repeats of every window that is over on the record (the supervisor's sweep runs this):
    the rows appended."""
    moment = now or timezone.now()
    open_since = moment - timedelta(seconds=settings.ORKIVA_AUDIT_REFUSAL_WINDOW_SECONDS)
    with transaction.atomic():
        over = list(AuditTally.objects.select_for_update(skip_locked=True).filter(window_start__lte=open_since))
        _flush(over, moment)
    return sum(1 for t in over if t.repeats)
