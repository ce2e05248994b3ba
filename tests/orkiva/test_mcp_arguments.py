"""A tool's input schema and the server agree, over generated inputs: every argument set the
published schema allows gets past validation (the call may still meet a domain refusal, never
`validation_error`), and every set it refuses gets `validation_error` naming the argument. The
cost of tools/list in an agent's context is counted with the tokenizer the models use."""
from __future__ import annotations

import json
from typing import Any

import bpe_openai
import pytest
from hypothesis import HealthCheck, given, settings as hypothesis_settings, strategies as st
from hypothesis_jsonschema import from_schema
from jsonschema import Draft202012Validator
from rest_framework.test import APIClient

from orkiva.mcp.arguments import StrictValidator
from tests.conftest import token_for
from tests.factories import ThreadFactory

pytestmark = pytest.mark.django_db

EXAMPLES = hypothesis_settings(max_examples=40, deadline=None, derandomize=True,
                               suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


class Mcp:
    """JSON-RPC to /v1/mcp in this process (the WSGI view: tools run on this thread, in the test's
    transaction), as one caller."""

    def __init__(self, actor) -> None:
        self.client = APIClient()
        self.headers = {"HTTP_AUTHORIZATION": f"Bearer {token_for(actor)}",
                        "HTTP_ACCEPT": "application/json, text/event-stream", "HTTP_MCP_PROTOCOL_VERSION": "2025-06-18",
                        "HTTP_HOST": "127.0.0.1:8000"}

    def rpc(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        body = {"jsonrpc": "2.0", "id": 1, "method": method, **({"params": params} if params is not None else {})}
        response = self.client.post("/v1/mcp", data=json.dumps(body), content_type="application/json", **self.headers)
        assert response.status_code == 200, response.content
        return response.json()

    def tools(self) -> dict[str, dict[str, Any]]:
        return {tool["name"]: tool for tool in self.rpc("tools/list")["result"]["tools"]}

    def call(self, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
        answer = self.rpc("tools/call", {"name": tool, "arguments": arguments})
        assert "error" not in answer, (tool, arguments, answer)  # never a protocol error, never a crash
        return answer["result"]


def _error_code(result: dict[str, Any]) -> tuple[str | None, dict[str, Any]]:
    if not result.get("isError"):
        return None, {}
    body = json.loads(result["content"][0]["text"])
    return body["error"]["code"], body["error"]["details"]


@pytest.fixture
def quiet_policy(settings):
    """Generated calls come fast and repeat themselves: no rate limit, loop block or waiting gets in
    the way of the validation under test."""
    for name in ("ORKIVA_RATE_LIMIT_THREAD_POSTS", "ORKIVA_RATE_LIMIT_WORKSPACE_POSTS", "ORKIVA_LOOP_THRESHOLD_TURNS",
                 "ORKIVA_NO_PROGRESS_BLOCK_TURNS", "ORKIVA_REPEATED_FINDING_LIMIT", "ORKIVA_WAKE_RATE_LIMIT"):
        setattr(settings, name, 10**6)
    settings.ORKIVA_MCP_WAIT_MAX_SECONDS = 0


TOOLS = ["create_thread", "get_thread", "post_message", "read_messages", "wait_for_messages", "ack_read",
         "update_thread_status", "summarize_thread", "heartbeat_session", "trigger_participant"]


def _with_the_thread(schema: dict[str, Any], thread_id: str):
    """Arguments the schema allows, naming a real thread (a random id would stop every call at
    thread_not_found, before the checks that matter)."""
    strategy = from_schema(schema)
    if "thread_id" in schema["properties"]:
        strategy = strategy.map(lambda args: {**args, "thread_id": thread_id})
    return strategy


@pytest.mark.parametrize("tool", TOOLS)
def test_what_the_schema_allows_the_server_accepts(tool, coordinator, quiet_policy):
    mcp = Mcp(coordinator)
    schema = mcp.tools()[tool]["inputSchema"]
    thread = ThreadFactory(coordinator=coordinator, participants=["coordinator", "reviewer"])

    @EXAMPLES
    @given(_with_the_thread(schema, str(thread.pk)))
    def check(arguments):
        assert not list(Draft202012Validator(schema).iter_errors(arguments))  # generated as the schema says
        code, details = _error_code(mcp.call(tool, arguments))
        assert code != "validation_error", (arguments, details)
        assert code not in ("internal_error", "body_too_large", "invalid_idempotency_key"), (arguments, code)

    check()


def _broken(schema: dict[str, Any]):
    """(arguments, the argument that breaks the schema): one property given a value its own schema
    refuses, an argument the tool does not have, or a required one left out."""
    properties, required = schema["properties"], schema.get("required", [])
    valid = from_schema(schema)

    def wrong_value(name):
        return st.tuples(valid, from_schema({"not": properties[name]})).map(
            lambda pair: ({**pair[0], name: pair[1]}, name))

    choices = [wrong_value(name) for name in properties]
    choices.append(st.tuples(valid, st.from_regex(r"\A[a-z]{1,12}\Z")).filter(lambda p: p[1] not in properties)
                   .map(lambda pair: ({**pair[0], pair[1]: 1}, pair[1])))
    choices += [valid.map(lambda args, name=name: ({k: v for k, v in args.items() if k != name}, name))
                for name in required]
    return st.one_of(choices)


@pytest.mark.parametrize("tool", TOOLS)
def test_what_the_schema_refuses_the_server_refuses_as_validation_error(tool, coordinator, quiet_policy):
    mcp = Mcp(coordinator)
    schema = mcp.tools()[tool]["inputSchema"]
    validator = StrictValidator(schema)

    @EXAMPLES
    @given(_broken(schema))
    def check(case):
        arguments, culprit = case
        assert list(validator.iter_errors(arguments))  # the schema refuses it...
        code, details = _error_code(mcp.call(tool, arguments))
        assert code == "validation_error", (arguments, code)  # ...and so does the server, saying where
        assert culprit in details["fields"] or any(f.startswith(f"{culprit}.") for f in details["fields"]), details

    check()


def test_tools_list_costs_an_agent_under_4000_tokens(coordinator):
    """o200k_base (the GPT-4o and GPT-5 family's encoding, bundled by bpe-openai: no download) over
    the tools/list result exactly as the bridge sends it."""
    client = Mcp(coordinator)
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    response = client.client.post("/v1/mcp", data=json.dumps(body), content_type="application/json", **client.headers)
    encoding = bpe_openai.get_encoding("o200k_base")
    tokens = len(encoding.encode(response.content.decode()))
    assert len(response.json()["result"]["tools"]) == 10
    assert tokens < 4000, f"tools/list costs {tokens} tokens"
