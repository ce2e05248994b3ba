"""Claude Code (2.1, package.json): configured with two files the launch writes under the agent's
runtime directory, and the session id chosen up front.

- `--mcp-config claude-mcp.json`: the Orkiva server over HTTP, `Authorization: Bearer ${ORKIVA_TOKEN}`
  (Claude Code expands the variable from its environment when it connects). It connects its MCP
  servers beside the first turn: a model that finds no Orkiva tools yet has WaitForMcpServers.
- `--settings claude-settings.json`: `permissions.allow: ["mcp__orkiva"]` (without a rule, every
  Orkiva tool call would wait for a human's approval, and `-p` runs deny them and still exit 0),
  and the hooks that report the agent's state through supervisor/hook.py: UserPromptSubmit (a turn
  started), Stop (finished), PermissionRequest and Notification (waiting for approval, idle),
  SessionStart and SessionEnd.
- `--session-id <uuid>`: the session is known before it starts. Claude Code keeps sessions per
  directory (<config>/projects/<cwd with / as ->/<uuid>.jsonl): resume runs in that directory.
- The first-run dialogs are answered in Claude Code's own config file (.claude.json, in
  CLAUDE_CONFIG_DIR or the home directory), as answering them would: the folder is trusted and,
  when the launch's environment carries ANTHROPIC_API_KEY, that key is approved. A user who never
  completed Claude Code's onboarding (a login) is told to run it once by hand."""
from __future__ import annotations

import json
import os
import re
import stat
import uuid
from pathlib import Path

from supervisor.clis.base import (
    APPROVAL, BUSY, DIALOG, DRAFT, IDLE, MCP_SERVER, UNKNOWN, AgentCli, AgentPlace, CliSetupRequired, Launch,
    RunOutcome, Screen, bridge_mcp_url, json_line, env_path, hook_command, plain,
)

STATE_SOURCE = "claude-hooks"
HOOK_EVENTS = ("SessionStart", "UserPromptSubmit", "Stop", "PermissionRequest", "Notification", "SessionEnd")
TOOLS_RULE = f"mcp__{MCP_SERVER}"
_RULE = "─"
_SPINNER = re.compile(r"^\S \S.*… \((?:\d+m )?\d+s\b")  # "✢ Elucidating… (2s · ↓ 3 tokens)"
_APPROVAL = ("Do you want to proceed?", "requires approval", "Do you want to make this edit")
_CHOICE = re.compile(r"\d+\. \S")  # "❯ 1. Yes": the chosen option of a question, not the input box
_DIALOGS = ("Yes, I trust this folder", "Detected a custom API key", "Unable to connect to Anthropic",
            "New MCP server found", "Select login method", "Choose the text style")


def config_file(env: dict[str, str]) -> Path:
    """Claude Code's own config file for the user the agent runs as."""
    config_dir = env_path(env, "CLAUDE_CONFIG_DIR")
    if config_dir:
        return Path(config_dir) / ".claude.json"
    return Path(env_path(env, "HOME") or Path.home()) / ".claude.json"


