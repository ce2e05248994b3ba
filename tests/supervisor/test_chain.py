"""The wake chain, one test per branch, on a real tmux server (private socket) with the stand-in
agent in a managed pane and the stand-in `codex` on PATH. The chain runs in-process, step by
step, with the clock passed in."""
from __future__ import annotations

import os
import signal
import subprocess
from datetime import datetime, timedelta, timezone as dt_timezone

import pytest
from django.utils import timezone

from policy.models import AuditEvent
from sessions.selectors import latest_resumable_session
from supervisor import reasons, tmux
from supervisor.models import Runtime, WakeAttempt, WakeRequest
from supervisor.presenters import wake_json
from supervisor.services import runtime_heartbeat, runtime_register, runtime_set_paused, wake_advance, wake_trigger
from tests.supervisor.conftest import (
    agent_lines,
    drive,
    launch_stand_in,
    operator,
    remember_session,
    wait_for,
)
from threads.summary import summary_of, summary_text

pytestmark = pytest.mark.django_db


def steps(wake):
    return [(s["step"], s["outcome"], s["reason_code"]) for s in wake_json(wake)["trace"]["steps"]]


def reviewer_actor(session_id="rt"):
    from policy.identity import Actor

    return Actor(agent_id="reviewer", workspace_id="ws-main", role="participant", session_id=session_id)


def test_no_ack_while_the_pane_lives_fails_without_a_second_agent(tmp_path, thread, coordinator, tmux_server, fake_codex,
                                                                   fast_wakes, clock):
    """Typed twice, never acknowledged: the agent still runs in its pane, holding its session, so no
    resume or spawn starts a second one beside it. The wake fails for an operator to look at."""
    log = tmp_path / "agent.jsonl"
    launch_stand_in(agent_id="reviewer", log=log, ack=False)
    remember_session("reviewer", "sess-reviewer", now=clock.now - timedelta(minutes=5), workdir=str(tmp_path))
    wake = wake_trigger(actor=coordinator, thread_id=thread.pk, agent_id="reviewer", reason="please review")
    wake = drive(wake.pk, clock)
    assert (wake.status, wake.path, wake.reason_code) == (reasons.FAILED, "inject", "unacknowledged")
    assert wait_for(lambda: len(agent_lines(log)) == 2, what="two injections") and agent_lines(log) == [wake.prompt] * 2
    assert [s for s in steps(wake) if s[0] == "inject"] == [
        ("inject", "injected", "injected"), ("inject", "no_ack", "ack_timeout"),
        ("inject", "injected", "injected"), ("inject", "no_ack", "ack_timeout"),
    ]
    assert fake_codex.calls() == []


@pytest.mark.django_db(transaction=True)
def test_a_gone_pane_is_resumed_where_the_session_lives(tmp_path, thread, coordinator, tmux_server, acking_bridge,
                                                        fast_wakes, clock):
    project = tmp_path / "project"
    project.mkdir()
    launched = launch_stand_in(agent_id="reviewer", log=tmp_path / "agent.jsonl", ack=False)
    remember_session("reviewer", "sess-reviewer", now=clock.now, workdir=str(project))
    acking_bridge.set(resume={"ack": True})
    tmux.kill_session(launched.session_name)
    wake = drive(wake_trigger(actor=coordinator, thread_id=thread.pk, agent_id="reviewer").pk, clock)
    assert (wake.status, wake.path, wake.reason_code) == (reasons.RESUMED, "resume", "resume_ok")
    (call,) = acking_bridge.calls("resume")
    assert (call["cwd"], call["session_id"], call["prompt"]) == (str(project), "sess-reviewer", wake.prompt)
    assert "--skip-git-repo-check" in call["argv"] and "mcp_servers.orkiva.required=true" in call["argv"]
    assert call["has_token"] and call["read_status"] == 200
    assert call["pgid"] == call["pid"]  # its own process group
    assert ("inject", "failed", "target_missing") in steps(wake)
    resumed = wake_json(wake)["trace"]["steps"][-1]
    assert (resumed["reason_code"], resumed["detail"]["acked_by"], resumed["detail"]["workdir"]) == (
        "resume_ok", "read_messages", str(project))
    assert AuditEvent.objects.filter(target_id=str(wake.pk), action="wake.resume", reason_code="resume_ok").exists()


