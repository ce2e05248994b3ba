"""The pilot end to end: an executioner and a reviewer (the scripted agents of pilot/agent.py,
speaking MCP over HTTP) in managed tmux panes launched by `orkiva_runtime launch`, a live bridge,
a real `manage.py qcluster`, and no human message at any step.

Variants of the same review: the reviewer woken through its pane; its pane gone, so the wake
resumes it with `codex exec resume` (the stand-in codex runs the reviewer once); its session too
stale, so a fresh one is spawned with the thread summary; and the two agents looping until the
policy blocks the thread and an operator unblocks it with a reason."""
from __future__ import annotations

import json
import re
import os
import shlex
import subprocess
import sys
import time
from contextlib import contextmanager
from functools import partial
from pathlib import Path

import anyio
import pytest

from messaging.models import Message
from pilot.agent import Bridge, connect
from policy.identity import Actor
from policy.models import AuditEvent
from sessions.models import AgentSession
from supervisor import reasons, tmux
from supervisor.models import Runtime, WakeRequest
from tests.conftest import token_for
from tests.live import REPO, bridge_server, qcluster, run_manage_json, subprocess_env
from tests.supervisor.conftest import tmux_server  # noqa: F401 (fixture: a private tmux server)
from threads.models import Thread

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres_only]

BIN = Path(__file__).resolve().parent / "bin"
AGENTS = ("executioner", "reviewer")
COORDINATOR = Actor(agent_id="coordinator", workspace_id="ws-pilot", role="coordinator", session_id="pilot-coord")


