"""No input a client can send produces a 500, and every error has one shape.

Table-driven over every /v1 operation in the generated OpenAPI document (so endpoints added
later are covered without editing this file): malformed and non-object JSON, wrong types,
NUL bytes and lone surrogates in every request field, huge and negative numbers, garbage and
unknown ids in the path, wrong methods, wrong content types, oversized requests and message
bodies. Each answer must be < 500 and, when an error, exactly
`{"error": {"code", "message", "details"}, "request_id"}` with `request_id` equal to the
X-Request-ID response header.

CI runs this module on PostgreSQL and on SQLite (they refuse different things: NUL bytes,
integer ranges); run it on both when you change input handling.
"""
from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from django.conf import settings
from drf_spectacular.generators import SchemaGenerator
from rest_framework.test import APIClient

from messaging.services import message_post
from policy.identity import Actor
from sessions.services import session_heartbeat
from tests.conftest import token_for
from tests.factories import ThreadFactory

pytestmark = pytest.mark.django_db

COORDINATOR = Actor(agent_id="coordinator", workspace_id="ws-main", role="coordinator", session_id="s-c")
EXECUTIONER = Actor(agent_id="executioner", workspace_id="ws-main", role="participant", session_id="s-e")

# Requests that succeed, so one field at a time can be broken on top of a valid payload.
VALID_BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("post", "/v1/threads"): {"title": "t", "type": "review", "participants": ["executioner"]},
    ("post", "/v1/threads/{thread_id}/messages"): {"body": "hello", "kind": "finding", "in_reply_to": 1,
                                                   "idempotency_key": "k"},
    ("post", "/v1/threads/{thread_id}/ack"): {"seq": 1},
    ("post", "/v1/threads/{thread_id}/status"): {"status": "active", "reason": "go"},
    ("post", "/v1/threads/{thread_id}/participants"): {"add": ["newbie"], "remove": [], "reason": "r"},
    ("post", "/v1/threads/{thread_id}/wake"): {"agent_id": "executioner", "reason": "r"},
    ("post", "/v1/sessions/heartbeat"): {"session_id": "s1", "runtime_type": "codex", "resumable": True},
}

BAD_VALUES: list[Any] = [
    None, True, False, 0, -1, 1.5, 2**70, -(2**70), 2**63, "", "x", "\x00", "a\x00b", "\ud800", "\udfff x",
    "x" * 5000, [], ["\ud800"], ["\x00"], [1, 2], [None], {}, {"a": 1}, "0", "-1", str(2**70),
    "1e400", float("1e308"),
]
# Raw query strings, as a server hands them over (percent-encoded): NUL, an encoded lone surrogate,
# invalid UTF-8, huge and negative numbers.
BAD_QUERY_VALUES = ["", "x", "-1", "0", str(2**70), str(2**63), "1.5", "%00", "a%00b", "%ED%A0%80", "%FF%FE",
                    "null", "[]", "%5B%5D", "1e400", "x" * 2000]
BAD_IDS = ["garbage", str(uuid.uuid4()), "00000000-0000-0000-0000-000000000000", "%00", "%ED%A0%80", "x" * 300,
           "..", "%2e%2e", "'; DROP TABLE x; --", "123"]


def _schema() -> dict:
    return SchemaGenerator().get_schema(request=None, public=True)


def _resolve(schema: dict, node: dict) -> dict:
    while "$ref" in node:
        node = schema["components"]["schemas"][node["$ref"].rsplit("/", 1)[-1]]
    return node


def _operations() -> list[dict]:
    schema = _schema()
    operations = []
    for path, methods in schema["paths"].items():
        if not path.startswith("/v1/"):
            continue
        for method, op in methods.items():
            body = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
            fields = list(_resolve(schema, body).get("properties", {})) if body else []
            operations.append(
                {
                    "method": method,
                    "path": path,
                    "fields": fields,
                    "query": [p["name"] for p in op.get("parameters", []) if p["in"] == "query"],
                    "path_params": [p["name"] for p in op.get("parameters", []) if p["in"] == "path"],
                }
            )
    operations.append({"method": "get", "path": "/v1/schema", "fields": [], "query": [], "path_params": []})
    return operations


