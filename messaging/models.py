"""Message data: ordered messages per thread, idempotency keys, and per-reader cursors."""
from __future__ import annotations

from django.db import models

from messaging import kinds
from threads.models import Thread


class Message(models.Model):
    thread = models.ForeignKey(Thread, on_delete=models.CASCADE, related_name="messages")
    seq = models.PositiveBigIntegerField()
    sender = models.CharField(max_length=160)
    kind = models.CharField(max_length=16, choices=[(k, k) for k in kinds.KINDS])
    body = models.TextField()
    in_reply_to = models.PositiveBigIntegerField(null=True, blank=True)
    # This message is the sender's n-th in the thread. Unread counts subtract a reader's own
    # messages after its cursor as (ordinal of its latest) - (ordinal at the cursor): two
    # index probes, whatever the thread's length.
    sender_ordinal = models.PositiveBigIntegerField()
    # For findings and questions: open / addressed / resolved / answered. Empty for other kinds.
    item_state = models.CharField(max_length=16, blank=True, default="")
    idempotency_key = models.CharField(max_length=255, null=True, blank=True)
    request_hash = models.CharField(max_length=64, blank=True, default="")
    # Findings only: a hash of the case-folded, whitespace-collapsed body (repeated-finding control).
    finding_fingerprint = models.CharField(max_length=64, blank=True, default="")
    created_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["thread", "seq"], name="message_thread_seq_unique"),
            models.UniqueConstraint(
                fields=["thread", "sender", "idempotency_key"],
                condition=models.Q(idempotency_key__isnull=False),
                name="message_idempotency_unique",
            ),
            models.CheckConstraint(condition=models.Q(seq__gte=1), name="message_seq_positive"),
            models.CheckConstraint(condition=models.Q(kind__in=kinds.KINDS), name="message_kind_known"),
        ]
        indexes = [
            # unread count: a reader's own messages after its cursor
            models.Index(fields=["thread", "sender", "seq"], name="message_thread_sender_seq"),
            models.Index(
                fields=["thread", "seq"],
                condition=models.Q(item_state__in=kinds.UNSETTLED_STATES),
                name="message_open_items",
            ),
            models.Index(
                fields=["thread", "finding_fingerprint", "seq"],
                condition=models.Q(kind=kinds.FINDING),
                name="message_finding_repeats",
            ),
        ]


class ReadCursor(models.Model):
    """How far one reader has acknowledged a thread. Only `cursor_ack` moves it, and only forward."""

    thread = models.ForeignKey(Thread, on_delete=models.CASCADE, related_name="cursors")
    agent_id = models.CharField(max_length=160)
    last_read_seq = models.PositiveBigIntegerField(default=0)
    updated_at = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["thread", "agent_id"], name="cursor_thread_agent_unique")]
