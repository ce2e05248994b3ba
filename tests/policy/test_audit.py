"""The audit log (append-only, written with the change) and the workspace boundary it records."""
from __future__ import annotations

import re
import uuid
from datetime import timedelta

import pytest
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from messaging.models import Message
from orkiva.context import bind_request_id, reset_request_id
from policy.audit import audit_record, audit_tallies_flush
from policy.identity import Actor
from policy.models import AuditEvent, AuditTally
from tests.conftest import client_for
from threads.models import Thread

pytestmark = pytest.mark.django_db


# --- append-only -----------------------------------------------------------------------------------

def test_audit_record_fields(executioner):
    token = bind_request_id("req-123")
    try:
        event = audit_record(actor=executioner, action="thing.done", target_type="thread", target_id="t1",
                             reason="why", reason_code="because", old={"a": 1}, new={"a": 2})
    finally:
        reset_request_id(token)
    event.refresh_from_db()
    assert (event.actor_id, event.actor_role, event.workspace_id, event.request_id) == (
        "executioner", "participant", "ws-main", "req-123")
    assert (event.old_values, event.new_values, event.reason, event.reason_code) == ({"a": 1}, {"a": 2}, "why", "because")
    assert event.created_at is not None


def test_no_update_or_delete_path_in_the_orm(executioner):
    event = audit_record(actor=executioner, action="x")
    event.action = "y"
    with pytest.raises(TypeError):
        event.save()
    with pytest.raises(TypeError):
        event.delete()
    with pytest.raises(TypeError):
        AuditEvent.objects.filter(pk=event.pk).update(action="y")
    with pytest.raises(TypeError):
        AuditEvent.objects.filter(pk=event.pk).delete()
    assert AuditEvent.objects.get(pk=event.pk).action == "x"


def test_the_database_refuses_updates_too(executioner):
    event = audit_record(actor=executioner, action="x")
    with pytest.raises(DatabaseError), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("UPDATE policy_auditevent SET action = 'forged' WHERE id = %s", [event.pk])
    assert AuditEvent.objects.get(pk=event.pk).action == "x"


@pytest.mark.postgres_only
def test_postgres_refuses_deletes(executioner):
    event = audit_record(actor=executioner, action="x")
    with pytest.raises(DatabaseError), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("DELETE FROM policy_auditevent WHERE id = %s", [event.pk])
    assert AuditEvent.objects.filter(pk=event.pk).exists()


def test_audit_row_rolls_back_with_its_change(coordinator):
    from threads.services import thread_create

    with pytest.raises(RuntimeError), transaction.atomic():
        thread_create(actor=coordinator, title="t", type="review", participants=["a"])
        raise RuntimeError("the surrounding transaction fails")
    assert not Thread.objects.exists() and not AuditEvent.objects.filter(action="thread.create").exists()


def test_api_writes_carry_the_request_id(coordinator):
    response = client_for(coordinator).post(
        "/v1/threads", {"title": "t", "type": "review", "participants": ["a"]}, format="json",
        HTTP_X_REQUEST_ID="trace-abc-1",
    )
    assert response["X-Request-ID"] == "trace-abc-1"
    assert AuditEvent.objects.get(action="thread.create").request_id == "trace-abc-1"


# --- workspace boundary ------------------------------------------------------------------------------

THREAD_ENDPOINTS = [
    ("get", "/v1/threads/{id}", None),
    ("get", "/v1/threads/{id}/summary", None),
    ("get", "/v1/threads/{id}/messages", None),
    ("post", "/v1/threads/{id}/messages", {"body": "hi"}),
    ("post", "/v1/threads/{id}/ack", {"seq": 0}),
    ("post", "/v1/threads/{id}/status", {"status": "active", "reason": "x"}),
    ("post", "/v1/threads/{id}/participants", {"add": ["x"]}),
    ("post", "/v1/threads/{id}/wake", {"agent_id": "executioner"}),
]


