"""Message kinds and the open-item rules that link replies to findings and questions."""
from __future__ import annotations

MESSAGE, FINDING, FIX, QUESTION, ANSWER, RESOLUTION, STATUS = (
    "message", "finding", "fix", "question", "answer", "resolution", "status",
)
KINDS = (MESSAGE, FINDING, FIX, QUESTION, ANSWER, RESOLUTION, STATUS)
# `status` messages are written by the bridge when a thread changes status, never posted by a client.
POSTABLE_KINDS = tuple(k for k in KINDS if k != STATUS)

# Open-item states. A finding: open -> addressed (a fix replied) -> resolved (a resolution replied).
# A question: open -> answered.
ITEM_OPEN, ITEM_ADDRESSED, ITEM_RESOLVED, ITEM_ANSWERED = "open", "addressed", "resolved", "answered"
ITEM_KINDS = (FINDING, QUESTION)
UNSETTLED_STATES = (ITEM_OPEN, ITEM_ADDRESSED)
# Reaching one of these is progress for the loop controls (policy.controls).
SETTLED_STATES = (ITEM_RESOLVED, ITEM_ANSWERED)

# (kind of the item replied to, kind of the reply) -> the item's new state
REPLY_EFFECTS: dict[tuple[str, str], str] = {
    (FINDING, FIX): ITEM_ADDRESSED,
    (FINDING, RESOLUTION): ITEM_RESOLVED,
    (QUESTION, ANSWER): ITEM_ANSWERED,
}


def initial_item_state(kind: str) -> str:
    return ITEM_OPEN if kind in ITEM_KINDS else ""