def test_exit_zero_without_an_ack_is_not_delivery(tmp_path, thread, coordinator, fake_codex, clock):
    """The stand-in exits 0 without reading the thread: neither the resume nor the spawn woke anyone."""
    runtime_register(actor=reviewer_actor(), runtime_type="codex", session_id="sess-r", now=clock.now)
    remember_session("reviewer", "sess-r", now=clock.now, workdir=str(tmp_path))
    wake = drive(wake_trigger(actor=coordinator, thread_id=thread.pk, agent_id="reviewer").pk, clock)
    assert (wake.status, wake.reason_code) == (reasons.FAILED, "spawn_unacknowledged")
    assert [s for s in steps(wake) if s[0] in ("resume", "spawn")] == [
        ("resume", "failed", "resume_unacknowledged"), ("resume", "failed", "resume_unacknowledged"),
        ("spawn", "failed", "spawn_unacknowledged"),
    ]
    assert all(s["detail"]["exit_code"] == 0 for s in wake_json(wake)["trace"]["steps"] if s["step"] == "spawn")
    # a session did run: it is the agent's latest, to resume next time
    assert latest_resumable_session(workspace_id="ws-main", agent_id="reviewer").session_id == "spawned-session-1"


@pytest.mark.django_db(transaction=True)
def test_resume_retries_are_spaced_by_a_growing_backoff(tmp_path, thread, coordinator, acking_bridge, clock, settings):
    """Attempt n+1 waits n x ORKIVA_WAKE_RESUME_BACKOFF_SECONDS after attempt n fails (a zero or
    constant backoff would retry a failing CLI in a tight loop)."""
    settings.ORKIVA_WAKE_RESUME_ATTEMPTS, settings.ORKIVA_WAKE_RESUME_BACKOFF_SECONDS = 3, 7
    runtime_register(actor=reviewer_actor(), runtime_type="codex", session_id="sess-r", now=clock.now)
    remember_session("reviewer", "sess-r", now=clock.now, workdir=str(tmp_path))
    acking_bridge.set(resume={"exit": 3, "stdout": "no rollout found"}, spawn={"thread_id": "fresh-thread-9", "ack": True})
    wake = drive(wake_trigger(actor=coordinator, thread_id=thread.pk, agent_id="reviewer").pk, clock)
    resumes = [a for a in WakeAttempt.objects.filter(wake=wake).order_by("started_at") if a.step == "resume"]
    assert [a.outcome for a in resumes] == ["failed"] * 3
    gaps = [(later.started_at - earlier.finished_at).total_seconds() for earlier, later in zip(resumes, resumes[1:])]
    assert [round(g) for g in gaps] == [7, 14]


@pytest.mark.django_db(transaction=True)
def test_resume_fails_twice_then_spawn_with_summary(tmp_path, thread, coordinator, executioner, acking_bridge, clock):
    from messaging.services import message_post

    message_post(actor=executioner, thread_id=thread.pk, body="Finding: the cache key ignores tenant", kind="finding")
    runtime_register(actor=reviewer_actor(), runtime_type="codex", session_id="sess-r", now=clock.now)
    remember_session("reviewer", "sess-r", now=clock.now, workdir=str(tmp_path))
    acking_bridge.set(resume={"exit": 3, "stdout": "no rollout found"}, spawn={"thread_id": "fresh-thread-9", "ack": True})
    wake = wake_trigger(actor=coordinator, thread_id=thread.pk, agent_id="reviewer")
    wake = drive(wake.pk, clock)
    assert wake.status == reasons.SPAWNED and wake.resume_attempts == 2
    assert len(acking_bridge.calls("resume")) == 2
    (spawn,) = acking_bridge.calls("spawn")
    thread.refresh_from_db()
    expected_summary = summary_text(summary_of(thread))
    assert spawn["argv"][1:4] == ["exec", "--skip-git-repo-check", "--json"] and spawn["session_id"] is None
    assert expected_summary in spawn["prompt"] and "cache key ignores tenant" in spawn["prompt"]
    assert spawn["cwd"] == str(tmp_path)
    failed = [s for s in wake_json(wake)["trace"]["steps"] if s["outcome"] == "failed"]
    assert [s["detail"]["exit_code"] for s in failed] == [3, 3] and "no rollout found" in failed[0]["detail"]["output_tail"]
    # the new session is the agent's latest resumable one, in the same directory
    latest = latest_resumable_session(workspace_id="ws-main", agent_id="reviewer")
    assert (latest.session_id, latest.workdir) == ("fresh-thread-9", str(tmp_path))
    assert Runtime.objects.get(agent_id="reviewer").session_id == "fresh-thread-9"


