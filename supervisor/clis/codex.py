"""The Codex CLI (0.171, package.json): configured entirely through `-c key=value` overrides, so a
launch edits none of the user's files. Any `-c` also makes the TUI run without Codex's shared
background server, which would otherwise read the MCP token from its own environment.

- MCP: `mcp_servers.orkiva` over streamable HTTP, the bearer token read from ORKIVA_TOKEN at start-up,
  Orkiva's tools approved (`default_tools_approval_mode`); `required` for exec runs, which then exit 1
  when the server refuses the token instead of dropping it in silence.
- The folder trusted: `projects={"<workdir>"={trust_level="trusted"}}` (a dotted key with a quoted
  path is not honoured by -c; the inline table is).
- State: `notify` runs supervisor/hook.py after every turn (`agent-turn-complete`, with the
  session's id as `thread-id`).
- Prompts are pasted (bracketed): typed text followed at once by Enter is taken for a paste and the
  Enter for a newline."""
from __future__ import annotations

import json
import re
from pathlib import Path

from django.conf import settings

from supervisor.clis.base import (
    APPROVAL, BUSY, DIALOG, DRAFT, IDLE, MCP_SERVER, UNKNOWN, AgentCli, AgentPlace, Launch, RunOutcome, Screen,
    bridge_mcp_url, env_path, hook_argv, json_line, plain,
)

STATE_SOURCE = "codex-notify"
_APPROVAL = ("MCP server to run tool", "enter to submit | esc to cancel", "Would you like to run the following")
_DIALOGS = ("Trust this folder?", "Hooks need review", "Sign in with ChatGPT", "Welcome to Codex",
            "Press enter to continue")
_BUSY = ("esc to interrupt", "tab to queue message")
_MCP_DOWN = re.compile(r"required MCP servers failed to initialize|MCP client for `" + MCP_SERVER + "` failed")


def _toml(value) -> str:
    """A TOML value for -c: JSON strings (non-ASCII as is: TOML has no surrogate escapes), numbers,
    booleans and arrays are valid TOML."""
    return json.dumps(value, ensure_ascii=False)


def mcp_overrides(*, required: bool) -> list[str]:
    server = f"mcp_servers.{MCP_SERVER}"
    pairs = [
        ("url", bridge_mcp_url()),
        ("bearer_token_env_var", "ORKIVA_TOKEN"),
        ("default_tools_approval_mode", "approve"),
        # wait_for_messages may block for the server's longest wait: let it
        ("tool_timeout_sec", int(settings.ORKIVA_MCP_WAIT_MAX_SECONDS) + 30),
    ] + ([("required", True)] if required else [])
    args: list[str] = []
    for key, value in pairs:
        args += ["-c", f"{server}.{key}={_toml(value)}"]
    return args


