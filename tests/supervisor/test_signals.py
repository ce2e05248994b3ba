"""The agent's own signals (POST /v1/runtimes/events, sent by supervisor/hook.py from the CLI's
hooks): its session and where it lives, its state, the ack of the wake whose prompt started a turn,
and the release of the wakes held while it was busy."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from django.utils import timezone

from sessions.models import AgentSession
from supervisor import reasons
from supervisor.models import Runtime, WakeRequest
from supervisor.services import runtime_register, wake_trigger
from supervisor.services.trace import wake_ref_of
from tests.conftest import client_for
from tests.supervisor.conftest import remember_session
from tests.supervisor.test_chain import reviewer_actor

pytestmark = pytest.mark.django_db

HOOK = Path(__file__).resolve().parents[2] / "supervisor" / "hook.py"
REVIEWER = reviewer_actor()


def event(body: dict):
    return client_for(REVIEWER).post("/v1/runtimes/events", body, format="json")


@pytest.fixture
def runtime(db):
    runtime_register(actor=REVIEWER, runtime_type="claude")
    Runtime.objects.filter(agent_id="reviewer").update(state_source="claude-hooks")
    return Runtime.objects.get(agent_id="reviewer")


@pytest.mark.parametrize(("body", "field"), [
    ({"event": "lunch"}, "event"),
    ({"event": "turn_started", "session_id": "has space"}, "session_id"),
    ({"event": "session_started", "workdir": "relative/dir"}, "workdir"),
    ({"event": "turn_started", "wake_ref": "w-NOTHEX"}, "wake_ref"),
    ({"event": "turn_started", "event_version": 2}, "event_version"),  # a newer shape than the bridge knows
])
def test_a_malformed_event_is_refused_with_the_field(runtime, body, field):
    reply = event(body)
    assert reply.status_code == 400, reply.content
    assert reply.json()["error"]["code"] == "validation_error" and field in reply.json()["error"]["details"]["fields"]


def test_an_event_without_a_runtime_is_not_found(db):
    reply = event({"event": "turn_started"})
    assert reply.status_code == 404 and reply.json()["error"]["code"] == "runtime_not_found"


def test_a_session_start_records_the_session_and_where_it_lives_without_a_heartbeat(runtime):
    earlier = timezone.now() - timedelta(hours=1)
    remember_session("reviewer", "0f1e2d3c-aaaa-4bbb-8ccc-123456789abc", now=earlier)
    beat = runtime.last_heartbeat_at
    reply = event({"event": "session_started", "session_id": "0f1e2d3c-aaaa-4bbb-8ccc-123456789abc",
                   "workdir": "/srv/project"})
    assert reply.status_code == 200, reply.content
    assert (reply.json()["agent_state"], reply.json()["session_id"]) == ("idle", "0f1e2d3c-aaaa-4bbb-8ccc-123456789abc")
    session = AgentSession.objects.get(session_id="0f1e2d3c-aaaa-4bbb-8ccc-123456789abc")
    assert session.workdir == "/srv/project" and session.runtime_type == "claude"
    assert session.last_heartbeat_at == earlier  # a signal is not a heartbeat: it must not ack a wake
    runtime.refresh_from_db()
    assert runtime.last_heartbeat_at == beat


@pytest.mark.parametrize(("name", "state"), [("turn_started", "busy"), ("turn_completed", "idle"), ("idle", "idle"),
                                              ("approval_pending", "awaiting_approval"), ("session_ended", "unknown")])
def test_each_event_sets_the_agents_state(runtime, name, state):
    assert event({"event": name}).json()["agent_state"] == state
    runtime.refresh_from_db()
    assert runtime.agent_state == state and runtime.agent_state_at is not None


def _being_delivered(thread, coordinator, agent_id="reviewer") -> WakeRequest:
    wake = wake_trigger(actor=coordinator, thread_id=thread.pk, agent_id=agent_id)
    WakeRequest.objects.filter(pk=wake.pk).update(status=reasons.AWAITING_ACK)
    return WakeRequest.objects.get(pk=wake.pk)


def test_a_turn_started_by_a_wakes_prompt_acknowledges_that_wake_only(runtime, coordinator):
    from tests.factories import ThreadFactory

    first = ThreadFactory(coordinator=coordinator, participants=["executioner", "reviewer"])
    second = ThreadFactory(coordinator=coordinator, participants=["executioner", "reviewer"])
    ours, other = _being_delivered(first, coordinator), _being_delivered(second, coordinator)
    assert event({"event": "turn_started", "wake_ref": wake_ref_of(ours.trace_id)}).status_code == 200
    ours.refresh_from_db(), other.refresh_from_db()
    assert (ours.ack_signal, other.ack_signal) == ("turn_started", "")
    # a turn a human started (no marker) acknowledges nothing
    assert event({"event": "turn_started"}).status_code == 200
    other.refresh_from_db()
    assert other.acked_at is None


def test_the_end_of_a_turn_releases_the_wakes_held_while_the_agent_was_busy(runtime, thread, coordinator,
                                                                           django_capture_on_commit_callbacks):
    wake = wake_trigger(actor=coordinator, thread_id=thread.pk, agent_id="reviewer")
    later = timezone.now() + timedelta(minutes=5)
    WakeRequest.objects.filter(pk=wake.pk).update(status=reasons.QUEUED, reason_code=reasons.R_AGENT_BUSY,
                                                  next_attempt_at=later)
    with django_capture_on_commit_callbacks(execute=False) as enqueued:
        assert event({"event": "turn_completed"}).status_code == 200
    wake.refresh_from_db()
    assert wake.next_attempt_at < later and len(enqueued) == 1  # due now, its job queued at the commit
    with django_capture_on_commit_callbacks(execute=False) as again:
        assert event({"event": "turn_started"}).status_code == 200  # busy again: nothing released
    assert again == []


# --- supervisor/hook.py, the program the CLIs run --------------------------------------------------------


class Bridge:
    """A stand-in for the bridge's events endpoint: keeps what the hook posts."""

    def __init__(self):
        self.posts: list[dict] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                owner.posts.append({"path": self.path, "auth": self.headers["Authorization"], "body": body})
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture
def bridge():
    fake = Bridge()
    yield fake
    fake.server.shutdown()


