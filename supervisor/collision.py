"""Collision control: may the supervisor type into a pane now? A pure function of the facts."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from supervisor import reasons

INJECT, DEFER, QUEUE = "inject", "defer", "queue"


@dataclass(frozen=True)
class CollisionPolicy:
    quiet_window: float  # seconds without human keystrokes before the supervisor may type
    recheck: float  # seconds between checks while deferring
    max_defer: float  # seconds of deferring before the wake is queued (or forced in)

    @classmethod
    def from_settings(cls) -> "CollisionPolicy":
        from django.conf import settings

        return cls(
            quiet_window=settings.ORKIVA_WAKE_QUIET_WINDOW_SECONDS,
            recheck=settings.ORKIVA_WAKE_RECHECK_SECONDS,
            max_defer=settings.ORKIVA_WAKE_MAX_DEFER_SECONDS,
        )


@dataclass(frozen=True)
class Decision:
    action: str  # inject / defer / queue
    reason_code: str
    retry_in: float = 0.0  # for defer: seconds until the next check
    last_activity_age: float | None = None


def collision_decide(
    *,
    client_activity: list[int],
    now: datetime,
    deferred_since: datetime | None,
    force: bool,
    policy: CollisionPolicy,
    draft: bool = False,
) -> Decision:
    """Decide from the attached clients' last keystroke epochs (tmux `#{client_activity}`) and
    whether the agent's input line holds a human's draft (read off its screen).

    No client, or every client quiet for the window, and no draft: inject. Someone typed within the
    window: defer and re-check; once deferring has lasted `max_defer`, queue it, or inject if an
    operator forced the wake. A draft defers the same way, but is never typed into, forced or not:
    the prompt would be merged into the human's text and submitted with it.
    """
    latest = max(client_activity) if client_activity else None
    age = None if latest is None else now.timestamp() - latest
    if not draft and (age is None or age >= policy.quiet_window):
        return Decision(INJECT, reasons.R_INJECTED, last_activity_age=age)
    waiting = reasons.R_INPUT_NOT_EMPTY if draft else reasons.R_HUMAN_TYPING
    deferred_for = 0.0 if deferred_since is None else (now - deferred_since).total_seconds()
    if deferred_for >= policy.max_defer:
        if force and not draft:
            return Decision(INJECT, reasons.R_FORCED, last_activity_age=age)
        return Decision(QUEUE, reasons.R_INPUT_NOT_EMPTY if draft else reasons.R_MAX_DEFER, last_activity_age=age)
    # re-check every `recheck` seconds, but never later than the moment deferring ends
    retry_in = min(policy.recheck, max(policy.max_defer - deferred_for, 0.0))
    return Decision(DEFER, waiting, retry_in=retry_in, last_activity_age=age)