OPERATIONS = _operations()
OP_IDS = [f"{o['method'].upper()} {o['path']}" for o in OPERATIONS]
POSTS = [o for o in OPERATIONS if o["method"] in ("post", "put", "patch")]
POST_IDS = [f"{o['method'].upper()} {o['path']}" for o in POSTS]


@pytest.fixture
def world():
    thread = ThreadFactory(coordinator=COORDINATOR, participants=["executioner", "reviewer"])
    message_post(actor=EXECUTIONER, thread_id=str(thread.pk), body="first")
    session_heartbeat(actor=EXECUTIONER, session_id="s0", runtime_type="codex", resumable=True)
    return {"thread_id": str(thread.pk), "agent_id": "executioner", "wake_id": str(uuid.uuid4())}


def client(actor: Actor = COORDINATOR) -> APIClient:
    c = APIClient()
    c.credentials(HTTP_AUTHORIZATION=f"Bearer {token_for(actor)}")
    return c


def fill(path: str, world: dict, override: str | None = None) -> str:
    for name in ("thread_id", "agent_id", "wake_id"):
        path = path.replace("{" + name + "}", override if override is not None else world[name])
    return path


def check(response, label: str, failures: list[str]) -> None:
    """The contract for every answer: < 500; an error is the one JSON shape with a matching request id."""
    if response.status_code >= 500:
        failures.append(f"{label}: {response.status_code}")
        return
    if response.status_code < 400:
        return
    try:
        body = response.json()
    except ValueError:
        failures.append(f"{label}: {response.status_code} not JSON: {response.content[:200]!r}")
        return
    ok = (
        isinstance(body, dict)
        and set(body) == {"error", "request_id"}
        and isinstance(body["error"], dict)
        and set(body["error"]) == {"code", "message", "details"}
        and isinstance(body["error"]["code"], str)
        and isinstance(body["error"]["message"], str)
        and isinstance(body["error"]["details"], dict)
        and body["request_id"]
        and body["request_id"] == response.get("X-Request-ID")
    )
    if not ok:
        failures.append(f"{label}: {response.status_code} bad error shape {body!r}"[:400])


def send_raw(c: APIClient, method: str, path: str, data: bytes | str, content_type: str = "application/json"):
    return c.generic(method.upper(), path, data, content_type=content_type)


def json_bytes(payload: Any) -> bytes:
    # ensure_ascii keeps lone surrogates as \ud800 escapes: valid JSON text a client can send.
    return json.dumps(payload, ensure_ascii=True, allow_nan=True).encode()


@pytest.mark.parametrize("op", POSTS, ids=POST_IDS)
def test_malformed_and_non_object_json(world, op):
    failures: list[str] = []
    c = client()
    path = fill(op["path"], world)
    for raw in ['{"body": ', "{", "}", "nul", "[1,", "\x00", '{"a": NaN}', '{"a": 1}{"b": 2}', "\xff\xfe",
                "[]", '"text"', "42", "null", "true", "[{}]", "1e999", '{"body": "\\ud800"}', ""]:
        check(send_raw(c, op["method"], path, raw.encode("utf-8", "surrogatepass") if raw != "\xff\xfe" else b"\xff\xfe"),
              f"raw {raw!r}", failures)
    assert not failures, failures


@pytest.mark.parametrize("op", POSTS, ids=POST_IDS)
def test_every_field_with_every_bad_value(world, op):
    failures: list[str] = []
    c = client()
    path = fill(op["path"], world)
    base = VALID_BODIES.get((op["method"], op["path"]), {})
    for field in op["fields"]:
        for value in BAD_VALUES:
            payload = {**base, field: value}
            check(send_raw(c, op["method"], path, json_bytes(payload)), f"{field}={value!r}"[:120], failures)
    assert not failures, failures


