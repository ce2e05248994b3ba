"""The pilot report and operator feedback: definitions, services, and the real commands."""
from __future__ import annotations

import json
from datetime import timedelta

import pytest

from messaging.services import message_post
from pilot.models import Feedback
from pilot.selectors import baseline_comparison, load_baseline, percentile, pilot_report, review_rounds
from pilot.services import feedback_record
from policy.models import AuditEvent
from supervisor.services import runtime_register, wake_trigger
from tests.live import run_manage, run_manage_json
from tests.supervisor.conftest import (  # noqa: F401 (fixtures)
    acking_bridge, clock, drive, fake_codex, operator, remember_session,
)
from threads.services import thread_transition
from orkiva.errors import NotFound, ValidationFailed


@pytest.mark.parametrize(
    ("kinds", "rounds"),
    [
        ([], 0),
        (["fix"], 0),  # fixes alone are not a review
        (["finding"], 1),
        (["finding", "finding", "finding"], 1),  # one pass with three findings
        (["finding", "fix", "resolution"], 2),  # review, fix, re-review
        (["finding", "fix", "finding", "fix", "resolution"], 3),
        (["finding", "resolution", "fix"], 1),  # a resolution in the same pass is not a new round
        (["resolution"], 1),
    ],
)
def test_review_rounds(kinds, rounds):
    assert review_rounds(kinds) == rounds


