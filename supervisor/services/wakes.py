"""Wake requests: triggers (REST, MCP, operator), the auto-wake rule run when a post commits, and
an operator's cancel. A wake is a row before it is a job; the chain (chain.py) runs it."""
from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, OuterRef, Q, Subquery
from django.db.models.functions import Coalesce
from django.utils import timezone

from messaging import kinds
from messaging.models import Message, ReadCursor
from messaging.selectors import cursor_position, unread_count
from orkiva import observability, sql
from orkiva.context import current_request_id
from orkiva.errors import Conflict, Forbidden, RateLimited, ValidationFailed
from policy.identity import IDENTIFIER_HELP, Actor, is_identifier
from policy.roles import Op
from supervisor import reasons
from supervisor.models import ST_ACTIVE, ST_DEREGISTERED, UNMANAGED, Runtime, WakeRequest
from supervisor.selectors import last_activity, runtime_of, runtime_state, wake_get
from supervisor.services.trace import (
    SYSTEM_ID, SYSTEM_ROLE, attempt_record, count_finished_on_commit, enqueue_on_commit, guidance_for, typeable,
    wake_ref_of,
)
from threads import transitions
from threads.models import Participant, Thread
from threads.selectors import participant_ids, thread_get

logger = logging.getLogger("orkiva.supervisor")


@transaction.atomic
def wake_cancel(*, operator: Actor, wake_id, reason: str, now: datetime | None = None) -> WakeRequest:
    """Stop an active wake (an operator's recovery from a stuck one). Final status `cancelled`;
    a step running at that moment finishes its side effect, is recorded, and changes nothing."""
    if not reason.strip():
        raise ValidationFailed("A reason is required.", code="reason_required")
    wake = wake_get(actor=operator, wake_id=wake_id)
    wake = WakeRequest.objects.select_for_update().get(pk=wake.pk)
    if wake.status in reasons.FINAL_STATUSES:
        raise Conflict(
            f"The wake is already {wake.status}.", code="wake_already_final",
            details={"wake_id": str(wake.pk), "status": wake.status},
        )
    moment = now or timezone.now()
    old_status = wake.status
    wake.status, wake.reason_code, wake.stage = reasons.CANCELLED, reasons.R_OPERATOR_CANCELLED, reasons.STAGE_DONE
    wake.finished_at, wake.next_attempt_at, wake.updated_at = moment, None, moment
    wake.save(update_fields=["status", "reason_code", "stage", "finished_at", "next_attempt_at", "updated_at"])
    attempt_record(wake, step="request", outcome=reasons.CANCELLED, reason_code=reasons.R_OPERATOR_CANCELLED, now=moment,
             actor=operator, reason=reason.strip(), detail={"cancelled_by": operator.agent_id, "was": old_status})
    count_finished_on_commit(wake, now=moment)
    return wake


def dedupe_key_for(*, workspace_id: str, agent_id: str, thread_id) -> str:
    return f"wake:{workspace_id}:{agent_id}:{thread_id}"


def wake_prompt(*, thread: Thread, agent_id: str, reason: str, trace_id: str) -> str:
    """The prompt typed into the agent's pane (pasted whole: it may span lines). It always carries the
    wake's marker, so the turn it starts is known to be the wake's: a template without `{wake_ref}`
    gets it appended. What a participant wrote (the title, the reason) loses its control characters."""
    values = {
        "thread_id": str(thread.pk),
        "title": typeable(thread.title),
        "agent_id": agent_id,
        "workspace_id": thread.workspace_id,
        "reason": f" Reason: {typeable(reason)}" if reason.strip() else "",
        "wake_ref": wake_ref_of(trace_id),
    }
    prompt = settings.ORKIVA_WAKE_PROMPT.format_map(values).strip()
    prompt = prompt if values["wake_ref"] in prompt else f"{prompt} ({values['wake_ref']})"
    # A TUI takes a prompt starting with ! for a shell command and / for a command of its own.
    return f"Orkiva: {prompt}" if prompt[:1] in ("!", "/", "#", "@") else prompt


