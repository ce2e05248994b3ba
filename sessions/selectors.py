"""Session registry reads: the latest resumable session of an agent (what a wake resumes)."""
from __future__ import annotations

from orkiva.errors import NotFound, ValidationFailed
from policy.identity import IDENTIFIER_HELP, Actor, is_identifier
from policy.roles import Op, authorize
from sessions.models import AgentSession

RECENT_LIMIT = 10


def latest_resumable_session(*, workspace_id: str, agent_id: str) -> AgentSession | None:
    return (
        AgentSession.objects.filter(workspace_id=workspace_id, agent_id=agent_id, resumable=True)
        .order_by("-last_heartbeat_at", "-pk")
        .first()
    )


def agent_sessions(*, actor: Actor, agent_id: str) -> tuple[AgentSession | None, list[AgentSession]]:
    """The agent's latest resumable session and its recent sessions, in the actor's workspace."""
    authorize(actor, Op.SESSION_READ)
    if not is_identifier(agent_id):
        raise ValidationFailed("Not a valid agent id.", details={"fields": {"agent_id": IDENTIFIER_HELP}})
    recent = list(
        AgentSession.objects.filter(workspace_id=actor.workspace_id, agent_id=agent_id).order_by(
            "-last_heartbeat_at", "-pk"
        )[:RECENT_LIMIT]
    )
    if not recent:
        # Same answer whether the agent is unknown or only known in another workspace; the
        # latter is a cross-workspace attempt and is audited (by the renderer, like thread_get).
        audit = None
        if AgentSession.objects.filter(agent_id=agent_id).exclude(workspace_id=actor.workspace_id).exists():
            audit = {
                "actor": actor,
                "action": "workspace.denied",
                "target_type": "agent",
                "target_id": agent_id,
                "reason_code": "cross_workspace",
                "reason": "Attempt to look up an agent of another workspace.",
            }
        raise NotFound(
            "No sessions are registered for that agent.",
            code="agent_not_found",
            details={"agent_id": agent_id},
            audit=audit,
        )
    return latest_resumable_session(workspace_id=actor.workspace_id, agent_id=agent_id), recent