class Codex(AgentCli):
    runtime_type = "codex"
    name = "codex"
    state_source = STATE_SOURCE
    paste_placeholder = re.compile(r"\[Pasted Content \d+ chars\]")

    def launch(self, place: AgentPlace, *, argv: list[str], prompt: str, env: dict[str, str]) -> Launch:
        trust = "{" + _toml(place.workdir) + "={trust_level=\"trusted\"}}"
        args = [*argv, *mcp_overrides(required=False), "-c", f"projects={trust}",
                "-c", f"notify={_toml(hook_argv('codex-notify'))}"]
        if prompt:
            args += ["--", prompt]
        return Launch(argv=args, state_source=STATE_SOURCE)

    def sessions_now(self, env: dict[str, str]) -> set[str]:
        # A TUI writes $CODEX_HOME/thread-writer-locks/<session id>.lock when it starts (its rollout
        # only at the first turn).
        locks = _codex_home(env) / "thread-writer-locks"
        return {p.stem for p in locks.glob("*.lock") if not p.name.startswith(".")}

    def find_session(self, workdir: str, env: dict[str, str]) -> str:
        # Rollouts: $CODEX_HOME/sessions/YYYY/MM/DD/rollout-<time>-<id>.jsonl, first line session_meta
        # with the id and cwd (written at the session's first turn).
        newest, newest_at = "", 0.0
        for path in (_codex_home(env) / "sessions").glob("*/*/*/rollout-*.jsonl"):
            try:
                with path.open() as handle:
                    meta = json_line(handle.readline()) or {}
                at = path.stat().st_mtime
            except OSError:
                continue
            payload = meta.get("payload") if isinstance(meta.get("payload"), dict) else {}
            if meta.get("type") == "session_meta" and payload.get("cwd") == workdir and at > newest_at:
                newest, newest_at = str(payload.get("id") or ""), at
        return newest

    def _exec(self) -> list[str]:
        # Outside a git repository exec refuses to run unless told; --json gives the session id
        # (thread.started) and each MCP tool call's outcome.
        return [self.executable(), "exec", "--skip-git-repo-check", "--json", *mcp_overrides(required=True)]

    def resume_argv(self, place: AgentPlace, *, session_id: str, prompt: str) -> list[str]:
        return [*self._exec(), "resume", session_id, "--", prompt]

    def spawn_argv(self, place: AgentPlace, *, prompt: str) -> tuple[list[str], str]:
        return [*self._exec(), "--", prompt], ""

    def outcome(self, output: str) -> RunOutcome:
        result = RunOutcome(mcp_unavailable=bool(_MCP_DOWN.search(output)))
        for line in output.splitlines():
            event = json_line(line)
            if event is None:
                continue
            if event.get("type") == "thread.started" and isinstance(event.get("thread_id"), str):
                result.session_id = result.session_id or event["thread_id"]
            item = event.get("item") if event.get("type") == "item.completed" else None
            if isinstance(item, dict) and item.get("type") == "mcp_tool_call" and item.get("server") == MCP_SERVER:
                tool = str(item.get("tool"))
                (result.tools_called if item.get("status") == "completed" else result.tools_failed).append(tool)
        return result

    def screen(self, captured: str) -> Screen:
        # Only the TUI's own lines are read: the input line (the last one starting with the `›` glyph),
        # the status line just above it, the footer below. Text the conversation shows is not looked at.
        lines = captured.splitlines()
        plains = [plain(line) for line in lines]
        start = max((i for i, line in enumerate(plains) if line.startswith("› ")), default=None)
        # A question (an approval, a first-run dialog) takes the input's place; the same glyph marks
        # its chosen option, indented: `  › 1. Allow`.
        choice = max((i for i, line in enumerate(plains) if _CHOICE.match(line)), default=None)
        if choice is not None and (start is None or choice >= start):
            region = "\n".join(plains[max(0, choice - 15):])
            marker = next((m for m in _APPROVAL if m in region), None)
            return Screen(APPROVAL, evidence=marker) if marker else Screen(DIALOG, evidence=plains[choice].strip()[:60])
        if start is None:
            marker = next((m for m in _DIALOGS if m in "\n".join(plains)), None)
            return Screen(DIALOG, evidence=marker) if marker else Screen(UNKNOWN, evidence="no input line")
        first = plains[start][2:].strip()
        near = "\n".join(plains[max(0, start - 4):start] + plains[start + 1:])
        marker = next((m for m in _BUSY if m in near), None)
        above = "\n".join(plains[:start])
        if marker:
            return Screen(BUSY, evidence=marker, above=above)
        after = lines[start].split("›", 1)[1]
        if not first:
            return Screen(IDLE, evidence="empty input line", above=above)
        if _drawn_dim(after):
            return Screen(IDLE, evidence=f"placeholder: {first[:40]}", above=above)
        body = [first] + [plain(line).strip() for line in _continuation(lines[start + 1:])]
        return Screen(DRAFT, draft="\n".join(body), evidence="input line holds text", above=above)


_CHOICE = re.compile(r"\s*› \d+\. \S")
_LEAD = re.compile(r"(?:\x1b\[[0-9;?]*[A-Za-z]|\s)*")
_SGR = re.compile(r"\x1b\[([0-9;]*)m")


def _drawn_dim(text: str) -> bool:
    """Whether the first visible character of `text` is drawn dim (SGR 2): Codex's placeholder."""
    lead = _LEAD.match(text).group(0)
    dim = False
    for params in _SGR.findall(lead):
        for param in (params or "0").split(";"):
            if param in ("0", "22"):
                dim = False
            elif param == "2":
                dim = True
    return dim


def _codex_home(env: dict[str, str]) -> Path:
    return Path(env_path(env, "CODEX_HOME") or Path(env_path(env, "HOME") or Path.home()) / ".codex")


def _continuation(lines: list[str]) -> list[str]:
    """The input's further lines: indented, up to the blank line above the status line."""
    out = []
    for line in lines:
        if not plain(line).strip() or not plain(line).startswith("  "):
            break
        out.append(line)
    return out


CODEX = Codex()
