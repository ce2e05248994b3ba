"""Waking without the pane, with the real CLIs: the agent's session resumed where it lives, or a fresh
one spawned there with the thread's summary; and the runs that exit 0 without waking anyone (tools
refused, the MCP server missing) failing with codes of their own."""
from __future__ import annotations

import json
import time

import pytest

from messaging.models import Message
from messaging.services import message_post
from pilot.brains import WORK
from sessions.models import AgentSession
from sessions.selectors import latest_resumable_session
from supervisor import reasons, tmux
from supervisor.models import Runtime
from supervisor.presenters import wake_json
from supervisor.services import wake_trigger
from tests.live import free_port
from tests.supervisor.test_chain import steps

pytestmark = pytest.mark.django_db(transaction=True)


def reviewed_by_claude(agents, thread, executioner) -> Runtime:
    """A Claude Code reviewer that reviewed the work in its pane, then lost its pane."""
    message_post(actor=executioner, thread_id=thread.pk, body=WORK)
    runtime = agents.launch("reviewer", "claude", prompt=f"You are the reviewer in thread {thread.pk}.").runtime
    agents.wait(lambda: Message.objects.filter(thread=thread, sender="reviewer", kind="finding").count() == 2,
                what="the review", runtimes=[runtime])
    agents.wait(lambda: Runtime.objects.get(pk=runtime.pk).agent_state == "idle", what="the turn's end",
                runtimes=[runtime])
    agents.wait(lambda: session_saved(agents, Runtime.objects.get(pk=runtime.pk)), what="the session on disk",
                runtimes=[runtime])
    tmux.kill_session(tmux.session_name_for(workspace_id="ws-main", agent_id="reviewer"))  # the terminal is closed
    message_post(actor=executioner, thread_id=thread.pk, body="Fixed: the null check", kind="fix", in_reply_to=2)
    message_post(actor=executioner, thread_id=thread.pk, body="Fixed: the backoff", kind="fix", in_reply_to=3)
    runtime.refresh_from_db()
    return runtime


def session_saved(agents, runtime: Runtime) -> bool:
    """The CLI wrote the session where its resume looks for it (Claude Code writes its transcript
    a moment after the turn ends)."""
    from supervisor.clis import cli_for

    env = {"CODEX_HOME": str(agents.tmp / "codex-home"), "CLAUDE_CONFIG_DIR": str(agents.tmp / "claude-config")}
    return bool(runtime.session_id) and cli_for(runtime.runtime_type).find_session(str(agents.workdir), env) == \
        runtime.session_id


def last_step(wake) -> dict:
    return wake_json(wake)["trace"]["steps"][-1]


def test_claude_is_resumed_in_its_sessions_directory(agents, thread, executioner, coordinator):
    runtime = reviewed_by_claude(agents, thread, executioner)
    wake = agents.drive(wake_trigger(actor=coordinator, thread_id=thread.pk, agent_id="reviewer").pk)
    assert (wake.status, wake.path, wake.reason_code) == (reasons.RESUMED, "resume", "resume_ok")
    assert ("inject", "failed", "target_missing") in steps(wake)
    resumed = last_step(wake)["detail"]
    assert resumed["argv"][resumed["argv"].index("--resume") + 1] == runtime.session_id
    assert resumed["workdir"] == str(agents.workdir) and resumed["acked_by"] == "read_messages"
    assert "read_messages" in resumed["tools_called"] and "post_message" in resumed["tools_called"]
    # the resumed session, with its history, did the re-review: both findings resolved, the thread too
    assert wake.prompt in agents.claude_model.prompts()
    assert Message.objects.filter(thread=thread, sender="reviewer", kind="resolution").count() == 2
    thread.refresh_from_db()
    assert thread.status == "resolved"


def test_codex_is_resumed_in_its_sessions_directory(agents, thread, coordinator, reviewer):
    runtime = agents.launch("executioner", "codex", prompt=f"You are the executioner in thread {thread.pk}.").runtime
    agents.wait(lambda: session_saved(agents, Runtime.objects.get(pk=runtime.pk)), what="notify's session, on disk",
                runtimes=[runtime])
    message_post(actor=reviewer, thread_id=thread.pk, body="The parser drops the last token.", kind="finding")
    tmux.kill_session(tmux.session_name_for(workspace_id="ws-main", agent_id="executioner"))
    session_id = Runtime.objects.get(pk=runtime.pk).session_id
    wake = agents.drive(wake_trigger(actor=coordinator, thread_id=thread.pk, agent_id="executioner").pk)
    assert (wake.status, wake.path, wake.reason_code) == (reasons.RESUMED, "resume", "resume_ok")
    resumed = last_step(wake)["detail"]
    assert resumed["argv"][resumed["argv"].index("resume") + 1] == session_id
    assert resumed["workdir"] == str(agents.workdir) and "post_message" in resumed["tools_called"]
    assert Message.objects.filter(thread=thread, sender="executioner", kind="fix").count() == 1


