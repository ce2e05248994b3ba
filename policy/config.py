"""The typed accessor of the policy settings: every control reads its numbers from here."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from django.conf import settings

RETENTION_INDEFINITE, RETENTION_EXPIRE = "indefinite", "expire"


@dataclass(frozen=True)
class PolicyConfig:
    """The effective policy. A limit or threshold of 0 turns that control off."""

    rate_limit_window_seconds: int
    rate_limit_thread_posts: int
    rate_limit_workspace_posts: int
    loop_threshold_turns: int
    no_progress_block_turns: int
    repeated_finding_limit: int
    retention_mode: str
    retention_days: int
    content_redaction: bool
    content_filtering: bool

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def policy_config() -> PolicyConfig:
    """Read on every call (cheap attribute reads), so settings overrides in tests take effect."""
    return PolicyConfig(
        rate_limit_window_seconds=max(int(settings.ORKIVA_RATE_LIMIT_WINDOW_SECONDS), 1),
        rate_limit_thread_posts=int(settings.ORKIVA_RATE_LIMIT_THREAD_POSTS),
        rate_limit_workspace_posts=int(settings.ORKIVA_RATE_LIMIT_WORKSPACE_POSTS),
        loop_threshold_turns=int(settings.ORKIVA_LOOP_THRESHOLD_TURNS),
        no_progress_block_turns=int(settings.ORKIVA_NO_PROGRESS_BLOCK_TURNS),
        repeated_finding_limit=int(settings.ORKIVA_REPEATED_FINDING_LIMIT),
        retention_mode=settings.ORKIVA_RETENTION_MODE,
        retention_days=int(settings.ORKIVA_RETENTION_DAYS),
        content_redaction=bool(settings.ORKIVA_CONTENT_REDACTION),
        content_filtering=bool(settings.ORKIVA_CONTENT_FILTERING),
    )