def run_hook(bridge, *args: str, stdin: str = "", env: dict | None = None) -> subprocess.CompletedProcess:
    base = {"PATH": os.environ["PATH"], "ORKIVA_URL": bridge.url, "ORKIVA_TOKEN": "tok-1"} if env is None else env
    # as the CLIs run it (supervisor/clis/base.hook_argv): isolated, from any directory
    return subprocess.run([sys.executable, "-I", str(HOOK), *args], input=stdin, capture_output=True, text=True,
                          env=base, cwd="/", timeout=20)


@pytest.mark.parametrize(("payload", "expected"), [
    ({"hook_event_name": "SessionStart", "session_id": "s-1", "cwd": "/p", "source": "startup"},
     {"event": "session_started", "session_id": "s-1", "workdir": "/p", "wake_ref": "", "event_version": 1}),
    ({"hook_event_name": "UserPromptSubmit", "session_id": "s-1", "cwd": "/p",
      "prompt": "Orkiva wake w-0123456789ab: unread messages"},
     {"event": "turn_started", "session_id": "s-1", "workdir": "/p", "wake_ref": "w-0123456789ab", "event_version": 1}),
    ({"hook_event_name": "Stop", "session_id": "s-1", "cwd": "/p"},
     {"event": "turn_completed", "session_id": "s-1", "workdir": "/p", "wake_ref": "", "event_version": 1}),
    ({"hook_event_name": "PermissionRequest", "session_id": "s-1", "cwd": "/p", "tool_name": "Bash"},
     {"event": "approval_pending", "session_id": "s-1", "workdir": "/p", "wake_ref": "", "event_version": 1}),
    ({"hook_event_name": "Notification", "session_id": "s-1", "cwd": "/p", "notification_type": "idle_prompt"},
     {"event": "idle", "session_id": "s-1", "workdir": "/p", "wake_ref": "", "event_version": 1}),
])
def test_the_hook_maps_claude_codes_events(bridge, payload, expected):
    done = run_hook(bridge, "claude", stdin=json.dumps(payload))
    assert (done.returncode, done.stdout) == (0, "")  # stdout would be added to the prompt
    assert bridge.posts == [{"path": "/v1/runtimes/events", "auth": "Bearer tok-1", "body": expected}]