def _wake_create(
    *,
    thread: Thread,
    agent_id: str,
    source: str,
    requested_by: str,
    actor: Actor | None,
    reason: str,
    force: bool,
    now: datetime,
) -> WakeRequest:
    """Create a wake, or return the one it collapses onto (`wake.deduped` says which).
    The caller holds a transaction; the job is enqueued when it commits."""
    workspace_id = thread.workspace_id
    key = dedupe_key_for(workspace_id=workspace_id, agent_id=agent_id, thread_id=thread.pk)
    existing = WakeRequest.objects.select_for_update().filter(dedupe_key=key, status__in=reasons.ACTIVE_STATUSES).first()
    runtime = runtime_of(workspace_id=workspace_id, agent_id=agent_id)
    # A burst of requests collapses onto the last wake for a while; but a post for an agent that says
    # when its turns end deserves a wake of its own once the last one is over (it is held while the
    # agent is busy): the agent may well have finished its turn without reading this post.
    windowed = not (source == reasons.SOURCE_AUTO and runtime is not None and runtime.state_source)
    if existing is None and not force and windowed:
        window = now - timedelta(seconds=settings.ORKIVA_WAKE_DEDUPE_WINDOW_SECONDS)
        existing = WakeRequest.objects.filter(dedupe_key=key, created_at__gte=window).order_by("-created_at").first()
    if existing is not None:
        if force and not existing.force and existing.status in reasons.ACTIVE_STATUSES:
            existing.force, existing.updated_at = True, now
            existing.reason = reason or existing.reason
            existing.save(update_fields=["force", "reason", "updated_at"])
            attempt_record(existing, step="request", outcome=reasons.OUT_CREATED, reason_code=reasons.R_FORCED, now=now,
                     actor=actor, reason=reason, detail={"forced_by": requested_by})
            if existing.status == reasons.QUEUED and existing.reason_code == reasons.R_MAX_DEFER:
                WakeRequest.objects.filter(pk=existing.pk).update(next_attempt_at=now)
                enqueue_on_commit(existing.pk)
        existing.deduped = True
        return existing
    window_start = now - timedelta(seconds=settings.ORKIVA_WAKE_RATE_WINDOW_SECONDS)
    recent = WakeRequest.objects.filter(workspace_id=workspace_id, agent_id=agent_id, created_at__gte=window_start).count()
    if recent >= settings.ORKIVA_WAKE_RATE_LIMIT:
        raise RateLimited(
            f"{agent_id} was woken {recent} times in the last {int(settings.ORKIVA_WAKE_RATE_WINDOW_SECONDS)}s.",
            code="wake_rate_limited",
            details={"agent_id": agent_id, "limit": settings.ORKIVA_WAKE_RATE_LIMIT,
                     "window_seconds": settings.ORKIVA_WAKE_RATE_WINDOW_SECONDS},
            audit={"actor": actor, "actor_id": None if actor else requested_by, "actor_role": None if actor else SYSTEM_ROLE,
                   "workspace_id": workspace_id, "action": "wake.rate_limited", "target_type": "agent",
                   "target_id": agent_id},
        )
    trace_id = uuid.uuid4().hex
    wake = WakeRequest(
        workspace_id=workspace_id,
        agent_id=agent_id,
        thread=thread,
        runtime=runtime,
        source=source,
        requested_by=requested_by,
        reason=reason,
        force=force,
        dedupe_key=key,
        trace_id=trace_id,
        request_id=current_request_id() or "",
        status=reasons.PENDING,
        stage=reasons.STAGE_INJECT,
        reason_code=reasons.R_CREATED,
        prompt=wake_prompt(thread=thread, agent_id=agent_id, reason=reason, trace_id=trace_id),
        next_attempt_at=now,
        created_at=now,
        updated_at=now,
    )
    try:
        with transaction.atomic():
            wake.save(force_insert=True)
    except IntegrityError:  # a concurrent request created the active wake first
        winner = WakeRequest.objects.filter(dedupe_key=key, status__in=reasons.ACTIVE_STATUSES).first()
        if winner is None:
            raise
        winner.deduped = True
        return winner
    attempt_record(wake, step="request", outcome=reasons.OUT_CREATED, reason_code=reasons.R_CREATED, now=now, actor=actor,
             reason=reason, detail={"source": source, "requested_by": requested_by, "force": force})
    if runtime is not None and runtime.management_mode == UNMANAGED:
        # Deterministic and immediate: never typed into; the chain starts at resume.
        wake.status, wake.stage, wake.reason_code = reasons.UNMANAGED_RUNTIME, reasons.STAGE_RESUME, reasons.R_UNMANAGED
        wake.save(update_fields=["status", "stage", "reason_code"])
        attempt_record(wake, step="inject", outcome=reasons.OUT_SKIPPED, reason_code=reasons.R_UNMANAGED, now=now,
                 detail={"guidance": guidance_for(runtime)})
    enqueue_on_commit(wake.pk)
    transaction.on_commit(lambda: observability.wake_requested(source=source), robust=True)
    wake.deduped = False
    return wake


