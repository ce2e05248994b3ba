"""/v1/mcp through the SDK's real clients against a real bridge process: the tools, the same JSON
as REST, idempotency, workspace and token refusals, wait_for_messages, Host/Origin protection."""
from __future__ import annotations

import asyncio
import json
import re
import time
from contextlib import asynccontextmanager
from datetime import timedelta

import httpx
import httpx2
import pytest
from django.utils import timezone
from mcp import ClientSession
from mcp.client.client import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from messaging.models import Message
from orkiva.mcp.calls import error_text
from policy.models import AuditEvent, AuditTally
from tests.conftest import token_for
from tests.live import bridge_server, subprocess_env

pytestmark = pytest.mark.django_db(transaction=True)

TOOLS = {
    "create_thread", "get_thread", "post_message", "read_messages", "ack_read", "update_thread_status",
    "summarize_thread", "heartbeat_session", "trigger_participant", "wait_for_messages",
}


@asynccontextmanager
async def session_for(base_url: str, token: str):
    """The SDK's ClientSession over its streamable HTTP transport, with our bearer token."""
    async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=60) as http:
        async with streamable_http_client(f"{base_url}/v1/mcp", http_client=http) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                yield session


@asynccontextmanager
async def client_for_mcp(base_url: str, token: str):
    """The SDK's high-level Client in its default mode (discovery, then the modern protocol)."""
    async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=60) as http:
        async with Client(streamable_http_client(f"{base_url}/v1/mcp", http_client=http)) as client:
            yield client


def rest(base_url: str, actor, method: str, path: str, **kwargs) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token_for(actor)}", **kwargs.pop("headers", {})}
    return httpx.request(method, f"{base_url}/v1{path}", headers=headers, timeout=30, **kwargs)


def ok(result) -> dict:
    assert not result.is_error, result.structured_content or result.content
    return result.structured_content


def failed(result) -> dict:
    """An error result: no structured content (it would have to match the success schema), the
    REST error body as its JSON text."""
    assert result.is_error, result.structured_content
    assert result.structured_content is None
    body = error_text(result)
    assert set(body) == {"error", "request_id"} and set(body["error"]) == {"code", "message", "details"}
    return body


def test_lists_every_tool_with_typed_described_schemas(tmp_path, coordinator):
    async def scenario(base_url):
        async with session_for(base_url, token_for(coordinator)) as session:
            return (await session.list_tools()).tools

    with bridge_server(tmp_path) as bridge:
        tools = asyncio.run(scenario(bridge.base_url))
    by_name = {t.name: t for t in tools}
    assert set(by_name) == TOOLS
    for tool in tools:
        assert tool.description and tool.output_schema, tool.name
        for name, prop in tool.input_schema["properties"].items():
            assert prop.get("description"), f"{tool.name}.{name} has no description"
    post = by_name["post_message"].input_schema
    assert post["required"] == ["thread_id", "body"]
    assert "finding" in post["properties"]["kind"]["enum"] and "status" not in post["properties"]["kind"]["enum"]
    assert set(by_name["read_messages"].output_schema["properties"]) >= {"messages", "unread_count", "next_after_seq"}


