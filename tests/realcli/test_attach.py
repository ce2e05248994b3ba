"""A Claude Code the user started by hand, in their own tmux server, with their own MCP configuration
and token: `orkiva_runtime attach` makes its pane managed (audited, with the operator's reason), its
session is found in Claude Code's own files, and a wake typed into it is delivered."""
from __future__ import annotations

import json
import subprocess

import pytest

from policy.identity import Actor
from policy.models import AuditEvent
from supervisor import reasons, tmux
from supervisor.models import Runtime
from supervisor.services import wake_trigger
from tests.conftest import token_for
from tests.live import run_manage_json
from tests.realcli.conftest import ANTHROPIC_KEY, CLAUDE_QUIET, cli_path

pytestmark = pytest.mark.django_db(transaction=True)

REVIEWER = Actor(agent_id="reviewer", workspace_id="ws-main", role="participant", session_id="by-hand")


def test_a_pane_the_user_started_is_attached_and_woken(agents, thread, coordinator):
    socket = agents.tmp / "user-tmux.sock"
    config = agents.tmp / "claude-config"
    # what the user set up by hand: the folder trusted, their key accepted, Orkiva's MCP server and tools
    (config / ".claude.json").write_text(json.dumps({
        "hasCompletedOnboarding": True, "customApiKeyResponses": {"approved": [ANTHROPIC_KEY[-20:]], "rejected": []},
        "projects": {str(agents.workdir): {"hasTrustDialogAccepted": True}}}))
    mcp = agents.tmp / "my-mcp.json"
    mcp.write_text(json.dumps({"mcpServers": {"orkiva": {"type": "http", "url": f"{agents.bridge_url}/v1/mcp",
                                                         "headers": {"Authorization": f"Bearer {token_for(REVIEWER, ttl_seconds=3600)}"}}}}))
    env = {"HOME": str(agents.tmp / "home"), "CLAUDE_CONFIG_DIR": str(config), "ANTHROPIC_API_KEY": ANTHROPIC_KEY,
           "ANTHROPIC_BASE_URL": agents.claude_model.base_url, **CLAUDE_QUIET}
    user_tmux = ["tmux", "-S", str(socket), "-f", "/dev/null"]
    subprocess.run([*user_tmux, "new-session", "-d", "-s", "mine", "-x", "200", "-y", "50", "-c", str(agents.workdir),
                    *[f"-e{k}={v}" for k, v in env.items()], "--", str(cli_path("claude")), "--mcp-config", str(mcp),
                    "--allowedTools", "mcp__orkiva", "--", f"Hello; you review thread {thread.pk}."], check=True)
    try:
        agents.claude_model.wait_for(lambda m: m.prompts(), what="the user's first prompt")
        transcripts = config / "projects"
        agents.wait(lambda: list(transcripts.glob("*/*.jsonl")), what="the user's session on disk")
        (transcript,) = transcripts.glob("*/*.jsonl")

        code, body = run_manage_json(
            "orkiva_runtime", "attach", "--agent-id", "reviewer", "--workspace-id", "ws-main", "--runtime", "claude",
            "--target", "mine:0.0", "--tmux-socket", str(socket), "--reason", "my own reviewer", "--operator", "alice",
            env=agents.env,
        )
        assert code == 0, body
        runtime = Runtime.objects.get(agent_id="reviewer")
        assert (runtime.management_mode, runtime.tmux_socket, runtime.workdir) == ("managed", str(socket),
                                                                                  str(agents.workdir))
        assert runtime.pty_target.startswith("%") and runtime.session_id == transcript.stem
        assert runtime.state_source == ""  # no Orkiva hooks in the user's settings: the quiet-window rule decides
        audit = AuditEvent.objects.get(action="runtime.attach", target_id="reviewer")
        assert (audit.actor_id, audit.reason) == ("operator:alice", "my own reviewer")

        wake = agents.drive(wake_trigger(actor=coordinator, thread_id=thread.pk, agent_id="reviewer").pk,
                            runtimes=[runtime])
        assert (wake.status, wake.path, wake.ack_signal) == (reasons.DELIVERED, "inject", "read_messages")
        assert wake.prompt in agents.claude_model.prompts()
        assert "Orkiva wake" in tmux.capture(runtime.pty_target, str(socket))
    finally:
        subprocess.run([*user_tmux, "kill-server"], check=False)


def test_a_first_run_dialog_in_a_users_pane_holds_the_wake(agents, thread, coordinator):
    """A Codex the user started in a git folder they never trusted shows its trust dialog; any key
    would answer it. The wake is held, never typed."""
    socket = agents.tmp / "user-tmux.sock"
    user_tmux = ["tmux", "-S", str(socket), "-f", "/dev/null"]
    env = {"HOME": str(agents.tmp / "home"), "CODEX_HOME": str(agents.tmp / "codex-home")}
    subprocess.run([*user_tmux, "new-session", "-d", "-s", "mine", "-x", "200", "-y", "50", "-c", str(agents.workdir),
                    *[f"-e{k}={v}" for k, v in env.items()], "--", str(cli_path("codex")), "--no-daemon"], check=True)
    try:
        from supervisor.services import runtime_attach
        from tests.supervisor.conftest import operator

        agents.wait(lambda: "Trust this folder?" in tmux.capture("mine:0.0", str(socket)), what="the trust dialog")
        runtime = runtime_attach(operator=operator(), agent_id="executioner", workspace_id="ws-main",
                                 runtime_type="codex", target="mine:0.0", tmux_socket=str(socket),
                                 reason="my own codex").runtime
        wake = agents.drive(wake_trigger(actor=coordinator, thread_id=thread.pk, agent_id="executioner").pk,
                            until=lambda w: w.status == reasons.QUEUED, runtimes=[runtime])
        assert wake.reason_code == "dialog_open"
        screen = tmux.capture("mine:0.0", str(socket))
        assert "Trust this folder?" in screen and "Orkiva wake" not in screen
        assert agents.codex_model.prompts() == []
    finally:
        subprocess.run([*user_tmux, "kill-server"], check=False)


def test_attach_refuses_a_pane_that_is_not_there(agents):
    code, body = run_manage_json(
        "orkiva_runtime", "attach", "--agent-id", "reviewer", "--workspace-id", "ws-main", "--runtime", "claude",
        "--target", "%999", "--tmux-socket", str(agents.tmp / "no-server.sock"), "--reason", "r", env=agents.env,
    )
    assert code != 0 and body["error"]["code"] == "target_not_found"
    code, body = run_manage_json(
        "orkiva_runtime", "attach", "--agent-id", "reviewer", "--workspace-id", "ws-main", "--runtime", "claude",
        "--target", "mine:0.0", env=agents.env,
    )
    assert code != 0 and body["error"]["code"] == "reason_required"
    assert not Runtime.objects.filter(agent_id="reviewer").exists()
