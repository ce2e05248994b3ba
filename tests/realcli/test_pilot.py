"""The pilot with the real CLIs: an executioner (Codex CLI's TUI) and a reviewer (Claude Code's TUI),
each launched by `orkiva_runtime launch`, a real bridge and a real supervisor (`manage.py qcluster`),
the fake models playing the roles (pilot.brains). Work, findings, fixes, re-review and resolution go
through one thread with no human relaying anything: every hand-over is a wake, typed into the dormant
agent's pane by the supervisor. Variants: the reviewer's pane is gone (resumed in its session's
directory), and its session is stale (a fresh one spawned with the thread's summary)."""
from __future__ import annotations

import pytest

from messaging.models import Message
from pilot import brains
from policy.models import AuditEvent
from supervisor import tmux
from supervisor.models import Runtime, WakeRequest
from tests.live import qcluster, run_manage_json
from tests.pilot.test_pilot_e2e import assert_no_human_relay
from threads.models import Thread
from threads.services import thread_create

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres_only]


class RealPilot:
    def __init__(self, agents, thread: Thread, env: dict[str, str]):
        self.agents, self.thread, self.env = agents, thread, env

    def launch(self, agent_id: str, runtime: str, prompt: str = "") -> Runtime:
        args = ["orkiva_runtime", "launch", "--agent-id", agent_id, "--workspace-id", "ws-pilot", "--runtime", runtime,
                "--workdir", str(self.agents.workdir), "--reason", "pilot", "--operator", "pilot"]
        code, body = run_manage_json(*args, *(["--prompt", prompt] if prompt else []), env=self.env)
        assert code == 0, body
        runtime = Runtime.objects.get(workspace_id="ws-pilot", agent_id=agent_id)
        self.agents.wait(lambda: self.agents.ready(runtime), what=f"{agent_id}'s {runtime.runtime_type} TUI",
                         runtimes=[runtime])
        return runtime

    def runtimes(self) -> list[Runtime]:
        return list(Runtime.objects.filter(workspace_id="ws-pilot"))

    def messages(self, kind: str, sender: str) -> int:
        return Message.objects.filter(thread=self.thread, kind=kind, sender=sender).count()

    def wait(self, predicate, what: str, timeout: float = 120):
        return self.agents.wait(predicate, what=what, timeout=timeout, runtimes=self.runtimes())

    def status(self) -> str:
        return Thread.objects.get(pk=self.thread.pk).status


@pytest.fixture
def pilot(agents, tmp_path, coordinator_pilot):
    env = {**agents.env, "ORKIVA_PUBLIC_URL": agents.bridge_url, "ORKIVA_RUNTIME_DIR": str(tmp_path / "runtimes"),
           "ORKIVA_Q_POLL": "0.1", "ORKIVA_Q_WORKERS": "2", "ORKIVA_WAKE_ACK_POLL_SECONDS": "0.3",
           "ORKIVA_WAKE_ACK_TIMEOUT_SECONDS": "60", "ORKIVA_WAKE_RESUME_BACKOFF_SECONDS": "1"}
    thread = thread_create(actor=coordinator_pilot, title="Review the parser change", type="review",
                           participants=["executioner", "reviewer"])
    yield RealPilot(agents, thread, env)


@pytest.fixture
def coordinator_pilot():
    from policy.identity import Actor

    return Actor(agent_id="coordinator", workspace_id="ws-pilot", role="coordinator", session_id="pilot-coord")


def first_review(pilot: RealPilot) -> tuple[Runtime, Runtime]:
    """The reviewer starts dormant; the executioner's first prompt is its task: it posts its work, which
    wakes the reviewer through its pane; the review's findings wake the executioner the same way."""
    reviewer = pilot.launch("reviewer", "claude")
    executioner = pilot.launch("executioner", "codex", prompt=f"You are the executioner in thread {pilot.thread.pk}.")
    pilot.wait(lambda: pilot.messages("finding", "reviewer") == 2, what="the review's two findings")
    pilot.wait(lambda: pilot.messages("fix", "executioner") == 2, what="a fix for each finding")
    return reviewer, executioner