@pytest.mark.parametrize("server", ["runserver", "gunicorn"])
def test_a_whole_conversation_returns_the_rest_json(tmp_path, server, coordinator, executioner, reviewer):
    with bridge_server(tmp_path, server=server) as bridge:
        url = bridge.base_url

        async def scenario():
            async with client_for_mcp(url, token_for(coordinator)) as coord, \
                    client_for_mcp(url, token_for(executioner)) as ex, \
                    session_for(url, token_for(reviewer)) as rev:
                thread = ok(await coord.call_tool(
                    "create_thread", {"title": "Review the parser", "type": "review",
                                      "participants": ["executioner", "reviewer"]}))
                tid = thread["id"]
                finding = ok(await rev.call_tool(
                    "post_message", {"thread_id": tid, "body": "The parser drops tabs.", "kind": "finding"}))
                unread = ok(await ex.call_tool("read_messages", {"thread_id": tid}))
                fix = ok(await ex.call_tool(
                    "post_message", {"thread_id": tid, "body": "Fixed in abc123.", "kind": "fix",
                                     "in_reply_to": finding["seq"]}))
                acked = ok(await ex.call_tool("ack_read", {"thread_id": tid, "seq": finding["seq"]}))
                summary = ok(await rev.call_tool("summarize_thread", {"thread_id": tid}))
                resolved = ok(await rev.call_tool(
                    "post_message", {"thread_id": tid, "body": "Verified.", "kind": "resolution",
                                     "in_reply_to": finding["seq"]}))
                moved = ok(await coord.call_tool(
                    "update_thread_status", {"thread_id": tid, "status": "resolved", "reason": "fixed"}))
                beat = ok(await ex.call_tool("heartbeat_session", {"session_id": "codex-1"}))
                wake = ok(await ex.call_tool(
                    "trigger_participant", {"thread_id": tid, "agent_id": "reviewer", "reason": "please re-check"}))
                got = ok(await rev.call_tool("get_thread", {"thread_id": tid}))
                page = ok(await rev.call_tool("read_messages", {"thread_id": tid, "after_seq": 0}))
                return thread, finding, unread, fix, acked, summary, resolved, moved, beat, wake, got, page

        thread, finding, unread, fix, acked, summary, resolved, moved, beat, wake, got, page = asyncio.run(scenario())
        tid = thread["id"]

        assert thread["participants"] == ["executioner", "reviewer"] and thread["created_by"] == coordinator.agent_id
        assert [m["seq"] for m in unread["messages"]] == [1] and unread["unread_count"] == 1
        assert finding["idempotent_replay"] is False and finding["item_state"] == "open"
        assert (fix["seq"], fix["in_reply_to"]) == (2, 1)
        assert (acked["last_read_seq"], acked["unread_count"]) == (1, 0)
        assert [(i["seq"], i["state"]) for i in summary["open_items"]] == [(1, "addressed")]
        assert moved["status"] == "resolved"
        assert beat["session_id"] == "codex-1" and beat["agent_id"] == executioner.agent_id
        assert wake["agent_id"] == "reviewer" and wake["status"] and wake["trace"]["trace_id"]

        # The same objects through REST: the very same JSON.
        assert got == rest(url, reviewer, "GET", f"/threads/{tid}").json()
        assert page == rest(url, reviewer, "GET", f"/threads/{tid}/messages", params={"after_seq": 0}).json()
        assert [m["seq"] for m in page["messages"]] == [1, 2, 3, 4]  # 4: the status message
        assert rest(url, executioner, "GET", f"/wakes/{wake['wake_id']}").json()["wake_id"] == wake["wake_id"]
        assert rest(url, reviewer, "GET", f"/threads/{tid}/summary").json()["open_items"] == []
    # The request log names the tool as the operation, and the caller.
    assert re.search(r"operation=post_message agent_id=reviewer", bridge.log()) or \
        '"operation": "post_message"' in bridge.log()


def test_idempotent_retry_through_mcp_and_rest(tmp_path, thread, executioner):
    tid = str(thread.pk)
    with bridge_server(tmp_path) as bridge:
        async def scenario():
            async with client_for_mcp(bridge.base_url, token_for(executioner)) as ex:
                args = {"thread_id": tid, "body": "Patch ready.", "idempotency_key": "patch-1"}
                first = ok(await ex.call_tool("post_message", args))
                again = ok(await ex.call_tool("post_message", args))
                clash = failed(await ex.call_tool("post_message", {**args, "body": "Another patch."}))
                return first, again, clash

        first, again, clash = asyncio.run(scenario())
        over_rest = rest(bridge.base_url, executioner, "POST", f"/threads/{tid}/messages",
                         json={"body": "Patch ready."}, headers={"Idempotency-Key": "patch-1"})
        page = rest(bridge.base_url, executioner, "GET", f"/threads/{tid}/messages", params={"after_seq": 0}).json()
    assert first["idempotent_replay"] is False
    assert again == {**first, "idempotent_replay": True}
    assert clash["error"]["code"] == "idempotency_conflict" and clash["error"]["details"]["original_seq"] == first["seq"]
    assert over_rest.status_code == 200 and over_rest.json() == again
    assert [m["body"] for m in page["messages"]] == ["Patch ready."]


