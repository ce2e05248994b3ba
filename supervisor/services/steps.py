"""What one step of the wake chain decided (the attempts to record, the fields to change), shared by
the steps (inject.py, runs.py) and applied to the row by chain.py in one short transaction."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from supervisor import reasons


@dataclass
class Step:
    attempts: list[dict] = field(default_factory=list)
    changes: dict[str, Any] = field(default_factory=dict)
    record_session: tuple[str, str, str] | None = None  # (session_id, runtime_type, workdir) of a spawned session
    # The step started a turn of an agent that reports its state, at this moment (wall clock): it is
    # busy from then, unless its own signal came in since.
    agent_busy_since: datetime | None = None
    held_by_state: bool = False  # the step held the wake because the agent's signals said it was busy

    def attempt(self, step: str, outcome: str, reason_code: str, detail: dict | None = None, started=None) -> None:
        self.attempts.append(
            {"step": step, "outcome": outcome, "reason_code": reason_code, "detail": detail or {}, "started": started}
        )


def finish(step: Step, *, status: str, path: str, reason_code: str, now: datetime) -> None:
    step.changes.update(status=status, path=path, reason_code=reason_code, stage=reasons.STAGE_DONE,
                        finished_at=now, next_attempt_at=None)


def to_stage(step: Step, stage: str, *, reason_code: str, now: datetime, status: str | None = None) -> None:
    status = status or {reasons.STAGE_RESUME: reasons.RESUMING, reasons.STAGE_SPAWN: reasons.SPAWNING}[stage]
    step.changes.update(stage=stage, status=status, reason_code=reason_code, next_attempt_at=now)
