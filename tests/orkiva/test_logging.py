"""Structured logs: the request line of a real bridge process (JSON), error lines with the
operation and caller, 5xx lines, commands, and the console/JSON switch."""
from __future__ import annotations

import json
import logging
import uuid

import httpx
import pytest
from django.test import Client
from django.urls import path
from rest_framework.response import Response
from rest_framework.views import APIView

from orkiva.context import (
    begin_call,
    bind_caller,
    bind_operation,
    bind_request_id,
    current_request_id,
    end_call,
    log_context,
    reset_request_id,
)
from orkiva.logging import formatter, logging_config
from tests.conftest import token_for
from tests.factories import ActorFactory
from tests.live import bridge_server, run_manage, subprocess_env
from tests.orkiva.logcapture import captured_json_logs, json_lines, wait_for_lines


def _auth(actor, request_id: str | None = None) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {token_for(actor)}"}
    if request_id:
        headers["X-Request-ID"] = request_id
    return headers


@pytest.mark.django_db(transaction=True)
def test_a_real_request_logs_one_json_line_with_its_id_operation_and_caller(tmp_path, thread, executioner):
    with bridge_server(tmp_path, env=subprocess_env(ORKIVA_LOG_FORMAT="json")) as bridge:
        request_id = f"obs-{uuid.uuid4().hex[:12]}"
        posted = httpx.post(
            f"{bridge.base_url}/v1/threads/{thread.pk}/messages",
            json={"body": "ready for review"},
            headers=_auth(executioner, request_id),
        )
        assert posted.status_code == 201, bridge.log()
        assert posted.headers["X-Request-ID"] == request_id

        lines = wait_for_lines(bridge.log_path, lambda r: r.get("request_id") == request_id and r["event"] == "request")
    assert len(lines) == 1, bridge.log()
    line = lines[0]
    assert line["method"] == "POST"
    assert line["path"] == f"/v1/threads/{thread.pk}/messages"
    assert line["status"] == 201
    assert isinstance(line["duration_ms"], (int, float)) and line["duration_ms"] >= 0
    assert line["operation"] == "messages_post"
    assert (line["agent_id"], line["workspace_id"], line["role"]) == ("executioner", "ws-main", "participant")
    assert line["level"] == "info" and line["logger"] == "orkiva.request"
    assert {"timestamp", "pid"} <= set(line)


@pytest.mark.django_db(transaction=True)
def test_error_requests_log_the_error_code_operation_and_caller(tmp_path, thread, outsider):
    with bridge_server(tmp_path, env=subprocess_env(ORKIVA_LOG_FORMAT="json")) as bridge:
        # A domain error (another workspace's thread is not found), with an upstream request id.
        request_id = f"obs-{uuid.uuid4().hex[:12]}"
        missing = httpx.get(f"{bridge.base_url}/v1/threads/{thread.pk}", headers=_auth(outsider, request_id))
        assert missing.status_code == 404
        assert missing.json()["request_id"] == request_id
        # An unauthenticated call whose X-Request-ID is not acceptable: a fresh id is made and echoed.
        anonymous = httpx.get(f"{bridge.base_url}/v1/threads", headers={"X-Request-ID": "no spaces allowed"})
        assert anonymous.status_code == 401
        generated = anonymous.headers["X-Request-ID"]
        assert generated != "no spaces allowed" and anonymous.json()["request_id"] == generated

        mine = wait_for_lines(bridge.log_path, lambda r: r.get("request_id") == request_id, count=2)
        theirs = wait_for_lines(bridge.log_path, lambda r: r.get("request_id") == generated, count=2)

    by_event = {row["event"]: row for row in mine}
    for event in ("request", "domain_error"):
        row = by_event[event]
        assert row["operation"] == "threads_get"
        assert (row["agent_id"], row["workspace_id"], row["role"]) == ("coordinator", "ws-other", "coordinator")
        assert row["error_code"] == missing.json()["error"]["code"] == "thread_not_found"
    assert by_event["request"]["status"] == 404 and by_event["request"]["level"] == "warning"
    assert by_event["domain_error"]["status"] == 404

    by_event = {row["event"]: row for row in theirs}
    assert by_event["request"]["status"] == 401
    assert by_event["request"]["error_code"] == by_event["domain_error"]["error_code"] == "missing_token"
    assert by_event["request"]["operation"] == "threads_list"
    assert "agent_id" not in by_event["request"]  # nobody was authenticated


# --- a 5xx, in process ----------------------------------------------------------------------------
class Exploding(APIView):
    def get(self, request):
        raise RuntimeError("boom in the view")


class Fine(APIView):
    def get(self, request):
        bind_operation("custom_operation")  # what the MCP adapter does for a tool
        return Response({"ok": True})


