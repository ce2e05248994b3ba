"""The real agent CLIs, pinned in package.json and installed under node_modules/ by `make setup-clis`:
Codex CLI and Claude Code run in tmux panes on the test's private tmux server, against a real bridge
process and fake model servers of ours (pilot.fakemodel) whose brains (pilot.brains) script the model.

Each test gets its own HOME, CODEX_HOME (a config.toml naming the fake OpenAI provider) and
CLAUDE_CONFIG_DIR (a .claude.json whose onboarding is done, as for a user who set Claude Code up), so
nothing of the machine's own configuration is read or written."""
from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from django.utils import timezone

from pilot import brains
from pilot.fakemodel import FakeModel
from supervisor import reasons, tmux
from supervisor.models import Runtime, WakeRequest
from supervisor.services import runtime_launch, wake_advance
from tests.live import REPO, bridge_server, subprocess_env
from tests.supervisor.conftest import operator, tmux_server  # noqa: F401 (fixture)

BIN = REPO / "node_modules" / ".bin"
ANTHROPIC_KEY = "sk-ant-orkiva-tests-fake-key-0123456789abcdef"
# What Claude Code needs to stay offline (every name is in the pinned binary).
CLAUDE_QUIET = {"DISABLE_AUTOUPDATER": "1", "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
                "DISABLE_TELEMETRY": "1", "DISABLE_ERROR_REPORTING": "1"}


def cli_path(name: str) -> Path:
    path = BIN / name
    if not path.exists():
        pytest.fail(f"{path} is missing: the real {name} CLI is installed by `make setup-clis` (npm ci, package.json)",
                    pytrace=False)
    return path


@dataclass
class Agents:
    """The running setup: bridge, fake models, and helpers to launch, watch and wake the agents."""

    tmp: Path
    bridge_url: str
    codex_model: FakeModel
    claude_model: FakeModel
    bridge_log: Path
    workdir: Path
    env: dict[str, str] = field(default_factory=dict)

    def launch(self, agent_id: str, runtime: str, *, prompt: str = "", workdir: Path | None = None,
               workspace_id: str = "ws-main"):
        result = runtime_launch(operator=operator(workspace_id), agent_id=agent_id, workspace_id=workspace_id,
                                runtime_type=runtime, prompt=prompt, workdir=str(workdir or self.workdir),
                                reason="real cli test")
        self.wait(lambda: self.ready(result.runtime), what=f"{runtime} to reach its input line",
                  runtimes=[result.runtime])
        return result

    def screen(self, runtime: Runtime) -> str:
        if not tmux.pane_state(runtime.pty_target, runtime.tmux_socket).exists:
            return "(no pane)"
        return tmux.capture(runtime.pty_target, runtime.tmux_socket, screen=True)

    def ready(self, runtime: Runtime) -> bool:
        from supervisor.clis import cli_for

        return cli_for(runtime.runtime_type).screen(self.screen(runtime)).state in ("idle", "draft")

    def wait(self, predicate, *, what: str, timeout: float = 60, runtimes: list[Runtime] = ()):
        """Wait for the real processes; on a timeout, show what the panes, the models and the wakes did."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what}\n{self.report(runtimes)}")

    def report(self, runtimes: list[Runtime] = ()) -> str:
        from tests.supervisor.test_chain import steps

        from supervisor.clis.base import plain

        panes = "\n".join(f"--- {r.agent_id} ({r.runtime_type}) pane ---\n{plain(self.screen(r))}" for r in runtimes)
        wakes = "\n".join(f"{w.agent_id} {w.status} {w.reason_code}: {steps(w)}"
                          for w in WakeRequest.objects.order_by("created_at"))
        tools = {m.api: sorted(r.turn.tools) for m in (self.codex_model, self.claude_model) for r in m.turns()[-1:]}
        return (f"{panes}\n--- codex model prompts ---\n{self.codex_model.prompts()}\n"
                f"--- claude model prompts ---\n{self.claude_model.prompts()}\n--- tools offered last ---\n{tools}\n"
                f"--- wakes ---\n{wakes}\n"
                f"--- bridge ---\n{self.bridge_log.read_text(errors='replace')[-3000:]}")

    def drive(self, wake_id, *, until=None, timeout: float = 90, runtimes: list[Runtime] = ()) -> WakeRequest:
        """Run the wake's chain in this process, in real time (the agents are real)."""
        until = until or (lambda w: w.status in reasons.FINAL_STATUSES)
        deadline = time.monotonic() + timeout
        while True:
            wake = WakeRequest.objects.get(pk=wake_id)
            if until(wake):
                return wake
            if time.monotonic() > deadline:
                raise AssertionError(f"wake did not settle: {wake.status} {wake.reason_code}\n{self.report(runtimes)}")
            if wake.next_attempt_at and wake.next_attempt_at > timezone.now():
                time.sleep(min(0.2, (wake.next_attempt_at - timezone.now()).total_seconds()))
                continue
            wake_advance(wake_id=wake_id)