@pytest.mark.parametrize("method,path,payload", THREAD_ENDPOINTS, ids=[f"{m} {p}" for m, p, _ in THREAD_ENDPOINTS])
def test_another_workspaces_thread_is_exactly_a_missing_one(thread, outsider, method, path, payload):
    client = client_for(outsider)
    url = path.format(id=thread.pk)

    def call():
        kwargs = {"format": "json"} if payload is not None else {}
        response = getattr(client, method)(url, payload, **kwargs) if payload is not None else getattr(client, method)(url)
        body = response.json()
        assert body["request_id"] == response["X-Request-ID"]
        return response.status_code, {k: v for k, v in body.items() if k != "request_id"}

    foreign = call()
    denied = AuditEvent.objects.filter(action="workspace.denied", target_id=str(thread.pk))
    assert denied.count() == 1
    event = denied.get()
    assert (event.actor_id, event.workspace_id, event.reason_code) == ("coordinator", "ws-other", "cross_workspace")
    # the probed workspace's operator sees the attempt too
    probed = AuditEvent.objects.get(action="workspace.probed", target_id=str(thread.pk))
    assert (probed.actor_id, probed.workspace_id, probed.new_values) == (
        "coordinator", "ws-main", {"from_workspace": "ws-other"})
    # The same id once the thread is gone: byte-for-byte the same answer, audited as an unknown id.
    Thread.objects.filter(pk=thread.pk).delete()
    missing = call()
    assert foreign == missing
    assert foreign[0] == 404 and foreign[1]["error"]["code"] == "thread_not_found"
    assert denied.count() == 1
    assert AuditEvent.objects.filter(action="thread.not_found", workspace_id="ws-other",
                                     target_id=str(thread.pk)).count() == 1
    assert not Message.objects.exists()


def test_a_missing_thread_is_audited_as_unknown_not_as_cross_workspace(outsider):
    response = client_for(outsider).get(f"/v1/threads/{uuid.uuid4()}")
    assert response.status_code == 404
    assert not AuditEvent.objects.filter(action__in=("workspace.denied", "workspace.probed")).exists()
    assert AuditEvent.objects.get(action="thread.not_found").reason_code == "unknown_thread"


def test_unknown_and_cross_workspace_404s_do_the_same_work(thread, outsider):
    """Timing must not tell another workspace's thread from none: the same statements on both
    paths (the thread, its owner, one audit insert), counted, not timed."""
    from django.test.utils import CaptureQueriesContext

    def statements(thread_id) -> list[tuple[str, ...]]:
        """Each statement as its verb and the tables it names (one row written or two, one key
        looked up or two: the same statement)."""
        with CaptureQueriesContext(connection) as captured:
            assert client_for(outsider).get(f"/v1/threads/{thread_id}").status_code == 404
        return [(q["sql"].split()[0], *sorted({t for t in re.findall(r'"(\w+)"', q["sql"])
                                                if t.startswith(("policy_", "threads_", "messaging_"))}))
                for q in captured.captured_queries]

    cross, unknown = statements(thread.pk), statements(uuid.uuid4())
    assert cross == unknown
    assert [s for s in cross if s[0] == "INSERT"] == [("INSERT", "policy_auditevent"), ("INSERT", "policy_audittally")]


def test_other_workspace_threads_are_not_listed(thread, outsider):
    assert client_for(outsider).get("/v1/threads").json()["threads"] == []


CLAIM_CASES = [
    ("/v1/threads/{id}/messages", {"body": "hi", "sender": "reviewer"}, "sender", "message.post"),
    ("/v1/threads/{id}/messages", {"body": "hi", "workspace_id": "ws-other"}, "workspace_id", "message.post"),
    ("/v1/threads/{id}/messages", {"body": "hi", "agent_id": "reviewer"}, "agent_id", "message.post"),
    ("/v1/threads", {"title": "t", "type": "review", "participants": ["a"], "workspace_id": "ws-other"},
     "workspace_id", "thread.create"),
    ("/v1/sessions/heartbeat", {"session_id": "s", "agent_id": "reviewer"}, "agent_id", "session.heartbeat"),
    ("/v1/sessions/heartbeat", {"session_id": "s", "workspace_id": "ws-other"}, "workspace_id", "session.heartbeat"),
    ("/v1/threads/{id}/wake", {"agent_id": "reviewer", "workspace_id": "ws-other"}, "workspace_id", "wake.trigger"),
]


@pytest.mark.parametrize("path,payload,field,action", CLAIM_CASES, ids=[f"{c[0]}:{c[2]}" for c in CLAIM_CASES])
def test_payload_naming_another_identity_is_claim_mismatch(thread, executioner, coordinator, path, payload, field, action):
    actor = coordinator if path == "/v1/threads" else executioner
    response = client_for(actor).post(path.format(id=thread.pk), payload, format="json")
    assert response.status_code == 403, response.content
    assert response.json()["error"]["code"] == "claim_mismatch"
    assert response.json()["error"]["details"] == {"field": field}
    event = AuditEvent.objects.get(action=action, reason_code="claim_mismatch")
    assert (event.actor_id, event.target_type, event.target_id) == (actor.agent_id, "claim", field)
    assert event.new_values == {"claimed": str(payload[field])}
    assert event.request_id == response.json()["request_id"]
    assert not Message.objects.exists()
    assert Thread.objects.count() == 1


