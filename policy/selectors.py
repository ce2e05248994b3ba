"""Policy reads for the operator: escalations, the audit log with filters, what an agent is up to."""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db.models import Q

from orkiva.errors import NotFound
from policy.models import AuditEvent, Escalation

DEFAULT_LIMIT = 50


def _uuid_or_none(value: Any) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value))
    except (ValueError, TypeError, AttributeError):
        return None


def thread_workspace(thread_id) -> str:
    """The workspace of a thread (an operator names threads by id alone), or thread_not_found."""
    from threads.models import Thread

    pk = _uuid_or_none(thread_id)
    workspace = Thread.objects.filter(pk=pk).values_list("workspace_id", flat=True).first() if pk else None
    if workspace is None:
        raise NotFound("No such thread.", code="thread_not_found", details={"thread_id": str(thread_id)})
    return workspace


def escalation_get(escalation_id) -> Escalation:
    try:
        pk = int(escalation_id)
    except (TypeError, ValueError):
        pk = None
    escalation = Escalation.objects.filter(pk=pk).first() if pk is not None else None
    if escalation is None:
        raise NotFound("No such escalation.", code="escalation_not_found", details={"escalation_id": str(escalation_id)})
    return escalation


def escalation_list(
    *,
    status: str | None = Escalation.STATUS_OPEN,
    workspace_id: str | None = None,
    thread_id=None,
    reason_code: str | None = None,
    limit: int = DEFAULT_LIMIT,
) -> list[Escalation]:
    """Escalations, newest first (open ones by default)."""
    if thread_id:
        thread_workspace(thread_id)  # a mistyped id is thread_not_found, not "no filter"
    filters = {"status": status, "workspace_id": workspace_id, "reason_code": reason_code,
               "thread_id": _uuid_or_none(thread_id) if thread_id else None}
    queryset = Escalation.objects.filter(**_given(filters))
    return list(queryset.order_by("-opened_at", "-id")[:limit])


def _given(filters: dict[str, Any]) -> dict[str, Any]:
    """The filters that were asked for (an empty or None value means 'any')."""
    return {name: value for name, value in filters.items() if value not in (None, "")}


def audit_list(
    *,
    workspace_id: str | None = None,
    action: str | None = None,
    actor_id: str | None = None,
    target_type: str | None = None,
    target_id: str | None = None,
    thread_id: str | None = None,
    reason_code: str | None = None,
    since: datetime | None = None,
    before_id: int | None = None,
    limit: int = DEFAULT_LIMIT,
) -> list[AuditEvent]:
    """Audit events, newest first. `thread_id` matches rows about the thread and about its
    escalations; `before_id` pages back (pass the smallest id of the previous page)."""
    queryset = AuditEvent.objects.filter(**_given({
        "workspace_id": workspace_id, "action": action, "actor_id": actor_id, "target_type": target_type,
        "target_id": target_id, "reason_code": reason_code, "created_at__gte": since, "pk__lt": before_id,
    }))
    if thread_id:
        queryset = queryset.filter(
            Q(target_type="thread", target_id=str(thread_id)) | Q(new_values__thread_id=str(thread_id))
        )
    return list(queryset.order_by("-id")[:limit])


@dataclass
class AgentOverview:
    workspace_id: str
    agent_id: str
    sessions: list
    runtime: Any
    wakes: list
    threads: list


def agent_overview(*, workspace_id: str, agent_id: str, limit: int = 10) -> AgentOverview:
    """An agent's sessions, runtime, recent wakes and threads in one workspace, or agent_not_found."""
    from sessions.models import AgentSession
    from supervisor.models import Runtime, WakeRequest
    from threads.models import Thread

    sessions = list(
        AgentSession.objects.filter(workspace_id=workspace_id, agent_id=agent_id).order_by("-last_heartbeat_at", "-pk")[
            :limit
        ]
    )
    runtime = Runtime.objects.filter(workspace_id=workspace_id, agent_id=agent_id).first()
    wakes = list(
        WakeRequest.objects.filter(workspace_id=workspace_id, agent_id=agent_id)
        .order_by("-created_at")[:limit]
    )
    threads = list(
        Thread.objects.filter(workspace_id=workspace_id, participants__agent_id=agent_id).order_by("-updated_at")[:limit]
    )
    if not (sessions or runtime or wakes or threads):
        raise NotFound(
            "Nothing is known of that agent in that workspace.",
            code="agent_not_found",
            details={"agent_id": agent_id, "workspace_id": workspace_id},
        )
    return AgentOverview(workspace_id, agent_id, sessions, runtime, wakes, threads)


def wake_lookup(wake_id):
    """A wake by id, any workspace (the operator's view), with its attempts."""
    from supervisor.models import WakeRequest

    pk = _uuid_or_none(wake_id)
    wake = WakeRequest.objects.filter(pk=pk).first() if pk else None
    if wake is None:
        raise NotFound("No such wake.", code="wake_not_found", details={"wake_id": str(wake_id)})
    return wake
