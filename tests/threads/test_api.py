"""/v1 thread endpoints: create, list, get, participants, summary."""
from __future__ import annotations

import threading

import pytest
from django.db import connection

from policy.models import AuditEvent
from threads.models import Participant, Thread
from threads.services import thread_create
from tests.conftest import client_for
from tests.factories import ThreadFactory

pytestmark = pytest.mark.django_db

THREAD_FIELDS = {"id", "workspace_id", "title", "type", "status", "status_changed_at", "status_reason",
                 "status_reason_code", "participants", "created_by", "last_seq", "created_at", "updated_at",
                 "schema_version"}


def test_create_and_get(coordinator, executioner):
    created = client_for(coordinator).post(
        "/v1/threads", {"title": "Fix login", "type": "task", "participants": ["executioner", "reviewer"]}, format="json"
    )
    assert created.status_code == 201
    body = created.json()
    assert set(body) >= THREAD_FIELDS
    assert (body["workspace_id"], body["status"], body["participants"], body["last_seq"], body["created_by"]) == (
        "ws-main", "open", ["executioner", "reviewer"], 0, "coordinator")
    assert body["created_at"].endswith("Z")
    assert body.pop("idempotent_replay") is False  # a create's answer says whether it was a replay
    fetched = client_for(executioner).get(f"/v1/threads/{body['id']}")
    assert fetched.status_code == 200 and fetched.json() == body


def test_create_with_matching_workspace_id_is_fine(coordinator):
    response = client_for(coordinator).post(
        "/v1/threads", {"title": "t", "type": "task", "participants": ["a"], "workspace_id": "ws-main"}, format="json"
    )
    assert response.status_code == 201


def test_create_validation_errors_name_fields(coordinator):
    response = client_for(coordinator).post("/v1/threads", {"title": "", "type": "Bad Type", "participants": []},
                                            format="json")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "validation_error" and set(error["details"]["fields"]) >= {"title"}


@pytest.mark.parametrize("field,value", [("type", "review\n"), ("participants", ["executioner\n"])])
def test_a_trailing_newline_is_not_a_valid_type_or_identifier(coordinator, field, value):
    request = {"title": "t", "type": "review", "participants": ["executioner"], field: value}
    response = client_for(coordinator).post("/v1/threads", request, format="json")
    assert response.status_code == 400, response.content
    assert response.json()["error"]["code"] == "validation_error"


def test_list_paging_and_filters(coordinator, executioner):
    threads = [ThreadFactory(coordinator=coordinator, participants=["executioner"]) for _ in range(3)]
    ThreadFactory(coordinator=coordinator, participants=["reviewer"])
    page = client_for(executioner).get("/v1/threads?limit=2").json()
    assert (page["total"], page["limit"], page["offset"], len(page["threads"])) == (3, 2, 0, 2)
    rest = client_for(executioner).get("/v1/threads?limit=2&offset=2").json()
    assert {t["id"] for t in page["threads"] + rest["threads"]} == {str(t.pk) for t in threads}
    assert client_for(coordinator).get("/v1/threads?participant=reviewer").json()["total"] == 1
    assert client_for(coordinator).get("/v1/threads?status=closed").json()["total"] == 0
    bad = client_for(coordinator).get("/v1/threads?status=nope&limit=0")
    assert bad.status_code == 400 and set(bad.json()["error"]["details"]["fields"]) == {"status", "limit"}


def test_participants_endpoint(coordinator, thread):
    response = client_for(coordinator).post(
        f"/v1/threads/{thread.pk}/participants", {"add": ["newbie"], "remove": ["reviewer"], "reason": "swap"},
        format="json",
    )
    assert response.status_code == 200 and response.json()["participants"] == ["executioner", "newbie"]


def test_summary_endpoint(thread, executioner, reviewer):
    client_for(reviewer).post(f"/v1/threads/{thread.pk}/messages", {"body": "why?", "kind": "question"}, format="json")
    summary = client_for(executioner).get(f"/v1/threads/{thread.pk}/summary")
    assert summary.status_code == 200
    body = summary.json()
    assert set(body) >= {"status", "status_changed_at", "participants", "open_items", "counts", "schema_version"}
    assert body["open_items"][0]["state"] == "open" and body["open_questions"] == 1
    assert {p["agent_id"]: p["unread_count"] for p in body["participants"]} == {"executioner": 1, "reviewer": 0}


def test_unknown_thread_is_404(executioner):
    for path in ("/v1/threads/garbage", "/v1/threads/00000000-0000-0000-0000-000000000000/summary"):
        response = client_for(executioner).get(path)
        assert response.status_code == 404 and response.json()["error"]["code"] == "thread_not_found"


def test_create_is_retry_safe_with_an_idempotency_key(coordinator, outsider):
    client = client_for(coordinator)
    body = {"title": "Review the parser", "type": "review", "participants": ["executioner", "reviewer"]}
    first = client.post("/v1/threads", body, format="json", HTTP_IDEMPOTENCY_KEY="create-1")
    again = client.post("/v1/threads", {**body, "idempotency_key": "create-1"}, format="json")
    assert first.status_code == 201 and first.json()["idempotent_replay"] is False
    assert again.status_code == 200 and again.json() == {**first.json(), "idempotent_replay": True}
    # the same participants in another order are the same request; another title is not
    reordered = client.post("/v1/threads", {**body, "participants": ["reviewer", "executioner"]}, format="json",
                            HTTP_IDEMPOTENCY_KEY="create-1")
    assert reordered.status_code == 200 and reordered.json()["id"] == first.json()["id"]
    clash = client.post("/v1/threads", {**body, "title": "Other"}, format="json", HTTP_IDEMPOTENCY_KEY="create-1")
    assert clash.status_code == 409 and clash.json()["error"]["code"] == "idempotency_conflict"
    mismatch = client.post("/v1/threads", {**body, "idempotency_key": "a"}, format="json", HTTP_IDEMPOTENCY_KEY="b")
    assert mismatch.status_code == 400 and mismatch.json()["error"]["code"] == "idempotency_key_mismatch"
    # keys are the creator's own: another workspace's coordinator with the same key makes its own thread
    theirs = client_for(outsider).post("/v1/threads", body, format="json", HTTP_IDEMPOTENCY_KEY="create-1")
    assert theirs.status_code == 201 and theirs.json()["id"] != first.json()["id"]
    # without a key, two creates are two threads
    assert client.post("/v1/threads", body, format="json").json()["id"] != first.json()["id"]
    assert Thread.objects.filter(workspace_id="ws-main").count() == 2
    assert AuditEvent.objects.filter(action="thread.create", workspace_id="ws-main").count() == 2


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_concurrent_retries_of_one_create_make_one_thread(coordinator):
    barrier, results, errors = threading.Barrier(12), [], []

    def create():
        try:
            barrier.wait()
            thread = thread_create(actor=coordinator, title="Review", type="review", participants=["reviewer"],
                                   idempotency_key="burst-1")
            results.append((str(thread.pk), thread.idempotent_replay))
        except Exception as exc:  # collected and asserted below
            errors.append(exc)
        finally:
            connection.close()

    workers = [threading.Thread(target=create) for _ in range(12)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert errors == [] and len({tid for tid, _ in results}) == 1 and len(results) == 12
    assert sorted(replay for _, replay in results) == [False] + [True] * 11
    assert Thread.objects.count() == 1 and Participant.objects.count() == 1