def test_an_idempotent_create_thread_through_mcp_and_rest(tmp_path, coordinator):
    """create_thread is retry-safe like a post: the same key and content returns the first thread
    (over MCP or REST), other content with that key is idempotency_conflict."""
    args = {"title": "Review the parser", "type": "review", "participants": ["executioner"], "idempotency_key": "t-1"}
    with bridge_server(tmp_path) as bridge:
        async def scenario():
            async with client_for_mcp(bridge.base_url, token_for(coordinator)) as coord:
                first = ok(await coord.call_tool("create_thread", args))
                again = ok(await coord.call_tool("create_thread", args))
                clash = failed(await coord.call_tool("create_thread", {**args, "title": "Something else"}))
                return first, again, clash

        first, again, clash = asyncio.run(scenario())
        over_rest = rest(bridge.base_url, coordinator, "POST", "/threads", headers={"Idempotency-Key": "t-1"},
                         json={k: v for k, v in args.items() if k != "idempotency_key"})
        listed = rest(bridge.base_url, coordinator, "GET", "/threads").json()
    assert first["idempotent_replay"] is False
    assert again == {**first, "idempotent_replay": True}
    assert clash["error"]["code"] == "idempotency_conflict"
    assert clash["error"]["details"]["original_thread_id"] == first["id"]
    assert over_rest.status_code == 200 and over_rest.json() == again
    assert [t["id"] for t in listed["threads"]] == [first["id"]]
    assert AuditEvent.objects.filter(action="thread.create").count() == 1


def test_cross_workspace_and_role_refusals_are_rest_errors_and_audited(tmp_path, thread, outsider, executioner):
    tid = str(thread.pk)
    with bridge_server(tmp_path) as bridge:
        async def scenario():
            async with client_for_mcp(bridge.base_url, token_for(outsider)) as out, \
                    client_for_mcp(bridge.base_url, token_for(executioner)) as ex:
                hidden = failed(await out.call_tool("get_thread", {"thread_id": tid}))
                posted = failed(await out.call_tool("post_message", {"thread_id": tid, "body": "hi"}))
                denied = failed(await ex.call_tool(
                    "create_thread", {"title": "x", "type": "review", "participants": ["executioner"]}))
                spoofed = failed(await ex.call_tool(
                    "post_message", {"thread_id": tid, "body": "hi", "sender": "reviewer"}))
                return hidden, posted, denied, spoofed

        hidden, posted, denied, spoofed = asyncio.run(scenario())
        rest_404 = rest(bridge.base_url, outsider, "GET", f"/threads/{tid}").json()
    assert hidden["error"] == rest_404["error"] and hidden["error"]["code"] == "thread_not_found"
    assert posted["error"]["code"] == "thread_not_found"
    assert denied["error"]["code"] == "forbidden"
    assert spoofed["error"]["code"] == "claim_mismatch"
    audited = set(AuditEvent.objects.filter(
        request_id__in=[b["request_id"] for b in (hidden, posted, denied, spoofed)]
    ).values_list("request_id", "workspace_id", "action"))
    assert audited == {  # a cross-workspace attempt is on both workspaces' record
        (hidden["request_id"], "ws-other", "workspace.denied"), (hidden["request_id"], "ws-main", "workspace.probed"),
        (denied["request_id"], "ws-main", "access.denied"),
        (spoofed["request_id"], "ws-main", "message.post"),
    }
    # the next attempts within the window (the post, the REST read) are counted in both records,
    # to be summed up in one row each
    last = rest_404["request_id"]
    assert set(AuditTally.objects.filter(repeats=2).values_list("workspace_id", "action", "last_request_id")) == {
        ("ws-other", "workspace.denied", last), ("ws-main", "workspace.probed", last)}


