"""POST /v1/mcp: the Django view that hands an MCP request to the SDK's streamable HTTP app.

Stateless with JSON responses: nothing is kept between requests, so any worker answers any call.
A request is verified here with the one token verifier (REST's, with REST's 401), then its ASGI
scope and body go to the SDK's session manager, whose lifespan is entered once per event loop.

Two views over the same server and services, chosen by the server model (orkiva/urls.py):
- under ASGI (production, orkiva.serving) `mcp_async_view` runs on the worker's event loop, the
  SDK on the same loop with no hand-off; the tools' ORM steps run on the worker's thread pool,
  and a waiting call holds no thread;
- under WSGI (runserver, the test client) `mcp_view` runs on its request thread: the process keeps
  one event loop on a daemon thread for the SDK (`McpAdapter`), and the request thread waits for
  the answer while serving the tools' ORM work (a CurrentThreadExecutor handed to the tools
  through the caller), so tools use that thread's connection, like a REST view.
"""
from __future__ import annotations

import asyncio
import contextvars
import json
import threading
from typing import Any

from asgiref.current_thread_executor import CurrentThreadExecutor
from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from mcp.server.mcpserver import MCPServer
from mcp.server.transport_security import TransportSecuritySettings

from orkiva.context import bind_caller, bind_operation, current_call, current_request_id
from orkiva.errors import DomainError, refusal_response, to_domain_error
from orkiva.mcp.calls import McpCaller, bind_mcp_caller, pooled, reset_mcp_caller
from orkiva.mcp.envelope import PROTOCOL_HEADER, envelope_refusal
from orkiva.mcp.server import build_server
from orkiva.mcp.waiting import close_watcher, watcher
from orkiva.serving import MCP_PATH, sync_pool
from policy.identity import Actor
from policy.tokens import bearer_from_header, verify_token

# Not forwarded from the SDK's response: the WSGI server frames the body itself.
_HOP_BY_HOP = {b"content-length", b"transfer-encoding", b"connection"}


def _streamable_server() -> MCPServer:
    """The MCP server with its streamable HTTP app configured (the session manager made)."""
    server = build_server()
    server.streamable_http_app(
        streamable_http_path=MCP_PATH,
        stateless_http=True,
        json_response=True,
        max_request_body_size=settings.DATA_UPLOAD_MAX_MEMORY_SIZE,
        transport_security=TransportSecuritySettings(
            enable_dns_rebinding_protection=True,
            allowed_hosts=list(settings.ORKIVA_MCP_ALLOWED_HOSTS),
            allowed_origins=list(settings.ORKIVA_MCP_ALLOWED_ORIGINS),
        ),
    )
    return server


class McpLifespan:
    """The session manager's lifespan, entered once on the running loop for the loop's life (the
    manager can be run only once), in a task of its own started in an empty context: it outlives
    the request that happened to start it."""

    def __init__(self, server: MCPServer) -> None:
        self.manager = server.session_manager
        self._stop = asyncio.Event()
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        started = asyncio.get_running_loop().create_future()
        self._task = asyncio.get_running_loop().create_task(self._run(started), context=contextvars.Context())
        await started

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task

    async def _run(self, started: asyncio.Future) -> None:
        async with self.manager.run():
            started.set_result(None)
            await self._stop.wait()


class NativeMcp:
    """ASGI: the MCP server of this worker's event loop."""

    def __init__(self) -> None:
        self.server = _streamable_server()
        self.lifespan = McpLifespan(self.server)

    async def respond(self, request: HttpRequest, actor: Actor) -> HttpResponse:
        caller = McpCaller(resolve_actor=lambda: actor, executor=sync_pool(), pooled=True)
        token = bind_mcp_caller(caller)
        try:
            return _http_response(*await serve(self.lifespan.manager, asgi_scope(request), request.body))
        finally:
            reset_mcp_caller(token)


_native: NativeMcp | None = None
_native_lock: asyncio.Lock | None = None


async def native() -> NativeMcp:
    """The worker's NativeMcp, its lifespan entered on first use (an ASGI worker has one loop)."""
    global _native, _native_lock
    if _native is None:
        if _native_lock is None:
            _native_lock = asyncio.Lock()
        async with _native_lock:
            if _native is None:
                candidate = NativeMcp()
                await candidate.lifespan.start()
                _native = candidate
    return _native


async def asgi_startup() -> None:
    """The ASGI lifespan's startup: the MCP server ready, the post listener connecting."""
    await native()
    watcher().start_listening()


async def asgi_shutdown() -> None:
    """The ASGI lifespan's shutdown: the listener and the watcher's connection closed, the MCP
    session manager's lifespan ended."""
    global _native
    await close_watcher()
    if _native is not None:
        found, _native = _native, None
        await found.lifespan.stop()


class McpAdapter:
    """WSGI: one per process, the event loop on its own thread, the MCP server and its lifespan."""

    def __init__(self) -> None:
        self.server = _streamable_server()
        self.lifespan = McpLifespan(self.server)
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="orkiva-mcp-loop", daemon=True)
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.lifespan.start(), self.loop).result(timeout=30)

    def respond(self, request: HttpRequest, actor: Actor, body: bytes) -> HttpResponse:
        """Serve one verified request on the loop; this thread runs the tools' ORM work meanwhile."""
        executor = CurrentThreadExecutor(None)
        token = bind_mcp_caller(McpCaller(resolve_actor=lambda: actor, executor=executor))
        try:
            # The coroutine runs in a copy of this thread's context: request id, call info, caller.
            future = asyncio.run_coroutine_threadsafe(serve(self.lifespan.manager, asgi_scope(request), body),
                                                      self.loop)
            executor.run_until_future(future)
            return _http_response(*future.result())
        finally:
            reset_mcp_caller(token)


