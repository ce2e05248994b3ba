"""POST /v1/mcp: the Django view that hands an MCP request to the SDK's streamable HTTP app.

The SDK app is ASGI; the bridge runs under WSGI (runserver, gunicorn gthread). So each process
keeps one event loop on a daemon thread, builds the MCP server once and enters its session
manager's lifespan once on that loop (`McpAdapter`). A request is verified here with the one
token verifier, then its ASGI scope and body go to the loop; the request thread waits for the
answer while serving the tool's ORM work (a CurrentThreadExecutor handed to the tool through a
context variable): tools use this thread's database connection, like a REST view.

Stateless with JSON responses: nothing is kept between requests, so any worker answers any call.
"""
from __future__ import annotations

import asyncio
import contextvars
import threading
from typing import Any

from asgiref.current_thread_executor import CurrentThreadExecutor
from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from mcp.server.mcpserver import MCPServer
from mcp.server.transport_security import TransportSecuritySettings

from orkiva.context import bind_caller, bind_operation
from orkiva.errors import DomainError, render_domain_error, report_error, to_domain_error
from orkiva.mcp.calls import McpCaller, bind_mcp_caller, reset_mcp_caller
from orkiva.mcp.server import build_server
from policy.identity import Actor
from policy.tokens import bearer_from_header, verify_token

MCP_PATH = "/v1/mcp"
# Not forwarded from the SDK's response: the WSGI server frames the body itself.
_HOP_BY_HOP = {b"content-length", b"transfer-encoding", b"connection"}


class McpAdapter:
    """One per process: the event loop, the MCP server and its entered lifespan."""

    def __init__(self) -> None:
        self.server: MCPServer = build_server()
        self.server.streamable_http_app(
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
        self.manager = self.server.session_manager
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="orkiva-mcp-loop", daemon=True)
        self._thread.start()
        self._stop: asyncio.Event | None = None
        # Started in an empty context: the lifespan outlives the request that happened to create it.
        contextvars.Context().run(asyncio.run_coroutine_threadsafe, self._start(), self.loop).result(timeout=30)

    async def _start(self) -> None:
        started = asyncio.get_running_loop().create_future()
        self._stop = asyncio.Event()
        self._lifespan = asyncio.get_running_loop().create_task(self._lifespan_task(started))
        await started

    async def _lifespan_task(self, started: asyncio.Future) -> None:
        # Entered once for the process's life (the session manager can be run only once).
        async with self.manager.run():
            started.set_result(None)
            assert self._stop is not None
            await self._stop.wait()

    def respond(self, request: HttpRequest, actor: Actor, body: bytes) -> HttpResponse:
        """Serve one verified request on the loop; this thread runs the tools' ORM work meanwhile."""
        executor = CurrentThreadExecutor(None)
        token = bind_mcp_caller(McpCaller(resolve_actor=lambda: actor, executor=executor))
        try:
            # The coroutine runs in a copy of this thread's context: request id, call info, caller.
            future = asyncio.run_coroutine_threadsafe(self._serve(asgi_scope(request), body), self.loop)
            executor.run_until_future(future)
            status, headers, content = future.result()
        finally:
            reset_mcp_caller(token)
        response = HttpResponse(content, status=status)
        for name, value in headers:
            if name.lower() not in _HOP_BY_HOP:
                response[name.decode("latin-1")] = value.decode("latin-1")
        return response

    async def _serve(self, scope: dict[str, Any], body: bytes) -> tuple[int, list, bytes]:
        answered = asyncio.Event()
        delivered = False
        start: dict[str, Any] = {}
        chunks: list[bytes] = []

        async def receive() -> dict[str, Any]:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            # The client stays connected until the answer is complete (the SDK watches for disconnects).
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
            await self.manager.handle_request(scope, receive, send)
        finally:
            answered.set()
        return start.get("status", 500), list(start.get("headers", [])), b"".join(chunks)


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


@csrf_exempt
def mcp_view(request: HttpRequest) -> HttpResponse:
    """/v1/mcp: verify the bearer token (REST's verifier, REST's 401), then let the SDK answer."""
    bind_operation("mcp")  # each tool names itself once the SDK dispatches the call
    if request.method != "POST":
        # Stateless and JSON-only: no server-sent event stream to GET, no session to DELETE. Handed
        # to the SDK, a GET would open a stream that never ends and hold this worker thread for good.
        err = DomainError("The MCP endpoint answers POST only.", code="method_not_allowed", status=405,
                          headers={"Allow": "POST"})
        report_error(err)
        return JsonResponse(render_domain_error(err), status=err.status, headers=err.headers)
    try:
        actor = verify_token(bearer_from_header(request.headers.get("Authorization")))
        body = request.body  # past DATA_UPLOAD_MAX_MEMORY_SIZE: RequestDataTooBig, 413 like REST
    except Exception as exc:
        err = to_domain_error(exc)
        if err is None:
            raise
        report_error(err)
        return JsonResponse(render_domain_error(err), status=err.status, headers=err.headers)
    bind_caller(actor)
    return adapter().respond(request, actor, body)