def test_arguments_that_break_the_input_schema_get_the_rest_error_body(tmp_path, thread, executioner):
    tid = str(thread.pk)
    with bridge_server(tmp_path) as bridge:
        async def scenario():
            async with client_for_mcp(bridge.base_url, token_for(executioner)) as ex:
                wrong_type = failed(await ex.call_tool(
                    "post_message", {"thread_id": tid, "body": "hi", "in_reply_to": "the first one"}))
                missing = failed(await ex.call_tool("post_message", {"thread_id": tid}))
                bad_kind = failed(await ex.call_tool("post_message", {"thread_id": tid, "body": "hi", "kind": "rant"}))
                nul = failed(await ex.call_tool("post_message", {"thread_id": tid, "body": "a\x00b"}))
                huge = failed(await ex.call_tool("read_messages", {"thread_id": tid, "after_seq": 2**70}))
                extra = failed(await ex.call_tool("post_message", {"thread_id": tid, "body": "hi", "urgent": True}))
                as_text = failed(await ex.call_tool("ack_read", {"thread_id": tid, "seq": "5"}))
                with pytest.raises(MCPError) as unknown:
                    await ex.call_tool("delete_everything", {})
                return wrong_type, missing, bad_kind, nul, huge, extra, as_text, unknown.value

        wrong_type, missing, bad_kind, nul, huge, extra, as_text, unknown = asyncio.run(scenario())
        log = bridge.log()
    # an unknown tool is the spec's JSON-RPC error -32602, our code and request id in its data
    assert unknown.error.code == -32602 and "delete_everything" in unknown.error.message
    assert unknown.error.data["code"] == "unknown_tool" and unknown.error.data["request_id"] in log
    # what PostgreSQL cannot store is refused like REST refuses it, not a crash
    assert nul["error"]["details"]["fields"] == {"body": "Must not be blank or hold NUL characters."}
    # the published schema is what the server checks: no unknown arguments, no "5" for an integer
    assert extra["error"]["details"]["fields"] == {"urgent": "No such argument for this tool."}
    assert as_text["error"]["details"]["fields"] == {"seq": "Must be of type integer."}
    assert set(huge["error"]["details"]["fields"]) == {"after_seq"}
    for body in (wrong_type, missing, bad_kind, nul, huge):
        assert body["error"]["code"] == "validation_error" and body["request_id"]
        assert body["request_id"] in log  # the refusal is logged under the id the client got
    assert set(wrong_type["error"]["details"]["fields"]) == {"in_reply_to"}
    assert "the first one" not in json.dumps(wrong_type)  # the rejected value is not echoed
    assert set(missing["error"]["details"]["fields"]) == {"body"}
    assert set(bad_kind["error"]["details"]["fields"]) == {"kind"}
    assert not Message.objects.filter(thread=thread).exists()  # nothing was posted


def test_expired_missing_and_bad_tokens_get_http_401(tmp_path, coordinator):
    expired = token_for(coordinator, ttl_seconds=60, now=timezone.now() - timedelta(hours=1))
    with bridge_server(tmp_path) as bridge:
        url = f"{bridge.base_url}/v1/mcp"
        initialize = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}
        answers = {
            name: httpx.post(url, json=initialize, headers={"Accept": "application/json, text/event-stream", **h})
            for name, h in {
                "token_expired": {"Authorization": f"Bearer {expired}"},
                "missing_token": {},
                "invalid_signature": {"Authorization": f"Bearer {expired[:-4]}AAAA"},
            }.items()
        }

        async def connect_expired():
            async with session_for(bridge.base_url, expired) as session:
                await session.list_tools()

        with pytest.raises(BaseException) as raised:
            asyncio.run(connect_expired())
    for code, answer in answers.items():
        assert answer.status_code == 401, (code, answer.text)
        assert answer.json()["error"]["code"] == code
        challenge = answer.headers["WWW-Authenticate"]
        # a request without a token is not told its token is invalid (RFC 6750 section 3.1)
        assert challenge == 'Bearer realm="orkiva"' if code == "missing_token" else f'error_description="{code}"' in challenge
    assert "401" in repr(raised.value) or "Unauthorized" in repr(raised.value) or isinstance(raised.value, BaseExceptionGroup)