@pytest.mark.parametrize(("values", "q", "expected"), [([], 50, None), ([5.0], 90, 5.0), ([1, 2, 3, 4], 50, 2),
                                                       ([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 90, 9)])
def test_percentile_is_nearest_rank(values, q, expected):
    assert percentile(values, q) == expected


def _reviewed_thread(thread, coordinator, executioner, reviewer, t0):
    """Work, two findings, a fix for each, a resolution, then resolved: cycle 130 s, 2 rounds."""
    message_post(actor=executioner, thread_id=thread.pk, body="Ready for review", now=t0 - timedelta(seconds=30))
    message_post(actor=reviewer, thread_id=thread.pk, body="Null deref", kind="finding", in_reply_to=1, now=t0)
    message_post(actor=reviewer, thread_id=thread.pk, body="Typo", kind="finding", in_reply_to=1, now=t0)
    message_post(actor=executioner, thread_id=thread.pk, body="fixed", kind="fix", in_reply_to=2,
                 now=t0 + timedelta(seconds=60))
    message_post(actor=executioner, thread_id=thread.pk, body="fixed", kind="fix", in_reply_to=3,
                 now=t0 + timedelta(seconds=61))
    message_post(actor=reviewer, thread_id=thread.pk, body="LGTM", kind="resolution", in_reply_to=2,
                 now=t0 + timedelta(seconds=120))
    thread_transition(actor=coordinator, thread_id=thread.pk, status="resolved", reason="done",
                      now=t0 + timedelta(seconds=130))


@pytest.mark.django_db(transaction=True)
def test_report_per_thread(tmp_path, thread, coordinator, executioner, reviewer, acking_bridge, clock):  # noqa: F811
    t0 = clock.now
    _reviewed_thread(thread, coordinator, executioner, reviewer, t0)
    # an operator wakes the reviewer (a human intervention); its stale session makes the chain spawn,
    # and the spawned session reads the thread (the wake's ack)
    acking_bridge.set(spawn={"ack": True})
    stale = t0 - timedelta(hours=13)
    runtime_register(actor=reviewer, runtime_type="codex", session_id="sess-old", now=stale)
    remember_session("reviewer", "sess-old", now=stale, workdir=str(tmp_path))
    wake = wake_trigger(actor=operator(), thread_id=thread.pk, agent_id="reviewer", reason="look again", now=t0)
    wake = drive(wake.pk, clock)
    thread_transition(actor=operator(), thread_id=thread.pk, status="closed", reason="shipped",
                      now=t0 + timedelta(seconds=200))

    report = pilot_report(workspace_id="ws-main")
    (row,) = report["threads"]
    assert row["thread_id"] == str(thread.pk) and row["status"] == "closed"
    assert row["cycle_time_seconds"] == 130.0
    assert row["review_rounds"] == 2
    assert row["wakes"]["count"] == 1 and row["wakes"]["by_status"] == {"spawned": 1}
    latency = row["wakes"]["latency_seconds_by_path"]["spawn"]
    assert latency["count"] == 1 and latency["median"] == (wake.finished_at - wake.created_at).total_seconds()
    # the operator's wake and the operator's close; the coordinator's resolve is the agents' own work
    assert row["human_interventions"] == 2
    assert report["totals"]["resolved"] == 1 and report["totals"]["cycle_time_seconds"]["median"] == 130.0


@pytest.mark.django_db
def test_unresolved_threads_have_no_cycle_time_and_other_workspaces_are_not_reported(
    thread, executioner, reviewer, outsider
):
    message_post(actor=reviewer, thread_id=thread.pk, body="Null deref", kind="finding")
    report = pilot_report(workspace_id="ws-main")
    assert report["threads"][0]["cycle_time_seconds"] is None and report["totals"]["resolved"] == 0
    assert pilot_report(workspace_id=outsider.workspace_id)["threads"] == []


@pytest.mark.django_db
def test_feedback_ranks_pain_points(thread):
    feedback_record(operator=operator(), thread_id=thread.pk, rating=4, tags=["Slow Wake", "lost-context"], text="")
    feedback_record(operator=operator(), thread_id=thread.pk, rating=2, tags=["slow-wake"], text="woke late")
    feedback_record(operator=operator(), thread_id=thread.pk, rating=None, tags=["noisy-pane", "slow-wake"], text="")
    summary = pilot_report(workspace_id="ws-main")["feedback"]
    assert summary["top_pain_points"] == [
        {"tag": "slow-wake", "count": 3}, {"tag": "lost-context", "count": 1}, {"tag": "noisy-pane", "count": 1},
    ]
    assert summary["rating"]["mean"] == 3.0 and summary["count"] == 3
    assert [n["text"] for n in summary["notes"]] == ["woke late"]
    assert AuditEvent.objects.filter(action="pilot.feedback", target_id=str(thread.pk)).count() == 3


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("rating", "tags", "text", "field"),
    [(0, [], "", "rating"), (6, [], "", "rating"), (None, ["no/slash"], "", "tags"),
     (None, [f"t{i}" for i in range(11)], "", "tags"), (None, [], "  ", "feedback"), (None, [], "x" * 4001, "text")],
)
def test_bad_feedback_is_refused_and_nothing_is_stored(thread, rating, tags, text, field):
    with pytest.raises(ValidationFailed) as caught:
        feedback_record(operator=operator(), thread_id=thread.pk, rating=rating, tags=tags, text=text)
    assert field in caught.value.details["fields"]
    assert not Feedback.objects.exists()


@pytest.mark.django_db
def test_feedback_on_another_workspaces_thread_is_not_found(thread):
    with pytest.raises(NotFound):
        feedback_record(operator=operator("ws-other"), thread_id=thread.pk, rating=3, tags=[], text="")
    assert not Feedback.objects.exists()


@pytest.mark.parametrize(
    ("content", "code"),
    [("{", "invalid_baseline"), ("[1, 2]", "invalid_baseline"), ('{"cycle_times_seconds": []}', "invalid_baseline"),
     ('{"cycle_times_seconds": [10, -1]}', "invalid_baseline"), ('{"threads": [{"x": 1}]}', "invalid_baseline")],
)
def test_bad_baselines_are_refused(tmp_path, content, code):
    path = tmp_path / "baseline.json"
    path.write_text(content)
    with pytest.raises(ValidationFailed) as caught:
        load_baseline(str(path))
    assert caught.value.code == code


