"""Writing the audit log: one function for changes, one for refused attempts."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from django.utils import timezone

from orkiva.context import current_request_id
from orkiva.errors import encodable
from policy.identity import Actor
from policy.models import AuditEvent


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


def audit_refusal(err) -> list[AuditEvent]:
    """Record a refused attempt (cross-workspace, claim mismatch, role denial) after its rollback:
    its row, or its rows in one statement (a cross-workspace attempt is on both workspaces' record)."""
    specs = err.audit if isinstance(err.audit, list) else [err.audit]
    events = [_event(**{"reason_code": err.code, "reason": err.message, **spec}) for spec in specs]
    if len(events) == 1:
        events[0].save(force_insert=True)
        return events
    return AuditEvent.objects.bulk_create(events)
