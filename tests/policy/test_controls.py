"""The policy controls through the post service: each one one below, at, and one above its threshold."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone as dt_timezone

import pytest
from django.conf import settings as django_settings

from messaging.models import Message
from messaging.services import message_post
from orkiva.errors import Conflict, RateLimited, ValidationFailed
from policy.config import policy_config
from policy.escalations import escalation_raise, thread_override, thread_unblock
from policy.identity import Actor
from policy.models import AuditEvent, Escalation, RateCounter
from tests.factories import ThreadFactory
from threads.models import Thread
from threads.services import thread_transition
from threads.summary import summary_of

pytestmark = pytest.mark.django_db

# A fixed clock, 13 s into a 60 s window: Retry-After is then exactly 47.
WINDOW_START = datetime(2026, 11, 25, 12, 0, 0, tzinfo=dt_timezone.utc)
NOW = WINDOW_START + timedelta(seconds=13)
OPERATOR = Actor.operator(name="alice", workspace_id="ws-main")


def post(actor, thread, body="hello", *, kind="message", in_reply_to=None, now=NOW):
    return message_post(actor=actor, thread_id=str(thread.pk), body=body, kind=kind, in_reply_to=in_reply_to,
                        now=now).message


def ping_pong(thread, agents, turns, *, start=0):
    """`turns` posts alternating between agents, none of them progress."""
    for n in range(start, start + turns):
        post(agents[n % 2], thread, f"still thinking {n}")


def test_defaults_are_the_backlogs():
    config = policy_config()
    assert (config.loop_threshold_turns, config.no_progress_block_turns, config.repeated_finding_limit) == (10, 20, 3)
    assert (config.rate_limit_thread_posts, config.rate_limit_workspace_posts, config.rate_limit_window_seconds) == (
        30, 120, 60)
    assert (config.retention_mode, config.content_redaction, config.content_filtering) == ("indefinite", False, False)
    assert django_settings.ORKIVA_RETENTION_DAYS == 0


# --- rate limits ---------------------------------------------------------------------------------
@pytest.mark.parametrize("posts, refused", [(4, False), (5, False), (6, True)], ids=["below", "at", "above"])
def test_thread_rate_limit(settings, thread, executioner, posts, refused):
    settings.ORKIVA_RATE_LIMIT_THREAD_POSTS = 5
    for _ in range(posts - 1):
        post(executioner, thread)
    if refused:
        with pytest.raises(RateLimited) as exc:
            post(executioner, thread)
        err = exc.value
        assert (err.status, err.code, err.headers) == (429, "rate_limited", {"Retry-After": "47"})
        assert err.details == {"scope": "thread", "limit": 5, "window_seconds": 60, "retry_after_seconds": 47}
    else:
        post(executioner, thread)
    assert Message.objects.filter(thread=thread).count() == min(posts, 5)


def test_a_refused_post_does_not_count_and_the_next_window_starts_over(settings, thread, executioner, reviewer):
    settings.ORKIVA_RATE_LIMIT_THREAD_POSTS = 2
    post(executioner, thread)
    post(executioner, thread)
    for _ in range(3):
        with pytest.raises(RateLimited):
            post(executioner, thread)
    post(reviewer, thread)  # another agent has its own count
    key = f"thread|{thread.pk}|executioner"
    assert RateCounter.objects.get(key=key).count == 2  # the refusals rolled back with their posts
    # One second before the window ends: Retry-After 1. At its end: a fresh window.
    with pytest.raises(RateLimited) as exc:
        post(executioner, thread, now=WINDOW_START + timedelta(seconds=59, microseconds=1))
    assert exc.value.headers["Retry-After"] == "1"
    post(executioner, thread, now=WINDOW_START + timedelta(seconds=60))
    assert RateCounter.objects.get(key=key).count == 1


def test_identifiers_with_colons_do_not_share_a_counter():
    from policy.controls import SCOPE_WORKSPACE, rate_keys

    one = rate_keys(actor=Actor(agent_id="c", workspace_id="a:b", role="participant", session_id="s"),
                    thread=Thread(workspace_id="a:b"))
    two = rate_keys(actor=Actor(agent_id="b:c", workspace_id="a", role="participant", session_id="s"),
                    thread=Thread(workspace_id="a"))
    assert one[SCOPE_WORKSPACE] != two[SCOPE_WORKSPACE]


@pytest.mark.parametrize("posts, refused", [(3, False), (4, False), (5, True)], ids=["below", "at", "above"])
def test_workspace_rate_limit_counts_every_thread(settings, coordinator, executioner, posts, refused):
    settings.ORKIVA_RATE_LIMIT_WORKSPACE_POSTS = 4
    threads = [ThreadFactory(coordinator=coordinator) for _ in range(posts)]
    for n in range(posts - 1):
        post(executioner, threads[n])
    if refused:
        with pytest.raises(RateLimited) as exc:
            post(executioner, threads[-1])
        assert exc.value.details["scope"] == "workspace"
    else:
        post(executioner, threads[-1])


def test_a_limit_of_zero_is_off(settings, thread, executioner):
    settings.ORKIVA_RATE_LIMIT_THREAD_POSTS = settings.ORKIVA_RATE_LIMIT_WORKSPACE_POSTS = 0
    settings.ORKIVA_NO_PROGRESS_BLOCK_TURNS = settings.ORKIVA_LOOP_THRESHOLD_TURNS = 0
    for _ in range(40):
        post(executioner, thread)
    assert not RateCounter.objects.exists()
    assert not Escalation.objects.exists()


def test_replays_are_not_counted(settings, thread, executioner):
    settings.ORKIVA_RATE_LIMIT_THREAD_POSTS = 1
    first = message_post(actor=executioner, thread_id=str(thread.pk), body="once", idempotency_key="k", now=NOW)
    again = message_post(actor=executioner, thread_id=str(thread.pk), body="once", idempotency_key="k", now=NOW)
    assert again.replay and again.message.pk == first.message.pk
    # The post is counted before the replay is known; the replay's transaction undoes its count.
    counts = dict(RateCounter.objects.values_list("key", "count"))
    assert counts == {f"thread|{thread.pk}|executioner": 1, "workspace|ws-main|executioner": 1}


def test_refused_posts_are_not_counted(settings, thread, executioner):
    settings.ORKIVA_RATE_LIMIT_THREAD_POSTS = 1
    with pytest.raises(Conflict):  # invalid_reply_target
        message_post(actor=executioner, thread_id=str(thread.pk), body="x", in_reply_to=99, now=NOW)
    assert not RateCounter.objects.exists()
    message_post(actor=executioner, thread_id=str(thread.pk), body="stored", now=NOW)
    assert RateCounter.objects.get(key=f"thread|{thread.pk}|executioner").count == 1


def test_rest_answers_429_with_retry_after(settings, thread, executioner):
    from tests.conftest import client_for

    settings.ORKIVA_RATE_LIMIT_THREAD_POSTS = 1
    client = client_for(executioner)
    url = f"/v1/threads/{thread.pk}/messages"
    assert client.post(url, {"body": "one"}, format="json").status_code == 201
    refused = client.post(url, {"body": "two"}, format="json")
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "rate_limited"
    assert 1 <= int(refused["Retry-After"]) <= 60
    assert refused.json()["error"]["details"]["retry_after_seconds"] == int(refused["Retry-After"])


# --- loop threshold --------------------------------------------------------------------------------
@pytest.mark.parametrize("turns, escalations", [(9, 0), (10, 1), (11, 1)], ids=["below", "at", "above"])
def test_loop_threshold_opens_one_escalation(thread, executioner, reviewer, turns, escalations,
                                             django_capture_on_commit_callbacks):
    from orkiva.observability import ESCALATIONS

    before = ESCALATIONS.labels(reason="loop_threshold")._value.get()
    with django_capture_on_commit_callbacks(execute=True):
        ping_pong(thread, (executioner, reviewer), turns)
    found = list(Escalation.objects.filter(thread=thread))
    assert len(found) == escalations
    assert ESCALATIONS.labels(reason="loop_threshold")._value.get() - before == escalations
    thread.refresh_from_db()
    assert (thread.status, thread.turns_since_progress) == ("open", turns)
    if escalations:
        escalation = found[0]
        assert (escalation.reason_code, escalation.status, escalation.blocking, escalation.opened_by) == (
            "loop_threshold", "open", False, "orkiva:policy")
        assert escalation.details == {"turns": 10, "threshold": 10, "seq": 10}
        audit = AuditEvent.objects.get(action="escalation.open")
        assert (audit.actor_id, audit.actor_role, audit.reason_code, audit.target_id) == (
            "orkiva:policy", "system", "loop_threshold", str(escalation.pk))
        assert audit.new_values["thread_id"] == str(thread.pk)


@pytest.mark.parametrize(
    "progress",
    ["resolution_to_finding", "answer_to_question", "coordinator_status_change", "resolved_by_participant"],
)
def test_progress_resets_the_count_and_resolves_the_loop_escalation(thread, coordinator, executioner, reviewer,
                                                                   progress):
    if progress == "resolution_to_finding":
        item = post(reviewer, thread, "the parser drops the last line", kind="finding")
    elif progress == "answer_to_question":
        item = post(reviewer, thread, "which encoding?", kind="question")
    status_change = progress in ("coordinator_status_change", "resolved_by_participant")
    ping_pong(thread, (executioner, reviewer), 11 if status_change else 10)
    escalation = Escalation.objects.get(thread=thread)
    if progress == "coordinator_status_change":
        thread_transition(actor=coordinator, thread_id=thread.pk, status="active", reason="refocus: parser first")
    elif progress == "resolved_by_participant":
        thread_transition(actor=executioner, thread_id=thread.pk, status="resolved", reason="all fixed")
    else:
        kind = "resolution" if progress == "resolution_to_finding" else "answer"
        post(executioner, thread, "done", kind=kind, in_reply_to=item.seq)
    thread.refresh_from_db()
    assert thread.turns_since_progress == 0
    escalation.refresh_from_db()
    assert (escalation.status, escalation.resolution_code) == ("resolved", "progress")
    assert AuditEvent.objects.filter(action="escalation.resolve", target_id=str(escalation.pk)).count() == 1


@pytest.mark.parametrize("dodge", ["toggle_active_disputed", "answer_own_question"])
def test_agents_cannot_dodge_the_loop_controls(thread, executioner, reviewer, dodge):
    """Participants flipping the status back and forth, or an agent settling its own question,
    would reset the counters forever: neither is progress, so the loop is still blocked at 20."""
    ping_pong(thread, (executioner, reviewer), 15)
    if dodge == "toggle_active_disputed":
        thread_transition(actor=executioner, thread_id=thread.pk, status="active", reason="on it")
        thread_transition(actor=reviewer, thread_id=thread.pk, status="disputed", reason="no")
        thread_transition(actor=executioner, thread_id=thread.pk, status="active", reason="yes")
    else:
        question = post(executioner, thread, "is this fine?", kind="question")
        post(executioner, thread, "yes it is", kind="answer", in_reply_to=question.seq)
    thread.refresh_from_db()
    # not reset: status messages are not turns; the question and its answer are two more
    assert thread.turns_since_progress == (15 if dodge == "toggle_active_disputed" else 17)
    assert Escalation.objects.get(thread=thread, reason_code="loop_threshold").status == "open"
    ping_pong(thread, (executioner, reviewer), 20 - thread.turns_since_progress)
    thread.refresh_from_db()
    assert (thread.status, thread.status_reason_code) == ("blocked", "no_progress")


def test_a_fix_is_not_progress(thread, executioner, reviewer):
    finding = post(reviewer, thread, "off by one", kind="finding")
    post(executioner, thread, "fixed", kind="fix", in_reply_to=finding.seq)
    thread.refresh_from_db()
    assert thread.turns_since_progress == 2


# --- no-progress auto-block -----------------------------------------------------------------------
@pytest.mark.parametrize("turns, blocked", [(19, False), (20, True)], ids=["below", "at"])
def test_no_progress_blocks_after_the_post_that_reaches_the_limit(thread, executioner, reviewer, turns, blocked,
                                                                  django_capture_on_commit_callbacks):
    from orkiva.observability import AUTO_BLOCKS

    before = AUTO_BLOCKS.labels(reason="no_progress")._value.get()
    with django_capture_on_commit_callbacks(execute=True):
        ping_pong(thread, (executioner, reviewer), turns)
    thread.refresh_from_db()
    # The post that reaches the limit is stored; the block comes after it (its status message).
    posts = Message.objects.filter(thread=thread).exclude(kind="status").count()
    assert posts == turns
    assert thread.status == ("blocked" if blocked else "open")
    assert AUTO_BLOCKS.labels(reason="no_progress")._value.get() - before == (1 if blocked else 0)
    if blocked:
        block = Escalation.objects.get(thread=thread, reason_code="no_progress")
        assert block.blocking and block.status == "open"
        assert thread.status_reason_code == "no_progress"
        audit = AuditEvent.objects.get(action="thread.auto_block")
        assert (audit.actor_id, audit.reason_code, audit.old_values, audit.new_values) == (
            "orkiva:policy", "no_progress", {"status": "open"}, {"status": "blocked", "escalation_id": block.pk})
        last = Message.objects.filter(thread=thread).order_by("-seq").first()
        assert (last.kind, last.sender) == ("status", "orkiva:policy")
        summary = summary_of(thread)
        assert summary["blocked"]["reason_code"] == "no_progress"
        assert summary["blocked"]["escalation_id"] == block.pk
        assert summary["blocked"]["since"] is not None


def test_no_progress_above_the_limit_is_refused_with_thread_blocked(thread, executioner, reviewer):
    ping_pong(thread, (executioner, reviewer), 20)
    with pytest.raises(Conflict) as exc:
        post(executioner, thread, "one more")
    assert exc.value.code == "thread_blocked"
    assert exc.value.details["reason_code"] == "no_progress"
    thread.refresh_from_db()
    assert thread.turns_since_progress == 20


def test_rest_answers_409_thread_blocked_and_the_summary_says_why(thread, executioner, reviewer):
    from tests.conftest import client_for

    ping_pong(thread, (executioner, reviewer), 20)
    client = client_for(executioner)
    refused = client.post(f"/v1/threads/{thread.pk}/messages", {"body": "again"}, format="json")
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "thread_blocked"
    summary = client.get(f"/v1/threads/{thread.pk}/summary").json()
    escalation = Escalation.objects.get(thread=thread, reason_code="no_progress")
    assert summary["blocked"]["reason_code"] == "no_progress"
    assert summary["blocked"]["escalation_id"] == escalation.pk
    assert summary["turns_since_progress"] == 20


# --- repeated identical finding ---------------------------------------------------------------------
FINDING = "The parser drops the last line when the file has no trailing newline."
VARIANTS = [FINDING, "  the PARSER drops the last line\n when the file has   no trailing newline. ",
            "The parser drops the last line when the file has no trailing\tnewline."]


@pytest.mark.parametrize("copies, blocked", [(2, False), (3, True)], ids=["below", "at"])
def test_repeated_finding_blocks_at_the_limit(thread, executioner, reviewer, copies, blocked):
    for n in range(copies):
        finding = post(reviewer, thread, VARIANTS[n], kind="finding")
        if n < copies - 1:
            post(executioner, thread, "fixed", kind="fix", in_reply_to=finding.seq)
    post_count = Message.objects.filter(thread=thread, kind="finding").count()
    assert post_count == copies
    thread.refresh_from_db()
    assert thread.status == ("blocked" if blocked else "open")
    if blocked:
        escalation = Escalation.objects.get(thread=thread)
        assert (escalation.reason_code, escalation.blocking) == ("repeated_finding", True)
        assert escalation.details["repeats"] == 3 and len(escalation.details["seqs"]) == 3
        assert thread.status_reason_code == "repeated_finding"


def test_repeated_finding_above_the_limit_is_refused(thread, executioner, reviewer):
    for n in range(3):
        post(reviewer, thread, FINDING, kind="finding")
    with pytest.raises(Conflict) as exc:
        post(reviewer, thread, FINDING, kind="finding")
    assert exc.value.code == "thread_blocked"


def test_repeats_count_across_resolutions_but_not_other_kinds_or_bodies(thread, executioner, reviewer):
    for _ in range(2):
        finding = post(reviewer, thread, FINDING, kind="finding")
        post(executioner, thread, "resolved", kind="resolution", in_reply_to=finding.seq)
    post(reviewer, thread, FINDING, kind="message")  # not a finding
    post(reviewer, thread, FINDING + " Also on Windows.", kind="finding")  # another body
    thread.refresh_from_db()
    assert thread.status == "open"
    post(reviewer, thread, FINDING.upper(), kind="finding")  # the third cycle of the same finding
    thread.refresh_from_db()
    assert (thread.status, thread.status_reason_code) == ("blocked", "repeated_finding")


# --- unblock, override, escalate (the services behind the operator commands) -------------------------
def test_unblock_resets_the_counters_resolves_and_the_thread_continues(thread, executioner, reviewer):
    ping_pong(thread, (executioner, reviewer), 20)
    action = thread_unblock(operator=OPERATOR, thread_id=thread.pk, reason="they were waiting on CI")
    assert (action.old_status, action.thread.status, action.turns_before) == ("blocked", "active", 20)
    assert sorted(e.reason_code for e in action.resolved) == ["loop_threshold", "no_progress"]
    assert not Escalation.objects.filter(thread=thread, status="open").exists()
    thread.refresh_from_db()
    assert thread.turns_since_progress == 0
    post(executioner, thread, "continuing")  # accepted again
    audit = AuditEvent.objects.get(action="thread.unblock")
    assert (audit.actor_id, audit.actor_role, audit.reason) == ("operator:alice", "operator", "they were waiting on CI")
    assert audit.old_values == {"status": "blocked", "turns_since_progress": 20}


def test_unblock_restarts_the_repeated_finding_count(thread, executioner, reviewer):
    for _ in range(3):
        post(reviewer, thread, FINDING, kind="finding")
    thread_unblock(operator=OPERATOR, thread_id=thread.pk, reason="real regression, keep going")
    post(reviewer, thread, FINDING, kind="finding")
    post(reviewer, thread, FINDING, kind="finding")
    thread.refresh_from_db()
    assert thread.status == "active"
    post(reviewer, thread, FINDING, kind="finding")
    thread.refresh_from_db()
    assert thread.status == "blocked"


def test_unblock_of_a_thread_with_nothing_to_unblock_is_a_conflict(thread):
    with pytest.raises(Conflict) as exc:
        thread_unblock(operator=OPERATOR, thread_id=thread.pk, reason="just checking")
    assert exc.value.code == "nothing_to_unblock"
    assert not AuditEvent.objects.filter(action="thread.unblock").exists()


def test_unblock_of_a_loop_warning_resolves_it_without_a_status_change(thread, executioner, reviewer):
    ping_pong(thread, (executioner, reviewer), 12)
    action = thread_unblock(operator=OPERATOR, thread_id=thread.pk, reason="fine, long review")
    assert action.thread.status == "open" and [e.reason_code for e in action.resolved] == ["loop_threshold"]
    thread.refresh_from_db()
    assert (thread.turns_since_progress, thread.findings_since_seq) == (0, 12)


def test_operator_escalation_with_block_and_override_close(thread, executioner):
    action = escalation_raise(operator=OPERATOR, thread_id=thread.pk, reason="agents disagree on the API", block=True)
    thread.refresh_from_db()
    assert (thread.status, thread.status_reason_code) == ("blocked", "operator_escalation")
    assert (action.escalation.reason_code, action.escalation.blocking) == ("operator", True)
    assert summary_of(thread)["blocked"]["escalation_id"] == action.escalation.pk
    closed = thread_override(operator=OPERATOR, thread_id=thread.pk, status="closed", reason="superseded by #12")
    assert closed.thread.status == "closed" and [e.pk for e in closed.resolved] == [action.escalation.pk]
    escalation = Escalation.objects.get(pk=action.escalation.pk)
    assert (escalation.status, escalation.resolved_by, escalation.resolution_code) == (
        "resolved", "operator:alice", "thread_closed")
    audit = AuditEvent.objects.get(action="thread.transition", reason_code="operator_override")
    assert (audit.actor_id, audit.reason, audit.old_values, audit.new_values) == (
        "operator:alice", "superseded by #12", {"status": "blocked"}, {"status": "closed"})


def test_only_authority_closes_a_disputed_thread(thread, executioner, coordinator):
    from orkiva.errors import Forbidden

    thread_transition(actor=executioner, thread_id=thread.pk, status="disputed", reason="disagree")
    with pytest.raises(Forbidden) as exc:
        thread_transition(actor=executioner, thread_id=thread.pk, status="closed", reason="I win")
    assert exc.value.code == "forbidden_transition"
    action = thread_override(operator=OPERATOR, thread_id=thread.pk, status="closed", reason="decided: keep v1")
    assert action.thread.status == "closed"
    assert Thread.objects.get(pk=thread.pk).status == "closed"


def test_a_blocked_thread_wakes_nobody(thread, executioner, reviewer):
    from tests.factories import ActorFactory
    from supervisor.services import runtime_register, wakes_for_post

    long_ago = NOW - timedelta(hours=2)  # the reviewer's runtime is idle
    runtime_register(actor=ActorFactory(agent_id="reviewer", workspace_id="ws-main"), runtime_type="codex",
                     session_id="s", now=long_ago)
    ping_pong(thread, (executioner, reviewer), 19)
    assert [w.agent_id for w in wakes_for_post(thread_id=thread.pk, sender="executioner", now=NOW)] == ["reviewer"]
    post(executioner, thread, "the 20th turn")  # blocks the thread
    assert wakes_for_post(thread_id=thread.pk, sender="executioner", now=NOW) == []