def _waiters(base_url: str) -> float:
    metrics = httpx.get(f"{base_url}/metrics").text
    found = re.search(r"^orkiva_mcp_waiters (\S+)$", metrics, re.M)
    return float(found.group(1)) if found else 0.0


def test_wait_for_messages_is_woken_by_a_rest_post(tmp_path, thread, executioner, reviewer):
    tid = str(thread.pk)
    with bridge_server(tmp_path) as bridge:
        async def scenario():
            async with client_for_mcp(bridge.base_url, token_for(reviewer)) as rev:
                waiting = asyncio.create_task(
                    rev.call_tool("wait_for_messages", {"thread_id": tid, "timeout_seconds": 40}))
                # Post only once the call is really waiting (the bridge's own gauge says so).
                deadline = time.monotonic() + 30
                while await asyncio.to_thread(_waiters, bridge.base_url) < 1:
                    assert time.monotonic() < deadline and not waiting.done(), "the wait never started"
                    await asyncio.sleep(0.05)
                posted = await asyncio.to_thread(
                    rest, bridge.base_url, executioner, "POST", f"/threads/{tid}/messages", json={"body": "Ready."})
                return ok(await waiting), posted.json()

        page, posted = asyncio.run(scenario())
        after = _waiters(bridge.base_url)
    assert [m["id"] for m in page["messages"]] == [posted["id"]]
    assert page["messages"][0]["body"] == "Ready." and page["unread_count"] == 1
    assert after == 0


def test_wait_for_messages_times_out_empty_and_is_capped(tmp_path, thread, reviewer, executioner):
    tid = str(thread.pk)
    env = subprocess_env(ORKIVA_MCP_WAIT_MAX_SECONDS="1")
    with bridge_server(tmp_path, env=env) as bridge:
        async def scenario():
            async with client_for_mcp(bridge.base_url, token_for(reviewer)) as rev:
                # 600 s asked, 1 s allowed: the test's own guard would fail long before 600 s.
                async with asyncio.timeout(30):
                    quiet = ok(await rev.call_tool("wait_for_messages", {"thread_id": tid, "timeout_seconds": 600}))
                own = ok(await rev.call_tool("post_message", {"thread_id": tid, "body": "mine"}))
                # Past my own post: nothing new, so it times out again.
                mine_skipped = ok(await rev.call_tool(
                    "wait_for_messages", {"thread_id": tid, "after_seq": own["seq"], "timeout_seconds": 0.2}))
                # Already there: returned at once, like read_messages.
                present = ok(await rev.call_tool("wait_for_messages", {"thread_id": tid, "after_seq": 0}))
                return quiet, mine_skipped, present

        quiet, mine_skipped, present = asyncio.run(scenario())
    assert quiet["messages"] == [] and quiet["next_after_seq"] == 0
    assert mine_skipped["messages"] == [] and mine_skipped["next_after_seq"] == 1
    assert [m["body"] for m in present["messages"]] == ["mine"]


