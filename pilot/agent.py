"""A scripted agent for the pilot (docs/pilot.md): it speaks MCP to a live bridge over HTTP the
way a real Codex or Claude Code session does, so the whole loop can run with no model and no
human relaying a message.

    python -m pilot.agent executioner --thread THREAD_ID
    python -m pilot.agent reviewer --thread THREAD_ID [--once] [--stubborn N]

Identity comes from the environment the supervisor gives a launched or woken agent:
ORKIVA_URL, ORKIVA_TOKEN, ORKIVA_SESSION_ID (optional). It never imports Django: it is a client.

- The executioner heartbeats, posts its work (retrying the post with the same idempotency key,
  as an agent whose connection dropped would), then waits with `wait_for_messages` and answers
  every finding with a `fix` in reply, acking what it has read, until the thread is resolved.
  While the thread is blocked it waits for an operator.
- The reviewer reviews the work (two findings), then goes dormant: it reads its terminal and
  does nothing until a line arrives (the supervisor's wake prompt). Woken, it heartbeats (the
  wake's ack), re-reviews from the thread summary, resolves each fixed finding and marks the
  thread resolved. `--once` does one pass and exits (how `codex exec resume` or a fresh spawn
  runs it). `--stubborn N` repeats its first finding N times instead of accepting the fixes,
  then resolves: the loop the policy stops (three identical findings block the thread).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

import anyio
import httpx2
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

FINDINGS = ("Null dereference in parse() when the header is empty.", "The retry loop never backs off.")
WORK = "Work ready for review: parser change (PR #12)."


class ToolFailed(Exception):
    def __init__(self, tool: str, body: dict[str, Any]):
        error = (body or {}).get("error") or {}
        self.code = error.get("code", "unknown")
        super().__init__(f"{tool}: {self.code}: {error.get('message', body)}")


def say(text: str) -> None:
    """What the agent prints in its pane (an operator attached to it reads along)."""
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


class Bridge:
    """One MCP client session to the bridge; `call` returns a tool's structured result."""

    def __init__(self, session: ClientSession):
        self.session = session

    async def call(self, tool: str, **arguments: Any) -> dict[str, Any]:
        result = await self.session.call_tool(tool, {k: v for k, v in arguments.items() if v is not None})
        body = result.structured_content
        if body is None and result.content:  # a server without structured content: the JSON text
            body = json.loads(result.content[0].text)
        if result.is_error:
            raise ToolFailed(tool, body or {})
        return body or {}


async def connect(run, *, base_url: str | None = None, token: str | None = None) -> None:
    """Open an MCP session to the bridge (ORKIVA_URL, ORKIVA_TOKEN unless given) and `run` in it."""
    url = (base_url or os.environ["ORKIVA_URL"]).rstrip("/") + "/v1/mcp"
    headers = {"Authorization": f"Bearer {token or os.environ['ORKIVA_TOKEN']}"}
    async with httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(120.0)) as http:
        async with streamable_http_client(url, http_client=http) as (read, write, *_):
            async with ClientSession(read, write) as session:
                await session.initialize()
                await run(Bridge(session))


async def heartbeat(bridge: Bridge) -> None:
    session_id = os.environ.get("ORKIVA_SESSION_ID") or "pilot"
    await bridge.call("heartbeat_session", session_id=session_id, runtime_type="codex", resumable=True)


async def post(bridge: Bridge, thread_id: str, body: str, *, kind: str, key: str, in_reply_to: int | None = None):
    """Post with an idempotency key, and retry it once as a client whose answer was lost would."""
    first = await bridge.call("post_message", thread_id=thread_id, body=body, kind=kind, in_reply_to=in_reply_to,
                              idempotency_key=key)
    again = await bridge.call("post_message", thread_id=thread_id, body=body, kind=kind, in_reply_to=in_reply_to,
                              idempotency_key=key)
    assert again["seq"] == first["seq"] and again["idempotent_replay"], "a retried key must replay"
    return first


# --- the executioner ------------------------------------------------------------------------------
async def executioner(bridge: Bridge, thread_id: str, fix_delay: float, wait_seconds: float) -> None:
    await heartbeat(bridge)
    work = await post(bridge, thread_id, WORK, kind="message", key="work-1")
    say(f"posted the work as seq {work['seq']}")
    seen, fixed = work["seq"], set()
    while True:
        # A resolution (or an operator's move) is a status message: it ends the wait too.
        page = await bridge.call("wait_for_messages", thread_id=thread_id, after_seq=seen, timeout_seconds=wait_seconds)
        await heartbeat(bridge)
        if page["messages"]:
            seen = page["messages"][-1]["seq"]
            await bridge.call("ack_read", thread_id=thread_id, seq=seen)
        summary = await bridge.call("summarize_thread", thread_id=thread_id)
        if summary["status"] in ("resolved", "closed"):
            say(f"thread is {summary['status']}: done")
            return
        if summary["status"] == "blocked":
            say("thread blocked: waiting for an operator")
            continue
        todo = [i for i in summary["open_items"] if i["kind"] == "finding" and i["state"] == "open"
                and i["seq"] not in fixed]
        if not todo:
            continue
        await anyio.sleep(fix_delay)  # the work a real agent does between reading and answering
        for finding in todo:
            try:
                fix = await post(bridge, thread_id, f"Fixed: {finding['excerpt']}", kind="fix",
                                 key=f"fix-{finding['seq']}", in_reply_to=finding["seq"])
            except ToolFailed as exc:
                if exc.code != "thread_blocked":
                    raise
                say("thread blocked: waiting for an operator")
                break
            fixed.add(finding["seq"])
            seen = max(seen, fix["seq"])
            say(f"fixed seq {finding['seq']} in seq {fix['seq']}")


