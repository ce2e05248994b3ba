"""gunicorn's worker for the bridge (infra/gunicorn.conf.py): uvicorn's, with the bridge's limits.

uvicorn itself bounds idle keep-alive connections (gunicorn's `keepalive`) and, with
`limit_concurrency`, how many connections and requests a worker takes (503 past it). It does not
bound a request's head: a connection that sends nothing, or trickles its headers, or sends
headers without end, would stay forever. `HeadLimitedProtocol` gives every request head
ORKIVA_HEADER_TIMEOUT_SECONDS to arrive and ORKIVA_MAX_HEADER_BYTES of size (431 past it). The
body's limits, and a slow reader's, are the application's (orkiva.serving). A worker that stops
first answers its waiting MCP calls (`DrainingServer`).

Imported by gunicorn before Django is set up: settings come from the environment here.
"""
from __future__ import annotations

import asyncio
import json
import os
import resource
import socket
import sys
import uuid

from gunicorn.arbiter import Arbiter
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import Server
from uvicorn_worker import UvicornWorker


def _env_float(name: str, default: float) -> float:
    value = float(os.environ.get(name, default))
    if value <= 0:
        raise ValueError(f"{name} must be positive")
    return value


HEADER_TIMEOUT_SECONDS = _env_float("ORKIVA_HEADER_TIMEOUT_SECONDS", 10)
MAX_HEADER_BYTES = int(_env_float("ORKIVA_MAX_HEADER_BYTES", 64 * 1024))


class HeadLimitedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a deadline and a size limit on each request head."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head_bytes = 0
        self._head_deadline: asyncio.TimerHandle | None = None
        self._arm_head_deadline()  # a connection that sends nothing at all

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_deadline()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_bytes = 0
        if self._head_deadline is None:
            self._arm_head_deadline()

    def on_url(self, url: bytes) -> None:
        self._count_head(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count_head(len(name) + len(value))
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._disarm_head_deadline()
        super().on_headers_complete()

    def _count_head(self, size: int) -> None:
        self._head_bytes += size
        if self._head_bytes > MAX_HEADER_BYTES and not self.transport.is_closing():
            self.logger.warning("Request head larger than %d bytes: connection closed.", MAX_HEADER_BYTES)
            self.transport.write(_headers_too_large())
            self.transport.close()

    def _arm_head_deadline(self) -> None:
        self._head_deadline = self.loop.call_later(HEADER_TIMEOUT_SECONDS, self._head_too_slow)

    def _disarm_head_deadline(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def _head_too_slow(self) -> None:
        self._head_deadline = None
        if self.cycle is None or self.cycle.response_complete:
            if not self.transport.is_closing():
                self.transport.close()
        else:
            # A head pipelined behind a request still being answered (a long wait): its time runs
            # again from here, so a trickled head can never outlive its deadline for good.
            self._arm_head_deadline()


def _headers_too_large() -> bytes:
    """431 in the error contract (the head was never parsed: a request id of its own)."""
    request_id = uuid.uuid4().hex
    body = json.dumps({"error": {
        "code": "headers_too_large",
        "message": f"The request's headers are larger than {MAX_HEADER_BYTES} bytes (ORKIVA_MAX_HEADER_BYTES).",
        "details": {"max_header_bytes": MAX_HEADER_BYTES},
    }, "request_id": request_id}).encode()
    return (b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: application/json\r\n"
            b"x-request-id: " + request_id.encode() + b"\r\ncontent-length: " + str(len(body)).encode() +
            b"\r\nconnection: close\r\n\r\n" + body)


class DrainingServer(Server):
    """uvicorn's server that, as it begins to stop (a deploy, a restart, SIGTERM), first ends the
    waiting MCP calls with an answer: they would otherwise hold the shutdown for the graceful
    timeout and then be cut off with none."""

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        from orkiva.mcp.waiting import drain_waiters

        drain_waiters()
        await super().shutdown(sockets)


class BridgeWorker(UvicornWorker):
    """uvicorn's gunicorn worker: uvloop, the head-limited httptools protocol, the ASGI lifespan
    (orkiva.serving's startup and shutdown), and gunicorn's settings for the rest."""

    def __init__(self, *args, **kwargs) -> None:
        limit = int(os.environ.get("ORKIVA_MAX_CONNECTIONS", "4000"))
        self.CONFIG_KWARGS = {
            "loop": "uvloop",
            "http": HeadLimitedProtocol,
            "lifespan": "on",
            "limit_concurrency": limit or None,
        }
        super().__init__(*args, **kwargs)
        # Requests in flight get gunicorn's graceful timeout, less the moment the worker needs to
        # cancel what is left and run the lifespan's shutdown before gunicorn would kill it.
        self.config.timeout_graceful_shutdown = max(1, self.cfg.graceful_timeout - 2)
        _raise_open_files_limit(limit)

    async def _serve(self) -> None:
        # UvicornWorker._serve (uvicorn-worker 0.4.0, pinned), with the draining server.
        self.config.app = self.wsgi
        server = DrainingServer(config=self.config)
        self._install_sigquit_handler()
        await server.serve(sockets=self.sockets)
        if not server.started:
            sys.exit(Arbiter.WORKER_BOOT_ERROR)


def _raise_open_files_limit(wanted: int) -> None:
    """Each connection is a file descriptor: lift the soft limit toward the hard one if needed."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted + 256
    if soft != resource.RLIM_INFINITY and soft < target:
        new = target if hard == resource.RLIM_INFINITY else min(hard, target)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
