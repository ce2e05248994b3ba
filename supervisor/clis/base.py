"""What the supervisor knows of an agent CLI: how to launch it ready to work, how to resume or spawn
a session, what its output says about the run, and how to read its screen. One subclass per CLI
(codex.py, claude.py); each was written against the pinned version (package.json) and is held to
it by tests that run the real binary (tests/realcli)."""
from __future__ import annotations

import json
import os
import re
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
WAKE_REF = re.compile(r"\bw-[0-9a-f]{12}\b")  # a wake's marker (supervisor.services.trace.wake_ref_of)
HOOK_PROGRAM = Path(__file__).resolve().parent.parent / "hook.py"
MCP_SERVER = "orkiva"  # the MCP server's name in the CLIs' configuration: tools are mcp__orkiva__*

# What a screen shows, from the supervisor's point of view.
IDLE, DRAFT, BUSY, APPROVAL, DIALOG, UNKNOWN = "idle", "draft", "busy", "approval", "dialog", "unknown"


@dataclass(frozen=True)
class Screen:
    state: str
    draft: str = ""  # the input line's text, for DRAFT
    evidence: str = ""
    above: str = ""  # the screen above the input line, escapes removed (a submitted prompt shows there)


@dataclass(frozen=True)
class AgentPlace:
    """Who the agent is and where it works, for the commands and files of a launch or a wake."""

    agent_id: str
    workspace_id: str
    workdir: str
    runtime_dir: Path  # the supervisor's files for this agent (ORKIVA_RUNTIME_DIR/<workspace>/<agent>)


@dataclass
class Launch:
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    session_id: str = ""  # chosen up front (Claude Code's --session-id), else learned from the signals
    state_source: str = ""  # the signals it configured
    wrote: list[str] = field(default_factory=list)  # the files it wrote or changed, for the record


@dataclass
class RunOutcome:
    """What a resume or spawn command's output says, beyond its exit code."""

    session_id: str | None = None
    tools_called: list[str] = field(default_factory=list)  # Orkiva tools the model called
    tools_failed: list[str] = field(default_factory=list)
    tools_refused: list[str] = field(default_factory=list)  # denied by the CLI's permissions
    mcp_unavailable: bool = False  # the Orkiva MCP server did not connect (a refused token, say)

    def as_detail(self) -> dict:
        return {k: v for k, v in {"tools_called": self.tools_called, "tools_failed": self.tools_failed,
                                  "tools_refused": self.tools_refused,
                                  "mcp_unavailable": self.mcp_unavailable}.items() if v}


class CliSetupRequired(Exception):
    """The CLI cannot start for this user without a step only the user can take (a login)."""


def plain(text: str) -> str:
    return ANSI.sub("", text)


def hook_argv(kind: str) -> list[str]:
    """The command a CLI runs to report an event: this project's Python and supervisor/hook.py
    (standard library only, so it starts fast and needs no Django). Isolated (-I): the script's own
    folder must not come first on sys.path, where supervisor/selectors.py would shadow the stdlib's."""
    return [sys.executable, "-I", str(HOOK_PROGRAM), kind]


def hook_command(kind: str) -> str:
    return shlex.join(hook_argv(kind))


def bridge_mcp_url() -> str:
    return settings.ORKIVA_PUBLIC_URL.rstrip("/") + "/v1/mcp"


def normalized(text: str) -> str:
    return " ".join(text.split())


class AgentCli:
    """One agent CLI. `name` is its executable's name; `executable()` the configured one."""

    runtime_type = ""
    name = ""
    state_source = ""  # the signals its launch configures
    paste_placeholder = re.compile(r"$^")  # how the TUI shows a long paste in its input line

    def executable(self) -> str:
        return settings.ORKIVA_AGENT_CLIS[self.runtime_type]

    def runs_cli(self, argv: list[str]) -> bool:
        """Whether a launch command starts this CLI (then the launch configures it), rather than
        something else run as given (a wrapper script, a stand-in)."""
        return bool(argv) and (argv[0] == self.executable() or os.path.basename(argv[0]) == self.name)

    # --- launch -------------------------------------------------------------------------------------

    def launch(self, place: AgentPlace, *, argv: list[str], prompt: str, env: dict[str, str]) -> Launch:
        raise NotImplementedError

    def sessions_now(self, env: dict[str, str]) -> set[str]:
        """The sessions a TUI of this CLI holds open now, by the CLI's own files (empty if it keeps none):
        a launch compares before and after, when the CLI does not take its session id up front."""
        return set()

    def find_session(self, workdir: str, env: dict[str, str]) -> str:
        """The newest session of this CLI that lives in `workdir`, from the CLI's own files ("" if none):
        how an attached pane's session is found when the operator does not name it."""
        return ""

    # --- wakes without a pane ---------------------------------------------------------------------------

    def resume_argv(self, place: AgentPlace, *, session_id: str, prompt: str) -> list[str]:
        raise NotImplementedError

    def spawn_argv(self, place: AgentPlace, *, prompt: str) -> tuple[list[str], str]:
        """The command, and the new session's id when it is chosen up front."""
        raise NotImplementedError

    def outcome(self, output: str) -> RunOutcome:
        raise NotImplementedError

    # --- the screen ------------------------------------------------------------------------------------

    def screen(self, captured: str) -> Screen:
        """Read the pane (captured with escapes): idle and empty, a draft in the input line, a turn
        running, an approval prompt or a dialog showing, or UNKNOWN (not this CLI's screen)."""
        raise NotImplementedError

    def holds(self, screen: Screen, *, pasted_before: bool) -> bool:
        """Whether the input line holds a prompt the supervisor pasted and the TUI did not take: a wake's
        marker shows there (this wake's or an earlier one's), or, when this wake was pasted before, the
        placeholder the TUI shows for a long paste. Anything else is a human's draft."""
        if screen.state != DRAFT:
            return False
        if WAKE_REF.search(screen.draft):
            return True
        return pasted_before and bool(self.paste_placeholder.fullmatch(normalized(screen.draft)))


def json_line(line: str) -> dict | None:
    """One JSON object of a CLI's JSON-lines output, or None for anything else on the line."""
    line = line.strip()
    if not line.startswith("{"):
        return None
    try:
        value = json.loads(line)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def env_path(env: dict[str, str], name: str) -> str:
    return env.get(name) or os.environ.get(name, "")