async def serve(manager, scope: dict[str, Any], body: bytes) -> tuple[int, list, bytes]:
    """One request through the SDK's session manager: (status, headers, body)."""
    answered = asyncio.Event()
    delivered = False
    start: dict[str, Any] = {}
    chunks: list[bytes] = []

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        # The client stays connected until the answer is complete (the SDK watches for disconnects;
        # a client that really leaves cancels the whole view, under ASGI).
        await answered.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            start.update(message)
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                answered.set()

    try:
        await manager.handle_request(scope, receive, send)
    finally:
        answered.set()
    return start.get("status", 500), list(start.get("headers", [])), b"".join(chunks)


# The SDK's own refusals are plain text; ours are the error contract, with the setting that decides.
_SDK_REFUSALS = {
    403: ("origin_not_allowed", "The Origin header names an origin this endpoint does not allow "
          "(ORKIVA_MCP_ALLOWED_ORIGINS)."),
    421: ("host_not_allowed", "The Host header names a host the MCP endpoint does not answer "
          "(ORKIVA_MCP_ALLOWED_HOSTS)."),
}


# The SDK's JSON-RPC refusals at an HTTP status (a missing Accept, ...): our code for each status.
_SDK_RPC_CODES = {400: "bad_request", 404: "not_found", 406: "not_acceptable", 415: "unsupported_media_type"}


def _with_our_data(content: bytes, status: int) -> bytes:
    """A JSON-RPC error the SDK answered at an HTTP error status, its data naming our code and the
    request id like every refusal of ours (the Python SDK surfaces such a body's message)."""
    try:
        body = json.loads(content)
    except ValueError:
        return content
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict) or "data" in error:
        return content
    error["data"] = {"code": _SDK_RPC_CODES.get(status, "bad_request"), "request_id": current_request_id()}
    current_call().error_code = error["data"]["code"]
    return json.dumps(body).encode()


def _http_response(status: int, headers: list, content: bytes) -> HttpResponse:
    is_json = any(name.lower() == b"content-type" and value.startswith(b"application/json") for name, value in headers)
    if status >= 400 and not is_json:
        said = content.decode("utf-8", "replace").strip()[:200]
        code, message = _SDK_REFUSALS.get(status, ("bad_request", said or "The MCP request was refused."))
        return refusal_response(DomainError(message, code=code, status=status, details={"reason": said} if said else {}))
    if status >= 400:
        content = _with_our_data(content, status)
    response = HttpResponse(content, status=status)
    for name, value in headers:
        if name.lower() not in _HOP_BY_HOP:
            response[name.decode("latin-1")] = value.decode("latin-1")
    return response


def asgi_scope(request: HttpRequest) -> dict[str, Any]:
    headers = [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in request.headers.items()]
    server_port = request.META.get("SERVER_PORT") or "80"
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": request.META.get("SERVER_PROTOCOL", "HTTP/1.1").partition("/")[2] or "1.1",
        "method": request.method,
        "scheme": request.scheme,
        "path": MCP_PATH,
        "raw_path": MCP_PATH.encode(),
        "root_path": "",
        "query_string": request.META.get("QUERY_STRING", "").encode("latin-1"),
        "headers": headers,
        "client": (request.META.get("REMOTE_ADDR", ""), 0),
        "server": (request.META.get("SERVER_NAME", ""), int(server_port) if server_port.isdigit() else 80),
        "state": {},
    }


_adapter: McpAdapter | None = None
_adapter_lock = threading.Lock()


def adapter() -> McpAdapter:
    global _adapter
    if _adapter is None:
        with _adapter_lock:
            if _adapter is None:
                _adapter = McpAdapter()
    return _adapter


def _method_not_allowed() -> JsonResponse:
    # Stateless and JSON-only: no server-sent event stream to GET, no session to DELETE. Handed to
    # the SDK, a GET would open a stream that never ends.
    return refusal_response(DomainError("The MCP endpoint answers POST only.", code="method_not_allowed", status=405,
                                headers={"Allow": "POST"}))


def _authenticate(request: HttpRequest) -> Actor | JsonResponse:
    """REST's verifier and REST's 401; past DATA_UPLOAD_MAX_MEMORY_SIZE, REST's 413."""
    try:
        actor = verify_token(bearer_from_header(request.headers.get("Authorization")))
        request.body  # noqa: B018 - RequestDataTooBig here, as REST's parser would raise it
    except Exception as exc:
        err = to_domain_error(exc)
        if err is None:
            raise
        return refusal_response(err)
    bind_caller(actor)
    return actor


@csrf_exempt
def mcp_view(request: HttpRequest) -> HttpResponse:
    """/v1/mcp under WSGI: verify the bearer token, then let the SDK answer (on the adapter's loop)."""
    bind_operation("mcp")  # each tool names itself once the SDK dispatches the call
    if request.method != "POST":
        return _method_not_allowed()
    actor = _authenticate(request)
    if isinstance(actor, HttpResponse):
        return actor
    refused = envelope_refusal(request.body, request.headers.get(PROTOCOL_HEADER))
    if refused is not None:
        return refused
    return adapter().respond(request, actor, request.body)


@csrf_exempt
async def mcp_async_view(request: HttpRequest) -> HttpResponse:
    """/v1/mcp under ASGI: the same, on the worker's loop; the token's check runs on the pool."""
    bind_operation("mcp")
    if request.method != "POST":
        return _method_not_allowed()
    actor = await pooled(lambda: _authenticate(request))
    if isinstance(actor, HttpResponse):
        return actor
    refused = envelope_refusal(request.body, request.headers.get(PROTOCOL_HEADER))
    if refused is not None:
        return refused
    return await (await native()).respond(request, actor)
