"""The MCP adapter in-process: output schemas equal to the REST serializers' fields, a bug is a
protocol error (never a friendly result), and the Host patterns derived from ALLOWED_HOSTS."""
from __future__ import annotations

import asyncio

import pytest
from django.db import connections
from mcp.shared.exceptions import MCPError
from mcp_types import INTERNAL_ERROR

from orkiva.mcp.calls import McpCaller, bind_mcp_caller, reset_mcp_caller, run_tool
from messaging.services import message_post
from orkiva.mcp.server import build_server
from orkiva.mcp.waiting import ThreadWatcher
from orkiva.settings import _mcp_hosts_from
from tests.factories import ActorFactory, ThreadFactory

from messaging.api import CursorOut, MessageOut, MessagePageOut
from orkiva.mcp import schemas
from sessions.api import SessionOut
from supervisor.api import WakeOut, WakeStepOut, WakeTraceOut
from threads.api import (
    CountsOut, LastMessageOut, OpenItemOut, SummaryBlockedOut, SummaryOut, SummaryParticipantOut, ThreadOut,
)

PAIRS = [
    (schemas.ThreadOut, ThreadOut), (schemas.MessageOut, MessageOut), (schemas.MessagePageOut, MessagePageOut),
    (schemas.CursorOut, CursorOut), (schemas.SummaryOut, SummaryOut), (schemas.LastMessageOut, LastMessageOut),
    (schemas.SummaryParticipantOut, SummaryParticipantOut), (schemas.OpenItemOut, OpenItemOut),
    (schemas.CountsOut, CountsOut), (schemas.SummaryBlockedOut, SummaryBlockedOut), (schemas.SessionOut, SessionOut), (schemas.WakeOut, WakeOut),
    (schemas.WakeStepOut, WakeStepOut), (schemas.WakeTraceOut, WakeTraceOut),
]


@pytest.mark.parametrize("model,serializer", PAIRS, ids=[m.__name__ for m, _ in PAIRS])
def test_output_schema_has_the_rest_fields(model, serializer):
    assert set(model.model_fields) == set(serializer().fields)


def test_a_bug_in_a_tool_is_a_json_rpc_internal_error_not_a_result():
    server = build_server()

    @server.tool(name="broken", description="Fails like a bug would.")
    async def broken() -> dict:
        return await run_tool("broken", lambda actor: {"ratio": 1 / 0})

    token = bind_mcp_caller(McpCaller(resolve_actor=ActorFactory))
    try:
        with pytest.raises(MCPError) as raised:
            asyncio.run(server.call_tool("broken", {}))
    finally:
        reset_mcp_caller(token)
    assert raised.value.code == INTERNAL_ERROR
    assert raised.value.message.startswith("internal_error:") and "ZeroDivision" not in raised.value.message


def test_mcp_hosts_follow_djangos_allowed_hosts():
    assert _mcp_hosts_from(["127.0.0.1", "bridge.example", ".example.org", "*"]) == [
        "127.0.0.1", "127.0.0.1:*", "bridge.example", "bridge.example:*"]


def post_and_disconnect(**kwargs) -> None:
    try:
        message_post(**kwargs)
    finally:
        connections.close_all()


@pytest.mark.django_db(transaction=True)
def test_the_watcher_wakes_only_threads_that_moved(coordinator, executioner):
    """A waiter that registers while a check is in flight is judged by the next check, not woken
    as if its thread had vanished (found by bench/mcp_waiters.py)."""
    quiet, busy, late = (ThreadFactory(coordinator=coordinator) for _ in range(3))

    async def scenario():
        watcher = ThreadWatcher(poll_seconds=0.05)
        first = asyncio.create_task(watcher.wait(thread_id=quiet.pk, after_seq=0, timeout=0.5))
        while watcher.checks == 0:  # the first check is now in flight on the watcher's thread
            await asyncio.sleep(0)
        registered_late = asyncio.create_task(watcher.wait(thread_id=late.pk, after_seq=0, timeout=0.5))
        woken = asyncio.create_task(watcher.wait(thread_id=busy.pk, after_seq=0, timeout=30))
        await asyncio.to_thread(post_and_disconnect, actor=executioner, thread_id=busy.pk, body="moved")
        results = await asyncio.gather(first, registered_late, woken)
        await watcher.aclose()
        return results, watcher.waiting

    results, still_waiting = asyncio.run(scenario())
    assert results == [False, False, True]
    assert still_waiting == 0


