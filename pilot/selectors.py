"""The pilot report (backlog story 5.4): per thread, how long the review took and what it cost.

Definitions (docs/pilot.md):
- cycle time: from the thread's first `finding` to its first move to `resolved` after it;
- review rounds: reviewer passes. Walking the thread in seq order over the review kinds, a
  round starts at a `finding` or `resolution` that follows a `fix` (or starts the review);
  findings, then fixes, then a resolution is two rounds: the review and the re-review;
- wakes: the supervisor's wake requests for the thread, by the path that settled them, with
  latency from the request to its final status;
- escalations: escalations opened on the thread (by policy or an operator);
- human interventions: operator actions recorded on the thread (escalate, unblock, override,
  status changes, operator wakes); feedback itself is not an intervention.
"""
from __future__ import annotations

import json
import statistics
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from django.db.models import Q

from messaging.models import Message
from orkiva.errors import ValidationFailed
from orkiva.versioning import SCHEMA_VERSION, iso
from pilot.models import Feedback
from policy.identity import ROLE_OPERATOR
from policy.models import AuditEvent, Escalation
from supervisor import reasons
from supervisor.models import WakeRequest
from threads.models import Thread

REVIEW_KINDS = ("finding", "fix", "resolution")
NOT_INTERVENTIONS = ("pilot.feedback",)
TOP_PAIN_POINTS = 10


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100) of `values`; None when there are none."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))  # ceil without floats drifting
    return ordered[int(rank) - 1]


def distribution(values: list[float]) -> dict[str, Any]:
    return {
        "count": len(values),
        "median": statistics.median(values) if values else None,
        "p90": percentile(values, 90),
        "mean": round(statistics.fmean(values), 3) if values else None,
        "min": min(values) if values else None,
        "max": max(values) if values else None,
    }


def review_rounds(kinds: list[str]) -> int:
    """Reviewer passes in a thread's review kinds, in seq order (see the module docstring)."""
    rounds, after_fix = 0, True
    for kind in kinds:
        if kind == "fix":
            after_fix = True
        elif after_fix:  # a finding or resolution opening a new pass
            rounds, after_fix = rounds + 1, False
    return rounds


@dataclass
class _ThreadFacts:
    kinds: list[str]
    first_finding_at: datetime | None


def _message_facts(thread_ids: list) -> dict[Any, _ThreadFacts]:
    facts: dict[Any, _ThreadFacts] = {pk: _ThreadFacts(kinds=[], first_finding_at=None) for pk in thread_ids}
    rows = (
        Message.objects.filter(thread_id__in=thread_ids, kind__in=REVIEW_KINDS)
        .order_by("thread_id", "seq")
        .values_list("thread_id", "kind", "created_at")
    )
    for thread_id, kind, created_at in rows:
        fact = facts[thread_id]
        fact.kinds.append(kind)
        if kind == "finding" and fact.first_finding_at is None:
            fact.first_finding_at = created_at
    return facts


def _thread_audit(workspace_id: str, thread_ids: list) -> tuple[dict[str, list[datetime]], Counter]:
    """Per thread: when it moved to resolved, and how many operator actions touched it. One
    operator command is one intervention, however many rows it wrote (an unblock records the
    transition, the unblock and the escalations it resolved): rows are counted by request id."""
    ids = [str(pk) for pk in thread_ids]
    resolved_at: dict[str, list[datetime]] = defaultdict(list)
    actions: dict[str, set[str]] = defaultdict(set)
    rows = AuditEvent.objects.filter(workspace_id=workspace_id).filter(
        Q(target_type="thread", target_id__in=ids) | Q(target_type="escalation", new_values__thread_id__in=ids)
    ).values_list("id", "target_type", "target_id", "action", "actor_role", "request_id", "new_values", "created_at")
    for pk, target_type, target_id, action, actor_role, request_id, new_values, created_at in rows:
        thread_id = target_id if target_type == "thread" else (new_values or {}).get("thread_id")
        if action == "thread.transition" and (new_values or {}).get("status") == "resolved":
            resolved_at[thread_id].append(created_at)
        if actor_role == ROLE_OPERATOR and action not in NOT_INTERVENTIONS:
            actions[thread_id].add(request_id or f"row-{pk}")
    return resolved_at, Counter({thread_id: len(requests) for thread_id, requests in actions.items()})