def test_baseline_comparison_side_by_side(tmp_path):
    path = tmp_path / "baseline.json"
    path.write_text(json.dumps({"label": "manual relay", "threads": [{"cycle_time_seconds": v} for v in (600, 900, 1200)]}))
    baseline = load_baseline(str(path))
    report = {"totals": {"cycle_time_seconds": {"median": 300.0, "p90": 450.0}}}
    comparison = baseline_comparison(baseline=baseline, report=report)
    assert comparison["label"] == "manual relay"
    assert comparison["median"] == {"baseline": 900.0, "pilot": 300.0, "delta_seconds": -600.0, "ratio": 0.333}
    assert comparison["p90"]["baseline"] == 1200.0 and comparison["p90"]["ratio"] == 0.375


@pytest.mark.django_db(transaction=True)
def test_the_commands_end_to_end(tmp_path, thread, coordinator, executioner, reviewer, clock):  # noqa: F811
    _reviewed_thread(thread, coordinator, executioner, reviewer, clock.now)
    code, body = run_manage_json(
        "orkiva_feedback", "--workspace-id", "ws-main", "--thread", str(thread.pk), "--rating", "5",
        "--tag", "fast,no-relay", "--text", "no copy-paste today", "--operator", "alice",
    )
    assert code == 0 and body["tags"] == ["fast", "no-relay"] and body["operator"] == "operator:alice"
    assert body["schema_version"] == 1
    code, body = run_manage_json("orkiva_feedback", "--workspace-id", "ws-main", "--thread", "nope", "--rating", "3")
    assert code == 3 and body["error"]["code"] == "thread_not_found" and body["request_id"]

    baseline = tmp_path / "baseline.json"
    baseline.write_text(json.dumps({"label": "manual", "cycle_times_seconds": [260, 390]}))
    code, body = run_manage_json("orkiva_pilot_report", "--workspace-id", "ws-main", "--baseline", str(baseline))
    assert code == 0
    assert body["threads"][0]["cycle_time_seconds"] == 130.0 and body["threads"][0]["review_rounds"] == 2
    assert body["comparison"]["median"] == {"baseline": 325.0, "pilot": 130.0, "delta_seconds": -195.0, "ratio": 0.4}
    assert body["feedback"]["top_pain_points"][0] == {"tag": "fast", "count": 1}

    table = run_manage("orkiva_pilot_report", "--workspace-id", "ws-main", "--baseline", str(baseline))
    assert table.returncode == 0, table.stderr
    assert f"{thread.pk}" in table.stdout and "130.0s" in table.stdout
    assert "median" in table.stdout and "325.0s" in table.stdout and "fast (1)" in table.stdout

    code, body = run_manage_json("orkiva_pilot_report", "--workspace-id", "ws-main", "--baseline", str(tmp_path / "x"))
    assert code == 2 and body["error"]["code"] == "baseline_not_found"
    code, body = run_manage_json("orkiva_pilot_report", "--workspace-id", "ws-main", "--thread", "not-a-uuid")
    assert code == 2 and body["error"]["code"] == "usage_error"
    code, body = run_manage_json("orkiva_pilot_report", "--workspace-id", "ws-main", "--since", "yesterday")
    assert code == 2 and body["error"]["code"] == "usage_error"


@pytest.mark.django_db
def test_escalations_are_counted_and_each_operator_command_is_one_intervention(thread):
    from orkiva.context import bind_request_id, reset_request_id
    from policy.escalations import escalation_raise, thread_unblock

    commands = [
        ("req-escalate", lambda: escalation_raise(operator=operator(), thread_id=thread.pk, reason="looping", block=True)),
        ("req-unblock", lambda: thread_unblock(operator=operator(), thread_id=thread.pk, reason="carry on")),
    ]
    for request_id, command in commands:  # as the commands run them: one request id each
        token = bind_request_id(request_id)
        try:
            command()
        finally:
            reset_request_id(token)
    operator_rows = AuditEvent.objects.filter(actor_role="operator").count()
    assert operator_rows >= 4  # escalate + block, then unblock + transition + resolve
    row = pilot_report(workspace_id="ws-main")["threads"][0]
    assert row["escalations"] == 1
    assert row["human_interventions"] == 2