@pytest.mark.django_db(transaction=True)
def test_a_failed_check_leaves_the_waiters_waiting_and_the_watcher_keeps_going(monkeypatch, coordinator,
                                                                               executioner):
    """A check that fails (the database restarting) wakes nobody: a waiter woken then would be told
    "nothing new" early, or its read would fail. The watcher checks again at the next poll. The
    error is injected into the one query the watcher makes; everything after it is real (a real
    restart under waiters: tests/serving/test_waiting.py)."""
    from django.db import OperationalError

    from orkiva.mcp import waiting

    thread = ThreadFactory(coordinator=coordinator)
    real_last_seqs, failures = waiting._last_seqs, []

    def flaky(thread_ids):
        if not failures:
            failures.append(1)
            raise OperationalError("server closed the connection unexpectedly")
        return real_last_seqs(thread_ids)

    monkeypatch.setattr(waiting, "_last_seqs", flaky)

    async def scenario():
        watcher = ThreadWatcher(poll_seconds=0.05)
        # not woken; long enough for a busy machine to check more than once at 0.05 s polls
        during_outage = await watcher.wait(thread_id=thread.pk, after_seq=0, timeout=2)
        checks = watcher.checks
        later = asyncio.create_task(watcher.wait(thread_id=thread.pk, after_seq=0, timeout=10))
        await asyncio.to_thread(post_and_disconnect, actor=executioner, thread_id=thread.pk, body="after")
        woken_by_post = await later
        await watcher.aclose()
        return during_outage, checks, woken_by_post

    during_outage, checks, woken_by_post = asyncio.run(scenario())
    assert failures == [1]
    assert during_outage is False and checks > 1  # timed out, not woken by the failure; kept checking
    assert woken_by_post is True


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_an_mcp_call_checks_its_connection_once_per_request_as_rest_does(monkeypatch, coordinator, executioner):
    """The tool's database work runs inside the HTTP request's own cycle (which checks a reused
    connection once, ORKIVA_DB_CONN_HEALTH_CHECKS): it must not check it again (a `SELECT 1`
    round trip per call). Through Django's WSGI handler, as gunicorn calls it."""
    import io
    import json
    import sys
    import uuid

    from django.core.wsgi import get_wsgi_application
    from tests.conftest import token_for

    thread_id = str(ThreadFactory(coordinator=coordinator, participants=["executioner", "reviewer"]).pk)
    token, application = token_for(executioner), get_wsgi_application()
    checks = []
    backend = type(connections["default"])
    usable = backend.is_usable
    monkeypatch.setattr(backend, "is_usable", lambda self: checks.append(1) or usable(self))

    def health_checks_for(path: str, payload: dict) -> int:
        body = json.dumps(payload).encode()
        environ = {
            "REQUEST_METHOD": "POST", "PATH_INFO": path, "QUERY_STRING": "", "SERVER_NAME": "localhost",
            "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1", "HTTP_HOST": "localhost",
            "CONTENT_TYPE": "application/json", "CONTENT_LENGTH": str(len(body)), "wsgi.input": io.BytesIO(body),
            "HTTP_AUTHORIZATION": f"Bearer {token}", "HTTP_ACCEPT": "application/json, text/event-stream",
            "HTTP_MCP_PROTOCOL_VERSION": "2025-06-18", "wsgi.url_scheme": "http", "wsgi.errors": sys.stderr,
        }
        before, status = len(checks), []
        content = b"".join(application(environ, lambda s, headers, exc_info=None: status.append(s)))
        assert status[0][:3] in ("200", "201") and b'"isError":true' not in content, (status, content[:300])
        return len(checks) - before

    post = {"body": "checked once?"}
    call = {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"name": "post_message", "arguments": {"thread_id": thread_id, **post}}}
    health_checks_for(f"/v1/threads/{thread_id}/messages", post)  # the connection is now a reused one
    assert health_checks_for(f"/v1/threads/{thread_id}/messages", {**post, "idempotency_key": uuid.uuid4().hex}) == 1
    assert health_checks_for("/v1/mcp", call) == 1
