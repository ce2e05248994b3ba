"""Policy data: revoked tokens and sessions, and the append-only audit log."""
from __future__ import annotations

from django.db import models


class Revocation(models.Model):
    """A revoked token (by `jti`) or every token of a session issued up to `revoked_at`."""

    KIND_JTI = "jti"
    KIND_SESSION = "session"
    KIND_CHOICES = [(KIND_JTI, "token id"), (KIND_SESSION, "session")]

    kind = models.CharField(max_length=16, choices=KIND_CHOICES)
    value = models.CharField(max_length=128)
    workspace_id = models.CharField(max_length=128, blank=True, default="")
    revoked_at = models.DateTimeField()
    reason = models.TextField()
    revoked_by = models.CharField(max_length=160)

    class Meta:
        indexes = [models.Index(fields=["kind", "value"], name="revocation_lookup")]


class AuditEventQuerySet(models.QuerySet):
    def update(self, **kwargs):
        raise TypeError("audit events are append-only")

    def delete(self):
        raise TypeError("audit events are append-only")


class AuditEvent(models.Model):
    """One decision or change, written in the transaction that made it. Never updated or deleted."""

    created_at = models.DateTimeField(db_index=True)
    workspace_id = models.CharField(max_length=128, db_index=True)
    actor_id = models.CharField(max_length=160)
    actor_role = models.CharField(max_length=32)
    action = models.CharField(max_length=64, db_index=True)
    target_type = models.CharField(max_length=32, blank=True, default="")
    target_id = models.CharField(max_length=160, blank=True, default="")
    reason = models.TextField(blank=True, default="")
    reason_code = models.CharField(max_length=64, blank=True, default="")
    request_id = models.CharField(max_length=128, blank=True, default="")
    old_values = models.JSONField(default=dict, blank=True)
    new_values = models.JSONField(default=dict, blank=True)
    # How many decisions the row stands for: 1, or the refusals a window of repeats summed up
    # (policy.audit.audit_refusal, ORKIVA_AUDIT_REFUSAL_WINDOW_SECONDS).
    count = models.PositiveIntegerField(default=1)

    objects = AuditEventQuerySet.as_manager()

    class Meta:
        indexes = [models.Index(fields=["workspace_id", "target_type", "target_id"], name="audit_target")]
        ordering = ["id"]

    def save(self, *args, **kwargs):
        if self.pk is not None:
            raise TypeError("audit events are append-only")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise TypeError("audit events are append-only")


class AuditTally(models.Model):
    """The repeats of one refusal (actor, action, reason, in one workspace's record) within a window,
    counted here instead of written row by row; when the window is over they become one audit row
    with their count (policy.audit.audit_tallies_flush). Not the audit log: it is updated and deleted."""

    workspace_id = models.CharField(max_length=128)
    actor_id = models.CharField(max_length=160)
    actor_role = models.CharField(max_length=32)
    action = models.CharField(max_length=64)
    reason_code = models.CharField(max_length=64, blank=True, default="")
    window_start = models.DateTimeField()
    repeats = models.PositiveIntegerField(default=0)  # after the first, which has its own row
    first_request_id = models.CharField(max_length=128, blank=True, default="")
    last_request_id = models.CharField(max_length=128, blank=True, default="")
    last_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["workspace_id", "actor_id", "action", "reason_code"],
                                               name="audit_tally_key")]
        indexes = [models.Index(fields=["window_start"], name="audit_tally_window")]


class Escalation(models.Model):
    """A thread that needs a person: opened by a control (loop, no progress, repeated finding)
    or by an operator, resolved by the action that lets the thread continue or ends it."""

    STATUS_OPEN, STATUS_RESOLVED = "open", "resolved"
    STATUSES = (STATUS_OPEN, STATUS_RESOLVED)

    thread = models.ForeignKey("threads.Thread", on_delete=models.CASCADE, related_name="escalations")
    workspace_id = models.CharField(max_length=128)
    reason_code = models.CharField(max_length=64)
    # True when the thread was blocked with this escalation (it must be unblocked to continue).
    blocking = models.BooleanField(default=False)
    status = models.CharField(max_length=16, choices=[(s, s) for s in STATUSES], default=STATUS_OPEN)
    reason = models.TextField(blank=True, default="")
    details = models.JSONField(default=dict, blank=True)
    opened_by = models.CharField(max_length=160)
    opened_at = models.DateTimeField()
    resolved_by = models.CharField(max_length=160, blank=True, default="")
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolution = models.TextField(blank=True, default="")
    resolution_code = models.CharField(max_length=64, blank=True, default="")

    class Meta:
        ordering = ["id"]
        indexes = [
            models.Index(fields=["workspace_id", "status", "opened_at"], name="escalation_ws_status"),
            models.Index(fields=["thread", "status"], name="escalation_thread_status"),
        ]
        constraints = [
            models.CheckConstraint(condition=models.Q(status__in=("open", "resolved")), name="escalation_status_known"),
        ]


class RateCounter(models.Model):
    """Posts counted in the current fixed window for one key (an agent in a thread, or in a
    workspace). One row per key, updated by a single atomic UPSERT (policy.controls)."""

    key = models.CharField(max_length=400, unique=True)
    window_start = models.BigIntegerField()  # epoch seconds, a multiple of the window length
    count = models.PositiveIntegerField()