def _escalation_counts(thread_ids: list) -> Counter:
    return Counter(
        str(thread_id) for thread_id in Escalation.objects.filter(thread_id__in=thread_ids).values_list("thread_id", flat=True)
    )


def _wake_facts(thread_ids: list) -> dict[Any, list[WakeRequest]]:
    wakes: dict[Any, list[WakeRequest]] = defaultdict(list)
    for wake in WakeRequest.objects.filter(thread_id__in=thread_ids).order_by("created_at"):
        wakes[wake.thread_id].append(wake)
    return wakes


def _wake_summary(wakes: list[WakeRequest]) -> dict[str, Any]:
    by_path: dict[str, list[float]] = defaultdict(list)
    outcomes: Counter = Counter()
    for wake in wakes:
        outcomes[wake.status] += 1
        if wake.finished_at is not None:
            by_path[wake.path or "none"].append((wake.finished_at - wake.created_at).total_seconds())
    return {
        "count": len(wakes),
        "by_status": dict(sorted(outcomes.items())),
        "latency_seconds_by_path": {path: distribution(values) for path, values in sorted(by_path.items())},
        "operator_wakes": sum(1 for w in wakes if w.source == "operator"),
        # still under way: their outcome is not in by_status's final counts yet
        "active": sum(1 for w in wakes if w.status in reasons.ACTIVE_STATUSES),
    }


