"""When the database fails a request (its connection killed mid-transaction, a deadlock, a lock
timeout), the client gets a retryable error in the error contract, not a 500: REST's 503
`database_unavailable` with Retry-After, MCP's tool error with the same body. Nothing is stored,
and the same post sent again is."""
from __future__ import annotations

import json
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from django.db import DatabaseError, OperationalError, connection, transaction

from messaging.models import Message
from orkiva.errors import to_domain_error
from tests.conftest import token_for
from tests.factories import ThreadFactory
from tests.live import bridge_server
from threads.models import Thread



def _backend_waiting_for_a_lock(cursor) -> int:
    for _ in range(300):
        cursor.execute("SELECT pg_stat_clear_snapshot()")  # else a transaction sees one snapshot
        cursor.execute("SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                       "AND pid <> pg_backend_pid() AND datname = current_database()")
        row = cursor.fetchone()
        if row:
            return row[0]
        threading.Event().wait(0.05)
    pytest.fail("the post never waited for the thread's lock")


# The connection killed by an administrator (SQLSTATE 57P01): the server's trouble, 5 s.
EXPECTED_ERROR = {"code": "database_unavailable", "details": {"retry_after_seconds": 5},
                  "message": "The database could not complete this request; it was most likely not applied. "
                             "Retry it (a post with the same idempotency key is stored once)."}


def _send(interface: str, base_url: str, thread_id: str, post: dict, token: str) -> tuple[httpx.Response, dict]:
    """The post over REST, or as an MCP tools/call; returns the response and its error body or result."""
    headers = {"Authorization": f"Bearer {token}"}
    if interface == "rest":
        response = httpx.post(f"{base_url}/v1/threads/{thread_id}/messages", json=post, headers=headers, timeout=30)
        return response, response.json()
    call = {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"name": "post_message", "arguments": {"thread_id": thread_id, **post}}}
    headers.update({"Accept": "application/json, text/event-stream", "MCP-Protocol-Version": "2025-06-18"})
    response = httpx.post(f"{base_url}/v1/mcp", json=call, headers=headers, timeout=30)
    return response, response.json()["result"]


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("interface", ["rest", "mcp"])
def test_a_post_whose_connection_dies_mid_transaction_gets_a_retryable_error(tmp_path, interface, coordinator,
                                                                            executioner):
    thread = ThreadFactory(coordinator=coordinator, participants=["executioner", "reviewer"])
    token, thread_id = token_for(executioner), str(thread.pk)
    post = {"body": "lost with its connection?", "idempotency_key": uuid.uuid4().hex}
    with bridge_server(tmp_path, server="gunicorn", workers=1) as bridge:
        with transaction.atomic(), connection.cursor() as cursor, ThreadPoolExecutor(1) as pool:
            Thread.objects.select_for_update().get(pk=thread.pk)  # the post will wait for this lock
            answer = pool.submit(_send, interface, bridge.base_url, thread_id, post, token)
            cursor.execute("SELECT pg_terminate_backend(%s)", [_backend_waiting_for_a_lock(cursor)])
            response, body = answer.result(timeout=30)
        log = bridge.log_path.read_text()

        if interface == "rest":
            assert response.status_code == 503, response.text
            assert response.headers["Retry-After"] == "5"
        else:  # a tool error result, the REST body as its text
            assert response.status_code == 200 and body["isError"] is True, response.text
            assert "structuredContent" not in body
            body = json.loads(body["content"][0]["text"])
        assert body == {"error": EXPECTED_ERROR, "request_id": response.headers["X-Request-ID"]}
        assert "terminating connection due to administrator command" in log  # the cause, for the operator
        assert "Traceback" in log  # and where it struck
        assert not Message.objects.filter(thread_id=thread.pk).exists()

        again, body = _send(interface, bridge.base_url, thread_id, post, token)  # the worker reconnects
        assert again.status_code == (201 if interface == "rest" else 200), again.text
        assert "isError" not in body or body["isError"] is False, body
        assert list(Message.objects.filter(thread_id=thread.pk).values_list("body", flat=True)) == [post["body"]]


@pytest.mark.django_db
def test_a_database_error_that_is_a_bug_stays_a_500():
    """A missing table is an OperationalError on SQLite (a ProgrammingError on PostgreSQL): a
    bug to fix, not a reason to retry."""
    with pytest.raises(DatabaseError) as raised, connection.cursor() as cursor:
        cursor.execute("SELECT * FROM no_such_table")
    assert to_domain_error(raised.value) is None


def test_an_unreachable_server_is_unavailable():
    """psycopg reports a refused connection without a SQLSTATE; Django wraps it."""
    import psycopg

    with pytest.raises(psycopg.OperationalError) as refused:
        psycopg.connect("host=127.0.0.1 port=1 connect_timeout=2")
    try:
        raise OperationalError(*refused.value.args) from refused.value
    except OperationalError as wrapped:
        err = to_domain_error(wrapped)
    assert (err.status, err.code, err.headers) == (503, "database_unavailable", {"Retry-After": "5"})