@transaction.atomic
def wake_trigger(
    *, actor: Actor, thread_id, agent_id: str, reason: str = "", force: bool = False, now: datetime | None = None
) -> WakeRequest:
    """Ask the supervisor to wake `agent_id` about a thread: `trigger_participant`, REST and the
    operator command all come here. Answers at once; the chain runs in the supervisor's jobs."""
    thread = thread_get(actor=actor, thread_id=thread_id, op=Op.WAKE_TRIGGER)
    if not is_identifier(agent_id):
        raise ValidationFailed("Not a valid agent id.", details={"fields": {"agent_id": IDENTIFIER_HELP}})
    if agent_id not in participant_ids(thread):
        raise Conflict(  # 409: a well-formed id the thread's present participants do not hold
            f"{agent_id} is not a participant of this thread.", code="agent_not_in_thread",
            details={"agent_id": agent_id},
        )
    reason = (reason or "").strip()
    if len(reason) > 1000:
        raise ValidationFailed("The reason is at most 1000 characters.", details={"fields": {"reason": "too long"}})
    if force:
        if not actor.is_operator:
            raise Forbidden(
                "Only an operator may force a wake past a typing human.", code="force_requires_operator",
                audit={"actor": actor, "action": "wake.force.denied", "target_type": "thread",
                       "target_id": str(thread.pk)},
            )
        if not reason:
            raise ValidationFailed("A forced wake needs a reason.", code="reason_required")
    source = reasons.SOURCE_OPERATOR if actor.is_operator else reasons.SOURCE_TRIGGER
    return _wake_create(
        thread=thread, agent_id=agent_id, source=source, requested_by=actor.agent_id, actor=actor,
        reason=reason, force=force, now=now or timezone.now(),
    )


def wakes_for_post(*, thread_id, sender: str, now: datetime | None = None, thread: Thread | None = None) -> list[WakeRequest]:
    """The auto-wake rule, run when a post commits: wake each other participant whose runtime is
    idle or offline and who has unread messages in the thread. Never the sender; agents with no
    registered (or a deregistered) runtime are not woken automatically. An agent whose CLI reports
    its state is woken whatever it is doing: the chain holds the wake while it is busy and types it
    in once it is idle (a heartbeat says nothing of whether it will read this post).

    `thread` is the post's thread as it committed (the post passes it: no re-read); without it the
    thread is read. One query finds the candidate runtimes; nothing more runs when there are none."""
    if not settings.ORKIVA_WAKE_AUTO:
        return []
    moment = now or timezone.now()
    if thread is None:
        thread = Thread.objects.filter(pk=thread_id).first()
    # A blocked thread (policy stopped the agents) or a closed one wakes nobody: the woken agent
    # could only meet 409 thread_blocked, and waking each other is how a loop keeps going.
    if thread is None or thread.status in (transitions.BLOCKED, transitions.CLOSED):
        return []
    # Every post runs this query, and in most it finds nobody: hand-written (orkiva.sql), ids only.
    candidates = sql.fetchall(
        sql.statement("wake_candidates", _wake_candidates_sql),
        [thread.workspace_id, ST_DEREGISTERED, sql.param(Participant, "thread", thread.pk), sender],
    )
    if not candidates:
        return []
    woken = []
    for runtime in Runtime.objects.filter(pk__in=[pk for (pk,) in candidates]).order_by("agent_id"):
        activity = last_activity(runtime, workspace_id=thread.workspace_id, agent_id=runtime.agent_id)
        if not runtime.state_source and runtime_state(runtime, now=moment, activity=activity) == ST_ACTIVE:
            continue
        last_read = cursor_position(thread=thread, agent_id=runtime.agent_id)
        if unread_count(thread=thread, agent_id=runtime.agent_id, last_read_seq=last_read) == 0:
            continue
        try:
            with transaction.atomic():
                wake = _wake_create(
                    thread=thread, agent_id=runtime.agent_id, source=reasons.SOURCE_AUTO, requested_by=sender,
                    actor=None, reason="", force=False, now=moment,
                )
        except RateLimited as err:
            from orkiva.errors import report_error

            report_error(err)  # audited and counted; the post itself stands
            continue
        woken.append(wake)
    return woken


