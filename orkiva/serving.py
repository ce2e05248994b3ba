"""The production server model: ASGI under gunicorn's uvicorn workers (docs/operations.md).

One event loop per worker holds every connection. Request bodies are read on it, bounded in size
(ORKIVA_MAX_REQUEST_BYTES) and in time (ORKIVA_BODY_TIMEOUT_SECONDS), so a slow client costs a
coroutine, never a thread. MCP requests (/v1/mcp) then go through Django's async chain to the
async MCP view, on the loop, and a waiting `wait_for_messages` sleeps there holding no thread and
no database connection. Everything else, every REST request, goes through Django's ordinary sync
chain on the worker's one bounded thread pool (ORKIVA_THREADS), exactly as under WSGI: each pool
thread keeps its own persistent connection, opened and closed by the request cycle. The MCP
tools' ORM steps run on the same pool, so a worker holds at most ORKIVA_THREADS connections for
requests, plus the MCP watcher's and the post listener's (orkiva.mcp.waiting).

Django's own ASGIHandler would run each request inside a `ThreadSensitiveContext`: an OS thread
per request, alive for the whole request (an MCP wait included), and every sync view, signal and
middleware hook handed to a thread one by one. This handler keeps Django's request and response
objects, signals and middleware, and decides where each part runs.
"""
from __future__ import annotations

import asyncio
import contextlib
import contextvars
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import structlog
from django.conf import settings
from django.core import signals
from django.core.exceptions import RequestAborted, RequestDataTooBig
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.core.handlers.base import BaseHandler
from django.http import HttpResponse
from django.urls import set_script_prefix

from orkiva.context import accept_request_id, begin_call, bind_operation, bind_request_id, end_call, reset_request_id
from orkiva.errors import DomainError, refusal_response, to_domain_error
from orkiva.middleware import REQUEST_ID_HEADER, log_request

logger = structlog.get_logger("orkiva.serving")

MCP_PATH = "/v1/mcp"

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def sync_pool() -> ThreadPoolExecutor:
    """The worker's threads for sync Django work: REST requests and the MCP tools' ORM steps."""
    global _pool
    if _pool is None:
        with _pool_lock:
            if _pool is None:
                _pool = ThreadPoolExecutor(max_workers=settings.ORKIVA_THREADS, thread_name_prefix="orkiva-sync")
    return _pool


class RequestTimeout(DomainError):
    status = 408
    code = "request_timeout"