@pytest.mark.parametrize("op", POSTS, ids=POST_IDS)
def test_unknown_fields_and_empty_object(world, op):
    failures: list[str] = []
    c = client()
    path = fill(op["path"], world)
    base = VALID_BODIES.get((op["method"], op["path"]), {})
    for payload in ({}, {**base, "unexpected": {"deep": ["\ud800"]}}, {**base, "\ud800": 1}, {"\x00": "\x00"}):
        check(send_raw(c, op["method"], path, json_bytes(payload)), f"payload {payload!r}"[:120], failures)
    assert not failures, failures


@pytest.mark.parametrize("op", [o for o in OPERATIONS if o["query"]], ids=[i for o, i in zip(OPERATIONS, OP_IDS) if o["query"]])
def test_every_query_parameter_with_bad_values(world, op):
    failures: list[str] = []
    c = client()
    path = fill(op["path"], world)
    for name in op["query"]:
        for value in BAD_QUERY_VALUES:
            check(c.generic(op["method"].upper(), path, QUERY_STRING=f"{name}={value}"), f"{name}={value!r}", failures)
            check(c.generic(op["method"].upper(), path, QUERY_STRING=f"{name}={value}&{name}=1"), f"{name} twice", failures)
    assert not failures, failures


@pytest.mark.parametrize("op", [o for o in OPERATIONS if o["path_params"]],
                         ids=[i for o, i in zip(OPERATIONS, OP_IDS) if o["path_params"]])
def test_garbage_and_unknown_ids_in_the_path(world, op):
    failures: list[str] = []
    c = client()
    base = VALID_BODIES.get((op["method"], op["path"]), {})
    for bad in BAD_IDS:
        path = fill(op["path"], world, override=bad)
        response = send_raw(c, op["method"], path, json_bytes(base)) if op["method"] != "get" else c.get(path)
        check(response, f"id {bad!r}", failures)
        if response.status_code not in (400, 404):
            failures.append(f"id {bad!r}: expected 400/404, got {response.status_code}")
    assert not failures, failures


@pytest.mark.parametrize("op", OPERATIONS, ids=OP_IDS)
def test_wrong_methods(world, op):
    failures: list[str] = []
    c = client()
    path = fill(op["path"], world)
    allowed = {o["method"] for o in OPERATIONS if o["path"] == op["path"]}
    for method in ("get", "post", "put", "patch", "delete"):
        if method in allowed:
            continue
        response = send_raw(c, method, path, b"{}")
        check(response, method, failures)
        if response.status_code != 405 or response.json()["error"]["code"] != "method_not_allowed":
            failures.append(f"{method}: expected 405 method_not_allowed, got {response.status_code}")
    assert not failures, failures


@pytest.mark.parametrize("op", POSTS, ids=POST_IDS)
def test_wrong_content_types(world, op):
    failures: list[str] = []
    c = client()
    path = fill(op["path"], world)
    base = json_bytes(VALID_BODIES.get((op["method"], op["path"]), {}))
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=xx",
                         "application/xml", "application/json; charset=latin-1", "", "\x00"):
        response = send_raw(c, op["method"], path, base, content_type=content_type)
        check(response, f"content-type {content_type!r}", failures)
        if op["fields"] and content_type in ("text/plain", "application/x-www-form-urlencoded", "application/xml"):
            if (response.status_code, response.json()["error"]["code"]) != (415, "unsupported_media_type"):
                failures.append(f"content-type {content_type!r}: expected 415, got {response.status_code}")
    assert not failures, failures