def _threads_behind(*, workspace_id: str, agent_id: str):
    """The threads the agent takes part in (not blocked or closed) with messages after its read
    cursor, each annotated with `read_to`, its cursor's seq."""
    cursor = ReadCursor.objects.filter(thread=OuterRef("pk"), agent_id=agent_id).values("last_read_seq")[:1]
    return (
        Thread.objects.filter(workspace_id=workspace_id, participants__agent_id=agent_id)
        .exclude(status__in=(transitions.BLOCKED, transitions.CLOSED))
        .annotate(read_to=Coalesce(Subquery(cursor), 0))
        .filter(last_seq__gt=F("read_to"))
    )


def wakes_for_unread(*, workspace_id: str, agent_id: str, thread_id=None, now: datetime | None = None
                     ) -> list[WakeRequest]:
    """An agent whose CLI reports its state has just finished a turn: wake it about each thread it has
    not read to the end, unless it was woken for those messages already (a wake it acknowledged after
    the newest of them arrived). A post made while its wake was being delivered collapsed onto that
    wake; the agent may have read the thread before the post landed: this is where it is not lost.
    Also run when a wake is delivered (chain.wake_advance), for its thread. The caller holds a
    transaction."""
    if not settings.ORKIVA_WAKE_AUTO:
        return []
    moment = now or timezone.now()
    threads = _threads_behind(workspace_id=workspace_id, agent_id=agent_id)
    if thread_id is not None:
        threads = threads.filter(pk=thread_id)
    woken = []
    for thread in threads:
        if unread_count(thread=thread, agent_id=agent_id, last_read_seq=thread.read_to) == 0:
            continue
        newest = (Message.objects.filter(thread=thread, seq__gt=thread.read_to).exclude(sender=agent_id)
                  .order_by("-seq").values_list("created_at", flat=True).first())
        key = dedupe_key_for(workspace_id=workspace_id, agent_id=agent_id, thread_id=thread.pk)
        acked = (WakeRequest.objects.filter(dedupe_key=key, acked_at__isnull=False).order_by("-acked_at")
                 .values_list("acked_at", flat=True).first())
        if newest is None or (acked is not None and acked >= newest):
            continue
        try:
            with transaction.atomic():
                wake = _wake_create(thread=thread, agent_id=agent_id, source=reasons.SOURCE_AUTO,
                                    requested_by=SYSTEM_ID, actor=None, reason="", force=False, now=moment)
        except RateLimited as err:
            from orkiva.errors import report_error

            report_error(err)  # audited and counted
            continue
        woken.append(wake)
    return woken


# How long after a post the sweep waits before it takes the post's auto-wake for missed: the post's
# own on-commit rule runs within milliseconds; this leaves it all the room it needs.
MISSED_AFTER_SECONDS = 60