urlpatterns = [path("explode", Exploding.as_view(), name="explode"), path("fine", Fine.as_view(), name="fine")]
handler500 = "orkiva.errors.json_handler500"


@pytest.mark.urls("tests.orkiva.test_logging")
def test_an_unhandled_exception_is_logged_with_request_id_operation_caller_and_traceback(db, executioner):
    client = Client(raise_request_exception=False)
    with captured_json_logs() as lines:
        response = client.get("/explode", headers=_auth(executioner, "boom-1"))
    assert response.status_code == 500
    assert response.json()["request_id"] == "boom-1"
    rows = [r for r in lines() if r.get("request_id") == "boom-1"]
    crash = next(r for r in rows if r["logger"] == "django.request")
    assert crash["level"] == "error" and "RuntimeError: boom in the view" in crash["exception"]
    request = next(r for r in rows if r["event"] == "request")
    assert request["status"] == 500 and request["level"] == "error"
    for row in (crash, request):
        assert row["operation"] == "explode"  # no OpenAPI operation id here: the URL name
        assert (row["agent_id"], row["workspace_id"], row["role"]) == ("executioner", "ws-main", "participant")


@pytest.mark.urls("tests.orkiva.test_logging")
def test_an_operation_named_inside_the_view_wins(db, executioner):
    with captured_json_logs() as lines:
        assert Client().get("/fine", headers=_auth(executioner)).status_code == 200
    (request,) = [r for r in lines() if r["event"] == "request"]
    assert request["operation"] == "custom_operation"


def test_context_outside_requests_is_reset_after_each_request(db, executioner):
    """The request's id and caller do not leak into whatever runs next on the thread."""
    client = Client()
    client.get("/healthz", headers={"X-Request-ID": "probe-1"})
    assert current_request_id() is None
    assert "request_id" not in log_context()


# --- commands ----------------------------------------------------------------------------------
@pytest.mark.django_db(transaction=True)
def test_a_commands_error_log_carries_its_request_id_operation_and_operator():
    proc = run_manage(
        "orkiva_revoke_token", "--session-id", "s-1", "--reason", "test", "--operator", "alice", "--json",
        env=subprocess_env(ORKIVA_LOG_FORMAT="json"),
    )
    body = json.loads(proc.stdout)
    assert proc.returncode != 0 and body["request_id"]
    (line,) = [r for r in json_lines(proc.stderr) if r["event"] == "domain_error"]
    assert line["request_id"] == body["request_id"]
    assert line["error_code"] == body["error"]["code"]
    assert line["operation"] == "orkiva_revoke_token"
    assert (line["agent_id"], line["role"]) == ("operator:alice", "operator")


# --- formats -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("env", "is_json"),
    [
        ({"ORKIVA_ENV": "development"}, False),
        ({"ORKIVA_ENV": "production", "ORKIVA_SIGNING_KEY": "k" * 40}, True),
        ({"ORKIVA_ENV": "development", "ORKIVA_LOG_FORMAT": "json"}, True),
        ({"ORKIVA_ENV": "production", "ORKIVA_SIGNING_KEY": "k" * 40, "ORKIVA_LOG_FORMAT": "console"}, False),
    ],
)
def test_readable_lines_in_development_json_in_production(env, is_json):
    environment = subprocess_env(**env)
    if "ORKIVA_LOG_FORMAT" not in env:
        environment.pop("ORKIVA_LOG_FORMAT", None)
    proc = run_manage(
        "shell", "-c", "import logging; logging.getLogger('orkiva.probe').warning('probe %s', 'here')",
        env=environment,
    )
    assert proc.returncode == 0, proc.stderr
    (line,) = [line for line in proc.stderr.splitlines() if "probe here" in line]
    if is_json:
        row = json.loads(line)
        assert (row["event"], row["level"], row["logger"]) == ("probe here", "warning", "orkiva.probe")
    else:
        assert not line.lstrip().startswith("{")
        assert "warning" in line and "orkiva.probe" in line


def test_an_unknown_log_format_is_refused():
    with pytest.raises(ValueError):
        logging_config(fmt="xml", level="INFO")


def test_console_lines_carry_the_request_id_too():
    record = logging.LogRecord("orkiva.probe", logging.INFO, __file__, 1, "hello", None, None)
    token, call = bind_request_id("console-1"), begin_call(operation="probe")
    try:
        bind_caller(ActorFactory(agent_id="a", workspace_id="w"))
        text = formatter("console").format(record)
    finally:
        end_call(call)
        reset_request_id(token)
    assert "hello" in text and "request_id=console-1" in text and "agent_id=a" in text
