"""The scheduled sweep (supervisor.tasks.supervisor_sweep) catches what the moment missed: an
auto-wake whose rule failed when the post committed, and an agent whose process died in its pane."""
from __future__ import annotations

import os
import signal
from datetime import timedelta

import pytest
from django.db import OperationalError
from django.utils import timezone

import supervisor.services
from messaging.services import message_post
from policy.models import AuditEvent
from policy.tokens import verify_token
from supervisor import reasons, tmux
from supervisor.models import Runtime, WakeRequest
from supervisor.services import runtime_register, wakes_missed
from supervisor.services.wakes import MISSED_AFTER_SECONDS
from supervisor.tasks import supervisor_sweep
from tests.supervisor.conftest import launch_stand_in, wait_for
from tests.supervisor.test_launch import credential_of
from threads.services import thread_transition

pytestmark = pytest.mark.django_db


def test_an_auto_wake_a_database_blip_skipped_is_made_by_the_sweep_once(
    thread, executioner, reviewer, monkeypatch, django_capture_on_commit_callbacks
):
    an_hour_ago = timezone.now() - timedelta(hours=1)
    runtime_register(actor=reviewer, runtime_type="codex", session_id="s", now=an_hour_ago)  # idle since

    def blip(**kwargs):
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(supervisor.services, "wakes_for_post", blip)
    with django_capture_on_commit_callbacks(execute=True):
        posted = message_post(actor=executioner, thread_id=thread.pk, body="Ready for review.").message
    monkeypatch.undo()
    assert not WakeRequest.objects.exists()  # the post stands; its auto-wake never happened

    assert wakes_missed(now=posted.created_at + timedelta(seconds=1)) == []  # the rule may still be running
    later = posted.created_at + timedelta(seconds=MISSED_AFTER_SECONDS + 1)
    (wake,) = wakes_missed(now=later)
    assert (wake.agent_id, wake.thread_id, wake.source, wake.requested_by) == (
        "reviewer", thread.pk, reasons.SOURCE_AUTO, "executioner")
    assert wakes_missed(now=later + timedelta(minutes=5)) == []  # once: a wake exists since the post
    assert WakeRequest.objects.count() == 1


def test_the_sweep_leaves_alone_what_the_rule_handled_or_would_skip(thread, executioner, reviewer,
                                                                    django_capture_on_commit_callbacks):
    an_hour_ago = timezone.now() - timedelta(hours=1)
    runtime_register(actor=reviewer, runtime_type="codex", session_id="s", now=an_hour_ago)
    with django_capture_on_commit_callbacks(execute=True):
        message_post(actor=executioner, thread_id=thread.pk, body="One.")
    assert WakeRequest.objects.count() == 1  # the rule ran
    later = timezone.now() + timedelta(minutes=5)
    assert wakes_missed(now=later) == []
    # an agent registered after a post is not woken about it (the rule would not have been either)
    with django_capture_on_commit_callbacks(execute=True):
        message_post(actor=reviewer, thread_id=thread.pk, body="Two.")
    runtime_register(actor=executioner, runtime_type="codex", session_id="e", now=later)
    assert wakes_missed(now=later + timedelta(minutes=5)) == []
    assert WakeRequest.objects.count() == 1


def test_status_changes_and_posts_the_rule_collapsed_are_not_missed_wakes(
    thread, executioner, reviewer, coordinator, django_capture_on_commit_callbacks
):
    """A status change writes a message of its own and never runs the rule; a post the rule's dedupe
    collapsed onto an earlier wake was not missed either: the sweep wakes for neither."""
    an_hour_ago = timezone.now() - timedelta(hours=1)
    runtime_register(actor=reviewer, runtime_type="codex", session_id="s", now=an_hour_ago)
    thread_transition(actor=coordinator, thread_id=thread.pk, status="active", reason="")
    later = timezone.now() + timedelta(seconds=MISSED_AFTER_SECONDS + 1)
    assert wakes_missed(now=later) == []  # the status message is not a post
    with django_capture_on_commit_callbacks(execute=True):
        message_post(actor=executioner, thread_id=thread.pk, body="One.")
        message_post(actor=executioner, thread_id=thread.pk, body="Two.")  # collapses onto the first's wake
    assert WakeRequest.objects.count() == 1
    assert wakes_missed(now=timezone.now() + timedelta(seconds=MISSED_AFTER_SECONDS + 1)) == []
    assert WakeRequest.objects.count() == 1


def test_a_dead_agent_process_is_marked_offline_by_the_sweep(tmp_path, tmux_server):
    launched = launch_stand_in(agent_id="reviewer", log=tmp_path / "a.jsonl", ack=False)
    token = credential_of(launched.session_name)
    pane = tmux.pane_state(launched.runtime.pty_target, launched.runtime.tmux_socket)
    os.kill(pane.pid, signal.SIGKILL)  # the agent dies; its pane stays (remain-on-exit)
    wait_for(lambda: tmux.pane_state(launched.runtime.pty_target, launched.runtime.tmux_socket).dead,
             what="the pane to show its process dead")
    assert supervisor_sweep()["offline"] == 1
    assert Runtime.objects.get(agent_id="reviewer").state == "offline"
    assert AuditEvent.objects.filter(action="runtime.state", target_id="reviewer",
                                     reason_code=reasons.R_TARGET_DEAD).count() == 1
    with pytest.raises(Exception) as refused:
        verify_token(token)
    assert refused.value.code == "token_revoked"
    assert supervisor_sweep()["offline"] == 0  # once