def test_host_and_origin_protection(tmp_path, coordinator):
    # Django answers bridge.example and other.example; MCP is narrowed to bridge.example.
    env = subprocess_env(ORKIVA_ALLOWED_HOSTS="127.0.0.1,localhost,bridge.example,other.example",
                         ORKIVA_MCP_ALLOWED_HOSTS="127.0.0.1:*,bridge.example,bridge.example:*")
    with bridge_server(tmp_path, env=env) as bridge:
        port = bridge.base_url.rsplit(":", 1)[1]
        listing = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
        headers = {"Authorization": f"Bearer {token_for(coordinator)}", "Accept": "application/json, text/event-stream",
                   "MCP-Protocol-Version": "2025-06-18"}

        def post(**extra):
            return httpx.post(f"{bridge.base_url}/v1/mcp", json=listing, headers={**headers, **extra})

        deployed_host = post(Host=f"bridge.example:{port}")
        not_for_mcp = post(Host=f"other.example:{port}")
        foreign_host = post(Host=f"evil.example:{port}")
        foreign_origin = post(Origin="http://evil.example")
        own_origin = post(Origin=f"http://bridge.example:{port}")
        rest_on_other = httpx.get(f"{bridge.base_url}/healthz", headers={"Host": f"other.example:{port}"})
    assert deployed_host.status_code == 200 and deployed_host.json()["result"]["tools"]
    assert not_for_mcp.status_code == 421 and rest_on_other.status_code == 200
    assert foreign_host.status_code == 400  # Django's ALLOWED_HOSTS, before MCP is reached
    assert foreign_origin.status_code == 403
    assert own_origin.status_code == 200
    # every refusal in the error contract (the SDK's own are plain text), naming its setting
    for answer, code, setting in ((not_for_mcp, "host_not_allowed", "ORKIVA_MCP_ALLOWED_HOSTS"),
                                  (foreign_host, "disallowed_host", "ORKIVA_ALLOWED_HOSTS"),
                                  (foreign_origin, "origin_not_allowed", "ORKIVA_MCP_ALLOWED_ORIGINS")):
        body = answer.json()
        assert body["error"]["code"] == code and setting in body["error"]["message"], body
        assert body["request_id"] == answer.headers["X-Request-ID"]


def test_get_and_delete_are_refused_at_once_and_hold_no_worker(tmp_path, coordinator):
    """A client that opens the optional SSE stream (GET) or ends its session (DELETE) gets 405, not
    a stream that never ends: after ten GETs production's server still answers."""
    headers = {"Authorization": f"Bearer {token_for(coordinator)}", "Accept": "text/event-stream"}
    with bridge_server(tmp_path, server="gunicorn", workers=2) as bridge:
        url = f"{bridge.base_url}/v1/mcp"
        gets = [httpx.get(url, headers=headers, timeout=10) for _ in range(10)]
        delete = httpx.delete(url, headers=headers, timeout=10)
        alive = httpx.get(f"{bridge.base_url}/healthz", timeout=10)
    for response in [*gets, delete]:
        assert response.status_code == 405 and response.headers["Allow"] == "POST"
        body = response.json()
        assert body["error"]["code"] == "method_not_allowed" and body["request_id"]
    assert alive.status_code == 200