def _thread_uuid(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(str(value))
    except (ValueError, TypeError, AttributeError):
        raise ValidationFailed("--thread takes thread ids (UUIDs).", code="usage_error",
                               details={"thread": str(value)}) from None


def pilot_report(
    *, workspace_id: str, thread_ids: list[str] | None = None, since: datetime | None = None
) -> dict[str, Any]:
    """The report for a workspace's threads (all, or `thread_ids`; created at or after `since`)."""
    threads_qs = Thread.objects.filter(workspace_id=workspace_id)
    if thread_ids:
        threads_qs = threads_qs.filter(pk__in=[_thread_uuid(t) for t in thread_ids])
    if since is not None:
        threads_qs = threads_qs.filter(created_at__gte=since)
    threads = list(threads_qs.order_by("created_at", "pk"))
    pks = [t.pk for t in threads]
    messages = _message_facts(pks)
    resolved_at, interventions = _thread_audit(workspace_id, pks)
    escalations = _escalation_counts(pks)
    wakes = _wake_facts(pks)

    rows, cycle_times, rounds_all, all_wakes = [], [], [], []
    for thread in threads:
        fact = messages[thread.pk]
        resolution = next(
            (at for at in sorted(resolved_at.get(str(thread.pk), []))
             if fact.first_finding_at is not None and at >= fact.first_finding_at),
            None,
        )
        cycle = (resolution - fact.first_finding_at).total_seconds() if resolution else None
        rounds = review_rounds(fact.kinds)
        if cycle is not None:
            cycle_times.append(cycle)
        if fact.first_finding_at is not None:
            rounds_all.append(rounds)
        thread_wakes = wakes.get(thread.pk, [])
        all_wakes.extend(thread_wakes)
        wake_summary = _wake_summary(thread_wakes)
        rows.append({
            "thread_id": str(thread.pk),
            "title": thread.title,
            "type": thread.type,
            "status": thread.status,
            "first_finding_at": iso(fact.first_finding_at),
            "resolved_at": iso(resolution),
            "cycle_time_seconds": cycle,
            "review_rounds": rounds,
            "wakes": wake_summary,
            "escalations": escalations[str(thread.pk)],
            "human_interventions": interventions[str(thread.pk)] + wake_summary["operator_wakes"],
        })

    feedback = list(Feedback.objects.filter(workspace_id=workspace_id, thread_id__in=pks))
    return {
        "workspace_id": workspace_id,
        "threads": rows,
        "totals": {
            "threads": len(rows),
            "resolved": len(cycle_times),
            "cycle_time_seconds": distribution(cycle_times),
            "review_rounds": distribution([float(r) for r in rounds_all]),
            "wakes": _wake_summary(all_wakes),
            "escalations": sum(r["escalations"] for r in rows),
            "human_interventions": sum(r["human_interventions"] for r in rows),
        },
        "feedback": feedback_summary(feedback),
        "schema_version": SCHEMA_VERSION,
    }


def feedback_summary(feedback: list[Feedback]) -> dict[str, Any]:
    """Ratings and the top pain points, most often named first (ties by name)."""
    tags: Counter = Counter(tag for item in feedback for tag in item.tags)
    ratings = [item.rating for item in feedback if item.rating is not None]
    ranked = sorted(tags.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_PAIN_POINTS]
    return {
        "count": len(feedback),
        "rating": distribution([float(r) for r in ratings]),
        "top_pain_points": [{"tag": tag, "count": count} for tag, count in ranked],
        "notes": [
            {"thread_id": str(item.thread_id), "operator": item.operator, "rating": item.rating,
             "tags": item.tags, "text": item.text, "created_at": iso(item.created_at)}
            for item in feedback if item.text
        ],
    }


def load_baseline(path: str) -> dict[str, Any]:
    """A baseline file: cycle times measured with the manual relay (docs/pilot.md).

    `{"label": "...", "cycle_times_seconds": [...]}` or `{"label": ..., "threads": [{"cycle_time_seconds": N, ...}]}`.
    """
    file = Path(path)
    if not file.is_file():
        raise ValidationFailed("The baseline file does not exist.", code="baseline_not_found", details={"path": path})
    try:
        data = json.loads(file.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValidationFailed(
            "The baseline file is not valid JSON.", code="invalid_baseline", details={"path": path, "error": str(exc)}
        ) from None
    if not isinstance(data, dict):
        raise ValidationFailed("The baseline must be a JSON object.", code="invalid_baseline", details={"path": path})
    if "cycle_times_seconds" in data:
        values = data["cycle_times_seconds"]
    else:
        threads = data.get("threads")
        values = [t.get("cycle_time_seconds") for t in threads] if isinstance(threads, list) and all(
            isinstance(t, dict) for t in threads) else None
    if not isinstance(values, list) or not values or not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0 for v in values
    ):
        raise ValidationFailed(
            "The baseline needs a non-empty list of cycle times in seconds (numbers >= 0), as "
            "`cycle_times_seconds` or `threads[].cycle_time_seconds`.",
            code="invalid_baseline", details={"path": path},
        )
    return {"label": str(data.get("label") or file.name), "cycle_time_seconds": distribution([float(v) for v in values])}


def baseline_comparison(*, baseline: dict[str, Any], report: dict[str, Any]) -> dict[str, Any]:
    """Baseline vs pilot cycle times side by side, with the change of the median and p90."""
    before, after = baseline["cycle_time_seconds"], report["totals"]["cycle_time_seconds"]

    def change(key: str) -> dict[str, Any]:
        b, a = before[key], after[key]
        if b is None or a is None:
            return {"baseline": b, "pilot": a, "delta_seconds": None, "ratio": None}
        return {"baseline": b, "pilot": a, "delta_seconds": a - b, "ratio": round(a / b, 3) if b else None}

    return {
        "label": baseline["label"],
        "baseline": before,
        "pilot": after,
        "median": change("median"),
        "p90": change("p90"),
    }
