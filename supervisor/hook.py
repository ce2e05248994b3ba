#!/usr/bin/env python3
"""Reports what an agent CLI is doing to the Orkiva bridge, so the supervisor knows when the agent is
busy, idle or waiting for an approval, and which session it runs. A launch configures the CLI to
run it (docs/supervisor.md, "The agent's state"):

    hook.py claude              Claude Code's hooks: the event's JSON on stdin
    hook.py codex-notify JSON   Codex CLI's `notify`: the payload as the last argument

It posts {event, session_id, workdir, wake_ref} to $ORKIVA_URL/v1/runtimes/events with the agent's
own token ($ORKIVA_TOKEN), which the launch put in the CLI's environment. Standard library only, so
it starts fast. It never gets in the CLI's way: whatever happens it prints nothing (Claude Code adds
a UserPromptSubmit hook's output to the prompt) and exits 0; problems go to stderr.
"""
from __future__ import annotations

import json
import os
import re
import sys
import urllib.error
import urllib.request

# The version of the events this hook sends (orkiva.versioning.EVENT_VERSION; this file imports
# nothing of the bridge: the CLIs run it isolated).
EVENT_VERSION = 1

# The marker every wake prompt carries (ORKIVA_WAKE_PROMPT's {wake_ref}): the turn it starts is the wake's.
WAKE_REF = re.compile(r"\b(w-[0-9a-f]{12})\b")
# Codex's TUI asks the model for a session title beside the first turn, and `notify` reports that too.
CODEX_TITLE_REQUEST = "Generate a concise, single-line task title"
TIMEOUT_SECONDS = 3


def claude_event(payload: dict) -> dict | None:
    name = payload.get("hook_event_name")
    event = {
        "SessionStart": "session_started",
        "UserPromptSubmit": "turn_started",
        "Stop": "turn_completed",
        "PermissionRequest": "approval_pending",
        "SessionEnd": "session_ended",
    }.get(name)
    if name == "Notification":
        event = {"permission_prompt": "approval_pending", "idle_prompt": "idle"}.get(payload.get("notification_type"))
    if event is None:
        return None
    found = WAKE_REF.search(payload.get("prompt") or "") if event == "turn_started" else None
    return {"event": event, "session_id": payload.get("session_id") or "", "workdir": payload.get("cwd") or "",
            "wake_ref": found.group(1) if found else "", "event_version": EVENT_VERSION}


def codex_event(payload: dict) -> dict | None:
    if payload.get("type") != "agent-turn-complete":
        return None
    messages = payload.get("input-messages") or []
    if messages and isinstance(messages[-1], str) and messages[-1].startswith(CODEX_TITLE_REQUEST):
        return None
    return {"event": "turn_completed", "session_id": payload.get("thread-id") or "",
            "workdir": payload.get("cwd") or "", "wake_ref": "", "event_version": EVENT_VERSION}


def report(event: dict) -> None:
    url, token = os.environ.get("ORKIVA_URL"), os.environ.get("ORKIVA_TOKEN")
    if not url or not token:
        print("orkiva hook: ORKIVA_URL or ORKIVA_TOKEN is not set; nothing reported", file=sys.stderr)
        return
    request = urllib.request.Request(
        url.rstrip("/") + "/v1/runtimes/events", data=json.dumps(event).encode(), method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS):
            pass
    except urllib.error.HTTPError as exc:
        print(f"orkiva hook: the bridge answered {exc.code} to {event['event']}", file=sys.stderr)
    except (OSError, ValueError) as exc:
        print(f"orkiva hook: could not reach the bridge: {exc}", file=sys.stderr)


def main(argv: list[str]) -> int:
    kind = argv[1] if len(argv) > 1 else ""
    try:
        if kind == "claude":
            payload = json.loads(sys.stdin.read() or "{}")
            event = claude_event(payload) if isinstance(payload, dict) else None
        elif kind == "codex-notify":
            payload = json.loads(argv[-1]) if len(argv) > 2 else {}
            event = codex_event(payload) if isinstance(payload, dict) else None
        else:
            print(f"orkiva hook: unknown kind {kind!r} (claude, codex-notify)", file=sys.stderr)
            return 0
    except ValueError as exc:
        print(f"orkiva hook: the event is not JSON: {exc}", file=sys.stderr)
        return 0
    if event is not None:
        report(event)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