def preanswer_first_run(env: dict[str, str], workdir: str) -> Path:
    """Trust the folder (and approve the launch's API key) in .claude.json, as the dialogs would.
    Written atomically: a running Claude Code rewrites the same file."""
    path = config_file(env)
    try:
        config = json.loads(path.read_text()) if path.exists() else {}
    except (OSError, ValueError) as exc:
        raise CliSetupRequired(f"Claude Code's config {path} cannot be read ({exc}).") from None
    if not isinstance(config, dict) or not config.get("hasCompletedOnboarding"):
        raise CliSetupRequired(
            f"Claude Code has not been set up for this user ({path} has no completed onboarding): "
            "run `claude` once by hand and log in, then launch again."
        )
    projects = config.setdefault("projects", {})
    responses = config.setdefault("customApiKeyResponses", {"approved": [], "rejected": []})
    if not (isinstance(projects, dict) and isinstance(projects.setdefault(workdir, {}), dict)
            and isinstance(responses, dict) and all(isinstance(responses.setdefault(k, []), list)
                                                     for k in ("approved", "rejected"))):
        raise CliSetupRequired(f"Claude Code's config {path} is not as Claude Code writes it (projects, "
                               "customApiKeyResponses); fix or remove those entries.")
    projects[workdir]["hasTrustDialogAccepted"] = True
    key = env_path(env, "ANTHROPIC_API_KEY")
    tail = key[-20:]  # Claude Code keys its answer by the key's last 20 characters
    if key and tail not in responses["approved"] and tail not in responses["rejected"]:
        responses["approved"].append(tail)
    temporary = path.with_name(f".{path.name}.orkiva-{os.getpid()}")
    temporary.write_text(json.dumps(config, indent=2))
    if path.exists():
        os.chmod(temporary, stat.S_IMODE(path.stat().st_mode))  # the user's own mode stays
    os.replace(temporary, path)
    return path


def write_files(place: AgentPlace, *, hooks: bool) -> tuple[Path, Path]:
    place.runtime_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    mcp = place.runtime_dir / "claude-mcp.json"
    mcp.write_text(json.dumps({"mcpServers": {MCP_SERVER: {
        "type": "http", "url": bridge_mcp_url(), "headers": {"Authorization": "Bearer ${ORKIVA_TOKEN}"}}}}, indent=2))
    settings_file = place.runtime_dir / ("claude-settings.json" if hooks else "claude-settings-run.json")
    body: dict = {"permissions": {"allow": [TOOLS_RULE]}}
    if hooks:
        body["hooks"] = {event: [{"hooks": [{"type": "command", "command": hook_command("claude"), "timeout": 10}]}]
                         for event in HOOK_EVENTS}
    settings_file.write_text(json.dumps(body, indent=2))
    return mcp, settings_file