# --- the reviewer ---------------------------------------------------------------------------------
class Reviewer:
    def __init__(self, bridge: Bridge, thread_id: str, me: str, stubborn: int, wait_seconds: float):
        self.bridge, self.thread_id, self.me = bridge, thread_id, me
        self.repeats_left, self.wait_seconds = stubborn, wait_seconds

    async def review_pass(self) -> None:
        """Review the work once, or re-review the fixes: resolve what was fixed, wait a little for
        fixes still missing, mark the thread resolved when none of this reviewer's findings is open."""
        bridge, thread_id = self.bridge, self.thread_id
        await heartbeat(bridge)
        page = await bridge.call("read_messages", thread_id=thread_id, limit=200)
        seen = page["last_seq"]
        if page["messages"]:
            await bridge.call("ack_read", thread_id=thread_id, seq=page["messages"][-1]["seq"])
        summary = await bridge.call("summarize_thread", thread_id=thread_id)
        if summary["status"] in ("resolved", "closed", "blocked"):
            say(f"thread is {summary['status']}: nothing to do")
            return
        if summary["counts"]["by_kind"].get("finding", 0) == 0:
            history = await bridge.call("read_messages", thread_id=thread_id, after_seq=0, limit=200)
            if not any(m["kind"] == "message" and m["sender"] != self.me for m in history["messages"]):
                say("no work to review yet")
                return
            for n, text in enumerate(FINDINGS, start=1):
                finding = await post(bridge, thread_id, text, kind="finding", key=f"finding-{n}")
                say(f"finding seq {finding['seq']}")
            return
        while True:
            mine = [i for i in summary["open_items"] if i["sender"] == self.me and i["kind"] == "finding"]
            addressed = [i for i in mine if i["state"] == "addressed"]
            if addressed and self.repeats_left > 0:
                # The loop the policy must stop: the same finding again instead of accepting the fix.
                self.repeats_left -= 1
                repeat = await bridge.call("post_message", thread_id=thread_id, body=FINDINGS[0], kind="finding")
                say(f"repeated the first finding as seq {repeat['seq']}")
                return
            for item in addressed:
                done = await post(bridge, thread_id, "Verified the fix.", kind="resolution",
                                  key=f"resolve-{item['seq']}", in_reply_to=item["seq"])
                say(f"resolved seq {item['seq']} in seq {done['seq']}")
            if len(addressed) == len(mine):
                await bridge.call("update_thread_status", thread_id=thread_id, status="resolved",
                                  reason="All findings fixed and verified.")
                say("thread resolved")
                return
            # Some findings are not fixed yet: wait for the fixes rather than polling.
            page = await bridge.call("wait_for_messages", thread_id=thread_id, after_seq=seen,
                                     timeout_seconds=self.wait_seconds)
            if not page["messages"]:
                say("fixes still missing: going dormant")
                return
            seen = page["messages"][-1]["seq"]
            await bridge.call("ack_read", thread_id=thread_id, seq=seen)
            summary = await bridge.call("summarize_thread", thread_id=thread_id)

    async def dormant(self) -> None:
        """Idle until a line arrives on the terminal: the supervisor's wake prompt."""
        while True:
            say("dormant: waiting for a wake")
            line = await anyio.to_thread.run_sync(sys.stdin.readline)
            if not line:
                return
            say(f"woken: {line.strip()[:160]}")
            await self.review_pass()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pilot.agent", description=__doc__.split("\n\n")[0])
    parser.add_argument("role", choices=["executioner", "reviewer"])
    parser.add_argument("--thread", required=True)
    parser.add_argument("--agent-id", default=os.environ.get("ORKIVA_AGENT_ID", ""))
    parser.add_argument("--once", action="store_true", help="Reviewer: one pass, then exit.")
    parser.add_argument("--stubborn", type=int, default=0, help="Reviewer: repeat its first finding N times.")
    parser.add_argument("--fix-delay", type=float, default=float(os.environ.get("PILOT_FIX_DELAY", "0")))
    parser.add_argument("--wait-seconds", type=float, default=20.0)
    args = parser.parse_args(argv)

    async def run(bridge: Bridge) -> None:
        if args.role == "executioner":
            await executioner(bridge, args.thread, args.fix_delay, args.wait_seconds)
            return
        reviewer = Reviewer(bridge, args.thread, args.agent_id or "reviewer", args.stubborn, args.wait_seconds)
        await reviewer.review_pass()
        if not args.once:
            await reviewer.dormant()

    say(f"{args.role} starting on thread {args.thread}")
    anyio.run(connect, run)
    return 0


if __name__ == "__main__":
    sys.exit(main())