def test_the_real_agents_finish_the_review_with_no_human_relay(pilot):
    with qcluster(pilot.agents.tmp, env=pilot.env):
        first_review(pilot)
        pilot.wait(lambda: pilot.status() == "resolved", what="the re-review to resolve the thread")
    assert pilot.messages("resolution", "reviewer") == 2
    assert_no_human_relay(str(pilot.thread.pk))
    delivered = WakeRequest.objects.filter(thread=pilot.thread, status="delivered", path="inject")
    woken = {w.agent_id for w in delivered}
    assert woken == {"executioner", "reviewer"}  # each was woken through its pane at least once
    assert all(w.source == "auto" and w.submitted_at for w in delivered)
    # the reviewer's two wakes (the work, then the fixes) reached its model as prompts, exactly
    prompts = pilot.agents.claude_model.prompts()
    assert [w.prompt for w in delivered.filter(agent_id="reviewer").order_by("created_at")] == \
        [p for p in prompts if p.startswith("Orkiva wake")]
    assert not WakeRequest.objects.filter(thread=pilot.thread, status="failed").exists()


def reviewed_then_closed(pilot: RealPilot) -> Runtime:
    """The first review, after which the reviewer's terminal is closed while the executioner works on
    its fixes (the model takes a few seconds over them)."""
    pilot.agents.codex_model.brain = brains.working_executioner(fix_seconds=6)
    reviewer = pilot.launch("reviewer", "claude")
    pilot.launch("executioner", "codex", prompt=f"You are the executioner in thread {pilot.thread.pk}.")
    pilot.wait(lambda: pilot.messages("finding", "reviewer") == 2, what="the review's two findings")
    pilot.wait(lambda: Runtime.objects.get(pk=reviewer.pk).agent_state == "idle", what="the review's end")
    pilot.wait(lambda: any((pilot.agents.tmp / "claude-config" / "projects").glob(f"*/{reviewer.session_id}.jsonl")),
               what="the reviewer's session on disk")
    assert pilot.messages("fix", "executioner") == 0
    tmux.kill_session(tmux.session_name_for(workspace_id="ws-pilot", agent_id="reviewer"))
    return reviewer


def test_a_reviewer_whose_pane_is_gone_is_resumed_where_its_session_lives(pilot):
    with qcluster(pilot.agents.tmp, env=pilot.env):
        reviewer = reviewed_then_closed(pilot)
        pilot.wait(lambda: pilot.status() == "resolved", what="the resumed reviewer to resolve the thread")
    wake = WakeRequest.objects.get(thread=pilot.thread, agent_id="reviewer", status="resumed")
    steps = [(a.step, a.reason_code) for a in wake.attempts.all()]
    assert ("inject", "target_missing") in steps and ("resume", "resume_ok") in steps
    detail = wake.attempts.get(step="resume", reason_code="resume_ok").detail
    assert detail["workdir"] == str(pilot.agents.workdir) and reviewer.session_id in detail["argv"]
    assert_no_human_relay(str(pilot.thread.pk))


def test_a_stale_reviewer_session_is_replaced_by_one_seeded_with_the_summary(pilot):
    pilot.env["ORKIVA_WAKE_STALE_HEARTBEAT_SECONDS"] = "2"
    with qcluster(pilot.agents.tmp, env=pilot.env):
        reviewer = reviewed_then_closed(pilot)
        pilot.wait(lambda: pilot.status() == "resolved", what="the fresh reviewer to resolve the thread")
    wake = WakeRequest.objects.get(thread=pilot.thread, agent_id="reviewer", status="spawned")
    assert ("resume", "stale_session") in [(a.step, a.reason_code) for a in wake.attempts.all()]
    seeded = next(p for p in pilot.agents.claude_model.prompts() if "could not be resumed" in p)
    assert str(pilot.thread.pk) in seeded and "Null dereference in parse()" in seeded
    assert Runtime.objects.get(pk=reviewer.pk).session_id != reviewer.session_id  # the new session is recorded
    assert AuditEvent.objects.filter(action="wake.spawn", reason_code="spawn_ok").exists()
    assert_no_human_relay(str(pilot.thread.pk))