class Claude(AgentCli):
    runtime_type = "claude"
    name = "claude"
    state_source = STATE_SOURCE
    paste_placeholder = re.compile(r"\[Pasted text #\d+(?: \+\d+ lines)?\]")

    def launch(self, place: AgentPlace, *, argv: list[str], prompt: str, env: dict[str, str]) -> Launch:
        config = preanswer_first_run(env, place.workdir)
        mcp, settings_file = write_files(place, hooks=True)
        session_id = str(uuid.uuid4())
        args = [*argv, "--mcp-config", str(mcp), "--settings", str(settings_file), "--session-id", session_id]
        if prompt:
            args += ["--", prompt]
        return Launch(argv=args, session_id=session_id, state_source=STATE_SOURCE,
                      wrote=[str(config), str(mcp), str(settings_file)])

    def find_session(self, workdir: str, env: dict[str, str]) -> str:
        # Transcripts: <config dir>/projects/<the cwd, each character not a letter or digit as ->/<id>.jsonl
        base = Path(env_path(env, "CLAUDE_CONFIG_DIR") or Path(env_path(env, "HOME") or Path.home()) / ".claude")
        folder = base / "projects" / re.sub(r"[^a-zA-Z0-9]", "-", workdir)
        transcripts = [(p.stat().st_mtime, p.stem) for p in folder.glob("*.jsonl") if p.is_file()]
        return max(transcripts)[1] if transcripts else ""

    def _print(self, place: AgentPlace) -> list[str]:
        # stream-json's first line says whether the MCP server connected; the result line lists
        # the permission denials. No hooks: the run is not the agent's terminal.
        mcp, settings_file = write_files(place, hooks=False)
        return [self.executable(), "-p", "--output-format", "stream-json", "--verbose",
                "--mcp-config", str(mcp), "--settings", str(settings_file)]

    def resume_argv(self, place: AgentPlace, *, session_id: str, prompt: str) -> list[str]:
        return [*self._print(place), "--resume", session_id, "--", prompt]

    def spawn_argv(self, place: AgentPlace, *, prompt: str) -> tuple[list[str], str]:
        session_id = str(uuid.uuid4())
        return [*self._print(place), "--session-id", session_id, "--", prompt], session_id

    def outcome(self, output: str) -> RunOutcome:
        result = RunOutcome()
        prefix = f"{TOOLS_RULE}__"
        names: dict[str, str] = {}
        denied_all = False
        for line in output.splitlines():
            event = json_line(line)
            if event is None:
                continue
            kind = event.get("type")
            if isinstance(event.get("session_id"), str):
                result.session_id = result.session_id or event["session_id"]
            if kind == "system" and event.get("subtype") == "init":
                servers = {s.get("name"): s.get("status") for s in event.get("mcp_servers") or [] if isinstance(s, dict)}
                result.mcp_unavailable = servers.get(MCP_SERVER) != "connected"
                offered = [t for t in event.get("tools") or [] if isinstance(t, str) and t.startswith(prefix)]
                if not result.mcp_unavailable and not offered:
                    denied_all = True  # connected, yet none offered: a permission rule denies them all
            for block in _blocks(event):
                if block.get("type") == "tool_use" and str(block.get("name", "")).startswith(prefix):
                    names[block.get("id", "")] = block["name"][len(prefix):]
                elif block.get("type") == "tool_result" and block.get("tool_use_id") in names:
                    tool = names[block["tool_use_id"]]
                    (result.tools_failed if block.get("is_error") else result.tools_called).append(tool)
            if kind == "result":
                result.tools_refused = [str(d.get("tool_name"))[len(prefix):] for d in event.get("permission_denials") or []
                                        if isinstance(d, dict) and str(d.get("tool_name", "")).startswith(prefix)]
        if denied_all and not result.tools_refused:
            result.tools_refused = ["*"]
        # a refused call also comes back as an error result: count it once, as refused
        result.tools_failed = [t for t in result.tools_failed if t not in result.tools_refused]
        return result

    def screen(self, captured: str) -> Screen:
        lines = [plain(line) for line in captured.splitlines()]
        text = "\n".join(lines)
        rules = [i for i, line in enumerate(lines) if len(line.strip()) >= 40 and set(line.strip()) == {_RULE}]
        if len(rules) >= 2 and rules[-1] - rules[-2] >= 2:
            top, bottom = rules[-2], rules[-1]
            box = lines[top + 1:bottom]
            if box[0].startswith("❯") and not _CHOICE.match(box[0][1:].lstrip("\u00a0 ")):
                footer = " ".join(line.strip() for line in lines[bottom + 1:] if line.strip())
                busy = "esc to interrupt" in footer or any(_SPINNER.search(line) for line in lines[max(0, top - 8):top])
                draft = "\n".join([box[0][1:].lstrip("\u00a0 ")] + [line[2:] if line.startswith("  ") else line
                                                                      for line in box[1:]]).rstrip()
                above = "\n".join(lines[:top])
                if "Press up to edit queued messages" in draft or busy:
                    return Screen(BUSY, evidence="spinner" if busy else "queued input", above=above)
                if draft.strip():
                    return Screen(DRAFT, draft=draft, evidence="input box holds text", above=above)
                return Screen(IDLE, evidence="empty input box", above=above)
        for marker in _APPROVAL:
            if marker in text:
                return Screen(APPROVAL, evidence=marker)
        for marker in _DIALOGS:
            if marker in text:
                return Screen(DIALOG, evidence=marker)
        return Screen(UNKNOWN, evidence="no input box")


def _blocks(event: dict) -> list[dict]:
    message = event.get("message")
    content = message.get("content") if isinstance(message, dict) else None
    return [b for b in content if isinstance(b, dict)] if isinstance(content, list) else []


CLAUDE = Claude()