def wakes_missed(*, now: datetime | None = None) -> list[WakeRequest]:
    """The sweep's catch-up of the auto-wake rule, for a post whose rule never ran: it runs after
    the commit and never fails the post, so a database blip at that moment (or the process dying
    right after the commit) skipped it for good. A wake is missed when a registered runtime's agent
    has unread messages of others in a thread (not blocked or closed), the newest of them posted
    after the runtime registered and at least MISSED_AFTER_SECONDS ago, and no wake for it in that
    thread was created since that message. The rule's own conditions apply (an active agent whose
    CLI does not report its state is not woken); the rest is `wakes_for_post`'s."""
    if not settings.ORKIVA_WAKE_AUTO:
        return []
    moment = now or timezone.now()
    settled = moment - timedelta(seconds=MISSED_AFTER_SECONDS)
    woken = []
    for runtime in Runtime.objects.exclude(state=ST_DEREGISTERED).order_by("workspace_id", "agent_id"):
        if not runtime.state_source and runtime_state(
                runtime, now=moment, activity=last_activity(runtime, workspace_id=runtime.workspace_id,
                                                             agent_id=runtime.agent_id)) == ST_ACTIVE:
            continue
        for thread in _threads_behind(workspace_id=runtime.workspace_id, agent_id=runtime.agent_id):
            # status changes write a message of their own and never run the rule: not a missed post
            newest = (Message.objects.filter(thread=thread, seq__gt=thread.read_to).exclude(sender=runtime.agent_id)
                      .exclude(kind=kinds.STATUS).order_by("-seq").values("created_at", "sender").first())
            if newest is None or not runtime.registered_at <= newest["created_at"] <= settled:
                continue
            key = dedupe_key_for(workspace_id=thread.workspace_id, agent_id=runtime.agent_id, thread_id=thread.pk)
            # a wake since the post, or one the post's rule would have collapsed onto (its dedupe window)
            since = newest["created_at"] - timedelta(seconds=settings.ORKIVA_WAKE_DEDUPE_WINDOW_SECONDS)
            if WakeRequest.objects.filter(dedupe_key=key, created_at__gte=since).exists():
                continue
            try:
                with transaction.atomic():
                    wake = _wake_create(thread=thread, agent_id=runtime.agent_id, source=reasons.SOURCE_AUTO,
                                        requested_by=newest["sender"], actor=None, reason="", force=False, now=moment)
            except RateLimited as err:
                from orkiva.errors import report_error

                report_error(err)  # audited and counted
                continue
            if getattr(wake, "deduped", False):  # an active wake covers it already: nothing was missed
                continue
            logger.warning("wake_missed", extra={"wake_id": str(wake.pk), "agent_id": runtime.agent_id,
                                                 "thread_id": str(thread.pk)})
            woken.append(wake)
    return woken


def _wake_candidates_sql() -> str:
    """The ids of the runtimes (not deregistered) of a thread's participants other than the sender."""
    runtime, participant = sql.table(Runtime), sql.table(Participant)
    agent = sql.column(Runtime, "agent_id")
    return (
        f"SELECT {sql.column(Runtime, 'id')} FROM {runtime} WHERE {sql.column(Runtime, 'workspace_id')} = %s "
        f"AND {sql.column(Runtime, 'state')} <> %s AND {agent} IN (SELECT {sql.column(Participant, 'agent_id')} "
        f"FROM {participant} WHERE {sql.column(Participant, 'thread')} = %s "
        f"AND {sql.column(Participant, 'agent_id')} <> %s)"
    )


# The agent's own signs that a wake reached it (docs/supervisor.md, "Delivered").
ACK_READ, ACK_CURSOR, ACK_TURN = "read_messages", "ack_read", "turn_started"


def wakes_acknowledge(*, actor: Actor, signal: str, thread_id=None, wake_ref: str = "",
                      now: datetime | None = None) -> int:
    """The agent showed that a wake reached it: it read the wake's thread or acked in it, or (its
    hook) a turn started. Marks the first such sign on the agent's wakes being delivered: awaiting
    the ack of an injection, or under a step's lease (typed a moment ago; a resume or spawn running).
    `wake_ref` names the one wake whose own prompt started the turn: that one is marked whatever it
    waits for (the TUI took the prompt later than the step waited). A step that starts a new delivery
    clears the other marks (chain.wake_advance), so a sign given while a wake only waited (deferred,
    queued) is not taken for the next delivery's ack.

    Every read of a thread asks: one indexed probe, and an update only when a wake is there."""
    moment = now or timezone.now()
    delivering = WakeRequest.objects.filter(
        workspace_id=actor.workspace_id, agent_id=actor.agent_id, status__in=reasons.ACTIVE_STATUSES,
        acked_at__isnull=True,
    )
    if wake_ref:  # the wake's own prompt started a turn (trace.wake_ref_of): that wake, whatever it waits for
        delivering = delivering.filter(trace_id__startswith=wake_ref[2:])
    else:
        delivering = delivering.filter(Q(status=reasons.AWAITING_ACK) | Q(lease_until__gt=moment))
    if thread_id is not None:
        delivering = delivering.filter(thread_id=thread_id)
    pks = list(delivering.values_list("pk", flat=True)[:20])
    if not pks:
        return 0
    return WakeRequest.objects.filter(pk__in=pks, acked_at__isnull=True).update(acked_at=moment, ack_signal=signal)
