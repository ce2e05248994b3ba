"""Session registry writes: heartbeats upsert the caller's session."""
from __future__ import annotations

from datetime import datetime

from django.db import IntegrityError, transaction
from django.utils import timezone

from orkiva.errors import ValidationFailed
from policy.identity import IDENTIFIER_HELP, Actor, is_identifier
from policy.roles import Op, authorize
from sessions.models import RUNTIME_TYPES, AgentSession


def session_heartbeat(
    *, actor: Actor, session_id: str, runtime_type: str, resumable: bool, now: datetime | None = None
) -> AgentSession:
    """Record that the caller's runtime session is alive. Agent and workspace come from the token."""
    authorize(actor, Op.SESSION_HEARTBEAT)
    errors = {}
    if not is_identifier(session_id):
        errors["session_id"] = IDENTIFIER_HELP
    if runtime_type not in RUNTIME_TYPES:
        errors["runtime_type"] = f"one of {', '.join(RUNTIME_TYPES)}"
    if errors:
        raise ValidationFailed("The heartbeat is not valid.", details={"fields": errors})
    moment = now or timezone.now()
    key = {"workspace_id": actor.workspace_id, "agent_id": actor.agent_id, "session_id": session_id}
    values = {"runtime_type": runtime_type, "resumable": resumable, "last_heartbeat_at": moment}
    for _ in range(2):  # a concurrent first heartbeat of the same session may win the insert
        try:
            with transaction.atomic():
                session, created = AgentSession.objects.update_or_create(
                    **key, defaults=values, create_defaults={**values, "created_at": moment}
                )
            return session
        except IntegrityError:
            continue
    return AgentSession.objects.get(**key)
