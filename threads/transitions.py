"""The thread status state machine: the one table of allowed transitions (docs/api.md mirrors it)."""
from __future__ import annotations

OPEN, ACTIVE, BLOCKED, DISPUTED, RESOLVED, CLOSED = "open", "active", "blocked", "disputed", "resolved", "closed"
STATUSES = (OPEN, ACTIVE, BLOCKED, DISPUTED, RESOLVED, CLOSED)

ALLOWED: dict[str, tuple[str, ...]] = {
    OPEN: (ACTIVE, BLOCKED, DISPUTED, RESOLVED, CLOSED),
    ACTIVE: (BLOCKED, DISPUTED, RESOLVED, CLOSED),
    BLOCKED: (ACTIVE, DISPUTED, CLOSED),
    DISPUTED: (ACTIVE, BLOCKED, RESOLVED, CLOSED),
    RESOLVED: (ACTIVE, CLOSED),
    CLOSED: (),  # final
}

# Moves that need authority beyond a participant's (a coordinator or an operator), with a reason:
# leaving `blocked` (a block is policy stopping the agents), and closing a disputed thread.
AUTHORITY_REQUIRED: frozenset[tuple[str, str]] = frozenset(
    {(BLOCKED, ACTIVE), (BLOCKED, DISPUTED), (BLOCKED, CLOSED), (DISPUTED, CLOSED)}
)
# A participant may close a thread only once it is resolved.
PARTICIPANT_MAY_CLOSE_FROM: frozenset[str] = frozenset({RESOLVED})


def allowed_targets(status: str) -> tuple[str, ...]:
    return ALLOWED[status]


def needs_authority(current: str, target: str) -> bool:
    if (current, target) in AUTHORITY_REQUIRED:
        return True
    return target == CLOSED and current not in PARTICIPANT_MAY_CLOSE_FROM
