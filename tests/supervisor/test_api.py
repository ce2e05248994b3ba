"""/v1 wake and runtime endpoints, and the auto-wake rule a post triggers."""
from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from messaging.services import cursor_ack, message_post
from policy.models import AuditEvent
from supervisor import reasons
from supervisor.models import Runtime, WakeRequest
from supervisor.services import runtime_register, runtimes_expire, wake_trigger, wakes_for_post
from tests.conftest import client_for
from tests.factories import ActorFactory

pytestmark = pytest.mark.django_db

WAKE_KEYS = {"wake_id", "status", "thread_id", "agent_id", "source", "reason_code", "created_at", "finished_at",
             "trace", "schema_version"}


def test_trigger_answers_at_once_with_trace(thread, executioner):
    response = client_for(executioner).post(f"/v1/threads/{thread.pk}/wake", {"agent_id": "reviewer", "reason": "PR ready"},
                                            format="json")
    assert response.status_code == 202, response.json()
    body = response.json()
    assert WAKE_KEYS <= set(body) and body["status"] == "pending" and body["source"] == "trigger"
    assert set(body["trace"]) == {"trace_id", "dedupe_key", "event_version", "steps"} and body["trace"]["event_version"] == 1
    assert body["trace"]["steps"][0]["reason_code"] == "wake_created" and body["deduped"] is False
    again = client_for(executioner).post(f"/v1/threads/{thread.pk}/wake", {"agent_id": "reviewer"}, format="json").json()
    assert again["wake_id"] == body["wake_id"] and again["deduped"] is True
    fetched = client_for(executioner).get(f"/v1/wakes/{body['wake_id']}")
    assert fetched.status_code == 200 and fetched.json()["trace"]["trace_id"] == body["trace"]["trace_id"]


@pytest.mark.parametrize(
    "payload, status, code",
    [
        ({"agent_id": "nobody"}, 409, "agent_not_in_thread"),
        ({"agent_id": "bad id!"}, 400, "validation_error"),
        ({}, 400, "validation_error"),
        ({"agent_id": "reviewer", "workspace_id": "ws-other"}, 403, "claim_mismatch"),
        ([1], 400, "invalid_body"),
    ],
)
def test_trigger_rejects_bad_input(thread, executioner, payload, status, code):
    response = client_for(executioner).post(f"/v1/threads/{thread.pk}/wake", payload, format="json")
    assert (response.status_code, response.json()["error"]["code"]) == (status, code)


def test_wakes_are_workspace_and_role_scoped(thread, executioner, outsider, auditor):
    wake = wake_trigger(actor=executioner, thread_id=thread.pk, agent_id="reviewer")
    assert client_for(outsider).get(f"/v1/wakes/{wake.pk}").status_code == 404
    assert client_for(outsider).post(f"/v1/threads/{thread.pk}/wake", {"agent_id": "reviewer"}, format="json").status_code == 404
    assert client_for(auditor).post(f"/v1/threads/{thread.pk}/wake", {"agent_id": "reviewer"}, format="json").status_code == 403
    stranger = ActorFactory(agent_id="stranger", workspace_id="ws-main")
    assert client_for(stranger).post(f"/v1/threads/{thread.pk}/wake", {"agent_id": "reviewer"}, format="json").status_code == 403
    assert client_for(executioner).get("/v1/wakes/not-a-uuid").status_code == 404


def test_only_an_operator_may_force(thread, coordinator):
    from orkiva.errors import Forbidden

    with pytest.raises(Forbidden) as err:
        wake_trigger(actor=coordinator, thread_id=thread.pk, agent_id="reviewer", reason="now", force=True)
    assert err.value.code == "force_requires_operator"


def test_rate_limit_per_runtime(settings, coordinator, reviewer):
    from orkiva.errors import RateLimited
    from tests.factories import ThreadFactory

    settings.ORKIVA_WAKE_RATE_LIMIT = 3
    threads = [ThreadFactory(coordinator=coordinator, participants=["reviewer"]) for _ in range(4)]
    for t in threads[:3]:
        wake_trigger(actor=coordinator, thread_id=t.pk, agent_id="reviewer")
    with pytest.raises(RateLimited) as err:
        wake_trigger(actor=coordinator, thread_id=threads[3].pk, agent_id="reviewer")
    assert err.value.code == "wake_rate_limited" and WakeRequest.objects.count() == 3


