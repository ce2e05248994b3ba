"""A first end-to-end pass over the REST API: create, post, read, ack, summary."""
import pytest

from tests.conftest import client_for

pytestmark = pytest.mark.django_db


def test_thread_conversation_over_rest(coordinator, executioner, reviewer):
    created = client_for(coordinator).post(
        "/v1/threads", {"title": "Review #1", "type": "review", "participants": ["executioner", "reviewer"]}, format="json"
    )
    assert created.status_code == 201, created.json()
    thread_id = created.json()["id"]
    ex, rv = client_for(executioner), client_for(reviewer)
    posted = ex.post(f"/v1/threads/{thread_id}/messages", {"body": "done, please review"}, format="json")
    assert posted.status_code == 201 and posted.json()["seq"] == 1
    finding = rv.post(f"/v1/threads/{thread_id}/messages", {"body": "bug in x", "kind": "finding"}, format="json")
    assert finding.json()["seq"] == 2 and finding.json()["item_state"] == "open"
    page = ex.get(f"/v1/threads/{thread_id}/messages").json()
    assert [m["seq"] for m in page["messages"]] == [1, 2] and page["unread_count"] == 1
    ack = ex.post(f"/v1/threads/{thread_id}/ack", {"seq": 2}, format="json").json()
    assert ack["last_read_seq"] == 2 and ack["unread_count"] == 0
    ex.post(f"/v1/threads/{thread_id}/messages", {"body": "fixed", "kind": "fix", "in_reply_to": 2}, format="json")
    summary = rv.get(f"/v1/threads/{thread_id}/summary").json()
    assert summary["open_items"][0]["state"] == "addressed"
    assert {p["agent_id"]: p["unread_count"] for p in summary["participants"]} == {"executioner": 0, "reviewer": 2}
