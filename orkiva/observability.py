"""Orkiva's own metrics and log hooks. Services call these functions; the metrics backend
(prometheus_client via django-prometheus) is wired here and nowhere else.

The function names are the contract other modules call; keep them stable.
"""
from __future__ import annotations

import logging

from orkiva.context import current_request_id

logger = logging.getLogger("orkiva")


def record_failure(err) -> None:
    """A client-caused failure (any interface): counted by code; 401s also as auth failures."""
    logger.info("request failed code=%s status=%s request_id=%s", err.code, err.status, current_request_id())


def message_posted(*, kind: str, replay: bool) -> None:
    """A post was accepted (replay=True when an idempotency key replayed an earlier post)."""


def messages_read(*, count: int) -> None:
    """A read returned `count` messages."""


def cursor_acked() -> None:
    """A read cursor was acknowledged."""


def escalation_opened(*, reason_code: str) -> None:
    """Policy opened an escalation (loop_threshold, no_progress, repeated_finding, operator, ...)."""


def thread_auto_blocked(*, reason_code: str) -> None:
    """Policy moved a thread to blocked on its own."""


def rate_limited(*, scope: str) -> None:
    """A post was refused by a rate limit (scope: thread or workspace)."""


def wake_requested(*, source: str) -> None:
    """A wake request row was created (source: trigger, auto, operator); deduped ones are not counted."""


def wake_finished(*, path: str, outcome: str, seconds: float) -> None:
    """A wake reached its final status (path: inject, resume, spawn, none; outcome: delivered, failed, ...)."""
