"""The operator CLI as real manage.py subprocesses: inspect, escalate, unblock, override, purge.

Asserts each command's JSON, exit code and audit rows; every mutating command refuses to run
without a reason and then changes nothing.
"""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from messaging.models import Message
from messaging.services import message_post
from orkiva.errors import Conflict
from policy.models import AuditEvent, Escalation
from supervisor.services import wake_trigger
from tests.factories import ThreadFactory
from tests.live import REPO, run_manage, run_manage_json, subprocess_env
from threads.models import Thread
from threads.services import thread_transition

pytestmark = pytest.mark.django_db(transaction=True)


def ping_pong(thread, agents, turns):
    for n in range(turns):
        message_post(actor=agents[n % 2], thread_id=str(thread.pk), body=f"going round {n}")


def ok(*args, **kwargs) -> dict:
    code, doc = run_manage_json(*args, **kwargs)
    assert code == 0, doc
    return doc


def test_blocked_thread_escalate_unblock_continue(thread, executioner, reviewer):
    ping_pong(thread, (executioner, reviewer), 20)  # the 20th turn without progress blocks it
    tid = str(thread.pk)

    # The operator sees the escalations...
    listed = ok("orkiva_inspect", "escalations")
    assert sorted((e["reason_code"], e["blocking"]) for e in listed["escalations"]) == [
        ("loop_threshold", False), ("no_progress", True)]
    assert listed["count"] == 2 and {e["thread_id"] for e in listed["escalations"]} == {tid}
    # ...and the thread, with why it is blocked.
    view = ok("orkiva_inspect", "thread", tid)
    blocking = next(e for e in listed["escalations"] if e["blocking"])
    assert view["summary"]["blocked"]["reason_code"] == "no_progress"
    assert view["summary"]["blocked"]["escalation_id"] == blocking["escalation_id"]
    assert view["summary"]["turns_since_progress"] == 20
    assert [m["seq"] for m in view["messages"]] == list(range(1, 22))  # 20 posts and the block's status message
    assert view["messages"][-1]["kind"] == "status" and view["thread"]["status"] == "blocked"

    # An operator adds their own note to the record (the thread is blocked already).
    raised = ok("orkiva_escalate", "--thread-id", tid, "--reason", "agents loop on the flaky test", "--operator", "alice")
    assert (raised["escalation"]["reason_code"], raised["escalation"]["blocking"], raised["status"]) == (
        "operator", False, "blocked")
    with pytest.raises(Conflict):
        message_post(actor=executioner, thread_id=tid, body="let me try again")

    # Unblock by naming the blocking escalation: the thread continues, every escalation is resolved.
    done = ok("orkiva_unblock", "--escalation-id", str(blocking["escalation_id"]), "--reason",
              "flaky test quarantined; carry on", "--operator", "alice")
    assert (done["old_status"], done["status"], done["turns_since_progress_before"]) == ("blocked", "active", 20)
    assert sorted(e["reason_code"] for e in done["escalations_resolved"]) == ["loop_threshold", "no_progress", "operator"]
    assert all(e["status"] == "resolved" and e["resolved_by"] == "operator:alice" for e in done["escalations_resolved"])
    assert not Escalation.objects.filter(status="open").exists()

    unblock = AuditEvent.objects.get(action="thread.unblock")
    assert (unblock.actor_id, unblock.actor_role, unblock.reason, unblock.target_id) == (
        "operator:alice", "operator", "flaky test quarantined; carry on", tid)
    assert unblock.old_values == {"status": "blocked", "turns_since_progress": 20}
    transition = AuditEvent.objects.get(action="thread.transition", reason_code="operator_unblock")
    assert (transition.old_values["status"], transition.new_values["status"]) == ("blocked", "active")
    assert AuditEvent.objects.filter(action="escalation.resolve", actor_id="operator:alice").count() == 3
    assert AuditEvent.objects.get(action="escalation.open", reason_code="operator").actor_id == "operator:alice"

    # The thread continues, its counters restarted.
    message_post(actor=executioner, thread_id=tid, body="green now")
    assert Thread.objects.get(pk=tid).turns_since_progress == 1

    # The audit log, filtered to the thread, tells the story newest first.
    audit = ok("orkiva_inspect", "audit", "--thread-id", tid)
    actions = [e["action"] for e in audit["events"]]
    assert actions[0] == "thread.unblock"
    assert {"thread.auto_block", "escalation.open", "escalation.resolve", "thread.transition"} <= set(actions)
    assert {e["event_version"] for e in audit["events"]} == {1}  # each audit event says its shape
    by_alice = ok("orkiva_inspect", "audit", "--actor", "operator:alice", "--action", "escalation.resolve")
    assert by_alice["count"] == 3
    assert ok("orkiva_inspect", "escalations")["count"] == 0
    assert ok("orkiva_inspect", "escalations", "--all", "--thread-id", tid)["count"] == 3


