"""The JSON of threads and summaries: REST and MCP both return exactly these dicts."""
from __future__ import annotations

from typing import Any

from orkiva.versioning import SCHEMA_VERSION, iso
from threads.models import Thread
from threads.selectors import participant_list


def thread_json(thread: Thread, *, replay: bool | None = None) -> dict[str, Any]:
    """A thread's body; `replay` (a create's answer): whether an idempotency key replayed it."""
    body = {
        "id": str(thread.pk),
        "workspace_id": thread.workspace_id,
        "title": thread.title,
        "type": thread.type,
        "status": thread.status,
        "status_changed_at": iso(thread.status_changed_at),
        "status_reason": thread.status_reason or None,
        "status_reason_code": thread.status_reason_code or None,
        "participants": participant_list(thread),
        "created_by": thread.created_by,
        "last_seq": thread.last_seq,
        "created_at": iso(thread.created_at),
        "updated_at": iso(thread.updated_at),
        "schema_version": SCHEMA_VERSION,
    }
    if replay is not None:
        body["idempotent_replay"] = replay
    return body
