"""The real Codex CLI (package.json's pin) in a managed tmux pane: launched ready to work, and woken
through its pane by a pasted prompt, which the model receives whole; and, for both CLIs, a human's
draft in the input line is never typed into."""
from __future__ import annotations

import pytest

from messaging.models import Message
from sessions.models import AgentSession
from supervisor import reasons, tmux
from supervisor.clis import cli_for
from supervisor.models import Runtime
from supervisor.services import wake_trigger
from tests.supervisor.test_chain import steps

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_launched_codex_works_and_is_woken_through_its_pane(agents, thread, coordinator, settings):
    # a multi-line prompt: pasted whole, it must reach the model as one message
    settings.ORKIVA_WAKE_PROMPT = "Orkiva wake {wake_ref}: thread {thread_id} needs you.\nRead it, act, then ack_read."
    launched = agents.launch("executioner", "codex", prompt=f"You are the executioner in thread {thread.pk}.")
    runtime = launched.runtime
    assert runtime.state_source == "codex-notify" and runtime.management_mode == "managed"
    # its session is known from the start (Codex opens it when the TUI starts), and its first prompt
    # makes it busy until notify says the turn is over
    assert runtime.session_id and runtime.agent_state == "busy"
    launched_session = runtime.session_id
    # its first prompt ran a turn that used the bridge's tools with the launch's credential
    agents.wait(lambda: Message.objects.filter(thread=thread, sender="executioner").exists(),
                what="the executioner's work", runtimes=[runtime])
    # notify reported the turn's end, with the session's id and directory
    agents.wait(lambda: Runtime.objects.get(pk=runtime.pk).agent_state == "idle", what="notify", runtimes=[runtime])
    runtime.refresh_from_db()
    assert runtime.session_id == launched_session and launched_session in str(agents.codex_model.turns()[-1].headers)
    session = AgentSession.objects.get(agent_id="executioner", session_id=runtime.session_id)
    assert session.workdir == str(agents.workdir)

    wake = wake_trigger(actor=coordinator, thread_id=thread.pk, agent_id="executioner", reason="a finding landed")
    wake = agents.drive(wake.pk, runtimes=[runtime])
    assert (wake.status, wake.path, wake.reason_code) == (reasons.DELIVERED, "inject", "delivered_acked")
    assert wake.ack_signal == "read_messages" and wake.submitted_at is not None
    assert [s for s in steps(wake) if s[1] == "injected"] == [("inject", "injected", "injected")]
    # the model got the prompt exactly, both lines, in one turn
    agents.codex_model.wait_for(lambda m: wake.prompt in m.prompts(), what="the wake's prompt at the model")
    assert "\n" in wake.prompt
    assert wake.prompt not in tmux.capture(runtime.pty_target, screen=True).split("›")[-1]


@pytest.mark.parametrize(("agent", "runtime_type"), [("executioner", "codex"), ("reviewer", "claude")])
def test_a_human_draft_is_never_typed_into(agents, thread, coordinator, settings, agent, runtime_type):
    settings.ORKIVA_WAKE_MAX_DEFER_SECONDS = 2
    settings.ORKIVA_WAKE_RECHECK_SECONDS = 0.5
    runtime = agents.launch(agent, runtime_type).runtime
    tmux.server().cmd("send-keys", "-l", "half a thought", target=runtime.pty_target)
    # the draft on screen, once the TUI has settled (Codex says "esc to interrupt" while its MCP servers start)
    agents.wait(lambda: cli_for(runtime_type).screen(agents.screen(runtime)).state == "draft", what="the draft",
                runtimes=[runtime])
    wake = wake_trigger(actor=coordinator, thread_id=thread.pk, agent_id=agent)
    wake = agents.drive(wake.pk, until=lambda w: w.status == reasons.QUEUED, runtimes=[runtime])
    assert wake.reason_code == "input_not_empty"
    assert {s[2] for s in steps(wake) if s[1] == "deferred"} == {"input_not_empty"}
    model = agents.codex_model if runtime_type == "codex" else agents.claude_model
    assert model.prompts() == []  # nothing submitted, the draft untouched
    assert "half a thought" in agents.screen(runtime) and "Orkiva wake" not in agents.screen(runtime)
