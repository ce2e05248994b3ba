"""The JSON of messages, pages and cursors: REST and MCP both return exactly these dicts."""
from __future__ import annotations

from typing import Any

from messaging.models import Message
from messaging.selectors import MessagePage
from messaging.services import CursorState
from orkiva.versioning import SCHEMA_VERSION, iso


def message_json(message: Message, *, replay: bool | None = None) -> dict[str, Any]:
    data = {
        "id": message.pk,
        "thread_id": str(message.thread_id),
        "seq": message.seq,
        "sender": message.sender,
        "kind": message.kind,
        "body": message.body,
        "in_reply_to": message.in_reply_to,
        "item_state": message.item_state or None,
        "idempotency_key": message.idempotency_key,
        "created_at": iso(message.created_at),
        "schema_version": SCHEMA_VERSION,
    }
    if replay is not None:
        data["idempotent_replay"] = replay
    return data


def page_json(page: MessagePage) -> dict[str, Any]:
    return {
        "thread_id": str(page.thread.pk),
        "messages": [message_json(m) for m in page.messages],
        "last_seq": page.thread.last_seq,
        "last_read_seq": page.last_read_seq,
        "unread_count": page.unread_count,
        "next_after_seq": page.next_after_seq,
        "schema_version": SCHEMA_VERSION,
    }


def cursor_json(state: CursorState) -> dict[str, Any]:
    return {
        "thread_id": str(state.thread.pk),
        "last_read_seq": state.last_read_seq,
        "unread_count": state.unread_count,
        "schema_version": SCHEMA_VERSION,
    }