def test_escalate_with_block_then_override_closes(thread, executioner):
    tid = str(thread.pk)
    raised = ok("orkiva_escalate", "--thread-id", tid, "--reason", "needs a human decision", "--block")
    assert (raised["old_status"], raised["status"], raised["escalation"]["blocking"]) == ("open", "blocked", True)
    with pytest.raises(Conflict) as exc:
        message_post(actor=executioner, thread_id=tid, body="hello?")
    assert exc.value.code == "thread_blocked"
    closed = ok("orkiva_override", "--thread-id", tid, "--status", "closed", "--reason", "abandoned", "--operator", "bob")
    assert (closed["old_status"], closed["status"]) == ("blocked", "closed")
    assert [e["resolution_code"] for e in closed["escalations_resolved"]] == ["thread_closed"]
    audit = AuditEvent.objects.get(action="thread.transition", reason_code="operator_override")
    assert (audit.actor_id, audit.reason) == ("operator:bob", "abandoned")


def test_override_closes_a_disputed_thread_a_participant_may_not(thread, executioner):
    tid = str(thread.pk)
    thread_transition(actor=executioner, thread_id=tid, status="disputed", reason="disagree on the fix")
    closed = ok("orkiva_override", "--thread-id", tid, "--status", "closed", "--reason", "decided: keep v1")
    assert (closed["old_status"], closed["status"], closed["thread"]["status_reason_code"]) == (
        "disputed", "closed", "operator_override")
    # The transition table still holds: a closed thread stays closed (409, exit 4).
    code, doc = run_manage_json("orkiva_override", "--thread-id", tid, "--status", "active", "--reason", "reopen")
    assert (code, doc["error"]["code"]) == (4, "invalid_transition")


MUTATING = {
    "orkiva_escalate": ("--block",),
    "orkiva_unblock": (),
    "orkiva_override": ("--status", "closed"),
    "orkiva_purge": (),
}


@pytest.mark.parametrize("command", sorted(MUTATING))
@pytest.mark.parametrize("reason", [None, "   "], ids=["no-reason", "blank-reason"])
def test_mutating_commands_refuse_without_a_reason_and_change_nothing(thread, executioner, reviewer, command, reason):
    ping_pong(thread, (executioner, reviewer), 12)  # an open loop escalation: something to unblock
    before = (AuditEvent.objects.count(), Escalation.objects.filter(status="open").count())
    args = [command, *MUTATING[command]]
    if command != "orkiva_purge":
        args += ["--thread-id", str(thread.pk)]
    if reason is not None:
        args += ["--reason", reason]
    code, doc = run_manage_json(*args, env=subprocess_env(ORKIVA_RETENTION_MODE="expire", ORKIVA_RETENTION_DAYS="1"))
    assert (code, doc["error"]["code"]) == (2, "reason_required")
    assert (AuditEvent.objects.count(), Escalation.objects.filter(status="open").count()) == before
    thread.refresh_from_db()
    assert (thread.status, thread.turns_since_progress) == ("open", 12)


@pytest.mark.parametrize(
    "args, exit_code, error",
    [
        (("orkiva_inspect", "thread", "9b2f5c1e-0000-4000-8000-000000000000"), 3, "thread_not_found"),
        (("orkiva_inspect", "thread"), 2, "usage_error"),
        (("orkiva_inspect", "escalation", "999999"), 3, "escalation_not_found"),
        (("orkiva_inspect", "escalations", "--thread-id", "typo"), 3, "thread_not_found"),  # not "every thread"
        (("orkiva_inspect", "wake", "not-a-wake"), 3, "wake_not_found"),
        (("orkiva_inspect", "agent", "ghost", "--workspace-id", "ws-main"), 3, "agent_not_found"),
        (("orkiva_inspect", "agent", "executioner"), 2, "usage_error"),
        (("orkiva_inspect", "audit", "--since", "yesterday"), 2, "usage_error"),
        (("orkiva_inspect", "nonsense"), 2, "usage_error"),
        (("orkiva_unblock", "--thread-id", "9b2f5c1e-0000-4000-8000-000000000000", "--reason", "x"), 3,
         "thread_not_found"),
        (("orkiva_unblock", "--thread-id", "{thread}", "--reason", "x"), 4, "nothing_to_unblock"),
        (("orkiva_override", "--thread-id", "{thread}", "--status", "open", "--reason", "x"), 4, "invalid_transition"),
        (("orkiva_purge", "--reason", "tidy up"), 4, "retention_indefinite"),
    ],
)
def test_errors_have_the_api_codes_and_documented_exit_codes(thread, args, exit_code, error):
    before = AuditEvent.objects.filter(actor_role="operator").count()
    code, doc = run_manage_json(*(a.format(thread=thread.pk) for a in args))
    assert (code, doc["error"]["code"]) == (exit_code, error), doc
    assert set(doc) == {"error", "request_id"}
    assert AuditEvent.objects.filter(actor_role="operator").count() == before


