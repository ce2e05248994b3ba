"""Supervisor fixtures: a private tmux server, the stand-in codex on PATH, a clock, a chain driver."""
from __future__ import annotations

import json
import os
import shlex
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import libtmux
import pytest
from django.utils import timezone

from policy.identity import Actor
from sessions.services import session_heartbeat
from supervisor import reasons
from supervisor.models import WakeRequest
from supervisor.services import runtime_launch, wake_advance

BIN = Path(__file__).resolve().parent / "bin"
STAND_IN_AGENT = BIN / "stand_in_agent.py"


@pytest.fixture
def tmux_server(settings):
    """A tmux server on a private socket, killed (and its socket removed) at teardown."""
    name = f"orkiva-test-{uuid.uuid4().hex[:10]}"
    settings.ORKIVA_TMUX_SOCKET = name
    settings.ORKIVA_TMUX_CONFIG = "/dev/null"
    settings.ORKIVA_SUPERVISOR_HOST = "test-host"
    server = libtmux.Server(socket_name=name, config_file="/dev/null")
    yield server
    if server.is_alive():
        server.kill()
    socket_path = Path(f"/tmp/tmux-{os.getuid()}") / name
    if socket_path.exists():
        socket_path.unlink()


@dataclass
class FakeCodex:
    log: Path
    control: Path

    def set(self, **modes: dict) -> None:
        self.control.write_text(json.dumps(modes))

    def calls(self, mode: str | None = None) -> list[dict]:
        if not self.log.exists():
            return []
        rows = [json.loads(line) for line in self.log.read_text().splitlines() if line.strip()]
        return [r for r in rows if mode is None or r["mode"] == mode]


@pytest.fixture
def fake_codex(tmp_path, monkeypatch, settings) -> FakeCodex:
    """The stand-in `codex` first on PATH; the chain runs the default Codex templates against it."""
    monkeypatch.setenv("PATH", f"{BIN}{os.pathsep}{os.environ['PATH']}")
    fake = FakeCodex(log=tmp_path / "codex.jsonl", control=tmp_path / "codex-control.json")
    monkeypatch.setenv("FAKE_CODEX_LOG", str(fake.log))
    monkeypatch.setenv("FAKE_CODEX_CONTROL", str(fake.control))
    fake.set()
    settings.ORKIVA_WAKE_RESUME_BACKOFF_SECONDS = 1
    settings.ORKIVA_WAKE_COMMAND_TIMEOUT_SECONDS = 20
    return fake


@pytest.fixture
def fast_wakes(settings):
    """Small ack timeouts for chain tests (the clock is passed in; nothing sleeps for them)."""
    settings.ORKIVA_WAKE_ACK_TIMEOUT_SECONDS = 30
    settings.ORKIVA_WAKE_ACK_POLL_SECONDS = 5
    settings.ORKIVA_WAKE_INJECT_ATTEMPTS = 2
    settings.ORKIVA_WAKE_INJECT_BACKOFF_SECONDS = 5
    return settings


class Clock:
    def __init__(self, start: datetime | None = None):
        self.now = start or timezone.now()

    def advance(self, seconds: float) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def drive(wake_id, clock: Clock, *, until=None, max_steps: int = 60) -> WakeRequest:
    """Run the chain in-process, jumping the clock to each next step (no sleeping)."""
    until = until or (lambda w: w.status in reasons.FINAL_STATUSES)
    wake = WakeRequest.objects.get(pk=wake_id)
    for _ in range(max_steps):
        if until(wake):
            return wake
        if wake.next_attempt_at and wake.next_attempt_at > clock.now:
            clock.now = wake.next_attempt_at
        wake, _ = wake_advance(wake_id=wake_id, now=clock.now)
    raise AssertionError(f"wake did not settle: {wake.status} {wake.reason_code}")


def operator(workspace_id: str = "ws-main") -> Actor:
    return Actor.operator(name="tester", workspace_id=workspace_id)


def launch_stand_in(*, agent_id: str, log: Path, ack: bool, workspace_id: str = "ws-main", session_id: str = ""):
    """Launch the stand-in agent as a managed runtime on the private tmux server."""
    command = shlex.join(
        ["env", f"STANDIN_LOG={log}", f"STANDIN_ACK={'1' if ack else '0'}", sys.executable, str(STAND_IN_AGENT)]
    )
    result = runtime_launch(
        operator=operator(workspace_id), agent_id=agent_id, workspace_id=workspace_id, runtime_type="codex",
        command=command, session_id=session_id, reason="test",
    )
    wait_for(lambda: "ready" in pane_text(result.runtime.pty_target), what="stand-in agent start")
    return result


def pane_text(target: str) -> str:
    from supervisor import tmux

    return tmux.capture(target)


def wait_for(predicate, *, timeout: float = 15, what: str = "condition"):
    """Wait for a real process to do something (bounded); never used to wait for a clock."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def agent_lines(log: Path) -> list[str]:
    if not log.exists():
        return []
    return [json.loads(line)["line"] for line in log.read_text().splitlines() if line.strip()]


def remember_session(agent_id: str, session_id: str, *, now: datetime, workspace_id: str = "ws-main",
                     workdir: str = ""):
    agent = Actor(agent_id=agent_id, workspace_id=workspace_id, role="participant", session_id=session_id)
    return session_heartbeat(actor=agent, session_id=session_id, runtime_type="codex", resumable=True,
                             workdir=workdir, now=now)


@pytest.fixture
def acking_bridge(tmp_path, settings, fake_codex):
    """The bridge served for real (a server process on the test database), so the stand-in codex told
    to `ack` can read the thread it was woken about, as a woken agent does. Tests using it need
    `django_db(transaction=True)`."""
    from tests.live import bridge_server

    with bridge_server(tmp_path) as bridge:
        settings.ORKIVA_PUBLIC_URL = bridge.base_url
        yield fake_codex