class Pilot:
    """The running pilot: its environment, processes and tmux server, and ways to watch them."""

    def __init__(self, tmp_path: Path, tmux_socket: str, extra_env: dict[str, str]):
        self.tmp_path = tmp_path
        self.codex_log = tmp_path / "codex.jsonl"
        settings = {
            "ORKIVA_TMUX_SOCKET": tmux_socket, "ORKIVA_TMUX_CONFIG": "/dev/null", "ORKIVA_SUPERVISOR_HOST": "test-host",
            # a reviewer silent for 2 s is idle; every post may wake it again (no dedupe window)
            "ORKIVA_RUNTIME_IDLE_SECONDS": "2", "ORKIVA_WAKE_DEDUPE_WINDOW_SECONDS": "0",
            "ORKIVA_WAKE_ACK_TIMEOUT_SECONDS": "30", "ORKIVA_WAKE_ACK_POLL_SECONDS": "0.5",
            "ORKIVA_WAKE_RESUME_BACKOFF_SECONDS": "1", "ORKIVA_Q_POLL": "0.1", "ORKIVA_Q_WORKERS": "2",
            "PILOT_FIX_DELAY": "3",  # the executioner's work on the fixes: longer than the idle threshold
            "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "FAKE_CODEX_LOG": str(self.codex_log),
            "PILOT_PYTHON": sys.executable,
        }
        self.env = subprocess_env(**{**settings, **extra_env})
        self.thread_id = ""
        self.base_url = ""

    def codex_calls(self, mode: str) -> list[dict]:
        if not self.codex_log.exists():
            return []
        rows = [json.loads(line) for line in self.codex_log.read_text().splitlines() if line.strip()]
        return [r for r in rows if r["mode"] == mode]

    def launch(self, agent_id: str, *extra: str) -> dict:
        command = shlex.join([sys.executable, "-m", "pilot.agent", agent_id, "--thread", self.thread_id, *extra])
        code, body = run_manage_json(
            "orkiva_runtime", "launch", "--agent-id", agent_id, "--workspace-id", "ws-pilot", "--runtime", "codex",
            "--command", command, "--workdir", str(REPO), "--reason", "pilot", "--operator", "pilot", env=self.env,
        )
        assert code == 0, body
        return body["runtime"]

    def pane(self, runtime: dict) -> str:
        return tmux.capture(runtime["pty_target"]) if tmux.pane_state(runtime["pty_target"]).exists else ""

    def status(self) -> str:
        return Thread.objects.get(pk=self.thread_id).status

    def wait(self, predicate, *, what: str, timeout: float = 90, panes: tuple = ()):
        """Wait for the real processes to get somewhere; on a timeout, show what they printed."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(0.2)
        screens = "\n".join(f"--- {r['agent_id']} pane ---\n{self.pane(r)}" for r in panes)
        cluster = (self.tmp_path / "qcluster.log").read_text()[-3000:]
        wakes = "\n".join(
            f"{w.agent_id} {w.status}: " + json.dumps([(a.step, a.reason_code, a.detail) for a in w.attempts.all()])
            for w in WakeRequest.objects.filter(thread_id=self.thread_id).order_by("created_at")
        )
        raise AssertionError(f"timed out waiting for {what}\n{screens}\n--- wakes ---\n{wakes}\n"
                             f"--- qcluster ---\n{cluster}")


@contextmanager
def running_pilot(tmp_path: Path, tmux_server, **extra_env: str):
    """The bridge, the supervisor and the coordinator's thread, on the test's private tmux server."""
    pilot = Pilot(tmp_path, tmux_server.socket_name, extra_env)
    with bridge_server(tmp_path, env={**pilot.env}) as bridge:
        pilot.base_url = bridge.base_url
        pilot.env["ORKIVA_PUBLIC_URL"] = bridge.base_url
        with qcluster(tmp_path, env=pilot.env):
            pilot.thread_id = create_thread_over_mcp(bridge.base_url)
            yield pilot


def create_thread_over_mcp(base_url: str) -> str:
    """The coordinator opens the review thread through MCP, as its agent would."""
    created: dict = {}

    async def run(bridge: Bridge) -> None:
        created.update(await bridge.call("create_thread", title="Review the parser change", type="review",
                                         participants=list(AGENTS)))

    anyio.run(partial(connect, run, base_url=base_url, token=token_for(COORDINATOR)))
    return created["id"]


def senders_and_kinds(thread_id: str) -> list[tuple[str, str]]:
    return list(Message.objects.filter(thread_id=thread_id).order_by("seq").values_list("sender", "kind"))


def assert_no_human_relay(thread_id: str, *, status_changes_by: frozenset = frozenset()) -> None:
    """Every message came from the two agents: nobody relayed anything. Only status changes may
    come from elsewhere (the policy blocking a loop, an operator unblocking it), and only as named."""
    rows = senders_and_kinds(thread_id)
    assert {sender for sender, kind in rows if kind != "status"} == set(AGENTS)
    assert {sender for sender, kind in rows if kind == "status"} <= set(AGENTS) | status_changes_by


def report_for(pilot: Pilot) -> dict:
    code, report = run_manage_json("orkiva_pilot_report", "--workspace-id", "ws-pilot", "--thread", pilot.thread_id,
                                   env=pilot.env)
    assert code == 0, report
    return report["threads"][0]


def test_the_reviewer_is_woken_through_its_pane_and_the_thread_resolves(tmp_path, tmux_server):
    with running_pilot(tmp_path, tmux_server) as pilot:
        executioner = pilot.launch("executioner")
        pilot.wait(lambda: Message.objects.filter(thread_id=pilot.thread_id, kind="message").exists(),
                   what="the executioner's work", panes=(executioner,))
        reviewer = pilot.launch("reviewer")
        panes = (executioner, reviewer)
        pilot.wait(lambda: pilot.status() == "resolved", what="the thread to resolve", panes=panes)
        pilot.wait(lambda: "done" in pilot.pane(executioner), what="the executioner to finish", panes=panes)
        assert re.search(r"woken: Orkiva wake w-[0-9a-f]{12}: unread messages for you", pilot.pane(reviewer))
        pilot.wait(lambda: WakeRequest.objects.filter(thread_id=pilot.thread_id, agent_id="reviewer",
                                                      status="delivered").exists(),
                   what="the reviewer's wake to be acknowledged", panes=panes)

    kinds = [kind for _, kind in senders_and_kinds(pilot.thread_id)]
    assert kinds == ["message", "finding", "finding", "fix", "fix", "resolution", "resolution", "status"]
    assert_no_human_relay(pilot.thread_id)
    # each post was retried with its idempotency key and replayed: one row per key
    assert Message.objects.filter(thread_id=pilot.thread_id, idempotency_key__isnull=False).count() == 7
    wakes = list(WakeRequest.objects.filter(thread_id=pilot.thread_id, agent_id="reviewer"))
    assert [(w.source, w.status, w.path) for w in wakes if w.status == "delivered"] == [("auto", "delivered", "inject")]
    assert pilot.codex_calls("resume") == [] and pilot.codex_calls("spawn") == []

    row = report_for(pilot)
    assert row["status"] == "resolved" and row["review_rounds"] == 2
    assert row["cycle_time_seconds"] > 0 and row["human_interventions"] == 0
    assert row["wakes"]["latency_seconds_by_path"]["inject"]["count"] >= 1


def test_a_reviewer_whose_pane_is_gone_is_resumed_with_codex_exec_resume(tmp_path, tmux_server):
    with running_pilot(tmp_path, tmux_server) as pilot:
        executioner = pilot.launch("executioner")
        reviewer = pilot.launch("reviewer")
        panes = (executioner, reviewer)
        pilot.wait(lambda: Message.objects.filter(thread_id=pilot.thread_id, kind="finding").count() == 2,
                   what="the first review", panes=panes)
        pilot.wait(lambda: "dormant" in pilot.pane(reviewer), what="the reviewer to go dormant", panes=panes)
        tmux.kill_session(reviewer["pty_target"].split(":")[0])  # its terminal is closed
        pilot.wait(lambda: pilot.status() == "resolved", what="the thread to resolve", panes=(executioner,))

    (resume,) = pilot.codex_calls("resume")
    launched_session = AgentSession.objects.filter(agent_id="reviewer").order_by("created_at").first().session_id
    assert resume["session_id"] == launched_session  # the session it heartbeated from its pane
    assert resume["cwd"] == str(REPO)  # where it runs (the launch's workdir)
    assert resume["thread_id"] == pilot.thread_id and resume["env"]["ORKIVA_AGENT_ID"] == "reviewer"
    wake = WakeRequest.objects.get(thread_id=pilot.thread_id, agent_id="reviewer", status="resumed")
    steps = [(a.step, a.reason_code) for a in wake.attempts.all()]
    assert ("inject", "target_missing") in steps and ("resume", "resume_ok") in steps
    assert pilot.codex_calls("spawn") == []
    assert_no_human_relay(pilot.thread_id)


def test_a_stale_reviewer_session_is_replaced_by_a_fresh_one_seeded_with_the_summary(tmp_path, tmux_server):
    with running_pilot(tmp_path, tmux_server, ORKIVA_WAKE_STALE_HEARTBEAT_SECONDS="2", PILOT_FIX_DELAY="5") as pilot:
        executioner = pilot.launch("executioner")
        reviewer = pilot.launch("reviewer")
        panes = (executioner, reviewer)
        pilot.wait(lambda: "dormant" in pilot.pane(reviewer) and
                   Message.objects.filter(thread_id=pilot.thread_id, kind="finding").count() == 2,
                   what="the first review", panes=panes)
        tmux.kill_session(reviewer["pty_target"].split(":")[0])
        pilot.wait(lambda: pilot.status() == "resolved", what="the thread to resolve", panes=(executioner,))

    assert pilot.codex_calls("resume") == []  # older than the stale threshold: not resumed
    (spawn,) = pilot.codex_calls("spawn")
    prompt = spawn["prompt"]
    assert spawn["argv"][1:4] == ["exec", "--skip-git-repo-check", "--json"] and pilot.thread_id in prompt
    assert "Null dereference in parse()" in prompt  # the summary's open findings seed the new session
    wake = WakeRequest.objects.get(thread_id=pilot.thread_id, agent_id="reviewer", status="spawned")
    assert ("resume", "stale_session") in [(a.step, a.reason_code) for a in wake.attempts.all()]
    assert_no_human_relay(pilot.thread_id)


def test_looping_agents_are_blocked_escalated_and_finish_after_an_operator_unblocks(tmp_path, tmux_server):
    with running_pilot(tmp_path, tmux_server) as pilot:
        executioner = pilot.launch("executioner")
        reviewer = pilot.launch("reviewer", "--stubborn", "2")
        panes = (executioner, reviewer)
        pilot.wait(lambda: pilot.status() == "blocked", what="the policy to block the loop", panes=panes)
        thread = Thread.objects.get(pk=pilot.thread_id)
        assert thread.status_reason_code == "repeated_finding"

        code, inspected = run_manage_json("orkiva_inspect", "escalations", "--workspace-id", "ws-pilot", env=pilot.env)
        assert code == 0, inspected
        (escalation,) = [e for e in inspected["escalations"] if e["thread_id"] == pilot.thread_id]
        assert escalation["reason_code"] == "repeated_finding" and escalation["status"] == "open"

        code, unblocked = run_manage_json(
            "orkiva_unblock", "--thread-id", pilot.thread_id, "--operator", "alice",
            "--reason", "The fix is right; reviewer, accept it.", env=pilot.env,
        )
        assert code == 0, unblocked
        pilot.wait(lambda: pilot.status() == "resolved", what="the thread to finish after the unblock", panes=panes)

    unblock = AuditEvent.objects.get(action="thread.unblock", target_id=pilot.thread_id)
    assert (unblock.actor_id, unblock.reason) == ("operator:alice", "The fix is right; reviewer, accept it.")
    assert_no_human_relay(pilot.thread_id, status_changes_by=frozenset({"orkiva:policy", "operator:alice"}))
    repeated = Message.objects.filter(thread_id=pilot.thread_id, kind="finding", body__startswith="Null dereference")
    assert repeated.count() == 3  # the third identical finding is the one that blocked the thread
    row = report_for(pilot)
    assert row["escalations"] >= 1 and row["human_interventions"] >= 1


def test_run_pilot_sh_runs_twice_in_one_workspace(tmp_path, tmux_server):
    """The operator's script, as the docs run it, twice in one workspace: the second run replaces the
    first run's agents (it got 409 runtime_already_managed, printed KeyError: 'attach' and hung while
    its wake was typed into the old reviewer); each run resolves its thread, and its report waits
    for the wakes to settle."""
    pilot = Pilot(tmp_path, tmux_server.socket_name, {})
    with bridge_server(tmp_path, env={**pilot.env}) as bridge:
        env = {**pilot.env, "ORKIVA_PUBLIC_URL": bridge.base_url, "PYTHON": sys.executable, "FIX_DELAY": "3"}
        with qcluster(tmp_path, env=env):
            runs = []
            for _ in range(2):
                run = subprocess.run(["bash", str(REPO / "pilot" / "run_pilot.sh"), "--workspace-id", "ws-rerun",
                                      "--timeout", "120"], cwd=REPO, env=env, capture_output=True, text=True,
                                     timeout=300)
                runs.append(run)
                assert run.returncode == 0, run.stdout + run.stderr
    first, second = (re.search(r"pilot: thread (\S+) in workspace", r.stdout).group(1) for r in runs)
    assert first != second
    assert "deregistered the previous run's executioner" in runs[1].stdout
    assert "deregistered the previous run's reviewer" in runs[1].stdout
    for run in runs:
        assert "pilot: thread is resolved" in run.stdout and "have not settled" not in run.stdout
        assert "orkiva_runtime deregister --agent-id reviewer --workspace-id ws-rerun" in run.stdout
    assert Thread.objects.get(pk=second).status == "resolved"
    assert_no_human_relay(second)
    # the second thread's wakes reached the second run's agents only: made after they registered
    registered = dict(Runtime.objects.filter(workspace_id="ws-rerun").values_list("agent_id", "registered_at"))
    wakes = list(WakeRequest.objects.filter(thread_id=second))
    assert wakes and all(w.created_at >= registered[w.agent_id] for w in wakes)
    assert all(w.status in reasons.FINAL_STATUSES for w in wakes)  # the report waited for them
