"""/v1 thread endpoints: create, list, get, participants, summary."""
from __future__ import annotations

import pytest

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
