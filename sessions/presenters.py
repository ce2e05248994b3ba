"""The JSON of agent sessions, shared by REST and MCP."""
from __future__ import annotations

from typing import Any

from orkiva.versioning import SCHEMA_VERSION, iso
from sessions.models import AgentSession


def session_json(session: AgentSession) -> dict[str, Any]:
    return {
        "agent_id": session.agent_id,
        "workspace_id": session.workspace_id,
        "session_id": session.session_id,
        "runtime_type": session.runtime_type,
        "resumable": session.resumable,
        "last_heartbeat_at": iso(session.last_heartbeat_at),
        "schema_version": SCHEMA_VERSION,
    }


def agent_sessions_json(agent_id: str, latest: AgentSession | None, recent: list[AgentSession]) -> dict[str, Any]:
    return {
        "agent_id": agent_id,
        "latest_resumable": session_json(latest) if latest else None,
        "sessions": [session_json(s) for s in recent],
        "schema_version": SCHEMA_VERSION,
    }
