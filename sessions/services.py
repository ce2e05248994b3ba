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
    *, actor: Actor, session_id: str, runtime_type: str, resumable: bool, workdir: str = "", now: datetime | None = None
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
    if workdir:
        values["workdir"] = workdir
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


def session_record(
    *, actor: Actor, session_id: str, runtime_type: str, workdir: str = "", known_since: datetime | None = None,
    now: datetime | None = None,
) -> AgentSession:
    """Record a session the agent's own CLI reported (a hook, a launch, an attach): its id and where
    it lives. Unlike a heartbeat it does not say the agent is alive now (a wake's ack counts
    heartbeats): an existing session keeps its last heartbeat, a new one starts with `known_since`
    (when its runtime was registered, say), else this moment."""
    if not is_identifier(session_id):
        raise ValidationFailed("Not a valid session id.", details={"fields": {"session_id": IDENTIFIER_HELP}})
    if runtime_type not in RUNTIME_TYPES:
        raise ValidationFailed("Not a runtime type.", details={"fields": {"runtime_type": list(RUNTIME_TYPES)}})
    moment = now or timezone.now()
    key = {"workspace_id": actor.workspace_id, "agent_id": actor.agent_id, "session_id": session_id}
    for _ in range(2):  # a concurrent first record of the same session may win the insert
        try:
            with transaction.atomic():
                session, created = AgentSession.objects.get_or_create(
                    **key, defaults={"runtime_type": runtime_type, "resumable": True, "workdir": workdir,
                                     "last_heartbeat_at": known_since or moment, "created_at": moment},
                )
            break
        except IntegrityError:
            continue
    else:
        session, created = AgentSession.objects.get(**key), False
    if not created and ((workdir and session.workdir != workdir) or session.runtime_type != runtime_type):
        session.workdir = workdir or session.workdir
        session.runtime_type = runtime_type
        session.save(update_fields=["workdir", "runtime_type"])
    return session
