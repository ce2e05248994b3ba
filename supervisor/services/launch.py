"""Managed runtimes: an agent launched by the supervisor in a tmux target of its own, ready to work
(its CLI configured for the bridge, first-run dialogs answered, its session known), or a pane a user
started registered as managed by an operator (attach). The supervisor may type into both."""
from __future__ import annotations

import os
import shlex
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from orkiva.errors import Conflict, NotFound, ValidationFailed
from policy.audit import audit_record
from policy.identity import IDENTIFIER_HELP, ROLE_PARTICIPANT, TOKEN_ROLES, Actor, is_identifier
from sessions.models import RUNTIME_TYPES
from sessions.services import session_record
from supervisor import tmux
from supervisor.clis import cli_for
from supervisor.clis.base import AgentPlace, CliSetupRequired
from supervisor.models import (
    AGENT_BUSY, AGENT_UNKNOWN, MANAGED, PTY_TMUX, ST_DEREGISTERED, ST_EXPIRED, ST_IDLE, ST_OFFLINE, Runtime,
)
from supervisor.selectors import runtime_of
from supervisor.services.credentials import credential_issue, credential_revoke, credential_session_revoke
from supervisor.services.runtimes import is_pane_target
from supervisor.services.trace import runtime_for_update, runtime_snapshot

# The launch hands the agent the environment its CLI needs, from the launching process: where its
# config lives, its provider's settings, and how to find it (the tmux server may have started with
# another environment).
FORWARDED = {"codex": ("CODEX_", "OPENAI_"), "claude": ("CLAUDE_", "ANTHROPIC_", "DISABLE_"), "other": ()}
ALWAYS_FORWARDED = ("HOME", "PATH", "LANG")


@dataclass
class LaunchResult:
    runtime: Runtime
    token_expires_at: datetime | None
    session_name: str
    attach_command: str
    configured: list[str] = field(default_factory=list)  # the CLI configuration the launch wrote or passed


def runtime_dir(*, workspace_id: str, agent_id: str) -> Path:
    return Path(settings.ORKIVA_RUNTIME_DIR) / tmux.session_name_for(workspace_id=workspace_id, agent_id=agent_id)


def _check_identity(errors: dict[str, str], *, agent_id: str, workspace_id: str, runtime_type: str,
                    session_id: str) -> None:
    for name, value in (("agent_id", agent_id), ("workspace_id", workspace_id)):
        if not is_identifier(value):
            errors[name] = IDENTIFIER_HELP
    if runtime_type not in RUNTIME_TYPES:
        errors["runtime"] = f"one of {', '.join(RUNTIME_TYPES)}"
    if session_id and not is_identifier(session_id):
        errors["session_id"] = IDENTIFIER_HELP


def _refuse_second_managed(*, workspace_id: str, agent_id: str) -> Runtime | None:
    """An agent runs once as a managed runtime: a live managed pane refuses a second. Returns the
    earlier runtime, whose pane is gone, if any."""
    existing = runtime_of(workspace_id=workspace_id, agent_id=agent_id)
    if existing and existing.management_mode == MANAGED and existing.state not in (ST_DEREGISTERED, ST_EXPIRED, ST_OFFLINE):
        pane = tmux.pane_state(existing.pty_target, existing.tmux_socket) if existing.pty_target else None
        if pane is not None and pane.exists and not pane.dead:
            raise Conflict(
                "That agent already runs as a managed runtime; deregister it first.",
                code="runtime_already_managed",
                details={"pty_target": existing.pty_target},
            )
    return existing


