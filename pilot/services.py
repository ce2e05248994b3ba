"""Pilot writes: an operator's feedback on a thread (audited like every operator action)."""
from __future__ import annotations

import re
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from orkiva.errors import ValidationFailed
from pilot.models import RATING_MAX, RATING_MIN, Feedback
from policy.audit import audit_record
from policy.identity import Actor
from policy.roles import Op
from threads.selectors import thread_get

TAG_RE = re.compile(r"^[a-z0-9][a-z0-9_\-]{0,39}$")
MAX_TAGS = 10
TEXT_MAX = 4000


def normalize_tag(tag: str) -> str:
    """`Slow Wake ` and `slow-wake` are one pain point: case-folded, spaces to dashes."""
    return "-".join(str(tag).casefold().split())


def check_feedback_input(*, rating: int | None, tags: list[str], text: str) -> list[str]:
    """Validate the feedback and return its normalised, de-duplicated tags (in given order)."""
    errors: dict[str, str] = {}
    if rating is not None and not RATING_MIN <= rating <= RATING_MAX:
        errors["rating"] = f"a whole number from {RATING_MIN} to {RATING_MAX}"
    normalized = list(dict.fromkeys(normalize_tag(t) for t in tags if str(t).strip()))
    bad = [t for t in normalized if not TAG_RE.match(t)]
    if bad:
        errors["tags"] = f"tags are 1-40 characters of a-z 0-9 _ - (not: {', '.join(bad)})"
    elif len(normalized) > MAX_TAGS:
        errors["tags"] = f"at most {MAX_TAGS} tags"
    if len(text) > TEXT_MAX:
        errors["text"] = f"at most {TEXT_MAX} characters"
    if rating is None and not normalized and not text.strip():
        errors["feedback"] = "give a rating, at least one tag, or some text"
    if errors:
        raise ValidationFailed("The feedback is not valid.", details={"fields": errors})
    return normalized


@transaction.atomic
def feedback_record(
    *, operator: Actor, thread_id, rating: int | None, tags: list[str], text: str, now: datetime | None = None
) -> Feedback:
    """Record an operator's rating and pain points against a thread of the operator's workspace."""
    normalized = check_feedback_input(rating=rating, tags=tags, text=text)
    thread = thread_get(actor=operator, thread_id=thread_id, op=Op.THREAD_READ)
    moment = now or timezone.now()
    feedback = Feedback.objects.create(
        workspace_id=thread.workspace_id, thread=thread, operator=operator.agent_id, rating=rating,
        tags=normalized, text=text.strip(), created_at=moment,
    )
    audit_record(
        actor=operator, action="pilot.feedback", target_type="thread", target_id=str(thread.pk),
        reason=text.strip(), new={"feedback_id": feedback.pk, "rating": rating, "tags": normalized}, now=moment,
    )
    return feedback
