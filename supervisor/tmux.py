"""The tmux adapter: the supervisor's own tmux server (socket ORKIVA_TMUX_SOCKET) or, for a pane a
user started (orkiva_runtime attach), that server's socket path; launching agents in named
targets, liveness, human activity, reading the screen, and pasting a prompt safely."""
from __future__ import annotations

import re
import socket
import uuid
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


def server(socket_path: str = "") -> libtmux.Server:
    """The tmux server at `socket_path` (an attached pane's), else the supervisor's own. Tests point
    ORKIVA_TMUX_SOCKET at a private socket."""
    if socket_path:
        return libtmux.Server(socket_path=socket_path)
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
    pane_id: str = ""
    path: str = ""  # the pane's current directory


def pane_state(target: str, socket_path: str = "") -> PaneState:
    """Is the target pane there, and is its process alive?"""
    try:
        result = _run(server(socket_path), "display-message", "-p",
                      "#{pane_id}\t#{pane_dead}\t#{pane_pid}\t#{pane_current_command}\t#{pane_current_path}",
                      target=target)
    except TmuxFailed:
        return PaneState(exists=False)
    # tmux 3.3 answers a target whose session is gone with exit 0 and empty fields: no pane id, no pane.
    fields = (result.stdout[0] if result.stdout else "").split("\t")
    if len(fields) < 5 or not fields[0].startswith("%"):
        return PaneState(exists=False)
    pane_id, dead, pid, command, path = fields[:5]
    return PaneState(exists=True, dead=dead == "1", pid=int(pid) if pid.isdigit() else None, command=command,
                     pane_id=pane_id, path=path)


def client_activity(target: str, socket_path: str = "") -> list[int]:
    """Epoch seconds of the last keystroke of every client attached to the target's session."""
    try:
        session = _run(server(socket_path), "display-message", "-p", "#{session_name}", target=target).stdout
        result = _run(server(socket_path), "list-clients", "-F", "#{client_activity}", "-t", session[0])
    except (TmuxFailed, IndexError):
        return []
    return [int(line) for line in result.stdout if line.strip().isdigit()]


def paste(target: str, text: str, socket_path: str = "") -> None:
    """Paste `text` as one bracketed paste (the TUIs take it whole, newlines included, and never
    mistake it for typing), without Enter. tmux's answer is checked at each step."""
    srv = server(socket_path)
    buffer = f"orkiva-{uuid.uuid4().hex[:12]}"
    _run(srv, "set-buffer", "-b", buffer, "--", text)
    try:
        _run(srv, "paste-buffer", "-p", "-r", "-b", buffer, target=target)
    finally:
        try:
            _run(srv, "delete-buffer", "-b", buffer)
        except TmuxFailed:
            pass


def press_enter(target: str, socket_path: str = "") -> None:
    _run(server(socket_path), "send-keys", "Enter", target=target)


def capture(target: str, socket_path: str = "", *, screen: bool = False) -> str:
    """The pane's recent history and screen; with `screen`, only what is on the screen now, with its
    colours and attributes (a TUI draws its input placeholder dim, a human's draft not)."""
    args = ["capture-pane", "-p", "-e"] if screen else ["capture-pane", "-p", "-J", "-S", "-200"]
    return "\n".join(_run(server(socket_path), *args, target=target).stdout)


def kill_session(session_name: str) -> None:
    try:
        _run(server(), "kill-session", target=session_name)
    except TmuxFailed:
        pass