def test_stale_heartbeat_skips_resume(tmp_path, thread, coordinator, fake_codex, clock):
    stale = clock.now - timedelta(hours=13)
    runtime_register(actor=reviewer_actor(), runtime_type="codex", session_id="sess-old", now=stale)
    remember_session("reviewer", "sess-old", now=stale, workdir=str(tmp_path))
    wake = drive(wake_trigger(actor=coordinator, thread_id=thread.pk, agent_id="reviewer").pk, clock)
    assert fake_codex.calls("resume") == [] and len(fake_codex.calls("spawn")) == 1
    assert ("resume", "skipped", "stale_session") in steps(wake) and steps(wake)[-1][0] == "spawn"


def test_no_known_directory_skips_resume_and_spawn(thread, coordinator, fake_codex, clock):
    """Codex and Claude Code resume a session only where it lives: never in the supervisor's own
    directory by default."""
    runtime_register(actor=reviewer_actor(), runtime_type="codex", session_id="sess-x", now=clock.now)
    remember_session("reviewer", "sess-x", now=clock.now)
    wake = drive(wake_trigger(actor=coordinator, thread_id=thread.pk, agent_id="reviewer").pk, clock)
    assert (wake.status, wake.reason_code) == (reasons.FAILED, "no_workdir")
    assert ("resume", "skipped", "no_workdir") in steps(wake) and fake_codex.calls() == []


def test_unmanaged_runtime_is_never_typed_into(thread, coordinator, tmux_server, fake_codex, clock, tmp_path):
    # an agent registers itself, naming a pane: the supervisor must not type into it
    pane = tmux_server.new_session(session_name="someone-else", window_command="cat").active_pane
    target = pane.cmd("display-message", "-p", "#{session_name}:#{window_index}.#{pane_index}").stdout[0]
    runtime_register(actor=reviewer_actor(), runtime_type="codex", session_id="sess-u", pty_backend="tmux",
                     pty_target=target, host="test-host", now=clock.now)
    remember_session("reviewer", "sess-u", now=clock.now, workdir=str(tmp_path))
    wake = wake_trigger(actor=coordinator, thread_id=thread.pk, agent_id="reviewer")
    body = wake_json(wake)
    assert body["status"] == "unmanaged_runtime" and body["reason_code"] == "unmanaged_runtime"
    assert body["trace"]["steps"][-1]["reason_code"] == "unmanaged_runtime"
    assert "orkiva_runtime launch" in body["trace"]["steps"][-1]["detail"]["guidance"]
    wake = drive(wake.pk, clock)
    assert [c["session_id"] for c in fake_codex.calls("resume")] == ["sess-u", "sess-u"]
    assert wake.prompt not in tmux.capture(target)


