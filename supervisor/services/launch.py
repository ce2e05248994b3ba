"""Launching an agent under the supervisor: a managed runtime in a tmux target of its own."""
from __future__ import annotations

import shlex
import uuid
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.utils import timezone

from orkiva.errors import Conflict, ValidationFailed
from policy.identity import IDENTIFIER_HELP, ROLE_PARTICIPANT, TOKEN_ROLES, Actor, is_identifier
from policy.services import token_issue
from sessions.models import RUNTIME_TYPES
from supervisor import tmux
from supervisor.models import MANAGED, ST_DEREGISTERED, ST_EXPIRED, ST_OFFLINE, Runtime
from supervisor.selectors import runtime_of
from supervisor.services.runtimes import runtime_register_managed


@dataclass
class LaunchResult:
    runtime: Runtime
    token_expires_at: datetime
    session_name: str
    attach_command: str


def runtime_launch(
    *,
    operator: Actor,
    agent_id: str,
    workspace_id: str,
    runtime_type: str,
    command: str,
    session_id: str = "",
    workdir: str = "",
    role: str = ROLE_PARTICIPANT,
    reason: str = "",
    now: datetime | None = None,
) -> LaunchResult:
    """Start an agent in a named tmux target on the supervisor's server, with a short-lived token in
    its environment (ORKIVA_TOKEN, ORKIVA_URL), and register it as managed."""
    errors: dict[str, str] = {}
    for name, value in (("agent_id", agent_id), ("workspace_id", workspace_id)):
        if not is_identifier(value):
            errors[name] = IDENTIFIER_HELP
    if runtime_type not in RUNTIME_TYPES:
        errors["runtime"] = f"one of {', '.join(RUNTIME_TYPES)}"
    if role not in TOKEN_ROLES:
        errors["role"] = f"one of {', '.join(TOKEN_ROLES)}"
    try:
        argv = shlex.split(command or "")
    except ValueError as exc:
        argv = []
        errors["command"] = f"not parseable: {exc}"
    if not argv and "command" not in errors:
        errors["command"] = "the agent command to run, e.g. \"codex\""
    if session_id and not is_identifier(session_id):
        errors["session_id"] = IDENTIFIER_HELP
    if errors:
        raise ValidationFailed("The launch request is not valid.", details={"fields": errors})
    existing = runtime_of(workspace_id=workspace_id, agent_id=agent_id)
    if existing and existing.management_mode == MANAGED and existing.state not in (ST_DEREGISTERED, ST_EXPIRED, ST_OFFLINE):
        pane = tmux.pane_state(existing.pty_target) if existing.pty_target else None
        if pane is not None and pane.exists and not pane.dead:
            raise Conflict(
                "That agent already runs as a managed runtime; deregister it first.",
                code="runtime_already_managed",
                details={"pty_target": existing.pty_target},
            )
    moment = now or timezone.now()
    token_session = session_id or f"rt-{uuid.uuid4().hex[:12]}"
    minted = token_issue(
        issuer=operator,
        agent_id=agent_id,
        workspace_id=workspace_id,
        role=role,
        session_id=token_session,
        ttl_seconds=settings.ORKIVA_RUNTIME_TOKEN_TTL_SECONDS,
        reason=reason or "runtime launch",
        now=moment,
    )
    session_name = tmux.session_name_for(workspace_id=workspace_id, agent_id=agent_id)
    tmux.kill_session(session_name)  # a dead pane left over from an earlier launch
    env = {
        "ORKIVA_TOKEN": minted.token,
        "ORKIVA_URL": settings.ORKIVA_PUBLIC_URL,
        "ORKIVA_AGENT_ID": agent_id,
        "ORKIVA_WORKSPACE_ID": workspace_id,
        "ORKIVA_SESSION_ID": token_session,
    }
    try:
        launched = tmux.launch(session_name=session_name, argv=argv, env=env, workdir=workdir or None)
    except tmux.TmuxFailed as exc:
        raise Conflict(f"tmux could not start the agent: {exc}", code="launch_failed", details={"stderr": exc.stderr}) from None
    try:
        runtime = runtime_register_managed(
            operator=operator,
            agent_id=agent_id,
            workspace_id=workspace_id,
            runtime_type=runtime_type,
            session_id=session_id,
            pid=launched.pid,
            pty_target=launched.target,
            workdir=workdir,
            reason=reason,
            now=moment,
        )
    except Exception:
        tmux.kill_session(session_name)
        raise
    socket_flag = f"-L {shlex.quote(settings.ORKIVA_TMUX_SOCKET)} " if settings.ORKIVA_TMUX_SOCKET else ""
    return LaunchResult(
        runtime=runtime,
        token_expires_at=minted.expires_at,
        session_name=session_name,
        attach_command=f"tmux {socket_flag}attach -t {shlex.quote(session_name)}",
    )
