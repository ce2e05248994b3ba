"""Session registry data: one row per (workspace, agent, runtime session id)."""
from __future__ import annotations

from django.db import models

RUNTIME_TYPES = ("codex", "claude", "other")


class AgentSession(models.Model):
    workspace_id = models.CharField(max_length=128)
    agent_id = models.CharField(max_length=128)
    # The runtime's own resumable id (e.g. the Codex thread id for `codex exec resume <id>`).
    session_id = models.CharField(max_length=128)
    runtime_type = models.CharField(max_length=16, choices=[(t, t) for t in RUNTIME_TYPES])
    resumable = models.BooleanField(default=True)
    # Where the session lives: Claude Code keeps sessions per directory, Codex resumes in the cwd.
    workdir = models.CharField(max_length=1024, blank=True, default="")
    last_heartbeat_at = models.DateTimeField()
    created_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["workspace_id", "agent_id", "session_id"], name="agent_session_unique"),
            models.CheckConstraint(condition=models.Q(runtime_type__in=RUNTIME_TYPES), name="agent_session_runtime_known"),
        ]
        indexes = [
            models.Index(fields=["workspace_id", "agent_id", "-last_heartbeat_at"], name="agent_session_latest"),
        ]