@pytest.mark.parametrize("op", POSTS, ids=POST_IDS)
def test_request_over_the_size_limit_is_413(world, op):
    c = client()
    path = fill(op["path"], world)
    oversized = json_bytes({"body": "z" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1)})
    failures: list[str] = []
    response = send_raw(c, op["method"], path, oversized)
    check(response, "oversized", failures)
    assert not failures, failures
    if op["fields"]:  # an endpoint that takes no body (auth/refresh) never reads it
        assert response.status_code == 413, (response.status_code, response.content[:300])
        assert response.json()["error"]["code"] == "request_too_large"


def test_message_body_over_the_limit_is_413_body_too_large(world, settings):
    settings.ORKIVA_MAX_MESSAGE_BODY_CHARS = 1000
    c = client()
    response = send_raw(c, "post", f"/v1/threads/{world['thread_id']}/messages", json_bytes({"body": "b" * 1001}))
    failures: list[str] = []
    check(response, "long body", failures)
    assert not failures
    assert response.status_code == 413 and response.json()["error"]["code"] == "body_too_large"


@pytest.mark.parametrize("op", OPERATIONS, ids=OP_IDS)
def test_without_a_token(world, op):
    failures: list[str] = []
    response = send_raw(APIClient(), op["method"], fill(op["path"], world), b"{}")
    check(response, "no token", failures)
    assert not failures, failures
    if op["path"] != "/v1/schema":
        assert response.status_code == 401 and response.json()["error"]["code"] == "missing_token"


def test_unknown_v1_path_is_a_json_404(world):
    for path in ("/v1/nope", "/v1/threads/x/y/z", "/nope"):
        response = client().get(path)
        failures: list[str] = []
        check(response, path, failures)
        assert not failures and response.status_code == 404


def test_upstream_request_ids_are_echoed_when_well_formed(world):
    c = client()
    response = c.get("/v1/threads/garbage", HTTP_X_REQUEST_ID="abc-123")
    assert response["X-Request-ID"] == "abc-123" == response.json()["request_id"]
    response = c.get("/v1/threads/garbage", HTTP_X_REQUEST_ID="bad id\nwith newline")
    assert response["X-Request-ID"] != "bad id\nwith newline"
    assert response["X-Request-ID"] == response.json()["request_id"]


def test_huge_numbers_name_the_field(world):
    c = client()
    thread = world["thread_id"]
    cases = [
        ("post", f"/v1/threads/{thread}/ack", {"seq": 2**70}, "seq"),
        ("post", f"/v1/threads/{thread}/messages", {"body": "x", "in_reply_to": 2**70}, "in_reply_to"),
        ("post", f"/v1/threads/{thread}/ack", {"seq": -1}, "seq"),
    ]
    for method, path, payload, field in cases:
        response = send_raw(c, method, path, json_bytes(payload))
        assert response.status_code == 400, (payload, response.content)
        assert field in response.json()["error"]["details"]["fields"]
    for query, field in ((f"after_seq={2**70}", "after_seq"), (f"limit={2**70}", "limit"), ("limit=-1", "limit")):
        response = c.get(f"/v1/threads/{thread}/messages?{query}")
        assert response.status_code == 400 and field in response.json()["error"]["details"]["fields"]


def test_a_refused_host_is_a_json_400_naming_the_setting(world):
    """Django's Host check answers in the error contract, and says which setting decides."""
    response = client().get("/v1/threads", HTTP_HOST="evil.example")
    failures: list[str] = []
    check(response, "/v1/threads", failures)
    assert not failures and response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "disallowed_host" and "ORKIVA_ALLOWED_HOSTS" in error["message"]


@pytest.mark.parametrize("path", ["/v1/threads", "/v1/threads/{thread_id}/messages", "/v1/sessions/heartbeat",
                                  "/v1/runtimes/events"])
def test_json_nested_past_the_parser_is_malformed_json_not_a_500(world, path):
    """A few kB of `[[[[...` exhausted the JSON parser's recursion: DRF caught only ValueError."""
    response = send_raw(client(), "post", fill(path, world), b"[" * 5000)
    assert response.status_code == 400 and response.json()["error"]["code"] == "malformed_json", response.content
