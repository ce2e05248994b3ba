"""The MCP tools' output schemas: the JSON the presenters return (the REST bodies), as pydantic
models the SDK publishes as each tool's `outputSchema` and checks results against.

They describe, never reshape: a tool returns the presenter's dict itself as structured content.
tests/orkiva/test_mcp_schemas.py holds each model's fields equal to its REST serializer's, so the
two descriptions of one body cannot drift apart.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from messaging import kinds
from sessions.models import RUNTIME_TYPES
from threads import transitions

ThreadStatus = Literal[transitions.STATUSES]  # type: ignore[valid-type]
MessageKind = Literal[kinds.KINDS]  # type: ignore[valid-type]
PostableKind = Literal[kinds.POSTABLE_KINDS]  # type: ignore[valid-type]
RuntimeType = Literal[RUNTIME_TYPES]  # type: ignore[valid-type]


class Versioned(BaseModel):
    schema_version: int = Field(description="Body schema version (1); additive changes only within v1.")


class ThreadOut(Versioned):
    id: str = Field(description="The thread id (a UUID).")
    workspace_id: str
    title: str
    type: str
    status: ThreadStatus
    status_changed_at: datetime
    status_reason: str | None
    status_reason_code: str | None
    participants: list[str] = Field(description="Agent ids of the participants, sorted.")
    created_by: str
    last_seq: int = Field(description="Seq of the newest message (0: none yet).")
    created_at: datetime
    updated_at: datetime
    idempotent_replay: bool | None = Field(
        default=None, description="Present on create results: true when an idempotency key replayed an earlier create."
    )


class MessageOut(Versioned):
    id: int
    thread_id: str
    seq: int = Field(description="Position in the thread: 1, 2, 3... gapless, in commit order.")
    sender: str
    kind: MessageKind
    body: str
    in_reply_to: int | None
    item_state: str | None = Field(description="open/addressed/resolved/answered for findings and questions.")
    idempotency_key: str | None
    created_at: datetime
    idempotent_replay: bool | None = Field(
        default=None, description="Present on post results: true when an idempotency key replayed an earlier post."
    )


class MessagePageOut(Versioned):
    thread_id: str
    messages: list[MessageOut]
    last_seq: int
    last_read_seq: int = Field(description="Your read cursor (reading never moves it; ack_read does).")
    unread_count: int = Field(description="Messages after your cursor not sent by you.")
    next_after_seq: int = Field(description="Pass as after_seq to continue after this page.")


class CursorOut(Versioned):
    thread_id: str
    last_read_seq: int
    unread_count: int


class LastMessageOut(BaseModel):
    seq: int
    kind: str
    excerpt: str
    created_at: datetime


class SummaryParticipantOut(BaseModel):
    agent_id: str
    last_read_seq: int
    unread_count: int
    last_message: LastMessageOut | None


class OpenItemOut(BaseModel):
    seq: int
    kind: str
    sender: str
    state: str
    excerpt: str
    created_at: datetime


class CountsOut(BaseModel):
    messages: int
    by_kind: dict[str, int]


class SummaryBlockedOut(BaseModel):
    reason_code: str | None = Field(description="no_progress, repeated_finding, operator_escalation, ...")
    reason: str | None
    escalation_id: int | None = Field(description="The open escalation holding the block, if any.")
    since: datetime


class SummaryOut(Versioned):
    thread_id: str
    title: str
    type: str
    status: str
    status_changed_at: datetime
    status_reason: str | None
    status_reason_code: str | None
    blocked: SummaryBlockedOut | None = Field(description="Why the thread is blocked; null unless it is.")
    turns_since_progress: int = Field(
        description="Posts since the last status change or settled open item (the loop controls' counter)."
    )
    participants: list[SummaryParticipantOut]
    open_items: list[OpenItemOut] = Field(description="Findings and questions not yet resolved or answered.")
    open_findings: int
    open_questions: int
    counts: CountsOut
    last_seq: int


class SessionOut(Versioned):
    agent_id: str
    workspace_id: str
    session_id: str
    runtime_type: RuntimeType
    resumable: bool
    last_heartbeat_at: datetime


class WakeStepOut(BaseModel):
    step: str
    outcome: str
    reason_code: str
    at: datetime | None
    started_at: datetime | None
    detail: dict


class WakeTraceOut(BaseModel):
    trace_id: str
    dedupe_key: str
    event_version: int
    steps: list[WakeStepOut]


class WakeOut(Versioned):
    wake_id: str
    status: str = Field(description="pending, deferred, queued, delivered, ... (see docs/supervisor.md).")
    thread_id: str
    agent_id: str
    workspace_id: str
    source: str
    reason_code: str
    reason: str | None
    force: bool
    deduped: bool = Field(description="True when this trigger joined a wake already under way.")
    final: bool
    path: str | None
    attempts: dict[str, int]
    created_at: datetime
    next_attempt_at: datetime | None
    finished_at: datetime | None
    trace: WakeTraceOut


def compact_schema(node: Any) -> Any:
    """A JSON schema as tools/list publishes it, each token in an agent's context paid for: no
    pydantic `title`s, no `"default": null`. Same meaning. (`X | None` stays `anyOf` with a null
    branch: a `type` array is less portable, the Inspector's --strict check says.)"""
    if isinstance(node, list):
        return [compact_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    return {key: compact_schema(value) for key, value in node.items()
            if not (key == "title" and isinstance(value, str)) and not (key == "default" and value is None)}


def outline_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """A result's output schema as published: its fields and their JSON types, not the nested
    detail, which doubled the cost of tools/list in an agent's context. Results are still checked
    against the whole model before they are sent (the SDK's output validation)."""
    fields: dict[str, Any] = {}
    for name, prop in compact_schema(schema).get("properties", {}).items():
        branches = prop.get("anyOf", [prop])
        kinds = [branch.get("type", "object") for branch in branches]
        fields[name] = {"type": kinds[0]} if len(kinds) == 1 else {"anyOf": [{"type": kind} for kind in kinds]}
    return {"type": "object", "properties": fields}