@pytest.fixture
def agents(tmp_path, monkeypatch, settings, tmux_server):  # noqa: F811
    cli_path("codex"), cli_path("claude"), cli_path("node")
    home, codex_home, claude_config = tmp_path / "home", tmp_path / "codex-home", tmp_path / "claude-config"
    workdir = tmp_path / "project"
    for folder in (home, codex_home, claude_config, workdir):
        folder.mkdir()
    # a git repository: Codex asks whether to trust it (the launch answers in its configuration)
    subprocess.run(["git", "init", "-q", str(workdir)], check=True)
    with FakeModel("openai", brains.executioner) as codex_model, FakeModel("anthropic", brains.reviewer) as claude_model:
        (codex_home / "config.toml").write_text(
            'model = "fake-model"\nmodel_provider = "fake"\ncheck_for_update_on_startup = false\n\n'
            f'[model_providers.fake]\nname = "fake"\nbase_url = "{codex_model.base_url}"\nwire_api = "responses"\n'
        )
        (claude_config / ".claude.json").write_text(json.dumps({"hasCompletedOnboarding": True}))
        cli_env = {
            "HOME": str(home), "CODEX_HOME": str(codex_home), "CLAUDE_CONFIG_DIR": str(claude_config),
            "ANTHROPIC_BASE_URL": claude_model.base_url, "ANTHROPIC_API_KEY": ANTHROPIC_KEY, **CLAUDE_QUIET,
            "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        }
        for name, value in cli_env.items():
            monkeypatch.setenv(name, value)
        settings.ORKIVA_RUNTIME_DIR = tmp_path / "runtimes"
        settings.ORKIVA_WAKE_ACK_TIMEOUT_SECONDS = 30
        settings.ORKIVA_WAKE_ACK_POLL_SECONDS = 0.2
        settings.ORKIVA_WAKE_INJECT_BACKOFF_SECONDS = 1
        env = subprocess_env(ORKIVA_TMUX_SOCKET=tmux_server.socket_name, ORKIVA_TMUX_CONFIG="/dev/null",
                             ORKIVA_SUPERVISOR_HOST="test-host")
        try:
            # production's server (ASGI, the MCP endpoint on its event loop): what the agents meet
            with bridge_server(tmp_path, server="gunicorn", workers=2, env=env) as bridge:
                settings.ORKIVA_PUBLIC_URL = bridge.base_url
                yield Agents(tmp=tmp_path, bridge_url=bridge.base_url, codex_model=codex_model,
                             claude_model=claude_model, bridge_log=bridge.log_path, workdir=workdir, env=env)
        finally:
            kill_strays(tmp_path)


def kill_strays(tmp_path: Path) -> None:
    """Whatever the CLIs left running from this test's folders (a Codex started without -c runs a
    background server that outlives its TUI)."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if str(tmp_path) in cmdline:
            try:
                os.kill(int(proc.name), 9)
            except ProcessLookupError:
                pass