def test_human_typing_defers_then_delivers_after_quiet(tmp_path, thread, coordinator, tmux_server, fake_codex, fast_wakes, clock):
    log = tmp_path / "agent.jsonl"
    launched = launch_stand_in(agent_id="reviewer", log=log, ack=False)
    human = attach_client(tmux_server, launched.session_name)
    try:
        human.stdin.write(b"x")  # a keystroke through the attached client
        human.stdin.flush()
        activity = wait_for(lambda: tmux.client_activity(launched.runtime.pty_target), what="client activity")
        wait_for(lambda: "x" in tmux.capture(launched.runtime.pty_target), what="the keystroke")
        typed_at = datetime.fromtimestamp(max(activity), tz=dt_timezone.utc)
        clock.now = typed_at + timedelta(seconds=3)
        wake = wake_trigger(actor=coordinator, thread_id=thread.pk, agent_id="reviewer")
        wake, _ = wake_advance(wake_id=wake.pk, now=clock.now)
        assert wake.status == reasons.DEFERRED and wake.reason_code == "human_typing"
        assert wake.next_attempt_at == clock.now + timedelta(seconds=5)
        wake = drive(wake.pk, clock, until=lambda w: w.status == reasons.AWAITING_ACK)
        # injected at the first re-check after the 20s quiet window
        assert (clock.now - typed_at).total_seconds() >= 20
        assert [s[2] for s in steps(wake) if s[1] == "deferred"] == ["human_typing"] * 4
    finally:
        detach(human)
    wait_for(lambda: agent_lines(log), what="the prompt")
    assert agent_lines(log) == ["x" + wake.prompt]  # the human's keystroke stayed where it was
    runtime_heartbeat(actor=reviewer_actor(), now=clock.now + timedelta(seconds=1))
    wake = drive(wake.pk, clock)
    assert wake.status == reasons.DELIVERED and steps(wake)[-1] == ("inject", "acked", "delivered_acked")


def test_max_defer_queues_and_force_injects_audited(tmp_path, settings, thread, coordinator, tmux_server, fake_codex, clock):
    settings.ORKIVA_WAKE_QUIET_WINDOW_SECONDS = 10_000  # the one keystroke stays "recent"
    log = tmp_path / "agent.jsonl"
    launched = launch_stand_in(agent_id="reviewer", log=log, ack=False)
    human = attach_client(tmux_server, launched.session_name)
    try:
        human.stdin.write(b"y")
        human.stdin.flush()
        wait_for(lambda: tmux.client_activity(launched.runtime.pty_target), what="client activity")
        wake = wake_trigger(actor=coordinator, thread_id=thread.pk, agent_id="reviewer")
        wake = drive(wake.pk, clock, until=lambda w: w.status == reasons.QUEUED)
        assert wake.reason_code == "max_defer_reached"
        assert (wake.queued_at - wake.created_at).total_seconds() >= 60
        assert agent_lines(log) == []  # nothing typed over the human
        # the sweep looks again: still typing, still queued, no new attempt row
        count = wake.attempts.count()
        wake, _ = wake_advance(wake_id=wake.pk, now=clock.advance(30))
        assert wake.status == reasons.QUEUED and wake.attempts.count() == count
        # an operator forces it, with a reason: injected now, and both decisions audited
        forced = wake_trigger(actor=operator(), thread_id=thread.pk, agent_id="reviewer", reason="urgent fix", force=True)
        assert forced.pk == wake.pk and forced.force
        wake, _ = wake_advance(wake_id=wake.pk, now=clock.advance(1))
        assert wake.status == reasons.AWAITING_ACK and wake.reason_code == "forced_injection"
    finally:
        detach(human)
    wait_for(lambda: agent_lines(log), what="the forced prompt")
    force_audit = AuditEvent.objects.get(target_id=str(wake.pk), action="wake.request", reason_code="forced_injection")
    assert force_audit.actor_id == "operator:tester" and force_audit.reason == "urgent fix"
    assert AuditEvent.objects.filter(target_id=str(wake.pk), action="wake.inject", reason_code="forced_injection").exists()


def test_paused_runtime_holds_wakes_until_resumed(tmp_path, thread, coordinator, tmux_server, fake_codex, fast_wakes, clock):
    log = tmp_path / "agent.jsonl"
    launch_stand_in(agent_id="reviewer", log=log, ack=False)
    runtime_set_paused(operator=operator(), workspace_id="ws-main", agent_id="reviewer", paused=True, reason="pairing")
    wake = wake_trigger(actor=coordinator, thread_id=thread.pk, agent_id="reviewer", now=clock.now)
    wake, _ = wake_advance(wake_id=wake.pk, now=clock.now)
    assert (wake.status, wake.reason_code) == (reasons.QUEUED, "runtime_paused")
    wake, _ = wake_advance(wake_id=wake.pk, now=clock.advance(120))
    assert wake.status == reasons.QUEUED and fake_codex.calls() == []
    assert agent_lines(log) == []
    runtime_set_paused(operator=operator(), workspace_id="ws-main", agent_id="reviewer", paused=False, reason="done")
    wake = drive(wake.pk, clock.__class__(clock.now), until=lambda w: w.status == reasons.AWAITING_ACK)
    assert wait_for(lambda: agent_lines(log), what="the prompt") == [wake.prompt]
    assert AuditEvent.objects.filter(action="runtime.pause", reason="pairing").exists()