def test_payload_naming_the_token_identity_is_accepted(thread, executioner):
    response = client_for(executioner).post(
        f"/v1/threads/{thread.pk}/messages", {"body": "hi", "sender": "executioner", "workspace_id": "ws-main"},
        format="json",
    )
    assert response.status_code == 201


def test_refusals_are_audited_even_though_the_write_rolled_back(thread):
    stranger = Actor(agent_id="stranger", workspace_id="ws-main", role="participant", session_id="s")
    response = client_for(stranger).post(f"/v1/threads/{thread.pk}/messages", {"body": "let me in"}, format="json")
    assert response.status_code == 403
    assert AuditEvent.objects.filter(action="access.denied", actor_id="stranger", reason_code="not_a_participant").exists()
    assert not Message.objects.exists()


def _refused_claims(client, n: int) -> list[str]:
    """`n` refused posts naming another sender (claim_mismatch, audited): their request ids."""
    ids = []
    for _ in range(n):
        response = client.post("/v1/sessions/heartbeat", {"session_id": "s1", "agent_id": "someone-else"},
                               format="json")
        assert response.status_code == 403
        ids.append(response.json()["request_id"])
    return ids


def test_repeated_refusals_are_one_row_and_a_count_and_every_refusal_is_on_the_record(settings):
    """One token hammering a refusal wrote a row each (400 a second); the repeats of a window are
    counted and appended once it is over, as one row with their count: nothing lost, never updated."""
    client = client_for(Actor(agent_id="executioner", workspace_id="ws-main", role="participant", session_id="s"))
    rows = AuditEvent.objects.filter(action="session.heartbeat", reason_code="claim_mismatch")
    ids = _refused_claims(client, 40)
    assert rows.count() == 1 and rows.get().request_id == ids[0]  # the first, with its target and request id
    assert AuditTally.objects.get().repeats == 39
    later = timezone.now() + timedelta(seconds=settings.ORKIVA_AUDIT_REFUSAL_WINDOW_SECONDS + 1)
    assert audit_tallies_flush(now=later) == 1
    first, summed = rows.order_by("id")
    assert (first.count, summed.count) == (1, 39) and sum(r.count for r in rows) == 40
    assert summed.new_values["first_request_id"] == ids[0] and summed.new_values["last_request_id"] == ids[-1]
    assert not AuditTally.objects.exists() and audit_tallies_flush(now=later) == 0  # once
    # another actor's refusals are their own row; a new window starts with a row of its own
    other = client_for(Actor(agent_id="reviewer", workspace_id="ws-main", role="participant", session_id="s"))
    _refused_claims(other, 2)
    _refused_claims(client, 1)
    assert list(rows.order_by("id").values_list("actor_id", "count"))[2:] == [("reviewer", 1), ("executioner", 1)]


def test_a_refusal_after_its_window_puts_the_repeats_on_the_record_first(settings):
    settings.ORKIVA_AUDIT_REFUSAL_WINDOW_SECONDS = 1
    client = client_for(Actor(agent_id="executioner", workspace_id="ws-main", role="participant", session_id="s"))
    _refused_claims(client, 3)
    AuditTally.objects.update(window_start=timezone.now() - timedelta(seconds=5))  # the window is over
    _refused_claims(client, 1)
    rows = AuditEvent.objects.filter(action="session.heartbeat").order_by("id")
    assert list(rows.values_list("count", flat=True)) == [1, 2, 1]


def test_with_no_window_every_refusal_is_a_row(settings):
    settings.ORKIVA_AUDIT_REFUSAL_WINDOW_SECONDS = 0
    _refused_claims(client_for(Actor(agent_id="executioner", workspace_id="ws-main", role="participant",
                                     session_id="s")), 3)
    assert AuditEvent.objects.filter(action="session.heartbeat").count() == 3 and not AuditTally.objects.exists()


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_concurrent_refusals_are_each_counted_once():
    """Eight clients refused ten times each, at once: 80 refusals on the record, as rows and counts."""
    import threading

    from orkiva.errors import Forbidden
    from policy.audit import audit_refusal

    actor = Actor(agent_id="executioner", workspace_id="ws-main", role="participant", session_id="s")
    barrier, errors = threading.Barrier(8), []

    def refuse():
        try:
            barrier.wait()
            for _ in range(10):
                audit_refusal(Forbidden("No.", code="claim_mismatch", audit={"actor": actor, "action": "message.post"}))
        except Exception as exc:  # collected and asserted below
            errors.append(exc)
        finally:
            connection.close()

    workers = [threading.Thread(target=refuse) for _ in range(8)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert errors == []
    audit_tallies_flush(now=timezone.now() + timedelta(minutes=5))
    assert sum(AuditEvent.objects.filter(action="message.post").values_list("count", flat=True)) == 80
