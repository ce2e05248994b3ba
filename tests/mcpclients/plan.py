"""One plan of tool calls, made by every MCP client the tests drive (the Python SDK, the TypeScript
SDK 1.x, the Inspector CLI): each of the ten tools once as it succeeds and once as it fails, and a
tool that does not exist. What each call must come back as is stated beside it."""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

NO_SUCH_THREAD = "00000000-0000-4000-8000-000000000000"


@dataclass(frozen=True)
class Call:
    tool: str
    arguments: dict[str, Any]
    error: str | None = None  # the stable code of the expected error result; None: a success
    protocol_error: int | None = None  # a JSON-RPC error instead of a result

    def json(self) -> dict[str, Any]:
        return {"tool": self.tool, "arguments": self.arguments}


def plan(thread_id: str, *, me: str, other: str) -> list[Call]:
    """For a caller `me` (a coordinator) taking part in the open thread `thread_id` with `other`."""
    tid = thread_id
    return [
        Call("create_thread", {"title": "Review the parser", "type": "review", "participants": [me, other]}),
        Call("create_thread", {"title": "Review", "type": "Not A Slug", "participants": [other]},
             error="validation_error"),
        Call("get_thread", {"thread_id": tid}),
        Call("get_thread", {"thread_id": NO_SUCH_THREAD}, error="thread_not_found"),
        Call("update_thread_status", {"thread_id": tid, "status": "active"}),
        Call("update_thread_status", {"thread_id": tid, "status": "active"}, error="invalid_transition"),
        Call("post_message", {"thread_id": tid, "body": "The parser drops tabs.", "kind": "finding",
                              "idempotency_key": uuid.uuid4().hex}),
        Call("post_message", {"thread_id": tid, "body": "Fixed.", "kind": "fix", "in_reply_to": 999},
             error="invalid_reply_target"),
        Call("read_messages", {"thread_id": tid, "after_seq": 0}),
        Call("read_messages", {"thread_id": NO_SUCH_THREAD}, error="thread_not_found"),
        Call("wait_for_messages", {"thread_id": tid, "after_seq": 0, "timeout_seconds": 0}),
        Call("wait_for_messages", {"thread_id": NO_SUCH_THREAD, "timeout_seconds": 0}, error="thread_not_found"),
        Call("ack_read", {"thread_id": tid, "seq": 1}),
        Call("ack_read", {"thread_id": tid, "seq": 999}, error="seq_out_of_range"),
        Call("summarize_thread", {"thread_id": tid}),
        Call("summarize_thread", {"thread_id": NO_SUCH_THREAD}, error="thread_not_found"),
        Call("heartbeat_session", {"session_id": "session-1", "runtime_type": "codex"}),
        Call("heartbeat_session", {"session_id": "session-1", "agent_id": "somebody-else"}, error="claim_mismatch"),
        Call("trigger_participant", {"thread_id": tid, "agent_id": other, "reason": "Please review."}),
        Call("trigger_participant", {"thread_id": tid, "agent_id": "a-stranger"}, error="agent_not_in_thread"),
        Call("delete_everything", {}, protocol_error=-32602),
    ]
