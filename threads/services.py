"""Thread writes: create, change status, manage participants. Each audited in its transaction."""
from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from messaging.services import check_idempotency_key, cursors_create, status_message_append
from orkiva.errors import Conflict, Forbidden, ValidationFailed
from policy.audit import audit_record
from policy.controls import progress_restart
from policy.escalations import escalations_after_transition
from policy.identity import IDENTIFIER_HELP, ROLE_COORDINATOR, ROLE_OPERATOR, ROLE_PARTICIPANT, Actor, is_identifier
from policy.models import Escalation
from policy.roles import Op, authorize
from threads import transitions
from threads.models import Participant, Thread
from threads.selectors import participant_list, thread_get

TYPE_RE = re.compile(r"[a-z][a-z0-9_\-]{0,63}")  # matched whole: no trailing newline
TYPE_HELP = "a lowercase slug: a-z, 0-9, _ and -, starting with a letter, at most 64"
TITLE_MAX = 300


def check_thread_input(*, title: str, type: str, participants: list[str]) -> list[str]:
    """Validate a new thread's fields; return its participants de-duplicated in order."""
    errors: dict[str, str] = {}
    if not title.strip():
        errors["title"] = "must not be blank"
    elif len(title) > TITLE_MAX:
        errors["title"] = f"at most {TITLE_MAX} characters"
    if not TYPE_RE.fullmatch(type):
        errors["type"] = TYPE_HELP
    unique = list(dict.fromkeys(participants))
    if not unique:
        errors["participants"] = "at least one agent id"
    elif len(unique) > settings.ORKIVA_MAX_PARTICIPANTS:
        errors["participants"] = f"at most {settings.ORKIVA_MAX_PARTICIPANTS} agent ids"
    elif not all(is_identifier(p) for p in unique):
        errors["participants"] = f"each agent id: {IDENTIFIER_HELP}"
    if errors:
        raise ValidationFailed("The thread is not valid.", details={"fields": errors})
    return unique


