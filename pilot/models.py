"""Pilot data: an operator's rating and pain points for a thread, ranked by the pilot report."""
from __future__ import annotations

from django.db import models

from threads.models import Thread

RATING_MIN, RATING_MAX = 1, 5


class Feedback(models.Model):
    """One operator's verdict on how a thread went: a 1-5 rating, pain-point tags and free text."""

    workspace_id = models.CharField(max_length=128)
    thread = models.ForeignKey(Thread, on_delete=models.CASCADE, related_name="feedback")
    operator = models.CharField(max_length=160)
    rating = models.PositiveSmallIntegerField(null=True, blank=True)
    tags = models.JSONField(default=list, blank=True)  # normalised pain-point tags, e.g. ["slow-wake"]
    text = models.TextField(blank=True, default="")
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["workspace_id", "created_at"], name="feedback_ws_recent")]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(rating__isnull=True) | models.Q(rating__gte=RATING_MIN, rating__lte=RATING_MAX),
                name="feedback_rating_range",
            )
        ]
