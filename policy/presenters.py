"""The JSON of escalations, audit events and the effective policy (operator commands print these)."""
from __future__ import annotations

from typing import Any

from orkiva.versioning import EVENT_VERSION, SCHEMA_VERSION, iso
from policy.config import PolicyConfig
from policy.models import AuditEvent, Escalation


def escalation_json(escalation: Escalation) -> dict[str, Any]:
    return {
        "escalation_id": escalation.pk,
        "thread_id": str(escalation.thread_id),
        "workspace_id": escalation.workspace_id,
        "reason_code": escalation.reason_code,
        "blocking": escalation.blocking,
        "status": escalation.status,
        "reason": escalation.reason or None,
        "details": escalation.details,
        "opened_by": escalation.opened_by,
        "opened_at": iso(escalation.opened_at),
        "resolved_by": escalation.resolved_by or None,
        "resolved_at": iso(escalation.resolved_at),
        "resolution": escalation.resolution or None,
        "resolution_code": escalation.resolution_code or None,
        "schema_version": SCHEMA_VERSION,
    }


def audit_json(event: AuditEvent) -> dict[str, Any]:
    return {
        "id": event.pk,
        "created_at": iso(event.created_at),
        "workspace_id": event.workspace_id,
        "actor_id": event.actor_id,
        "actor_role": event.actor_role,
        "action": event.action,
        "target_type": event.target_type or None,
        "target_id": event.target_id or None,
        "reason": event.reason or None,
        "reason_code": event.reason_code or None,
        "request_id": event.request_id or None,
        "old": event.old_values,
        "new": event.new_values,
        "count": event.count,
        "event_version": EVENT_VERSION,
    }


def policy_json(config: PolicyConfig) -> dict[str, Any]:
    return {**config.as_json(), "schema_version": SCHEMA_VERSION}


def thread_action_json(action) -> dict[str, Any]:
    """What an operator command did to a thread (policy.escalations.ThreadAction)."""
    from threads.presenters import thread_json

    thread = action.thread
    return {
        "thread": thread_json(thread),
        "old_status": action.old_status,
        "status": thread.status,
        "turns_since_progress_before": action.turns_before,
        "escalation": escalation_json(action.escalation) if action.escalation else None,
        "escalations_resolved": [escalation_json(e) for e in action.resolved],
        "schema_version": SCHEMA_VERSION,
    }