def _refuse_taken_session_name(session_name: str, *, workspace_id: str, agent_id: str) -> None:
    """Another agent's live pane under the same tmux session name (`a-b`/`c` and `a`/`b-c` read alike):
    a launch would kill it."""
    others = Runtime.objects.filter(management_mode=MANAGED, tmux_socket="", pty_target__startswith=f"{session_name}:")
    for other in others.exclude(workspace_id=workspace_id, agent_id=agent_id):
        pane = tmux.pane_state(other.pty_target)
        if pane.exists and not pane.dead and other.state not in (ST_DEREGISTERED, ST_EXPIRED, ST_OFFLINE):
            raise Conflict("Another agent's managed pane has that tmux session name; deregister it first.",
                           code="runtime_already_managed",
                           details={"pty_target": other.pty_target, "agent_id": other.agent_id,
                                    "workspace_id": other.workspace_id})


def runtime_launch(
    *,
    operator: Actor,
    agent_id: str,
    workspace_id: str,
    runtime_type: str,
    command: str = "",
    prompt: str = "",
    session_id: str = "",
    workdir: str = "",
    role: str = ROLE_PARTICIPANT,
    reason: str = "",
    now: datetime | None = None,
) -> LaunchResult:
    """Start an agent in a named tmux target on the supervisor's server and register it as managed.

    Its environment carries its credential (ORKIVA_TOKEN, docs/supervisor.md "Credentials") and
    ORKIVA_URL. For Codex CLI and Claude Code (the command runs the CLI; by default it is the CLI),
    the launch configures the CLI as supervisor/clis says: the bridge's MCP server, Orkiva's tools
    allowed, the folder trusted, the hooks that report the agent's state, a known session id; and
    `prompt` is its first prompt. Any other command runs as given."""
    errors: dict[str, str] = {}
    _check_identity(errors, agent_id=agent_id, workspace_id=workspace_id, runtime_type=runtime_type,
                    session_id=session_id)
    if role not in TOKEN_ROLES:
        errors["role"] = f"one of {', '.join(TOKEN_ROLES)}"
    cli = cli_for(runtime_type)
    try:
        argv = shlex.split(command or "") or ([cli.executable()] if cli else [])
    except ValueError as exc:
        argv = []
        errors["command"] = f"not parseable: {exc}"
    if not argv and "command" not in errors:
        errors["command"] = "the agent command to run (runtime type other has no default)"
    workdir = os.path.abspath(os.path.expanduser(workdir)) if workdir else ""
    if workdir and not os.path.isdir(workdir):
        errors["workdir"] = "not a directory"
    if errors:
        raise ValidationFailed("The launch request is not valid.", details={"fields": errors})
    earlier = _refuse_second_managed(workspace_id=workspace_id, agent_id=agent_id)
    session_name = tmux.session_name_for(workspace_id=workspace_id, agent_id=agent_id)
    _refuse_taken_session_name(session_name, workspace_id=workspace_id, agent_id=agent_id)
    moment = now or timezone.now()
    workdir = workdir or os.getcwd()
    env = {k: v for k, v in os.environ.items()
           if k in ALWAYS_FORWARDED or k.startswith(FORWARDED.get(runtime_type, ()))}
    launch, open_sessions = None, set()
    if cli is not None and cli.runs_cli(argv):
        place = AgentPlace(agent_id=agent_id, workspace_id=workspace_id, workdir=workdir,
                           runtime_dir=runtime_dir(workspace_id=workspace_id, agent_id=agent_id))
        try:
            launch = cli.launch(place, argv=argv, prompt=prompt, env=env)
        except CliSetupRequired as exc:
            raise Conflict(str(exc), code="cli_setup_required", details={"runtime": runtime_type}) from None
        except OSError as exc:
            raise Conflict(f"The CLI's configuration could not be written: {exc}", code="launch_failed",
                           details={"runtime": runtime_type}) from None
        argv = launch.argv
        env.update(launch.env)
        open_sessions = cli.sessions_now(env)
    elif prompt:
        raise ValidationFailed("A first prompt is given to Codex CLI or Claude Code only.",
                               details={"fields": {"prompt": "not for this command"}})
    with transaction.atomic():
        if earlier is not None:
            credential_revoke(earlier, reason="runtime launched again", now=moment)
        minted, token_session = credential_issue(operator=operator, agent_id=agent_id, workspace_id=workspace_id,
                                                 role=role, reason=reason or "runtime launch", now=moment)
    tmux.kill_session(session_name)  # a dead pane left over from an earlier launch
    env.update({
        "ORKIVA_TOKEN": minted.token,
        "ORKIVA_URL": settings.ORKIVA_PUBLIC_URL,
        "ORKIVA_AGENT_ID": agent_id,
        "ORKIVA_WORKSPACE_ID": workspace_id,
        "ORKIVA_SESSION_ID": session_id or (launch.session_id if launch else "") or token_session,
    })
    try:
        launched = tmux.launch(session_name=session_name, argv=argv, env=env, workdir=workdir)
        if launch is not None and not (session_id or launch.session_id):
            session_id = _new_session(cli, env, open_sessions)
        runtime = runtime_register_managed(
            operator=operator, action="runtime.launch", agent_id=agent_id, workspace_id=workspace_id,
            runtime_type=runtime_type, session_id=session_id or (launch.session_id if launch else ""),
            pid=launched.pid, pty_target=launched.target, tmux_socket="", workdir=workdir,
            state_source=launch.state_source if launch else "", credential_session=token_session,
            busy=bool(launch and prompt), reason=reason, now=moment,
        )
    except Exception as exc:
        tmux.kill_session(session_name)
        with transaction.atomic():  # nothing runs with it: its credential goes too
            credential_session_revoke(workspace_id=workspace_id, session=token_session, reason="launch failed",
                                      now=moment)
        if isinstance(exc, tmux.TmuxFailed):
            raise Conflict(f"tmux could not start the agent: {exc}", code="launch_failed",
                           details={"stderr": exc.stderr}) from None
        raise
    socket_flag = f"-L {shlex.quote(settings.ORKIVA_TMUX_SOCKET)} " if settings.ORKIVA_TMUX_SOCKET else ""
    return LaunchResult(
        runtime=runtime,
        token_expires_at=minted.expires_at,
        session_name=session_name,
        attach_command=f"tmux {socket_flag}attach -t {shlex.quote(session_name)}",
        configured=launch.wrote if launch else [],
    )


