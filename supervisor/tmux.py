"""The tmux adapter: the supervisor's own tmux server (socket ORKIVA_TMUX_SOCKET), launching
agents in named targets, liveness, human activity, and typing a prompt safely."""
from __future__ import annotations

import re
import socket
from dataclasses import dataclass

import libtmux
from django.conf import settings

_SESSION_UNSAFE = re.compile(r"[^A-Za-z0-9_\-]")


class TmuxFailed(Exception):
    """tmux refused a command; `stderr` says why."""

    def __init__(self, message: str, *, stderr: list[str] | None = None, returncode: int | None = None):
        super().__init__(message)
        self.stderr = stderr or []
        self.returncode = returncode


def supervisor_host() -> str:
    return settings.ORKIVA_SUPERVISOR_HOST or socket.gethostname()


def server() -> libtmux.Server:
    """The supervisor's tmux server. Tests point ORKIVA_TMUX_SOCKET at a private socket."""
    return libtmux.Server(socket_name=settings.ORKIVA_TMUX_SOCKET, config_file=settings.ORKIVA_TMUX_CONFIG or None)


def session_name_for(*, workspace_id: str, agent_id: str) -> str:
    """A tmux session name for an agent (tmux forbids ':' and '.' in names)."""
    raw = f"{settings.ORKIVA_TMUX_SESSION_PREFIX}-{workspace_id}-{agent_id}"
    return _SESSION_UNSAFE.sub("_", raw)[:200]


def _run(srv: libtmux.Server, *args: str, target: str | None = None):
    try:
        result = srv.cmd(*args, target=target)
    except libtmux.exc.TmuxCommandNotFound:
        raise TmuxFailed("tmux is not installed", returncode=None) from None
    if result.returncode != 0 or result.stderr:
        raise TmuxFailed(
            f"tmux {args[0]} failed: {' '.join(result.stderr) or result.returncode}",
            stderr=result.stderr,
            returncode=result.returncode,
        )
    return result


@dataclass(frozen=True)
class Launched:
    target: str  # session:window.pane
    pid: int | None


def launch(*, session_name: str, argv: list[str], env: dict[str, str], workdir: str | None) -> Launched:
    """Start `argv` in a new detached tmux session (executed without a shell when it has several words)."""
    srv = server()
    args = ["new-session", "-d", "-s", session_name, "-x", "200", "-y", "50", "-P", "-F",
            "#{session_name}:#{window_index}.#{pane_index} #{pane_pid}"]
    if workdir:
        args += ["-c", workdir]
    for key, value in env.items():
        args += ["-e", f"{key}={value}"]
    result = _run(srv, *args, "--", *argv)
    target, _, pid = result.stdout[0].partition(" ")
    # keep a dead pane visible so liveness can tell "exited" from "never existed"
    _run(srv, "set-option", "-w", "remain-on-exit", "on", target=target)
    return Launched(target=target, pid=int(pid) if pid.isdigit() else None)


@dataclass(frozen=True)
class PaneState:
    exists: bool
    dead: bool = False
    pid: int | None = None
    command: str = ""


def pane_state(target: str) -> PaneState:
    """Is the target pane there, and is its process alive?"""
    try:
        result = _run(server(), "display-message", "-p", "#{pane_id} #{pane_dead} #{pane_pid} #{pane_current_command}",
                      target=target)
    except TmuxFailed:
        return PaneState(exists=False)
    # tmux 3.3 answers a target whose session is gone with exit 0 and empty fields: no pane id, no pane.
    pane_id, _, rest = (result.stdout[0] if result.stdout else "").partition(" ")
    if not pane_id.startswith("%"):
        return PaneState(exists=False)
    dead, _, rest = rest.partition(" ")
    pid, _, command = rest.partition(" ")
    return PaneState(exists=True, dead=dead == "1", pid=int(pid) if pid.isdigit() else None, command=command)


def client_activity(target: str) -> list[int]:
    """Epoch seconds of the last keystroke of every client attached to the target's session."""
    session = target.split(":", 1)[0]
    try:
        result = _run(server(), "list-clients", "-F", "#{client_activity}", target=session)
    except TmuxFailed:
        return []
    return [int(line) for line in result.stdout if line.strip().isdigit()]


def type_line(target: str, text: str) -> None:
    """Type `text` literally, then Enter as its own key, checking tmux's answer each time.

    Not Pane.send_keys: it silently types nothing when the text starts with '-'.
    """
    srv = server()
    _run(srv, "send-keys", "-l", "--", text, target=target)
    _run(srv, "send-keys", "Enter", target=target)


def capture(target: str) -> str:
    return "\n".join(_run(server(), "capture-pane", "-p", "-J", "-S", "-200", target=target).stdout)


def kill_session(session_name: str) -> None:
    try:
        _run(server(), "kill-session", target=session_name)
    except TmuxFailed:
        pass