def test_the_hook_maps_codex_notify_and_skips_the_title_request(bridge):
    turn = {"type": "agent-turn-complete", "thread-id": "01a2-thread", "cwd": "/p", "input-messages": ["Do it"]}
    title = {**turn, "thread-id": "other", "input-messages": ["Generate a concise, single-line task title for: x"]}
    assert run_hook(bridge, "codex-notify", json.dumps(title)).returncode == 0
    assert run_hook(bridge, "codex-notify", json.dumps(turn)).returncode == 0
    assert [p["body"] for p in bridge.posts] == [
        {"event": "turn_completed", "session_id": "01a2-thread", "workdir": "/p", "wake_ref": "", "event_version": 1}]


@pytest.mark.parametrize(("args", "stdin", "env", "says"), [
    (("claude",), "not json", None, "not JSON"),
    (("claude",), '{"hook_event_name": "PreToolUse"}', None, ""),  # not an event we report
    (("nonsense",), "", None, "unknown kind"),
    (("claude",), '{"hook_event_name": "Stop"}', {"PATH": "/usr/bin"}, "ORKIVA_URL or ORKIVA_TOKEN"),
])
def test_the_hook_never_fails_the_cli(bridge, args, stdin, env, says):
    done = run_hook(bridge, *args, stdin=stdin, env=env)
    assert (done.returncode, done.stdout, bridge.posts) == (0, "", [])
    assert says in done.stderr


def test_the_hook_says_why_when_the_bridge_is_away(bridge):
    bridge.server.shutdown()
    bridge.server.server_close()
    done = run_hook(bridge, "claude", stdin='{"hook_event_name": "Stop"}')
    assert (done.returncode, done.stdout) == (0, "") and "could not reach the bridge" in done.stderr


def test_the_end_of_a_turn_wakes_the_agent_for_what_it_has_not_read(runtime, thread, executioner, coordinator):
    """A post that landed while the agent's wake was being delivered collapsed onto it; the agent
    read the thread before the post: at the end of its turn it gets a wake for it. One it was woken
    for already (acknowledged after the post) does not wake it again."""
    from messaging.services import message_post

    t0 = timezone.now() - timedelta(minutes=10)
    message_post(actor=executioner, thread_id=thread.pk, body="first", now=t0)
    earlier = wake_trigger(actor=coordinator, thread_id=thread.pk, agent_id="reviewer")
    WakeRequest.objects.filter(pk=earlier.pk).update(status=reasons.DELIVERED, acked_at=t0 + timedelta(seconds=5))
    message_post(actor=executioner, thread_id=thread.pk, body="second, after the read", now=t0 + timedelta(seconds=9))
    assert event({"event": "turn_completed"}).status_code == 200
    (woken,) = WakeRequest.objects.exclude(pk=earlier.pk)
    assert (woken.source, woken.agent_id, woken.thread_id) == ("auto", "reviewer", thread.pk)
    assert woken.status in reasons.ACTIVE_STATUSES
    # delivered, acknowledged after the newest message: the next turn's end wakes nobody
    WakeRequest.objects.filter(pk=woken.pk).update(status=reasons.DELIVERED, acked_at=timezone.now())
    assert event({"event": "turn_completed"}).status_code == 200
    assert WakeRequest.objects.count() == 2


def test_the_end_of_a_turn_wakes_nobody_who_read_everything(runtime, thread, executioner, reviewer):
    from messaging.services import cursor_ack, message_post

    message_post(actor=executioner, thread_id=thread.pk, body="hello")
    message_post(actor=reviewer, thread_id=thread.pk, body="my own post is not unread for me")
    cursor_ack(actor=reviewer, thread_id=thread.pk, seq=1)
    assert event({"event": "turn_completed"}).status_code == 200
    assert not WakeRequest.objects.filter(agent_id="reviewer").exists()