def _modern(method: str, params: dict | None = None) -> tuple[dict, dict]:
    """A 2026-07-28 request: the per-request envelope in _meta and the routing headers."""
    meta = {"io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {}}
    body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": {**(params or {}), "_meta": meta}}
    return body, {"MCP-Protocol-Version": "2026-07-28", "Mcp-Method": method}


def test_the_handshake_and_discovery_advertise_only_tools_and_subscriptions_are_refused_at_once(
    tmp_path, coordinator
):
    """initialize (2025) and server/discover (2026) advertise the tools and nothing the bridge does
    not serve (no listChanged, no subscribe, no prompts or resources); subscriptions/listen, which
    would hold its request open as an event stream, is answered at once with 'method not found',
    however many come, and the server keeps answering."""
    auth = {"Authorization": f"Bearer {token_for(coordinator)}", "Accept": "application/json, text/event-stream"}
    with bridge_server(tmp_path, server="gunicorn", workers=1, env=subprocess_env(ORKIVA_THREADS="1")) as bridge:
        url = f"{bridge.base_url}/v1/mcp"
        initialize = httpx.post(url, headers={**auth, "MCP-Protocol-Version": "2025-11-25"}, timeout=10, json={
            "jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
                "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}})
        body, headers = _modern("server/discover")
        discover = httpx.post(url, headers={**auth, **headers}, json=body, timeout=10)
        body, headers = _modern("subscriptions/listen", {"notifications": {"toolsListChanged": True}})
        listens = [httpx.post(url, headers={**auth, **headers}, json=body, timeout=10) for _ in range(5)]
        prompts = httpx.post(url, headers={**auth, "MCP-Protocol-Version": "2025-11-25"}, timeout=10,
                             json={"jsonrpc": "2.0", "id": 2, "method": "prompts/list"})
        body, headers = _modern("tools/list")
        tools = httpx.post(url, headers={**auth, **headers}, json=body, timeout=10)
        alive = httpx.get(f"{bridge.base_url}/healthz", timeout=10)
    served = {"tools": {"listChanged": False}}
    assert initialize.status_code == 200 and initialize.json()["result"]["capabilities"] == served
    assert discover.status_code == 200, discover.text
    assert discover.json()["result"]["capabilities"] == served
    for listen in listens:
        assert listen.status_code == 404 and listen.json()["error"]["code"] == -32601, listen.text
    assert prompts.json()["error"]["code"] == -32601
    assert {t["name"] for t in tools.json()["result"]["tools"]} == TOOLS
    assert alive.status_code == 200


def test_waits_hold_no_thread_and_a_configured_cap_is_honoured(tmp_path, thread, executioner, reviewer, coordinator):
    """Production's server with one worker whose pool has a single thread: two waits hold neither
    it nor a connection (a read and a post still get through at once); ORKIVA_MCP_MAX_WAITERS=2
    refuses a third wait with too_many_waiters, and the post wakes the two."""
    tid = str(thread.pk)
    env = subprocess_env(ORKIVA_THREADS="1", ORKIVA_MCP_MAX_WAITERS="2")
    with bridge_server(tmp_path, server="gunicorn", workers=1, env=env) as bridge:
        async def scenario():
            async with client_for_mcp(bridge.base_url, token_for(reviewer)) as rev, \
                    client_for_mcp(bridge.base_url, token_for(coordinator)) as coord:
                first = asyncio.create_task(rev.call_tool("wait_for_messages", {"thread_id": tid, "timeout_seconds": 40}))
                second = asyncio.create_task(
                    coord.call_tool("wait_for_messages", {"thread_id": tid, "timeout_seconds": 40}))
                deadline = time.monotonic() + 30
                while await asyncio.to_thread(_waiters, bridge.base_url) < 2:
                    assert time.monotonic() < deadline, "the waits never started"
                    await asyncio.sleep(0.05)
                async with client_for_mcp(bridge.base_url, token_for(executioner)) as ex:
                    read = ok(await ex.call_tool("read_messages", {"thread_id": tid}))
                    refused = failed(await ex.call_tool("wait_for_messages", {"thread_id": tid, "timeout_seconds": 40}))
                posted = await asyncio.to_thread(
                    rest, bridge.base_url, executioner, "POST", f"/threads/{tid}/messages", json={"body": "Ready."})
                return read, refused, posted, ok(await first), ok(await second)

        read, refused, posted, first, second = asyncio.run(scenario())
    assert read["messages"] == []
    assert refused["error"]["code"] == "too_many_waiters" and refused["error"]["details"]["max_waiters"] == 2
    assert posted.status_code == 201
    assert [m["body"] for m in first["messages"]] == [m["body"] for m in second["messages"]] == ["Ready."]


def test_the_sdks_own_refusals_answer_in_the_error_contract(coordinator):
    """A body that is not JSON-typed is refused by the SDK in plain text; the bridge answers it in
    the error contract (the SDK's reason kept in details), with the request id."""
    from rest_framework.test import APIClient

    response = APIClient().post(
        "/v1/mcp", data='{"jsonrpc": "2.0", "id": 1, "method": "tools/list"}', content_type="text/plain",
        HTTP_AUTHORIZATION=f"Bearer {token_for(coordinator)}", HTTP_ACCEPT="application/json, text/event-stream",
        HTTP_MCP_PROTOCOL_VERSION="2025-06-18")
    assert response.status_code == 400 and response["Content-Type"].startswith("application/json")
    body = response.json()
    assert body["error"]["code"] == "bad_request" and "Content-Type" in body["error"]["details"]["reason"]
    assert body["request_id"] == response["X-Request-ID"]


ENVELOPES = {
    # name: (body, extra headers, HTTP status, JSON-RPC code, data.code, a phrase of the message, id answered)
    "not JSON": ('{"jsonrpc": ', {}, 400, -32700, "parse_error", "not valid JSON", None),
    "nested past the parser": ("[" * 5000, {}, 400, -32700, "parse_error", "nested too deeply", None),
    "a batch": ('[{"jsonrpc": "2.0", "id": 1, "method": "tools/list"}]', {}, 400, -32600, "batch_not_supported",
                "Batch requests are not supported", None),
    "not an object": ('"tools/list"', {}, 400, -32600, "invalid_request", "must be a JSON object", None),
    "no jsonrpc": ('{"id": 3, "method": "tools/list"}', {}, 400, -32600, "invalid_request", '"jsonrpc" must be', 3),
    "a null id": ('{"jsonrpc": "2.0", "id": null, "method": "tools/list"}', {}, 400, -32600, "invalid_request",
                  '"id" must be a string or an integer', None),
    "a boolean id": ('{"jsonrpc": "2.0", "id": true, "method": "tools/list"}', {}, 400, -32600, "invalid_request",
                     '"id" must be a string or an integer', None),
    "params not an object": ('{"jsonrpc": "2.0", "id": 4, "method": "tools/list", "params": [1]}', {}, 400, -32600,
                             "invalid_request", '"params" must be an object', 4),
    "no method": ('{"jsonrpc": "2.0", "id": 5}', {}, 400, -32600, "invalid_request", 'needs a "method"', 5),
    "an unknown protocol version": ('{"jsonrpc": "2.0", "id": 6, "method": "tools/list"}',
                                    {"MCP-Protocol-Version": "1999-01-01"}, 400, -32600,
                                    "unsupported_protocol_version", "this server speaks 2024-11-05", 6),
    "an Accept without JSON": ('{"jsonrpc": "2.0", "id": 8, "method": "tools/list"}', {"Accept": "text/html"}, 406,
                               -32600, "not_acceptable", "Client must accept application/json", None),
    "tools/call without a name": ('{"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"arguments": {}}}',
                                  {}, 200, -32602, "invalid_params", "params.name: Field required", 7),
}


def test_malformed_envelopes_get_short_jsonrpc_errors_with_the_specs_codes(tmp_path, coordinator):
    """What is not one well-formed JSON-RPC request is answered with the spec's code and a short
    message saying what was wrong (the SDK sent -32602 with a kilobyte of pydantic text, and took a
    null or boolean id for a notification: 202, no answer); data names our code and the request id."""
    headers = {"Authorization": f"Bearer {token_for(coordinator)}", "Content-Type": "application/json",
               "Accept": "application/json, text/event-stream", "MCP-Protocol-Version": "2025-11-25"}
    with bridge_server(tmp_path, server="gunicorn", workers=1) as bridge:
        answers = {name: httpx.post(f"{bridge.base_url}/v1/mcp", content=body, headers={**headers, **extra}, timeout=10)
                   for name, (body, extra, *_) in ENVELOPES.items()}
        log = bridge.log()
    for name, (_, _, status, code, data_code, phrase, answered_id) in ENVELOPES.items():
        answer = answers[name]
        assert answer.status_code == status, (name, answer.status_code, answer.text)
        body = answer.json()
        assert body["jsonrpc"] == "2.0" and body["id"] == answered_id, (name, body)
        assert body["error"]["code"] == code and phrase in body["error"]["message"], (name, body)
        assert len(body["error"]["message"]) < 200, (name, body)
        assert body["error"]["data"] == {"code": data_code, "request_id": answer.headers["X-Request-ID"]}, (name, body)
        assert answer.headers["X-Request-ID"] in log