def test_runtime_register_heartbeat_deregister(reviewer):
    client = client_for(reviewer)
    registered = client.post("/v1/runtimes", {"runtime_type": "codex", "session_id": "s-1", "pid": 42,
                                              "pty_backend": "tmux", "pty_target": "work:0.1"}, format="json")
    assert registered.status_code == 200, registered.json()
    body = registered.json()
    assert body["management_mode"] == "unmanaged" and body["state"] == "active" and "orkiva_runtime launch" in body["guidance"]
    assert client.post("/v1/runtimes/heartbeat", {"session_id": "s-2"}, format="json").json()["session_id"] == "s-2"
    assert client.post("/v1/runtimes", {"agent_id": "someone-else"}, format="json").json()["error"]["code"] == "claim_mismatch"
    assert client.post("/v1/runtimes", {"pty_target": "x; rm -rf"}, format="json").status_code == 400
    gone = client.post("/v1/runtimes/deregister", {"reason": "done"}, format="json")
    assert gone.json()["state"] == "deregistered"
    assert client.post("/v1/runtimes/heartbeat", {}, format="json").json()["error"]["code"] == "runtime_not_found"
    assert AuditEvent.objects.filter(action="runtime.deregister", reason="done").exists()


def _register(agent_id, *, now, session_id="s"):
    actor = ActorFactory(agent_id=agent_id, workspace_id="ws-main", session_id=session_id)
    return runtime_register(actor=actor, runtime_type="codex", session_id=session_id, now=now)


def test_auto_wake_rule(thread, executioner, reviewer, django_capture_on_commit_callbacks):
    now = timezone.now()
    _register("reviewer", now=now - timedelta(hours=1))  # idle
    _register("executioner", now=now - timedelta(hours=1))  # idle too, but the sender
    with django_capture_on_commit_callbacks(execute=True):
        message_post(actor=executioner, thread_id=thread.pk, body="please review")
    (wake,) = WakeRequest.objects.all()
    assert (wake.agent_id, wake.source, wake.requested_by) == ("reviewer", "auto", "executioner")
    # a second post collapses onto the active wake
    with django_capture_on_commit_callbacks(execute=True):
        message_post(actor=executioner, thread_id=thread.pk, body="and this")
    assert WakeRequest.objects.count() == 1


def test_auto_wake_skips_active_caught_up_and_unregistered(thread, executioner, reviewer):
    now = timezone.now()
    assert message_post(actor=executioner, thread_id=thread.pk, body="one").message.seq == 1
    assert wakes_for_post(thread_id=thread.pk, sender="executioner", now=now) == []  # no runtime registered
    _register("reviewer", now=now - timedelta(seconds=10))
    assert wakes_for_post(thread_id=thread.pk, sender="executioner", now=now) == []  # active
    cursor_ack(actor=reviewer, thread_id=thread.pk, seq=1)
    later = now + timedelta(hours=1)
    assert wakes_for_post(thread_id=thread.pk, sender="executioner", now=later) == []  # nothing unread
    message_post(actor=executioner, thread_id=thread.pk, body="two")
    assert [w.agent_id for w in wakes_for_post(thread_id=thread.pk, sender="executioner", now=later)] == ["reviewer"]


def test_runtimes_expire_by_heartbeat_policy(settings, reviewer, executioner):
    now = timezone.now()
    _register("reviewer", now=now - timedelta(minutes=10))
    _register("executioner", now=now - timedelta(hours=13))
    counts = runtimes_expire(now=now)
    states = dict(Runtime.objects.values_list("agent_id", "state"))
    assert states == {"reviewer": "idle", "executioner": "expired"} and counts["expired"] == 1
    assert AuditEvent.objects.filter(action="runtime.state", target_id="executioner", reason_code="stale_session").exists()
    assert runtimes_expire(now=now)["expired"] == 0  # idempotent


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_concurrent_burst_of_twenty_triggers_is_one_wake(thread, coordinator):
    barrier = threading.Barrier(20)
    results, errors = [], []

    def trigger():
        try:
            barrier.wait()
            results.append(wake_trigger(actor=coordinator, thread_id=thread.pk, agent_id="reviewer").pk)
        except Exception as exc:  # collected and asserted below
            errors.append(exc)
        finally:
            connection.close()

    workers = [threading.Thread(target=trigger) for _ in range(20)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert errors == [] and len(set(results)) == 1 and len(results) == 20
    assert WakeRequest.objects.count() == 1
    assert WakeRequest.objects.get().status in reasons.ACTIVE_STATUSES


def test_sweep_schedule_exists_and_requeues_overdue_wakes(thread, coordinator):
    from django_q.models import OrmQ, Schedule

    from supervisor.tasks import SWEEP_SCHEDULE, schedules_ensure, supervisor_sweep

    schedules_ensure()  # idempotent: migrate already made it
    assert Schedule.objects.filter(name=SWEEP_SCHEDULE, func="supervisor.tasks.supervisor_sweep").count() == 1
    wake = wake_trigger(actor=coordinator, thread_id=thread.pk, agent_id="reviewer")
    WakeRequest.objects.filter(pk=wake.pk).update(next_attempt_at=timezone.now() - timedelta(minutes=5))
    before = OrmQ.objects.count()
    assert supervisor_sweep()["requeued"] == 1
    assert OrmQ.objects.count() == before + 1