def test_a_signal_may_not_claim_another_directory_or_another_agents_session(runtime):
    Runtime.objects.filter(pk=runtime.pk).update(workdir="/srv/project")
    reply = event({"event": "session_started", "workdir": "/srv/other"})
    assert reply.status_code == 409 and reply.json()["error"]["code"] == "workdir_outside_runtime"
    assert event({"event": "session_started", "workdir": "/srv/project/sub"}).status_code == 200
    remember_session("executioner", "theirs-1", now=timezone.now())
    reply = event({"event": "session_started", "session_id": "theirs-1"})
    assert reply.status_code == 409 and reply.json()["error"]["code"] == "session_taken"
    runtime.refresh_from_db()
    assert runtime.session_id != "theirs-1"


def test_an_attached_agents_first_signal_makes_its_state_count(db):
    runtime_register(actor=REVIEWER, runtime_type="claude")
    assert Runtime.objects.get(agent_id="reviewer").state_source == ""
    assert event({"event": "turn_started"}).json()["state_source"] == "claude-hooks"


def test_a_session_first_known_from_a_signal_is_not_a_heartbeat_either(runtime):
    assert event({"event": "session_started", "session_id": "new-session-1"}).status_code == 200
    assert AgentSession.objects.get(session_id="new-session-1").last_heartbeat_at == runtime.registered_at


def test_a_late_turn_started_by_a_wakes_own_prompt_delivers_it(runtime, thread, coordinator, tmux_server, clock):
    """The TUI took the prompt after the step stopped waiting: the wake, meanwhile held, is delivered
    by its marker, and is not typed again."""
    from tests.supervisor.conftest import drive

    tmux_server.new_session(session_name="agent", window_command="cat")  # the agent's pane, alive
    Runtime.objects.filter(pk=runtime.pk).update(management_mode="managed", pty_backend="tmux",
                                                 pty_target="agent:0.0", host="test-host", pid=None)
    wake = wake_trigger(actor=coordinator, thread_id=thread.pk, agent_id="reviewer")
    WakeRequest.objects.filter(pk=wake.pk).update(status=reasons.QUEUED, reason_code=reasons.R_AGENT_BUSY,
                                                  stage=reasons.STAGE_INJECT, next_attempt_at=clock.now)
    assert event({"event": "turn_started", "wake_ref": wake_ref_of(wake.trace_id)}).status_code == 200
    wake = drive(wake.pk, clock)
    assert (wake.status, wake.reason_code, wake.ack_signal) == (reasons.DELIVERED, "delivered_acked", "turn_started")
    assert wake.inject_attempts == 0  # never typed again
    assert not any("Orkiva" in line for line in tmux_server.cmd("capture-pane", "-p", "-t", "agent:0.0").stdout)


def test_the_end_of_a_turn_wakes_nobody_when_auto_wakes_are_off(runtime, thread, executioner, settings):
    from messaging.services import message_post

    settings.ORKIVA_WAKE_AUTO = False
    message_post(actor=executioner, thread_id=thread.pk, body="hello")
    assert event({"event": "turn_completed"}).status_code == 200
    assert not WakeRequest.objects.exists()


def test_the_runtime_lock_lets_a_wakes_foreign_key_through(is_postgres):
    """FOR NO KEY UPDATE: a wake inserted meanwhile (its foreign key takes KEY SHARE on the runtime)
    does not wait on it, so a post and the agent's turn-end signal cannot deadlock."""
    from django.db import connection, transaction
    from django.test.utils import CaptureQueriesContext

    from supervisor.services.trace import runtime_for_update

    runtime_register(actor=REVIEWER, runtime_type="claude")
    with CaptureQueriesContext(connection) as queries, transaction.atomic():
        runtime_for_update(workspace_id="ws-main", agent_id="reviewer")
    locking = [q["sql"] for q in queries.captured_queries if " FOR " in q["sql"]]
    if is_postgres:
        assert len(locking) == 1 and locking[0].endswith("FOR NO KEY UPDATE")
    else:
        assert locking == []  # SQLite locks the whole database, not rows