def test_a_stale_claude_session_is_replaced_by_a_fresh_one_seeded_with_the_summary(agents, thread, executioner,
                                                                                   coordinator, settings):
    settings.ORKIVA_WAKE_STALE_HEARTBEAT_SECONDS = 1
    old = reviewed_by_claude(agents, thread, executioner).session_id
    time.sleep(1.5)
    wake = agents.drive(wake_trigger(actor=coordinator, thread_id=thread.pk, agent_id="reviewer").pk)
    assert (wake.status, wake.path, wake.reason_code) == (reasons.SPAWNED, "spawn", "spawn_ok")
    assert ("resume", "skipped", "stale_session") in steps(wake)
    spawned = AgentSession.objects.exclude(session_id=old).get(agent_id="reviewer")
    assert spawned.workdir == str(agents.workdir)
    assert latest_resumable_session(workspace_id="ws-main", agent_id="reviewer").session_id == spawned.session_id
    assert Runtime.objects.get(agent_id="reviewer").session_id == spawned.session_id
    prompt = next(p for p in agents.claude_model.prompts() if "could not be resumed" in p)
    assert "Null dereference in parse()" in prompt  # the summary's open findings seed it
    thread.refresh_from_db()
    assert thread.status == "resolved"


def test_refused_tools_are_a_failure_not_a_resume(agents, thread, executioner, coordinator, settings):
    """The user's own Claude Code settings deny Orkiva's tools: every run exits 0 and does nothing."""
    settings.ORKIVA_WAKE_RESUME_ATTEMPTS = 1
    reviewed_by_claude(agents, thread, executioner)
    (agents.tmp / "claude-config" / "settings.json").write_text(json.dumps({"permissions": {"deny": ["mcp__orkiva"]}}))
    wake = agents.drive(wake_trigger(actor=coordinator, thread_id=thread.pk, agent_id="reviewer").pk)
    assert (wake.status, wake.reason_code) == (reasons.FAILED, "tools_refused")
    assert [s for s in steps(wake) if s[0] in ("resume", "spawn")] == [
        ("resume", "failed", "tools_refused"), ("spawn", "failed", "tools_refused")]
    detail = last_step(wake)["detail"]
    assert detail["exit_code"] == 0 and detail["tools_refused"] == ["*"]  # denied, so not even offered


@pytest.mark.parametrize("runtime_type", ["codex", "claude"])
def test_a_missing_mcp_server_is_a_failure_not_a_resume(agents, thread, coordinator, settings, runtime_type):
    settings.ORKIVA_WAKE_RESUME_ATTEMPTS = 1
    agent = {"codex": "executioner", "claude": "reviewer"}[runtime_type]
    runtime = agents.launch(agent, runtime_type, prompt=f"Hello, thread {thread.pk}.").runtime
    agents.wait(lambda: Runtime.objects.get(pk=runtime.pk).agent_state == "idle", what="the first turn",
                runtimes=[runtime])
    agents.wait(lambda: session_saved(agents, Runtime.objects.get(pk=runtime.pk)), what="the session on disk",
                runtimes=[runtime])
    tmux.kill_session(tmux.session_name_for(workspace_id="ws-main", agent_id=agent))
    settings.ORKIVA_PUBLIC_URL = f"http://127.0.0.1:{free_port()}"  # the agent finds no bridge there
    wake = agents.drive(wake_trigger(actor=coordinator, thread_id=thread.pk, agent_id=agent).pk)
    assert (wake.status, wake.reason_code) == (reasons.FAILED, "mcp_unavailable"), [
        s["detail"].get("output_tail", "")[-600:] for s in wake_json(wake)["trace"]["steps"]]
    assert [s for s in steps(wake) if s[0] in ("resume", "spawn")] == [
        ("resume", "failed", "mcp_unavailable"), ("spawn", "failed", "mcp_unavailable")]
    assert last_step(wake)["detail"]["mcp_unavailable"] is True
