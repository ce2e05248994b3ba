"""The real Claude Code (package.json's pin) in a managed tmux pane: launched ready to work (its
first-run dialogs answered in its own config, Orkiva's tools allowed, its hooks reporting), woken
through its pane, and never typed into while a turn runs or an approval waits."""
from __future__ import annotations

import json
import threading
import time

import pytest

from messaging.models import Message
from messaging.services import message_post
from pilot import brains
from pilot.brains import WORK
from pilot.fakemodel import Call, Say
from sessions.models import AgentSession
from supervisor import reasons
from supervisor.models import Runtime
from supervisor.services import wake_trigger
from tests.realcli.conftest import ANTHROPIC_KEY
from tests.supervisor.test_chain import steps

pytestmark = pytest.mark.django_db(transaction=True)


def state_of(runtime: Runtime) -> str:
    return Runtime.objects.get(pk=runtime.pk).agent_state


def test_a_launched_claude_reviews_reports_its_state_and_is_woken_through_its_pane(agents, thread, executioner,
                                                                                  coordinator):
    message_post(actor=executioner, thread_id=thread.pk, body=WORK)
    launched = agents.launch("reviewer", "claude", prompt=f"You are the reviewer in thread {thread.pk}.")
    runtime = launched.runtime
    # the session was chosen up front; the dialogs were answered in Claude Code's own config file
    assert runtime.state_source == "claude-hooks" and runtime.session_id
    config = json.loads((agents.tmp / "claude-config" / ".claude.json").read_text())
    assert config["projects"][str(agents.workdir)]["hasTrustDialogAccepted"] is True
    assert ANTHROPIC_KEY[-20:] in config["customApiKeyResponses"]["approved"]
    agents.wait(lambda: Message.objects.filter(thread=thread, sender="reviewer", kind="finding").count() == 2,
                what="the review's two findings", runtimes=[runtime])
    agents.wait(lambda: state_of(runtime) == "idle", what="the Stop hook", runtimes=[runtime])
    session = AgentSession.objects.get(agent_id="reviewer", session_id=runtime.session_id)
    assert session.workdir == str(agents.workdir)
    transcripts = list((agents.tmp / "claude-config" / "projects").glob(f"*/{runtime.session_id}.jsonl"))
    assert len(transcripts) == 1  # Claude Code ran the session the launch chose

    message_post(actor=executioner, thread_id=thread.pk, body="Fixed: the null check", kind="fix", in_reply_to=2)
    wake = wake_trigger(actor=coordinator, thread_id=thread.pk, agent_id="reviewer")
    wake = agents.drive(wake.pk, runtimes=[runtime])
    assert (wake.status, wake.path, wake.reason_code) == (reasons.DELIVERED, "inject", "delivered_acked")
    assert wake.ack_signal in ("turn_started", "read_messages") and wake.submitted_at is not None
    agents.claude_model.wait_for(lambda m: wake.prompt in m.prompts(), what="the wake's prompt at the model")
    agents.wait(lambda: Message.objects.filter(thread=thread, sender="reviewer", kind="resolution").exists(),
                what="the woken reviewer's resolution", runtimes=[runtime])


def test_a_busy_claude_gets_the_wake_once_its_turn_ends(agents, thread, coordinator):
    turn_may_end = threading.Event()

    def slow(turn):
        if "think hard" in turn.prompt and not turn.results:
            # The model streams nothing until the test has seen the wake held: the turn runs meanwhile
            # (a fixed sleep let a loaded machine reach the wake's first step after the turn ended).
            turn_may_end.wait(60)
            return Say("Thought about it.")
        return brains.reviewer(turn)

    agents.claude_model.brain = slow
    try:
        launched = agents.launch("reviewer", "claude", prompt="Please think hard about naming.")
        runtime = launched.runtime
        agents.wait(lambda: state_of(runtime) == "busy", what="the UserPromptSubmit hook", runtimes=[runtime])
        wake = wake_trigger(actor=coordinator, thread_id=thread.pk, agent_id="reviewer")
        held = agents.drive(wake.pk, until=lambda w: w.status == reasons.QUEUED, runtimes=[runtime])
    finally:
        turn_may_end.set()
    assert held.reason_code == "agent_busy" and wake.prompt not in agents.claude_model.prompts()
    # the Stop hook releases it: typed in as soon as the turn is over
    wake = agents.drive(wake.pk, runtimes=[runtime])
    assert (wake.status, wake.path) == (reasons.DELIVERED, "inject")
    agents.claude_model.wait_for(lambda m: len(m.prompts()) == 2, what="the wake's prompt at the model")
    assert agents.claude_model.prompts() == ["Please think hard about naming.", wake.prompt]
    assert ("inject", "queued", "agent_busy") in steps(wake)


def test_an_approval_prompt_is_never_answered_by_a_wake(agents, thread, coordinator):
    marker = agents.tmp / "approved-by-enter"

    def wants_a_shell(turn):
        if "tidy up" in turn.prompt and not turn.results:
            return Call("Bash", {"command": f"touch {marker}", "description": "Create a file"}, mcp=False)
        return Say("Done.")

    agents.claude_model.brain = wants_a_shell
    launched = agents.launch("reviewer", "claude", prompt="Please tidy up.")
    runtime = launched.runtime
    agents.wait(lambda: state_of(runtime) == "awaiting_approval", what="the PermissionRequest hook",
                runtimes=[runtime])
    wake = wake_trigger(actor=coordinator, thread_id=thread.pk, agent_id="reviewer")
    held = agents.drive(wake.pk, until=lambda w: w.status == reasons.QUEUED, runtimes=[runtime])
    assert held.reason_code == "awaiting_approval"
    assert "Do you want to proceed?" in agents.screen(runtime)
    time.sleep(1)
    assert not marker.exists() and wake.prompt not in agents.claude_model.prompts()