def test_prompt_starting_with_dash_is_delivered_intact(tmp_path, settings, thread, coordinator, tmux_server, fast_wakes, clock):
    settings.ORKIVA_WAKE_PROMPT = "--wake -x {thread_id} Enter C-c ;{reason}"
    log = tmp_path / "agent.jsonl"
    launch_stand_in(agent_id="reviewer", log=log, ack=False)
    wake = wake_trigger(actor=coordinator, thread_id=thread.pk, agent_id="reviewer", reason="-r", now=clock.now)
    wake, _ = wake_advance(wake_id=wake.pk, now=clock.now)
    assert wake.status == reasons.AWAITING_ACK
    expected = f"--wake -x {thread.pk} Enter C-c ; Reason: -r (w-{wake.trace_id[:12]})"  # its marker appended
    assert wake.prompt == expected
    assert wait_for(lambda: agent_lines(log), what="the prompt") == [expected]


def test_burst_of_twenty_triggers_is_one_wake(thread, coordinator, executioner):
    wakes = [wake_trigger(actor=executioner if i % 2 else coordinator, thread_id=thread.pk, agent_id="reviewer")
             for i in range(20)]
    assert len({w.pk for w in wakes}) == 1
    assert [w.deduped for w in wakes] == [False] + [True] * 19
    assert WakeRequest.objects.count() == 1


@pytest.mark.parametrize("other_session", [False, True], ids=["server-gone-too", "server-still-up"])
def test_dead_target_goes_to_resume(thread, coordinator, tmux_server, fake_codex, fast_wakes, clock, tmp_path,
                                    other_session):
    if other_session:  # the tmux server outlives the agent's session (tmux answers such a target with empty fields)
        tmux_server.new_session(session_name="another-agent", window_command="cat")
    launched = launch_stand_in(agent_id="reviewer", log=tmp_path / "a.jsonl", ack=False)
    remember_session("reviewer", "sess-d", now=clock.now, workdir=str(tmp_path))
    tmux.kill_session(launched.session_name)
    wake = drive(wake_trigger(actor=coordinator, thread_id=thread.pk, agent_id="reviewer").pk, clock)
    assert ("inject", "failed", "target_missing") in steps(wake)
    assert [c["session_id"] for c in fake_codex.calls("resume")] == ["sess-d", "sess-d"]


