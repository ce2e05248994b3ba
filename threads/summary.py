"""The deterministic thread summary (no model): status, participants' unread counts, open items."""
from __future__ import annotations

from typing import Any

from messaging import kinds
from messaging.selectors import counts_by_kind, cursor_positions, last_message_by_sender, open_items, unread_count
from orkiva.versioning import SCHEMA_VERSION, iso
from policy.identity import Actor
from policy.models import Escalation
from policy.roles import Op
from threads import transitions
from threads.models import Thread
from threads.selectors import participant_list, thread_get

EXCERPT_CHARS = 280


def _excerpt(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= EXCERPT_CHARS else flat[: EXCERPT_CHARS - 1] + "…"


def thread_summary(*, actor: Actor, thread_id) -> dict[str, Any]:
    thread = thread_get(actor=actor, thread_id=thread_id, op=Op.THREAD_READ)
    return summary_of(thread)


def summary_of(thread: Thread) -> dict[str, Any]:
    """The summary of a thread already authorized for reading (also seeds a spawned session's prompt)."""
    cursors = cursor_positions(thread=thread)
    last_by_sender = last_message_by_sender(thread=thread)
    participants = []
    for agent_id in participant_list(thread):
        cursor = cursors.get(agent_id, 0)
        last = last_by_sender.get(agent_id)
        participants.append(
            {
                "agent_id": agent_id,
                "last_read_seq": cursor,
                "unread_count": unread_count(thread=thread, agent_id=agent_id, last_read_seq=cursor),
                "last_message": None
                if last is None
                else {"seq": last.seq, "kind": last.kind, "excerpt": _excerpt(last.body), "created_at": iso(last.created_at)},
            }
        )
    items = [
        {
            "seq": m.seq,
            "kind": m.kind,
            "sender": m.sender,
            "state": m.item_state,
            "excerpt": _excerpt(m.body),
            "created_at": iso(m.created_at),
        }
        for m in open_items(thread=thread)
    ]
    counts = counts_by_kind(thread=thread)
    return {
        "thread_id": str(thread.pk),
        "title": thread.title,
        "type": thread.type,
        "status": thread.status,
        "status_changed_at": iso(thread.status_changed_at),
        "status_reason": thread.status_reason or None,
        "status_reason_code": thread.status_reason_code or None,
        "blocked": blocked_json(thread),
        "turns_since_progress": thread.turns_since_progress,
        "participants": participants,
        "open_items": items,
        "open_findings": sum(1 for i in items if i["kind"] == kinds.FINDING),
        "open_questions": sum(1 for i in items if i["kind"] == kinds.QUESTION),
        "counts": {"messages": thread.last_seq, "by_kind": counts},
        "last_seq": thread.last_seq,
        "schema_version": SCHEMA_VERSION,
    }


def blocked_json(thread: Thread) -> dict[str, Any] | None:
    """Why a blocked thread is blocked: the reason code, the escalation that holds it (none when a
    participant blocked it by hand), since when. None unless the thread is blocked."""
    if thread.status != transitions.BLOCKED:
        return None
    escalation = (
        Escalation.objects.filter(thread=thread, status=Escalation.STATUS_OPEN, blocking=True)
        .order_by("-id").values_list("pk", flat=True).first()
    )
    return {
        "reason_code": thread.status_reason_code or None,
        "reason": thread.status_reason or None,
        "escalation_id": escalation,
        "since": iso(thread.status_changed_at),
    }


def summary_text(summary: dict[str, Any]) -> str:
    """The summary as plain text, for a prompt that seeds a fresh agent session."""
    lines = [
        f"Thread {summary['thread_id']} \"{summary['title']}\" ({summary['type']}), status {summary['status']}.",
        f"{summary['counts']['messages']} messages.",
    ]
    if summary["status_reason"]:
        lines.append(f"Status reason: {summary['status_reason']}")
    for p in summary["participants"]:
        lines.append(f"- {p['agent_id']}: {p['unread_count']} unread (read up to seq {p['last_read_seq']}).")
    if summary["open_items"]:
        lines.append("Open items:")
        for item in summary["open_items"]:
            lines.append(f"- #{item['seq']} {item['kind']} by {item['sender']} [{item['state']}]: {item['excerpt']}")
    else:
        lines.append("No open items.")
    return "\n".join(lines)
