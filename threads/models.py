"""Thread data: a thread, its participants, its status and its message counter."""
from __future__ import annotations

import uuid

from django.db import models

from threads import transitions


class Thread(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    workspace_id = models.CharField(max_length=128)
    type = models.CharField(max_length=64)
    title = models.CharField(max_length=300)
    status = models.CharField(
        max_length=16, choices=[(s, s) for s in transitions.STATUSES], default=transitions.OPEN
    )
    status_changed_at = models.DateTimeField()
    status_reason = models.TextField(blank=True, default="")
    status_reason_code = models.CharField(max_length=64, blank=True, default="")
    created_by = models.CharField(max_length=160)
    # The highest allocated message seq; bumped under this row's lock in the insert's transaction.
    last_seq = models.PositiveBigIntegerField(default=0)
    # Loop controls (policy.controls), kept on the row the post already locks: posts since the
    # last progress (a status change or an open item settled), and the seq after which repeated
    # findings count (moved when the thread leaves `blocked`).
    turns_since_progress = models.PositiveIntegerField(default=0)
    findings_since_seq = models.PositiveBigIntegerField(default=0)
    # A create retried with the same key returns this thread (threads.services.thread_create).
    idempotency_key = models.CharField(max_length=255, null=True, blank=True)
    request_hash = models.CharField(max_length=64, blank=True, default="")
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()

    class Meta:
        indexes = [models.Index(fields=["workspace_id", "-updated_at"], name="thread_ws_recent")]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(status__in=transitions.STATUSES), name="thread_status_known"
            ),
            models.UniqueConstraint(
                fields=["workspace_id", "created_by", "idempotency_key"],
                condition=models.Q(idempotency_key__isnull=False),
                name="thread_idempotency_unique",
            ),
        ]


class Participant(models.Model):
    thread = models.ForeignKey(Thread, on_delete=models.CASCADE, related_name="participants")
    agent_id = models.CharField(max_length=128)
    added_at = models.DateTimeField()
    added_by = models.CharField(max_length=160)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["thread", "agent_id"], name="participant_unique")]
        indexes = [models.Index(fields=["agent_id"], name="participant_agent")]
