"""Wakes against real processes: the stand-in agent acking through a real bridge, and a real
`manage.py qcluster` waking a dormant reviewer after a post."""
from __future__ import annotations

import time

import pytest
from django.utils import timezone

from messaging.services import message_post
from supervisor import reasons, tmux
from supervisor.models import WakeRequest
from supervisor.presenters import wake_json
from supervisor.services import wake_advance, wake_trigger
from tests.live import bridge_server, qcluster, subprocess_env
from tests.supervisor.conftest import agent_lines, launch_stand_in, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def test_delivered_only_after_the_agent_acks(tmp_path, settings, thread, coordinator, tmux_server, fast_wakes):
    log = tmp_path / "agent.jsonl"
    with bridge_server(tmp_path) as bridge:
        settings.ORKIVA_PUBLIC_URL = bridge.base_url
        launch_stand_in(agent_id="reviewer", log=log, ack=True)
        wake = wake_trigger(actor=coordinator, thread_id=thread.pk, agent_id="reviewer", reason="review please")
        wake, _ = wake_advance(wake_id=wake.pk)
        assert wake.status == reasons.AWAITING_ACK
        # not delivered before the agent answers
        rows = wait_for(lambda: [r for r in _log_rows(log) if r["heartbeat_status"] == 200], what="the agent's ack")
        assert rows[0]["line"] == wake.prompt
        wake, _ = wake_advance(wake_id=wake.pk, now=max(timezone.now(), wake.next_attempt_at))
    assert wake.status == reasons.DELIVERED and wake.path == "inject"
    last = wake_json(wake)["trace"]["steps"][-1]
    assert (last["outcome"], last["reason_code"], last["detail"]["signal"]) == ("acked", "delivered_acked", "runtime_heartbeat")


@pytest.mark.postgres_only
def test_qcluster_wakes_a_dormant_reviewer_after_a_post(tmp_path, tmux_server, thread, executioner):
    log = tmp_path / "agent.jsonl"
    launched = launch_stand_in(agent_id="reviewer", log=log, ack=False)  # launched, silent since: idle
    env = subprocess_env(
        ORKIVA_TMUX_SOCKET=tmux_server.socket_name, ORKIVA_TMUX_CONFIG="/dev/null", ORKIVA_SUPERVISOR_HOST="test-host",
        ORKIVA_Q_POLL="0.1", ORKIVA_Q_WORKERS="1", ORKIVA_WAKE_ACK_TIMEOUT_SECONDS="30",
    )
    with qcluster(tmp_path, env=env) as cluster:
        message_post(actor=executioner, thread_id=thread.pk, body="Ready for review: PR #12", kind="message")
        wake = WakeRequest.objects.get(agent_id="reviewer")
        assert wake.source == "auto" and wake.requested_by == "executioner"
        assert not WakeRequest.objects.filter(agent_id="executioner").exists()  # never the sender
        deadline = time.monotonic() + 45
        while wake.prompt not in tmux.capture(launched.runtime.pty_target):
            cluster.assert_running()
            assert time.monotonic() < deadline, cluster.log()
            time.sleep(0.1)
        # The pane echoes the text as it is typed; the agent reads the line once Enter follows it.
        assert wait_for(lambda: agent_lines(log), what="the agent reading its pane") == [wake.prompt]
        wake = wait_for(lambda: _reloaded_if(wake, reasons.AWAITING_ACK), what="awaiting_ack", timeout=10)
        assert [s["reason_code"] for s in wake_json(wake)["trace"]["steps"]] == ["wake_created", "injected"]


def _reloaded_if(wake, status):
    fresh = WakeRequest.objects.get(pk=wake.pk)
    return fresh if fresh.status == status else None


def _log_rows(path):
    import json

    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
