"""The JSON of wakes and runtimes: REST, MCP (`trigger_participant`) and commands return these."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from django.utils import timezone

from orkiva.versioning import EVENT_VERSION, SCHEMA_VERSION, iso
from supervisor import reasons
from supervisor.models import UNMANAGED, Runtime, WakeRequest
from supervisor.selectors import runtime_state, wake_attempts


def wake_json(wake: WakeRequest) -> dict[str, Any]:
    steps = [
        {
            "step": a.step,
            "outcome": a.outcome,
            "reason_code": a.reason_code,
            "at": iso(a.finished_at),
            "started_at": iso(a.started_at),
            "detail": a.detail,
        }
        for a in wake_attempts(wake)
    ]
    return {
        "wake_id": str(wake.pk),
        "status": wake.status,
        "thread_id": str(wake.thread_id),
        "agent_id": wake.agent_id,
        "workspace_id": wake.workspace_id,
        "source": wake.source,
        "reason_code": wake.reason_code,
        "reason": wake.reason or None,
        "force": wake.force,
        "deduped": bool(getattr(wake, "deduped", False)),
        "final": wake.status in reasons.FINAL_STATUSES,
        "path": wake.path or None,
        "attempts": {"inject": wake.inject_attempts, "resume": wake.resume_attempts},
        "created_at": iso(wake.created_at),
        "next_attempt_at": iso(wake.next_attempt_at) if wake.status in reasons.ACTIVE_STATUSES else None,
        "finished_at": iso(wake.finished_at),
        "trace": {"trace_id": wake.trace_id, "dedupe_key": wake.dedupe_key, "event_version": EVENT_VERSION,
                  "steps": steps},
        "schema_version": SCHEMA_VERSION,
    }


def runtime_json(runtime: Runtime, *, now: datetime | None = None) -> dict[str, Any]:
    body = {
        "agent_id": runtime.agent_id,
        "workspace_id": runtime.workspace_id,
        "session_id": runtime.session_id or None,
        "runtime_type": runtime.runtime_type,
        "pid": runtime.pid,
        "pty_backend": runtime.pty_backend,
        "pty_target": runtime.pty_target or None,
        "management_mode": runtime.management_mode,
        "host": runtime.host or None,
        "workdir": runtime.workdir or None,
        "paused": runtime.paused,
        "state": runtime_state(runtime, now=now or timezone.now()),
        "state_source": runtime.state_source or None,
        "agent_state": runtime.agent_state,
        "agent_state_at": iso(runtime.agent_state_at),
        "last_heartbeat_at": iso(runtime.last_heartbeat_at),
        "registered_at": iso(runtime.registered_at),
        "schema_version": SCHEMA_VERSION,
    }
    if runtime.management_mode == UNMANAGED:
        body["guidance"] = reasons.MANAGED_GUIDANCE.format(
            agent_id=runtime.agent_id, workspace_id=runtime.workspace_id, runtime_type=runtime.runtime_type
        )
    return body
