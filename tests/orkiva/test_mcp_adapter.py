"""The MCP adapter in-process: output schemas equal to the REST serializers' fields, a bug is a
protocol error (never a friendly result), and the Host patterns derived from ALLOWED_HOSTS."""
from __future__ import annotations

import asyncio

import pytest
from mcp.shared.exceptions import MCPError
from mcp_types import INTERNAL_ERROR

from orkiva.mcp.calls import McpCaller, bind_mcp_caller, reset_mcp_caller, run_tool
from orkiva.mcp.server import build_server
from orkiva.settings import _mcp_hosts_from
from tests.factories import ActorFactory

from messaging.api import CursorOut, MessageOut, MessagePageOut
from orkiva.mcp import schemas
from sessions.api import SessionOut
from supervisor.api import WakeOut, WakeStepOut, WakeTraceOut
from threads.api import CountsOut, LastMessageOut, OpenItemOut, SummaryOut, SummaryParticipantOut, ThreadOut

PAIRS = [
    (schemas.ThreadOut, ThreadOut), (schemas.MessageOut, MessageOut), (schemas.MessagePageOut, MessagePageOut),
    (schemas.CursorOut, CursorOut), (schemas.SummaryOut, SummaryOut), (schemas.LastMessageOut, LastMessageOut),
    (schemas.SummaryParticipantOut, SummaryParticipantOut), (schemas.OpenItemOut, OpenItemOut),
    (schemas.CountsOut, CountsOut), (schemas.SessionOut, SessionOut), (schemas.WakeOut, WakeOut),
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
