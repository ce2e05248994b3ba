"""/v1 message endpoints: post (idempotent, Stripe semantics), read, ack."""
from __future__ import annotations

import pytest

from messaging.models import Message, ReadCursor
from tests.conftest import client_for

pytestmark = pytest.mark.django_db

MESSAGE_FIELDS = {"id", "thread_id", "seq", "sender", "kind", "body", "in_reply_to", "created_at", "schema_version"}


def url(thread, tail="messages"):
    return f"/v1/threads/{thread.pk}/{tail}"


def test_post_returns_the_message(thread, executioner):
    response = client_for(executioner).post(url(thread), {"body": "hello", "kind": "finding"}, format="json")
    assert response.status_code == 201
    body = response.json()
    assert set(body) >= MESSAGE_FIELDS
    assert (body["seq"], body["sender"], body["kind"], body["thread_id"], body["idempotent_replay"]) == (
        1, "executioner", "finding", str(thread.pk), False)
    assert body["schema_version"] == 1 and body["created_at"].endswith("Z")


def test_idempotency_via_header(thread, executioner):
    client = client_for(executioner)
    first = client.post(url(thread), {"body": "once"}, format="json", HTTP_IDEMPOTENCY_KEY="abc")
    again = client.post(url(thread), {"body": "once"}, format="json", HTTP_IDEMPOTENCY_KEY="abc")
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["idempotent_replay"] is True
    assert {k: v for k, v in again.json().items() if k != "idempotent_replay"} == {
        k: v for k, v in first.json().items() if k != "idempotent_replay"}
    assert first.json()["idempotency_key"] == "abc"
    assert Message.objects.count() == 1


def test_idempotency_via_body_field_and_header_are_the_same_key(thread, executioner):
    client = client_for(executioner)
    first = client.post(url(thread), {"body": "once", "idempotency_key": "k1"}, format="json")
    by_header = client.post(url(thread), {"body": "once"}, format="json", HTTP_IDEMPOTENCY_KEY="k1")
    both = client.post(url(thread), {"body": "once", "idempotency_key": "k1"}, format="json", HTTP_IDEMPOTENCY_KEY="k1")
    assert first.status_code == 201
    assert by_header.status_code == both.status_code == 200
    assert by_header.json()["id"] == both.json()["id"] == first.json()["id"]


def test_idempotency_conflict(thread, executioner):
    client = client_for(executioner)
    client.post(url(thread), {"body": "once"}, format="json", HTTP_IDEMPOTENCY_KEY="k2")
    conflict = client.post(url(thread), {"body": "twice"}, format="json", HTTP_IDEMPOTENCY_KEY="k2")
    assert conflict.status_code == 409
    assert conflict.json()["error"]["code"] == "idempotency_conflict"
    assert Message.objects.count() == 1


def test_header_and_body_keys_differing_is_400(thread, executioner):
    response = client_for(executioner).post(
        url(thread), {"body": "x", "idempotency_key": "a"}, format="json", HTTP_IDEMPOTENCY_KEY="b"
    )
    assert response.status_code == 400 and response.json()["error"]["code"] == "idempotency_key_mismatch"
    assert not Message.objects.exists()


@pytest.mark.parametrize("key", ["", "x" * 256])
def test_invalid_header_key(thread, executioner, key):
    response = client_for(executioner).post(url(thread), {"body": "x"}, format="json", HTTP_IDEMPOTENCY_KEY=key)
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_idempotency_key"


def test_body_over_the_limit_is_413(thread, executioner, settings):
    settings.ORKIVA_MAX_MESSAGE_BODY_CHARS = 100
    response = client_for(executioner).post(url(thread), {"body": "y" * 101}, format="json")
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "body_too_large"
    assert response.json()["error"]["details"] == {"limit": 100, "length": 101}


def test_read_page_and_ack(thread, executioner, reviewer):
    rv, ex = client_for(reviewer), client_for(executioner)
    for i in range(4):
        rv.post(url(thread), {"body": f"m{i}"}, format="json")
    page = ex.get(url(thread) + "?limit=3").json()
    assert [m["seq"] for m in page["messages"]] == [1, 2, 3]
    assert (page["last_seq"], page["last_read_seq"], page["unread_count"], page["next_after_seq"]) == (4, 0, 4, 3)
    # Reading never moves the cursor.
    assert ReadCursor.objects.get(thread=thread, agent_id="executioner").last_read_seq == 0
    again = ex.get(url(thread) + "?limit=3").json()
    assert [m["seq"] for m in again["messages"]] == [1, 2, 3] and again["unread_count"] == 4
    ack = ex.post(url(thread, "ack"), {"seq": 3}, format="json")
    assert ack.status_code == 200
    assert ack.json() == {"thread_id": str(thread.pk), "last_read_seq": 3, "unread_count": 1, "schema_version": 1}
    older = ex.post(url(thread, "ack"), {"seq": 1}, format="json")
    assert older.status_code == 200 and older.json()["last_read_seq"] == 3
    after = ex.get(url(thread)).json()
    assert [m["seq"] for m in after["messages"]] == [4] and after["last_read_seq"] == 3
    past = ex.post(url(thread, "ack"), {"seq": 5}, format="json")
    assert past.status_code == 409 and past.json()["error"]["code"] == "seq_out_of_range"
    assert past.json()["error"]["details"] == {"seq": 5, "last_seq": 4}
    assert ReadCursor.objects.get(thread=thread, agent_id="executioner").last_read_seq == 3


def test_read_limit_bounds(thread, executioner, settings):
    settings.ORKIVA_READ_LIMIT_MAX = 10
    ok = client_for(executioner).get(url(thread) + "?limit=10")
    too_many = client_for(executioner).get(url(thread) + "?limit=11")
    assert ok.status_code == 200 and too_many.status_code == 400


def test_read_default_limit(thread, executioner, reviewer, settings):
    settings.ORKIVA_READ_LIMIT_DEFAULT = 2
    for _ in range(3):
        client_for(reviewer).post(url(thread), {"body": "m"}, format="json")
    assert len(client_for(executioner).get(url(thread)).json()["messages"]) == 2


def test_in_reply_to_over_rest(thread, executioner, reviewer):
    client_for(reviewer).post(url(thread), {"body": "bug", "kind": "finding"}, format="json")
    bad = client_for(executioner).post(url(thread), {"body": "fix", "kind": "fix", "in_reply_to": 7}, format="json")
    assert bad.status_code == 409 and bad.json()["error"]["code"] == "invalid_reply_target"
    good = client_for(executioner).post(url(thread), {"body": "fix", "kind": "fix", "in_reply_to": 1}, format="json")
    assert good.status_code == 201 and good.json()["in_reply_to"] == 1


def test_clients_cannot_post_status_messages(thread, executioner):
    response = client_for(executioner).post(url(thread), {"body": "x", "kind": "status"}, format="json")
    assert response.status_code == 400