class OrkivaASGIHandler(ASGIHandler):
    """Django's ASGI handler with the bridge's server model (module docstring)."""

    def __init__(self) -> None:
        super().__init__()  # the async middleware chain, for /v1/mcp
        self.sync_handler = BaseHandler()
        self.sync_handler.load_middleware(is_async=False)  # the sync chain, for everything else
        self.lifespan_hooks: list[tuple[Any, Any]] = []  # (startup, shutdown) coroutine functions

    async def __call__(self, scope, receive, send):
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] == "http":
            await self.handle(scope, receive, send)
        else:
            raise ValueError(f"The bridge serves HTTP only, not {scope['type']}.")

    async def handle(self, scope, receive, send):
        started = time.perf_counter()
        try:
            body_file = await self._read_body(scope, receive)
        except RequestAborted:
            return
        except DomainError as err:
            await self._refuse(scope, send, err, started)
            return
        set_script_prefix(get_script_prefix(scope))
        request, error_response = self.create_request(scope, body_file)
        if request is None:
            body_file.close()
            await self.send_response(error_response, send)
            error_response.close()
            return
        if scope["path"] == MCP_PATH:
            response = await self._respond_async(request, scope, receive)
        else:
            response = await self._respond_sync(request, scope)
        if response is not None:
            await self._send(response, send)
        body_file.close()

    async def _respond_sync(self, request, scope) -> HttpResponse:
        """The sync chain on the pool; the request cycle's signals run there too, so Django opens,
        checks and closes that thread's connection as it does under WSGI."""

        def serve() -> HttpResponse:
            signals.request_started.send(sender=self.__class__, scope=scope)
            response = self.sync_handler.get_response(request)
            response._handler_class = self.__class__
            if not response.streaming:
                response.close()  # the body is in memory: finish the request cycle on this thread
            return response

        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(sync_pool(), contextvars.copy_context().run, serve)

    async def _respond_async(self, request, scope, receive) -> HttpResponse | None:
        """The async chain on the loop; None when the client went away first (the view is
        cancelled, which ends an MCP wait at once)."""
        signals.request_started.send(sender=self.__class__, scope=scope)  # its receivers do no I/O here
        view = asyncio.create_task(self.run_get_response(request))
        listener = asyncio.create_task(self.listen_for_disconnect(receive))
        try:
            await asyncio.wait({view, listener}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (listener, view):
                task.cancel()  # no-op on the one that finished
                with contextlib.suppress(asyncio.CancelledError, RequestAborted):
                    await task
        if view.cancelled():
            signals.request_finished.send(sender=self.__class__)
            return None
        response = view.result()
        response.close()
        return response

    async def _send(self, response: HttpResponse, send) -> None:
        """Send within ORKIVA_SEND_TIMEOUT_SECONDS: a client that stops reading is dropped."""
        try:
            async with asyncio.timeout(settings.ORKIVA_SEND_TIMEOUT_SECONDS):
                await self.send_response(response, send)
        except TimeoutError:
            # Returning with the response unfinished makes the server close the connection.
            logger.warning("slow_reader_dropped", status=response.status_code)
        finally:
            if response.streaming:  # a cancellation (the server stopping) still closes it, then goes on
                await asyncio.shield(asyncio.get_running_loop().run_in_executor(sync_pool(), response.close))

    async def _read_body(self, scope, receive):
        """The whole body, at most ORKIVA_MAX_REQUEST_BYTES within ORKIVA_BODY_TIMEOUT_SECONDS."""
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        declared = _header(scope, b"content-length")
        if limit is not None and declared is not None and declared.isdigit() and int(declared) > limit:
            raise _too_large()
        body_file = tempfile.SpooledTemporaryFile(max_size=settings.FILE_UPLOAD_MAX_MEMORY_SIZE, mode="w+b")
        size = 0
        try:
            async with asyncio.timeout(settings.ORKIVA_BODY_TIMEOUT_SECONDS):
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        raise RequestAborted()
                    chunk = message.get("body", b"")
                    size += len(chunk)
                    if limit is not None and size > limit:
                        raise _too_large()
                    body_file.write(chunk)
                    if not message.get("more_body", False):
                        break
        except TimeoutError:
            body_file.close()
            raise RequestTimeout(
                f"The request body did not arrive within {settings.ORKIVA_BODY_TIMEOUT_SECONDS:g} seconds.",
                details={"timeout_seconds": settings.ORKIVA_BODY_TIMEOUT_SECONDS},
            ) from None
        except BaseException:
            body_file.close()
            raise
        body_file.seek(0)
        return body_file

    async def _refuse(self, scope, send, err: DomainError, started: float) -> None:
        """A request refused before Django saw it: the error contract, its request id and log
        line, and the connection closed (the rest of its body is never read)."""
        request_id = accept_request_id(_header(scope, REQUEST_ID_HEADER.lower().encode()))
        token, call_token = bind_request_id(request_id), begin_call()
        try:
            bind_operation("request_body")
            response = refusal_response(err)
            response[REQUEST_ID_HEADER] = request_id
            response["Connection"] = "close"
            response["Content-Length"] = str(len(response.content))  # as CommonMiddleware would
            log_request(scope.get("method", ""), scope.get("path", ""), err.status, started)
        finally:
            end_call(call_token)
            reset_request_id(token)
        with contextlib.suppress(OSError, asyncio.CancelledError):
            await self._send(response, send)

    async def _lifespan(self, receive, send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                for startup, _ in self.lifespan_hooks:
                    await startup()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                for _, shutdown in reversed(self.lifespan_hooks):
                    try:
                        await shutdown()
                    except Exception:
                        logger.exception("shutdown_hook_failed")
                await send({"type": "lifespan.shutdown.complete"})
                return


def _header(scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return value.decode("latin-1")
    return None


def _too_large() -> DomainError:
    return to_domain_error(RequestDataTooBig())  # the error WSGI's request.body gives