def _new_session(cli, env: dict[str, str], before: set[str], timeout: float = 3.0) -> str:
    """The session a TUI just opened, when exactly one appeared in the CLI's files (Codex: at start)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        new = cli.sessions_now(env) - before
        if new:
            return next(iter(new)) if len(new) == 1 and is_identifier(next(iter(new))) else ""
        time.sleep(0.1)
    return ""


def default_tmux_socket() -> str:
    """The tmux server a user's own panes live on: the one this command runs in ($TMUX), else the
    user's default server."""
    inside = os.environ.get("TMUX", "").split(",")[0]
    if inside:
        return inside
    base = os.environ.get("TMUX_TMPDIR") or "/tmp"
    return os.path.join(base, f"tmux-{os.getuid()}", "default")


def runtime_attach(
    *,
    operator: Actor,
    agent_id: str,
    workspace_id: str,
    runtime_type: str,
    target: str,
    tmux_socket: str = "",
    session_id: str = "",
    workdir: str = "",
    reason: str,
    now: datetime | None = None,
) -> LaunchResult:
    """Register a pane a user started (their own agent, on their own tmux server) as managed, so the
    supervisor may wake the agent through it. The operator says why; audited (`runtime.attach`).

    The agent keeps its own configuration and token; what the supervisor learns is the pane (stored
    by its pane id, which survives renames), its server, the directory it works in and, when given
    or found in the CLI's own session files, its session id."""
    errors: dict[str, str] = {}
    _check_identity(errors, agent_id=agent_id, workspace_id=workspace_id, runtime_type=runtime_type,
                    session_id=session_id)
    if not reason.strip():
        raise ValidationFailed("Attaching a pane needs a reason.", code="reason_required")
    if not is_pane_target(target):
        errors["target"] = "a tmux target: session:window.pane, or a pane id such as %3"
    if workdir and not (os.path.isabs(workdir) and os.path.isdir(workdir)):
        errors["workdir"] = "an absolute path of a directory"
    socket_path = tmux_socket or default_tmux_socket()
    if not os.path.isabs(socket_path):
        errors["tmux_socket"] = "the tmux server's socket path (tmux display -p '#{socket_path}')"
    if errors:
        raise ValidationFailed("The attach request is not valid.", details={"fields": errors})
    pane = tmux.pane_state(target, socket_path)
    if not pane.exists or pane.dead:
        raise NotFound("No live tmux pane at that target on that server.", code="target_not_found",
                       details={"target": target, "tmux_socket": socket_path})
    earlier = _refuse_second_managed(workspace_id=workspace_id, agent_id=agent_id)
    moment = now or timezone.now()
    workdir = workdir or pane.path
    if earlier is not None and earlier.credential_session:  # a launched agent whose pane is gone
        with transaction.atomic():
            credential_revoke(earlier, reason="runtime attached", now=moment)
    cli = cli_for(runtime_type)
    session_id = session_id or (cli.find_session(workdir, dict(os.environ)) if cli else "")
    runtime = runtime_register_managed(
        operator=operator, action="runtime.attach", agent_id=agent_id, workspace_id=workspace_id,
        runtime_type=runtime_type, session_id=session_id, pid=pane.pid, pty_target=pane.pane_id,
        tmux_socket=socket_path, workdir=workdir, state_source="", credential_session="", reason=reason.strip(),
        now=moment,
    )
    return LaunchResult(runtime=runtime, token_expires_at=None, session_name=target,
                        attach_command=f"tmux -S {shlex.quote(socket_path)} attach -t {shlex.quote(pane.pane_id)}")