def test_inspect_agent_and_wake_show_the_wakes(thread, coordinator):
    from policy.identity import Actor

    operator = Actor.operator(name="alice", workspace_id="ws-main")
    wake = wake_trigger(actor=operator, thread_id=thread.pk, agent_id="reviewer", reason="please look")
    agent = ok("orkiva_inspect", "agent", "reviewer", "--workspace-id", "ws-main")
    assert agent["agent_id"] == "reviewer" and agent["runtime"] is None
    assert [w["wake_id"] for w in agent["wakes"]] == [str(wake.pk)]
    assert [t["thread_id"] for t in agent["threads"]] == [str(thread.pk)]
    shown = ok("orkiva_inspect", "wake", str(wake.pk))
    assert (shown["wake_id"], shown["agent_id"], shown["source"]) == (str(wake.pk), "reviewer", "operator")
    assert shown["trace"]["steps"][0]["step"] == "request"


def test_inspect_config_and_readable_tables(thread, executioner, reviewer):
    config = ok("orkiva_inspect", "config")
    assert (config["loop_threshold_turns"], config["no_progress_block_turns"], config["repeated_finding_limit"],
            config["retention_mode"], config["content_redaction"]) == (10, 20, 3, "indefinite", False)
    ping_pong(thread, (executioner, reviewer), 20)
    table = run_manage("orkiva_inspect", "escalations")
    assert table.returncode == 0
    header, _, *rows = table.stdout.splitlines()
    assert header.split()[:4] == ["id", "status", "reason", "blocking"]
    assert any(row.split()[1:4] == ["open", "no_progress", "true"] for row in rows), table.stdout
    view = run_manage("orkiva_inspect", "thread", str(thread.pk))
    blocked = next(line for line in view.stdout.splitlines() if line.startswith("blocked "))
    assert '"reason_code":"no_progress"' in blocked and "status_reason_code" in view.stdout
    refused = run_manage("orkiva_unblock", "--thread-id", str(thread.pk))
    assert refused.returncode == 2 and "reason_required" in refused.stderr and refused.stdout == ""


def test_purge_runs_only_when_retention_expires(coordinator):
    long_ago = timezone.now() - timedelta(days=40)
    old = ThreadFactory(coordinator=coordinator)
    thread_transition(actor=coordinator, thread_id=old.pk, status="closed", reason="done", now=long_ago)
    Thread.objects.filter(pk=old.pk).update(updated_at=long_ago)
    recent = ThreadFactory(coordinator=coordinator)
    thread_transition(actor=coordinator, thread_id=recent.pk, status="closed", reason="done")
    expire = subprocess_env(ORKIVA_RETENTION_MODE="expire", ORKIVA_RETENTION_DAYS="30")

    code, doc = run_manage_json("orkiva_purge", "--reason", "monthly")  # indefinite: refused
    assert (code, doc["error"]["code"]) == (4, "retention_indefinite")
    dry = ok("orkiva_purge", "--reason", "monthly", "--dry-run", env=expire)
    assert (dry["dry_run"], dry["threads"], dry["thread_ids"]) == (True, 1, [str(old.pk)])
    assert Thread.objects.filter(pk=old.pk).exists()
    done = ok("orkiva_purge", "--reason", "monthly", "--operator", "carol", env=expire)
    assert (done["threads"], done["messages"]) == (1, 1)
    assert not Thread.objects.filter(pk=old.pk).exists() and not Message.objects.filter(thread_id=old.pk).exists()
    assert Thread.objects.filter(pk=recent.pk).exists()
    audit = AuditEvent.objects.get(action="retention.purge")
    assert (audit.actor_id, audit.reason, audit.old_values["thread_ids"]) == ("operator:carol", "monthly", [str(old.pk)])


@pytest.mark.parametrize("flag", ["ORKIVA_CONTENT_REDACTION", "ORKIVA_CONTENT_FILTERING"])
def test_content_flags_are_off_and_refuse_to_start_when_on(flag):
    refused = run_manage("check", env=subprocess_env(**{flag: "true"}))
    assert refused.returncode != 0 and f"{flag}=true is not supported" in refused.stderr
    assert run_manage("check", env=subprocess_env(**{flag: "false"})).returncode == 0


def test_shipped_config_sets_the_data_policy_explicitly():
    lines = dict(
        line.split("=", 1) for line in (REPO / "infra" / "orkiva.env").read_text().splitlines()
        if line and not line.startswith("#")
    )
    assert lines["ORKIVA_RETENTION_MODE"] == "indefinite"
    assert lines["ORKIVA_CONTENT_REDACTION"] == lines["ORKIVA_CONTENT_FILTERING"] == "false"
    assert (lines["ORKIVA_LOOP_THRESHOLD_TURNS"], lines["ORKIVA_NO_PROGRESS_BLOCK_TURNS"],
            lines["ORKIVA_REPEATED_FINDING_LIMIT"]) == ("10", "20", "3")
