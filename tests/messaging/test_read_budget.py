"""A page of messages ends at a byte budget (ORKIVA_READ_MAX_BYTES) as well as at `limit`; paging on
from next_after_seq returns every message once, in order. REST and MCP give the same pages."""
from __future__ import annotations

import json

import pytest
from rest_framework.test import APIClient

from messaging.services import message_post
from tests.conftest import client_for, token_for
from tests.factories import ThreadFactory

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("relaxed_policy")]


def _thread_of(coordinator, executioner, bodies: list[str]):
    thread = ThreadFactory(coordinator=coordinator, participants=["executioner", "reviewer"])
    for body in bodies:
        message_post(actor=executioner, thread_id=str(thread.pk), body=body)
    return str(thread.pk)


def _rest_pages(actor, thread_id: str, limit: int) -> list[list[int]]:
    client, after, pages = client_for(actor), 0, []
    while True:
        page = client.get(f"/v1/threads/{thread_id}/messages", {"after_seq": after, "limit": limit}).json()
        if not page["messages"]:
            return pages
        pages.append([m["seq"] for m in page["messages"]])
        assert page["next_after_seq"] == page["messages"][-1]["seq"]
        after = page["next_after_seq"]


def _mcp_page(actor, thread_id: str, after: int, limit: int) -> dict:
    client = APIClient()
    call = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
        "name": "read_messages", "arguments": {"thread_id": thread_id, "after_seq": after, "limit": limit}}}
    response = client.post("/v1/mcp", data=json.dumps(call), content_type="application/json",
                           HTTP_AUTHORIZATION=f"Bearer {token_for(actor)}",
                           HTTP_ACCEPT="application/json, text/event-stream", HTTP_MCP_PROTOCOL_VERSION="2025-06-18",
                           HTTP_HOST="localhost")  # a Host the MCP endpoint answers
    result = response.json()["result"]
    assert not result["isError"], result
    return result["structuredContent"]


def test_a_page_ends_before_the_message_that_passes_the_budget(settings, coordinator, executioner, reviewer):
    settings.ORKIVA_READ_MAX_BYTES = 100_000
    thread_id = _thread_of(coordinator, executioner, ["a" * 40_000] * 5)  # 40 kB each
    # Bodies before a message must be under the budget: 0, 40k, 80k fit; at 120k the page ends.
    assert _rest_pages(reviewer, thread_id, limit=500) == [[1, 2, 3], [4, 5]]
    assert _rest_pages(reviewer, thread_id, limit=2) == [[1, 2], [3, 4], [5]]  # `limit` still applies


def test_the_budget_counts_bytes_not_characters(settings, coordinator, executioner, reviewer):
    settings.ORKIVA_READ_MAX_BYTES = 100_000
    thread_id = _thread_of(coordinator, executioner, ["é" * 30_000] * 4)  # 30k characters, 60 kB each
    assert _rest_pages(reviewer, thread_id, limit=500) == [[1, 2], [3, 4]]


def test_a_message_larger_than_the_budget_still_comes_first_on_its_page(settings, coordinator, executioner, reviewer):
    settings.ORKIVA_READ_MAX_BYTES = 1_000
    thread_id = _thread_of(coordinator, executioner, ["small", "b" * 5_000, "c" * 5_000, "tail"])
    assert _rest_pages(reviewer, thread_id, limit=500) == [[1, 2], [3], [4]]


def test_mcp_pages_like_rest(settings, coordinator, executioner, reviewer):
    settings.ORKIVA_READ_MAX_BYTES = 100_000
    thread_id = _thread_of(coordinator, executioner, ["a" * 40_000] * 5)
    first = _mcp_page(reviewer, thread_id, after=0, limit=500)
    second = _mcp_page(reviewer, thread_id, after=first["next_after_seq"], limit=500)
    assert [m["seq"] for m in first["messages"]] == [1, 2, 3] and first["next_after_seq"] == 3
    assert [m["seq"] for m in second["messages"]] == [4, 5] and second["last_seq"] == 5
    rest = client_for(reviewer).get(f"/v1/threads/{thread_id}/messages", {"after_seq": 0, "limit": 500}).json()
    assert first == rest