@transaction.atomic
def runtime_register_managed(
    *, operator: Actor, action: str, agent_id: str, workspace_id: str, runtime_type: str, session_id: str,
    pid: int | None, pty_target: str, tmux_socket: str, workdir: str, state_source: str, credential_session: str,
    reason: str, now: datetime, busy: bool = False,
) -> Runtime:
    """Register a managed runtime (launch, attach), audited. `busy`: it starts with a turn (a launch's
    first prompt)."""
    runtime = runtime_for_update(workspace_id=workspace_id, agent_id=agent_id)
    old = runtime_snapshot(runtime) if runtime else None
    if runtime is None:
        runtime = Runtime(workspace_id=workspace_id, agent_id=agent_id)
    runtime.session_id = session_id
    runtime.runtime_type = runtime_type
    runtime.pid, runtime.pty_backend, runtime.pty_target, runtime.tmux_socket = pid, PTY_TMUX, pty_target, tmux_socket
    runtime.management_mode, runtime.host, runtime.workdir = MANAGED, tmux.supervisor_host(), workdir
    runtime.paused, runtime.state = False, ST_IDLE
    runtime.credential_session, runtime.state_source = credential_session, state_source
    runtime.agent_state, runtime.agent_state_at = (AGENT_BUSY, now) if busy else (AGENT_UNKNOWN, None)
    runtime.last_heartbeat_at = None  # not heard from yet
    runtime.registered_at = runtime.updated_at = now
    runtime.save()
    if session_id:
        agent = Actor(agent_id=agent_id, workspace_id=workspace_id, role=ROLE_PARTICIPANT, session_id=session_id)
        session_record(actor=agent, session_id=session_id, runtime_type=runtime_type, workdir=workdir, now=now)
    audit_record(
        actor=operator,
        workspace_id=workspace_id,
        action=action,
        target_type="runtime",
        target_id=agent_id,
        reason=reason,
        old=old,
        new=runtime_snapshot(runtime),
        now=now,
    )
    return runtime
