"""What acknowledges a wake: only the woken agent's own sign for the wake's thread (a read of it,
an ack in it) or its heartbeat, after the delivery began. The chain runs in-process with the
clock passed in; the agent's signs go through the real REST endpoints with its own token."""
from __future__ import annotations

import pytest

from policy.identity import Actor
from supervisor import reasons
from supervisor.models import WakeRequest
from supervisor.services import wake_trigger, wakes_acknowledge
from tests.conftest import client_for
from tests.factories import ThreadFactory
from tests.supervisor.conftest import agent_lines, drive, launch_stand_in, wait_for
from tests.supervisor.test_chain import steps

pytestmark = pytest.mark.django_db

REVIEWER = Actor(agent_id="reviewer", workspace_id="ws-main", role="participant", session_id="rt")


def injected(wake_id, clock) -> WakeRequest:
    return drive(wake_id, clock, until=lambda w: w.status == reasons.AWAITING_ACK)


@pytest.fixture
def woken(tmp_path, thread, coordinator, tmux_server, fake_codex, fast_wakes, clock):
    """A wake typed into the stand-in reviewer's pane, awaiting its ack."""
    log = tmp_path / "agent.jsonl"
    launch_stand_in(agent_id="reviewer", log=log, ack=False)
    wake = wake_trigger(actor=coordinator, thread_id=thread.pk, agent_id="reviewer", reason="please review")
    wake = injected(wake.pk, clock)
    wait_for(lambda: agent_lines(log) == [wake.prompt], what="the prompt in the pane")
    return wake


def test_reading_the_woken_thread_acknowledges_the_wake(woken, thread, clock):
    reply = client_for(REVIEWER).get(f"/v1/threads/{thread.pk}/messages")
    assert reply.status_code == 200
    wake = drive(woken.pk, clock)
    assert (wake.status, wake.path, wake.ack_signal) == (reasons.DELIVERED, "inject", "read_messages")
    assert steps(wake)[-1] == ("inject", "acked", "delivered_acked")
    assert [s for s in steps(wake) if s[1] == "injected"] == [("inject", "injected", "injected")]  # typed once


def test_acking_in_the_woken_thread_acknowledges_the_wake(woken, thread, clock):
    assert client_for(REVIEWER).post(f"/v1/threads/{thread.pk}/ack", {"seq": 0}, format="json").status_code == 200
    assert drive(woken.pk, clock).ack_signal == "ack_read"


def test_signs_for_other_threads_are_not_an_ack(woken, coordinator, clock, fake_codex):
    """A new thread naming the agent creates its cursor there; the agent reading and acking that
    thread says nothing about this wake: it is typed again, then the chain moves on."""
    other = ThreadFactory(coordinator=coordinator, participants=["executioner", "reviewer"])
    client = client_for(REVIEWER)
    assert client.get(f"/v1/threads/{other.pk}/messages").status_code == 200
    assert client.post(f"/v1/threads/{other.pk}/ack", {"seq": 0}, format="json").status_code == 200
    wake = drive(woken.pk, clock)
    assert wake.ack_signal == ""
    assert [s for s in steps(wake) if s[1] == "no_ack"] == [("inject", "no_ack", "ack_timeout")] * 2
    assert wake.status != reasons.DELIVERED


def test_a_sign_while_the_wake_only_waits_is_not_its_ack(thread, coordinator):
    """A wake not yet being delivered (pending, no step running) takes no mark: a read then is the
    agent acting on its own, not an answer to a prompt it has not been given."""
    wake = wake_trigger(actor=coordinator, thread_id=thread.pk, agent_id="reviewer")
    assert client_for(REVIEWER).get(f"/v1/threads/{thread.pk}/messages").status_code == 200
    assert wakes_acknowledge(actor=REVIEWER, thread_id=thread.pk, signal="read_messages") == 0
    wake.refresh_from_db()
    assert (wake.acked_at, wake.ack_signal) == (None, "")


def test_a_mark_left_from_an_earlier_delivery_is_cleared_by_the_next(woken, thread, clock, settings):
    """An ack that came in for the first typing does not count for a later re-delivery: the step
    that delivers anew clears it."""
    WakeRequest.objects.filter(pk=woken.pk).update(acked_at=clock.now, ack_signal="read_messages",
                                                   status=reasons.PENDING, next_attempt_at=clock.now)
    wake = injected(woken.pk, clock)
    assert (wake.acked_at, wake.ack_signal) == (None, "")
