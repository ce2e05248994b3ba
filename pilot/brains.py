"""The pilot's model, scripted per role: what a fake model (pilot.fakemodel) answers at each step of
a turn, decided from the turn's prompt and the tool results so far, as a real model would act on
the wake prompt. Every decision re-reads the thread, so a turn started by any prompt naming the
thread (the launch's first prompt, a wake typed into the pane, a resume, a spawn with the summary)
does the right next thing, and a repeated post carries the same idempotency key.

- executioner: posts its work once; answers every open finding with a `fix` in reply to it.
- reviewer: reviews posted work with two findings; resolves each addressed finding; once all of
  its findings are resolved, marks the thread resolved.
Both then ack what they read and end the turn."""
from __future__ import annotations

import functools
import re
import time
from typing import Any

from pilot.fakemodel import Call, Say, Turn

THREAD = re.compile(r"\b([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\b", re.IGNORECASE)
WORK = "Work ready for review: parser change (PR #12)."
FINDINGS = ("Null dereference in parse() when the header is empty.", "The retry loop never backs off.")
ORKIVA_TOOLS = {"read_messages", "post_message", "ack_read"}
WAIT_FOR_MCP = "WaitForMcpServers"


def _thread_of(turn: Turn) -> str | None:
    match = THREAD.search(turn.prompt)
    return match.group(1).lower() if match else None


def _messages(turn: Turn) -> list[dict[str, Any]] | None:
    """The thread as this turn last read it, with what the turn posted since."""
    read = next((i for i in range(len(turn.results) - 1, -1, -1) if turn.results[i].name == "read_messages"
                 and not turn.results[i].is_error), None)
    if read is None:
        return None
    page = turn.results[read].output
    messages = list(page.get("messages", [])) if isinstance(page, dict) else []
    for result in turn.results[read + 1:]:
        if result.name == "post_message" and isinstance(result.output, dict) and "seq" in result.output:
            messages.append(result.output)
    return messages


def _settled(messages: list[dict[str, Any]], kind: str, sender: str) -> set[int]:
    """Seqs answered by `sender` with messages of `kind` (fixes, resolutions)."""
    return {m["in_reply_to"] for m in messages if m.get("kind") == kind and m.get("sender") == sender
            and m.get("in_reply_to")}


def _post(thread: str, body: str, kind: str = "message", in_reply_to: int | None = None, key: str = "") -> Call:
    args: dict[str, Any] = {"thread_id": thread, "body": body, "kind": kind, "idempotency_key": key}
    if in_reply_to:
        args["in_reply_to"] = in_reply_to
    return Call("post_message", args)


def _finish(turn: Turn, thread: str, messages: list[dict[str, Any]], done: str) -> Call | Say:
    if not turn.called("ack_read"):
        return Call("ack_read", {"thread_id": thread, "seq": max((m.get("seq", 0) for m in messages), default=0)})
    return Say(done)


def _start(turn: Turn) -> tuple[str | None, Call | Say | None]:
    thread = _thread_of(turn)
    if thread is None:
        return None, Say("No Orkiva thread is named in the prompt; nothing to do.")
    if not ORKIVA_TOOLS <= turn.tools:
        # Claude Code connects MCP servers beside the first turn, and offers a tool to wait for them
        if WAIT_FOR_MCP in turn.tools and not turn.called(WAIT_FOR_MCP):
            return None, Call(WAIT_FOR_MCP, {"servers": ["orkiva"]}, mcp=False)
        return None, Say("The Orkiva tools are not available to me, so I cannot read the thread.")
    if _messages(turn) is None:
        return thread, Call("read_messages", {"thread_id": thread, "after_seq": 0, "limit": 200})
    return thread, None


def executioner(turn: Turn, *, fix_seconds: float = 0) -> Call | Say:
    """`fix_seconds`: how long the model works before its turn's first fix (the TUI shows a turn running)."""
    thread, step = _start(turn)
    if step is not None:
        return step
    messages = _messages(turn) or []
    mine = [m for m in messages if m.get("sender") == "executioner"]
    if not any(m.get("kind") == "message" for m in mine):
        return _post(thread, WORK, key="work")
    fixed = _settled(messages, "fix", "executioner")
    for finding in messages:
        if finding.get("kind") == "finding" and finding.get("item_state") == "open" and finding["seq"] not in fixed:
            if fix_seconds and not turn.called("post_message"):
                time.sleep(fix_seconds)
            return _post(thread, f"Fixed: {finding['body']}", "fix", finding["seq"], key=f"fix-{finding['seq']}")
    return _finish(turn, thread, messages, "Work posted; every open finding has a fix.")


def reviewer(turn: Turn) -> Call | Say:
    thread, step = _start(turn)
    if step is not None:
        return step
    messages = _messages(turn) or []
    work = [m for m in messages if m.get("sender") == "executioner" and m.get("kind") == "message"]
    findings = [m for m in messages if m.get("sender") == "reviewer" and m.get("kind") == "finding"]
    if work and not findings:
        return _post(thread, FINDINGS[0], "finding", key="finding-1")
    if work and len(findings) < len(FINDINGS):
        return _post(thread, FINDINGS[len(findings)], "finding", key=f"finding-{len(findings) + 1}")
    resolved = _settled(messages, "resolution", "reviewer")
    fixed = _settled(messages, "fix", "executioner")
    for finding in findings:
        if finding["seq"] in fixed and finding["seq"] not in resolved:
            return _post(thread, f"Verified the fix for #{finding['seq']}.", "resolution", finding["seq"],
                         key=f"resolution-{finding['seq']}")
    if findings and all(f["seq"] in resolved for f in findings) and not turn.called("update_thread_status"):
        return Call("update_thread_status", {"thread_id": thread, "status": "resolved",
                                             "reason": "Every finding is fixed and verified."})
    return _finish(turn, thread, messages, "Review done." if findings else "Nothing to review yet.")


def working_executioner(fix_seconds: float):
    """The executioner, taking `fix_seconds` over its fixes."""
    return functools.partial(executioner, fix_seconds=fix_seconds)


ROLES = {"executioner": executioner, "reviewer": reviewer}