def _create_fingerprint(*, title: str, type: str, agent_ids: list[str]) -> str:
    """What makes two creates with one idempotency key 'the same request'."""
    canonical = json.dumps({"title": title, "type": type, "participants": sorted(agent_ids)}, sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _replayed(*, actor: Actor, idempotency_key: str, request_hash: str) -> Thread | None:
    """The thread an earlier create with this key made (this creator, this workspace), or None;
    the same key with other content is idempotency_conflict, as for posts."""
    original = Thread.objects.filter(workspace_id=actor.workspace_id, created_by=actor.agent_id,
                                     idempotency_key=idempotency_key).first()
    if original is None:
        return None
    if original.request_hash != request_hash:
        raise Conflict("This idempotency key was used for a different thread.", code="idempotency_conflict",
                       details={"idempotency_key": idempotency_key, "original_thread_id": str(original.pk)})
    original.idempotent_replay = True
    return original


@transaction.atomic
def thread_create(
    *, actor: Actor, title: str, type: str, participants: list[str], idempotency_key: str | None = None,
    now: datetime | None = None,
) -> Thread:
    """Create a thread. With an idempotency key a retry returns the thread the first attempt made
    (`idempotent_replay` True, nothing written again); concurrent retries make one thread (a unique
    constraint: the loser reads the winner's row)."""
    authorize(actor, Op.THREAD_CREATE)
    agent_ids = check_thread_input(title=title, type=type, participants=participants)
    check_idempotency_key(idempotency_key)
    request_hash = _create_fingerprint(title=title.strip(), type=type, agent_ids=agent_ids) if idempotency_key else ""
    if idempotency_key is not None:
        replay = _replayed(actor=actor, idempotency_key=idempotency_key, request_hash=request_hash)
        if replay is not None:
            return replay
    moment = now or timezone.now()
    try:
        with transaction.atomic():
            thread = Thread.objects.create(
                workspace_id=actor.workspace_id,
                type=type,
                title=title.strip(),
                status=transitions.OPEN,
                status_changed_at=moment,
                created_by=actor.agent_id,
                idempotency_key=idempotency_key,
                request_hash=request_hash,
                created_at=moment,
                updated_at=moment,
            )
    except IntegrityError:
        if idempotency_key is None:
            raise
        replay = _replayed(actor=actor, idempotency_key=idempotency_key, request_hash=request_hash)
        if replay is None:
            raise
        return replay
    thread.idempotent_replay = False
    Participant.objects.bulk_create(
        [Participant(thread=thread, agent_id=a, added_at=moment, added_by=actor.agent_id) for a in agent_ids]
    )
    cursors_create(thread=thread, agent_ids=agent_ids, now=moment)
    thread._participant_ids = frozenset(agent_ids)
    audit_record(
        actor=actor,
        action="thread.create",
        target_type="thread",
        target_id=str(thread.pk),
        new={"title": thread.title, "type": type, "participants": agent_ids, "status": thread.status},
        now=moment,
    )
    return thread


def check_transition(*, actor: Actor, thread: Thread, target: str, reason: str) -> None:
    current = thread.status
    if target not in transitions.STATUSES:
        raise ValidationFailed(
            f"Unknown status {target!r}.", details={"fields": {"status": list(transitions.STATUSES)}}
        )
    if target == current:
        raise Conflict(
            f"The thread is already {current}.",
            code="invalid_transition",
            details={"from": current, "to": target, "allowed": list(transitions.allowed_targets(current))},
        )
    if target not in transitions.allowed_targets(current):
        raise Conflict(
            f"A thread cannot move from {current} to {target}.",
            code="invalid_transition",
            details={"from": current, "to": target, "allowed": list(transitions.allowed_targets(current))},
        )
    if transitions.needs_authority(current, target):
        if actor.role == ROLE_PARTICIPANT:
            raise Forbidden(
                f"Moving a thread from {current} to {target} needs a coordinator or an operator.",
                code="forbidden_transition",
                details={"from": current, "to": target},
                audit={
                    "actor": actor,
                    "action": "thread.transition.denied",
                    "target_type": "thread",
                    "target_id": str(thread.pk),
                    "old": {"status": current},
                    "new": {"status": target},
                },
            )
        if not reason.strip():  # 409: the thread's present status is what makes this move need one
            raise Conflict(
                f"Moving a thread from {current} to {target} needs a reason.", code="reason_required"
            )


@transaction.atomic
def thread_transition(
    *,
    actor: Actor,
    thread_id,
    status: str,
    reason: str = "",
    reason_code: str = "",
    now: datetime | None = None,
) -> Thread:
    """Change a thread's status under its row lock; record it as a `status` message and an audit row."""
    thread = thread_get(actor=actor, thread_id=thread_id, op=Op.THREAD_TRANSITION, lock=True)
    thread_transition_locked(actor=actor, thread=thread, status=status, reason=reason, reason_code=reason_code, now=now)
    return thread


def thread_transition_locked(
    *, actor: Actor, thread: Thread, status: str, reason: str = "", reason_code: str = "", now: datetime | None = None
) -> list[Escalation]:
    """Check and make the move on a thread whose lock the caller holds; resolve the escalations
    it ends (returned). A move is progress, resetting the loop counters, when it settles the work
    (to resolved or closed) or comes from a coordinator or an operator: participants toggling
    active and disputed would otherwise keep a loop from ever tripping the controls."""
    check_transition(actor=actor, thread=thread, target=status, reason=reason)
    moment = now or timezone.now()
    old = thread.status
    progress = is_progress_move(actor=actor, target=status)
    thread_status_apply(
        actor=actor, thread=thread, status=status, reason=reason.strip(), reason_code=reason_code, now=moment,
        reset_progress=progress,
    )
    return escalations_after_transition(
        actor=actor, thread=thread, old=old, new=status, reason=reason.strip(), now=moment, progress=progress
    )


def is_progress_move(*, actor: Actor, target: str) -> bool:
    return target in (transitions.RESOLVED, transitions.CLOSED) or actor.role in (ROLE_COORDINATOR, ROLE_OPERATOR)


def thread_status_apply(
    *,
    actor: Actor,
    thread: Thread,
    status: str,
    reason: str,
    reason_code: str,
    now: datetime,
    reset_progress: bool = False,
    action: str = "thread.transition",
    audit_new: dict | None = None,
) -> None:
    """Write a status change the caller has decided (and checked, if it needs checking) on a
    locked thread: the row, a `status` message, an audit row. Policy's automatic blocks come
    here directly; `reset_progress` restarts the loop counters (and, when the thread leaves
    `blocked`, the count of repeated findings)."""
    old = thread.status
    thread.status, thread.status_changed_at = status, now
    thread.status_reason, thread.status_reason_code = reason, reason_code
    fields = ["status", "status_changed_at", "status_reason", "status_reason_code"]
    old_values: dict = {"status": old}
    new_values: dict = {"status": status, **(audit_new or {})}
    if reset_progress:
        if thread.turns_since_progress:  # the audit row shows the counter reset only when there was one
            old_values["turns_since_progress"], new_values["turns_since_progress"] = thread.turns_since_progress, 0
        fields += progress_restart(thread, findings=old == transitions.BLOCKED)
    thread.save(update_fields=fields)
    status_message_append(thread=thread, actor=actor, old=old, new=status, reason=reason, now=now)
    audit_record(
        actor=actor,
        action=action,
        target_type="thread",
        target_id=str(thread.pk),
        reason=reason,
        reason_code=reason_code,
        old=old_values,
        new=new_values,
        now=now,
    )


@transaction.atomic
def participants_change(
    *, actor: Actor, thread_id, add: list[str], remove: list[str], reason: str = "", now: datetime | None = None
) -> Thread:
    """Add and remove participants (coordinators). New participants start with a cursor at 0. A
    request that changes nothing (no ids, or only ids already in or already out) answers the thread."""
    thread = thread_get(actor=actor, thread_id=thread_id, op=Op.PARTICIPANTS_MANAGE, lock=True)
    bad = [a for a in [*add, *remove] if not is_identifier(a)]
    if bad:
        raise ValidationFailed(
            "Name agent ids to add or remove.", details={"fields": {"add": IDENTIFIER_HELP, "remove": IDENTIFIER_HELP}}
        )
    before = participant_list(thread)
    after = sorted((set(before) | set(add)) - set(remove))
    if after == before:  # nothing named, or nothing that changes: nothing done, nothing audited
        thread._participant_ids = frozenset(before)
        return thread
    if not after:
        raise Conflict("A thread keeps at least one participant.", code="participants_empty")
    if len(after) > settings.ORKIVA_MAX_PARTICIPANTS:
        raise Conflict(f"At most {settings.ORKIVA_MAX_PARTICIPANTS} participants.", code="too_many_participants",
                       details={"limit": settings.ORKIVA_MAX_PARTICIPANTS, "after": len(after)})
    moment = now or timezone.now()
    added = [a for a in after if a not in before]
    Participant.objects.bulk_create(
        [Participant(thread=thread, agent_id=a, added_at=moment, added_by=actor.agent_id) for a in added]
    )
    Participant.objects.filter(thread=thread, agent_id__in=set(remove)).delete()
    cursors_create(thread=thread, agent_ids=added, now=moment)
    Thread.objects.filter(pk=thread.pk).update(updated_at=moment)
    thread._participant_ids = frozenset(after)
    audit_record(
        actor=actor,
        action="thread.participants",
        target_type="thread",
        target_id=str(thread.pk),
        reason=reason,
        old={"participants": before},
        new={"participants": after},
        now=moment,
    )
    return thread
