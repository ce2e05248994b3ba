"""Supervisor data: registered agent runtimes, wake requests, and each step a wake took."""
from __future__ import annotations

import uuid

from django.db import models

from sessions.models import RUNTIME_TYPES
from supervisor import reasons
from threads.models import Thread

MANAGED, UNMANAGED = "managed", "unmanaged"
MANAGEMENT_MODES = (MANAGED, UNMANAGED)
PTY_TMUX, PTY_NONE = "tmux", "none"
PTY_BACKENDS = (PTY_TMUX, PTY_NONE)
# Stored states; `active` vs `idle` is also derived from the heartbeat age (selectors.runtime_state).
ST_ACTIVE, ST_IDLE, ST_OFFLINE, ST_EXPIRED, ST_DEREGISTERED = "active", "idle", "offline", "expired", "deregistered"
RUNTIME_STATES = (ST_ACTIVE, ST_IDLE, ST_OFFLINE, ST_EXPIRED, ST_DEREGISTERED)
# What the agent itself is doing, from the runtime's own signals (Claude Code's hooks, Codex's
# notify, the supervisor's own submissions): docs/supervisor.md, "The agent's state".
AGENT_UNKNOWN, AGENT_IDLE, AGENT_BUSY, AGENT_APPROVAL = "unknown", "idle", "busy", "awaiting_approval"
AGENT_STATES = (AGENT_UNKNOWN, AGENT_IDLE, AGENT_BUSY, AGENT_APPROVAL)


class Runtime(models.Model):
    """One agent's running process, as the supervisor knows it. One row per (workspace, agent)."""

    workspace_id = models.CharField(max_length=128)
    agent_id = models.CharField(max_length=128)
    session_id = models.CharField(max_length=128, blank=True, default="")  # the logical (resumable) session
    runtime_type = models.CharField(max_length=16, choices=[(t, t) for t in RUNTIME_TYPES])
    pid = models.PositiveIntegerField(null=True, blank=True)
    pty_backend = models.CharField(max_length=8, choices=[(b, b) for b in PTY_BACKENDS], default=PTY_NONE)
    pty_target = models.CharField(max_length=256, blank=True, default="")  # tmux "session:window.pane" or "%pane"
    # The tmux server of the target: empty for the supervisor's own (ORKIVA_TMUX_SOCKET), else the
    # socket path of the server a user started the agent in (orkiva_runtime attach).
    tmux_socket = models.CharField(max_length=1024, blank=True, default="")
    management_mode = models.CharField(max_length=16, choices=[(m, m) for m in MANAGEMENT_MODES])
    host = models.CharField(max_length=255, blank=True, default="")
    workdir = models.CharField(max_length=1024, blank=True, default="")
    # The token session of the credential a launch gave the agent: revoked when the runtime ends.
    credential_session = models.CharField(max_length=128, blank=True, default="")
    # Which signals report the agent's state ("claude-hooks", "codex-notify"; empty: none, so the
    # quiet-window rule alone decides), the state they last reported, and when.
    state_source = models.CharField(max_length=32, blank=True, default="")
    agent_state = models.CharField(max_length=20, choices=[(s, s) for s in AGENT_STATES], default=AGENT_UNKNOWN)
    agent_state_at = models.DateTimeField(null=True, blank=True)
    paused = models.BooleanField(default=False)
    state = models.CharField(max_length=16, choices=[(s, s) for s in RUNTIME_STATES], default=ST_IDLE)
    last_heartbeat_at = models.DateTimeField(null=True, blank=True)
    registered_at = models.DateTimeField()
    updated_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["workspace_id", "agent_id"], name="runtime_agent_unique"),
            models.CheckConstraint(condition=models.Q(management_mode__in=MANAGEMENT_MODES), name="runtime_mode_known"),
            models.CheckConstraint(condition=models.Q(state__in=RUNTIME_STATES), name="runtime_state_known"),
        ]
        indexes = [models.Index(fields=["state", "last_heartbeat_at"], name="runtime_state_heartbeat")]


class WakeRequest(models.Model):
    """A wake is a row before it is a job. At most one active wake per dedupe key."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    workspace_id = models.CharField(max_length=128)
    agent_id = models.CharField(max_length=128)
    thread = models.ForeignKey(Thread, on_delete=models.CASCADE, related_name="wakes")
    runtime = models.ForeignKey(Runtime, null=True, blank=True, on_delete=models.SET_NULL, related_name="wakes")
    source = models.CharField(max_length=16, choices=[(s, s) for s in reasons.SOURCES])
    requested_by = models.CharField(max_length=160)
    reason = models.TextField(blank=True, default="")
    force = models.BooleanField(default=False)
    dedupe_key = models.CharField(max_length=400)
    trace_id = models.CharField(max_length=32)
    request_id = models.CharField(max_length=128, blank=True, default="")
    status = models.CharField(max_length=20, choices=[(s, s) for s in reasons.STATUSES], default=reasons.PENDING)
    stage = models.CharField(max_length=8, choices=[(s, s) for s in reasons.STAGES], default=reasons.STAGE_INJECT)
    reason_code = models.CharField(max_length=64, blank=True, default="")
    path = models.CharField(max_length=8, blank=True, default="")  # the step that finished it
    prompt = models.TextField(blank=True, default="")
    inject_attempts = models.PositiveSmallIntegerField(default=0)
    resume_attempts = models.PositiveSmallIntegerField(default=0)
    deferred_since = models.DateTimeField(null=True, blank=True)
    queued_at = models.DateTimeField(null=True, blank=True)
    injected_at = models.DateTimeField(null=True, blank=True)
    submitted_at = models.DateTimeField(null=True, blank=True)  # the TUI took the typed prompt
    # The agent's first sign, for this thread, that this wake reached it (wakes_acknowledge).
    acked_at = models.DateTimeField(null=True, blank=True)
    ack_signal = models.CharField(max_length=32, blank=True, default="")
    ack_deadline = models.DateTimeField(null=True, blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)  # a worker is running a step until then
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            # storms collapse to one: a second active wake with the same key cannot exist
            models.UniqueConstraint(
                fields=["dedupe_key"],
                condition=models.Q(status__in=reasons.ACTIVE_STATUSES),
                name="wake_active_dedupe_unique",
            ),
            models.CheckConstraint(condition=models.Q(status__in=reasons.STATUSES), name="wake_status_known"),
        ]
        indexes = [
            models.Index(fields=["workspace_id", "agent_id", "created_at"], name="wake_agent_recent"),
            models.Index(fields=["dedupe_key", "-created_at"], name="wake_dedupe_recent"),
            models.Index(fields=["status", "next_attempt_at"], name="wake_status_due"),
        ]


class WakeAttempt(models.Model):
    """One step of a wake's chain, with its outcome, reason code and details (argv, exit code, tail)."""

    wake = models.ForeignKey(WakeRequest, on_delete=models.CASCADE, related_name="attempts")
    step = models.CharField(max_length=16)
    outcome = models.CharField(max_length=16)
    reason_code = models.CharField(max_length=64)
    detail = models.JSONField(default=dict, blank=True)
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField()

    class Meta:
        ordering = ["id"]