def test_command_timeout_kills_the_process_group(thread, coordinator, fake_codex, settings, clock, tmp_path):
    settings.ORKIVA_WAKE_COMMAND_TIMEOUT_SECONDS = 1
    settings.ORKIVA_WAKE_RESUME_ATTEMPTS = 1
    pidfile = tmp_path / "child.pid"
    fake_codex.set(resume={"sleep": 30, "child_pidfile": str(pidfile)}, spawn={"exit": 1})
    runtime_register(actor=reviewer_actor(), runtime_type="codex", session_id="sess-t", now=clock.now)
    remember_session("reviewer", "sess-t", now=clock.now, workdir=str(tmp_path))
    wake = drive(wake_trigger(actor=coordinator, thread_id=thread.pk, agent_id="reviewer").pk, clock)
    assert ("resume", "failed", "resume_timeout") in steps(wake)
    assert wake.status == reasons.FAILED and wake.reason_code == "spawn_failed"
    child = int(pidfile.read_text())
    wait_for(lambda: not _alive(child), what="the child to die", timeout=5)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie whose parent died is reaped by init; treat a zombie as dead
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def attach_client(server, session_name: str) -> subprocess.Popen:
    """A human at the terminal: a real tmux client attached through a pty (`script`)."""
    tmux_cmd = f"tmux -L {server.socket_name} -f /dev/null attach -t {session_name}"
    proc = subprocess.Popen(
        ["script", "-qfec", tmux_cmd, "/dev/null"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, env={**os.environ, "TERM": "xterm"}, start_new_session=True,
    )
    wait_for(lambda: server.cmd("list-clients").stdout, what="the client to attach")
    return proc


def detach(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def test_a_cancelled_wake_stays_cancelled_even_if_a_step_was_running(tmp_path, thread, coordinator, tmux_server,
                                                                    fast_wakes, clock):
    from supervisor.services import wake_cancel
    from supervisor.services.chain import _apply
    from supervisor.services.steps import Step as _Step

    log = tmp_path / "agent.jsonl"
    launch_stand_in(agent_id="reviewer", log=log, ack=False)
    wake = wake_trigger(actor=coordinator, thread_id=thread.pk, agent_id="reviewer")
    wake = drive(wake.pk, clock, until=lambda w: w.status == reasons.AWAITING_ACK)
    running = WakeRequest.objects.get(pk=wake.pk)  # a worker's copy, loaded before the cancel
    with pytest.raises(Exception) as refused:
        wake_cancel(operator=operator(), wake_id=wake.pk, reason="  ")
    assert refused.value.code == "reason_required"
    cancelled = wake_cancel(operator=operator(), wake_id=wake.pk, reason="the agent was replaced", now=clock.now)
    assert cancelled.status == reasons.CANCELLED and cancelled.finished_at == clock.now
    # the worker finishes its step after the cancel: its attempt is recorded, the status is not revived
    step = _Step()
    step.attempt("inject", reasons.OUT_ACKED, reasons.R_ACKED, {"signal": "runtime_heartbeat"})
    step.changes.update(status=reasons.DELIVERED, path="inject", stage=reasons.STAGE_DONE)
    _apply(running, step, clock.advance(1))
    fresh = WakeRequest.objects.get(pk=wake.pk)
    assert fresh.status == reasons.CANCELLED and fresh.path == "" and fresh.lease_until is None
    assert steps(fresh)[-2:] == [("request", "cancelled", "operator_cancelled"), ("inject", "acked", "delivered_acked")]
    # and the chain never runs it again
    again, ran = wake_advance(wake_id=wake.pk, now=clock.advance(600))
    assert ran is False and again.status == reasons.CANCELLED


def test_a_force_given_while_a_step_runs_is_not_undone_by_the_step(tmp_path, thread, coordinator, tmux_server,
                                                                   fast_wakes, clock):
    from supervisor.services.chain import _apply
    from supervisor.services.steps import Step as _Step

    launch_stand_in(agent_id="reviewer", log=tmp_path / "agent.jsonl", ack=False)
    wake = drive(wake_trigger(actor=coordinator, thread_id=thread.pk, agent_id="reviewer").pk, clock,
                 until=lambda w: w.status == reasons.AWAITING_ACK)
    running = WakeRequest.objects.get(pk=wake.pk)  # a worker's copy, loaded before the operator acts
    forced = wake_trigger(actor=operator(), thread_id=thread.pk, agent_id="reviewer", reason="urgent", force=True)
    assert forced.pk == wake.pk and forced.force  # collapsed onto the running wake, now forced
    step = _Step()
    step.changes.update(next_attempt_at=clock.advance(2))  # the step's own outcome: poll again later
    _apply(running, step, clock.now)
    fresh = WakeRequest.objects.get(pk=wake.pk)
    assert fresh.force is True and fresh.reason == "urgent"
    assert fresh.next_attempt_at == clock.now and fresh.lease_until is None


def test_a_step_that_raises_fails_the_wake_instead_of_running_for_ever(thread, coordinator, monkeypatch, clock):
    from supervisor.services import chain

    def broken(wake, step, now):
        raise RuntimeError("a bug in a step")

    monkeypatch.setattr(chain, "step_inject", broken)
    wake = wake_trigger(actor=coordinator, thread_id=thread.pk, agent_id="reviewer")
    with pytest.raises(RuntimeError):
        wake_advance(wake_id=wake.pk, now=clock.advance(5))  # the job fails too: django-q2 keeps the traceback
    wake.refresh_from_db()
    assert (wake.status, wake.reason_code, wake.lease_until) == (reasons.FAILED, "internal_error", None)
    last = wake_json(wake)["trace"]["steps"][-1]
    assert (last["step"], last["reason_code"], last["detail"]["error"]) == ("inject", "internal_error",
                                                                            "RuntimeError: a bug in a step")
    assert wake_advance(wake_id=wake.pk, now=clock.advance(600))[1] is False


def test_a_pane_that_runs_another_process_now_is_not_typed_into(tmp_path, thread, coordinator, tmux_server,
                                                                fake_codex, fast_wakes, clock):
    """tmux reuses pane ids and names: the pane at the target is not the agent's any more."""
    log = tmp_path / "agent.jsonl"
    launched = launch_stand_in(agent_id="reviewer", log=log, ack=False)
    Runtime.objects.filter(agent_id="reviewer").update(pid=launched.runtime.pid + 1)
    wake = drive(wake_trigger(actor=coordinator, thread_id=thread.pk, agent_id="reviewer").pk, clock,
                 until=lambda w: w.stage != reasons.STAGE_INJECT)
    assert steps(wake)[1] == ("inject", "failed", "target_missing")
    assert agent_lines(log) == []


def test_a_held_auto_wake_whose_agent_read_everything_meanwhile_is_not_typed(tmp_path, thread, coordinator,
                                                                            executioner, tmux_server, fast_wakes,
                                                                            clock):
    from messaging.services import cursor_ack, message_post

    log = tmp_path / "agent.jsonl"
    launch_stand_in(agent_id="reviewer", log=log, ack=False)
    message_post(actor=executioner, thread_id=thread.pk, body="a finding", kind="finding")
    wake = wake_trigger(actor=coordinator, thread_id=thread.pk, agent_id="reviewer")
    WakeRequest.objects.filter(pk=wake.pk).update(source=reasons.SOURCE_AUTO, status=reasons.QUEUED,
                                                  reason_code=reasons.R_AGENT_BUSY, next_attempt_at=clock.now)
    cursor_ack(actor=reviewer_actor(), thread_id=thread.pk, seq=1)  # it read the post during its turn
    wake = drive(wake.pk, clock)
    assert (wake.status, wake.reason_code) == (reasons.DELIVERED, "already_read")
    assert agent_lines(log) == []


def test_a_post_that_collapsed_onto_a_wake_already_read_gets_a_wake_of_its_own(tmp_path, thread, coordinator,
                                                                               executioner, tmux_server,
                                                                               fast_wakes, clock):
    """The agent read the thread for its wake; a post then landed, collapsing onto that wake (still
    waiting for the chain's ack poll): delivered, the wake leaves a follow-up wake for the post."""
    from messaging.services import message_post
    from tests.conftest import client_for

    launch_stand_in(agent_id="reviewer", log=tmp_path / "agent.jsonl", ack=False)
    Runtime.objects.filter(agent_id="reviewer").update(state_source="claude-hooks")
    message_post(actor=executioner, thread_id=thread.pk, body="the work", kind="message")
    wake = wake_trigger(actor=coordinator, thread_id=thread.pk, agent_id="reviewer")
    wake = drive(wake.pk, clock, until=lambda w: w.status == reasons.AWAITING_ACK)
    assert client_for(reviewer_actor()).get(f"/v1/threads/{thread.pk}/messages").status_code == 200  # its ack
    collapsed = wake_trigger(actor=executioner, thread_id=thread.pk, agent_id="reviewer")
    assert collapsed.pk == wake.pk and collapsed.deduped
    message_post(actor=executioner, thread_id=thread.pk, body="a fix, after the read", kind="message")
    wake = drive(wake.pk, clock)
    assert wake.status == reasons.DELIVERED
    (follow_up,) = WakeRequest.objects.exclude(pk=wake.pk)
    assert (follow_up.source, follow_up.thread_id, follow_up.status in reasons.ACTIVE_STATUSES) == (
        "auto", thread.pk, True)
