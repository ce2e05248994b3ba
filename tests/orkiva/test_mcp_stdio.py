"""manage.py orkiva_mcp_stdio driven by the SDK's stdio client as a real subprocess."""
from __future__ import annotations

import asyncio
import sys
from datetime import timedelta

import pytest
from django.utils import timezone
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

from orkiva.mcp.calls import error_text
from policy.models import AuditEvent
from policy.services import token_revoke
from policy.identity import Actor
from tests.conftest import token_for
from tests.live import MANAGE, REPO, run_manage, subprocess_env

pytestmark = pytest.mark.django_db(transaction=True)


def stdio_server(token: str) -> StdioServerParameters:
    return StdioServerParameters(
        command=sys.executable, args=[MANAGE, "orkiva_mcp_stdio"], cwd=str(REPO),
        env=subprocess_env(ORKIVA_TOKEN=token),
    )


def test_stdio_server_serves_the_tools_as_the_token_agent(thread, executioner, reviewer):
    tid = str(thread.pk)

    async def scenario():
        async with stdio_client(stdio_server(token_for(executioner))) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                names = {t.name for t in (await session.list_tools()).tools}
                posted = await session.call_tool("post_message", {"thread_id": tid, "body": "from stdio",
                                                                  "idempotency_key": "k1"})
                replay = await session.call_tool("post_message", {"thread_id": tid, "body": "from stdio",
                                                                  "idempotency_key": "k1"})
                waited = await session.call_tool("wait_for_messages", {"thread_id": tid, "after_seq": 1,
                                                                       "timeout_seconds": 0.2})
                refused = await session.call_tool("update_thread_status", {"thread_id": tid, "status": "closed"})
                # Revoked mid-session: the next call is refused, as over HTTP.
                await asyncio.to_thread(
                    token_revoke, operator=Actor.operator(name="test", workspace_id="ws-main"), reason="test",
                    session_id=executioner.session_id, workspace_id="ws-main")
                after_revoke = await session.call_tool("get_thread", {"thread_id": tid})
                return names, posted, replay, waited, refused, after_revoke

    names, posted, replay, waited, refused, after_revoke = asyncio.run(scenario())
    assert {"post_message", "wait_for_messages", "trigger_participant"} <= names and len(names) == 10
    assert not posted.is_error and posted.structured_content["sender"] == executioner.agent_id
    assert replay.structured_content == {**posted.structured_content, "idempotent_replay": True}
    assert waited.structured_content["messages"] == []
    assert refused.is_error and error_text(refused)["error"]["code"] == "forbidden_transition"
    rid = error_text(refused)["request_id"]
    assert rid and AuditEvent.objects.filter(request_id=rid, action="thread.transition.denied").exists()
    assert after_revoke.is_error and error_text(after_revoke)["error"]["code"] == "token_revoked"


def test_stdio_server_refuses_to_start_with_a_bad_token(coordinator):
    expired = token_for(coordinator, ttl_seconds=60, now=timezone.now() - timedelta(hours=1))
    proc = run_manage("orkiva_mcp_stdio", env=subprocess_env(ORKIVA_TOKEN=expired), input="")
    assert proc.returncode != 0 and "token_expired" in proc.stderr
    assert proc.stdout == ""  # stdout is the protocol channel: nothing else is ever written there
    missing = run_manage("orkiva_mcp_stdio", env={**subprocess_env(), "ORKIVA_TOKEN": ""}, input="")
    assert missing.returncode != 0 and "missing_token" in missing.stderr
