"""How an MCP tool call meets Django: who is calling, where its ORM work runs, and how a
failure becomes a tool result (the one MCP error renderer).

The HTTP views and the stdio command each say who the caller is (`bind_mcp_caller`) before the
SDK runs a tool, and where its ORM work runs:
- ASGI (`pooled`): on the worker's thread pool (orkiva.serving), each step a request of its own
  for the connection (stale ones closed before and after); nothing is held between steps, so a
  waiting call holds no thread and no connection;
- WSGI: inside a `ThreadSensitiveContext` whose executor is the Django request thread waiting
  for the answer, so a tool uses that thread's connection, opened and closed by the request cycle
  exactly as a REST view's is;
- stdio: on asgiref's one shared thread.
"""
from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, TypeVar

import structlog
from asgiref.sync import ThreadSensitiveContext, sync_to_async
from django.db import InterfaceError, OperationalError, close_old_connections, connections
from mcp.shared.exceptions import MCPError
from mcp_types import INTERNAL_ERROR, INVALID_PARAMS, CallToolResult, TextContent
from pydantic import ValidationError

from orkiva.context import (
    begin_call,
    bind_caller,
    bind_operation,
    bind_request_id,
    current_call,
    current_request_id,
    end_call,
    new_request_id,
    reset_request_id,
)
from orkiva.api_base import MAX_BIGINT
from orkiva.errors import DomainError, NotFound, ValidationFailed, render_domain_error, report_error, to_domain_error
from policy.identity import Actor
from policy.services import check_payload_identity

logger = structlog.get_logger("orkiva.mcp")

T = TypeVar("T")
Runner = Callable[[Callable[[Actor], Any]], Awaitable[Any]]


@dataclass(frozen=True)
class McpCaller:
    """Who calls (resolved in the ORM thread, since stdio verifies its token per call) and
    where the call's ORM work runs (None: asgiref's shared thread; `pooled`: a shared pool)."""

    resolve_actor: Callable[[], Actor]
    executor: Executor | None = None
    pooled: bool = False


_caller: contextvars.ContextVar[McpCaller | None] = contextvars.ContextVar("orkiva_mcp_caller", default=None)


def bind_mcp_caller(caller: McpCaller) -> contextvars.Token:
    return _caller.set(caller)


def reset_mcp_caller(token: contextvars.Token) -> None:
    _caller.reset(token)


def _current_caller() -> McpCaller:
    caller = _caller.get()
    if caller is None:  # a tool reached without the view or the stdio command: a wiring bug
        raise RuntimeError("MCP tool called without a bound caller")
    return caller


def _as_request(fn: Callable[[], T]) -> Callable[[], T]:
    """Run `fn` the way a request runs: stale connections closed before and after (a stdio call
    has no request cycle to do it)."""

    def run() -> T:
        close_old_connections()
        try:
            return fn()
        finally:
            close_old_connections()

    return run


# How often a pool thread has its connections checked before use (CONN_HEALTH_CHECKS' `SELECT 1`).
# Checked before every step, an MCP call (the token's check, then the tool's step) paid that round
# trip twice; a REST request, whose request cycle checks once, once.
_POOL_CHECK_SECONDS = 1.0
_pool_thread = threading.local()
_trouble = [0]  # bumped when the database was seen to go away: every pool thread checks again


def database_trouble() -> None:
    """The database went away (the post listener lost its connection, a check failed): each pool
    thread checks its connections before its next use, however recently it last did."""
    _trouble[0] += 1


def _on_pool(fn: Callable[[], T]) -> Callable[[], T]:
    """`fn` on a pool thread: its connections checked first (at most once a `_POOL_CHECK_SECONDS`,
    and again after `database_trouble`), and after it a connection left broken (an error, a
    restart) or past its age closed, as the request cycle's end would."""

    def run() -> T:
        now, trouble = time.monotonic(), _trouble[0]
        if (now - getattr(_pool_thread, "checked_at", float("-inf")) >= _POOL_CHECK_SECONDS
                or getattr(_pool_thread, "trouble", None) != trouble):
            close_old_connections()  # the next query checks the connection first
            _pool_thread.checked_at, _pool_thread.trouble = now, trouble
        try:
            return fn()
        except (OperationalError, InterfaceError):  # a connection lost, a server gone
            database_trouble()
            raise
        finally:
            for conn in connections.all(initialized_only=True):
                if conn.connection is not None and (
                    conn.errors_occurred or (conn.close_at is not None and time.monotonic() >= conn.close_at)
                ):
                    conn.close_if_unusable_or_obsolete()

    return run


async def pooled(fn: Callable[[], T], executor: Executor | None = None) -> T:
    """Run sync ORM code on the ASGI worker's pool (`_on_pool`), in a copy of this context (the call
    record it binds the caller on is shared). A plain executor hop: asgiref's sync_to_async costs
    more per call, for a thread-sensitivity this does not need."""
    from orkiva.serving import sync_pool

    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(executor or sync_pool(), contextvars.copy_context().run, _on_pool(fn))


@contextlib.asynccontextmanager
async def orm_context():
    """The block inside which `orm()` calls run on this call's ORM thread."""
    caller = _current_caller()
    if caller.executor is None or caller.pooled:
        yield
        return
    async with ThreadSensitiveContext(executor=caller.executor):
        yield


async def orm(fn: Callable[[], T]) -> T:
    """Run sync ORM code for the current call (inside `orm_context`). Under WSGI it runs on the
    request's own thread, inside Django's request cycle, which closes stale connections at the
    request's start and end: doing it again around each step made the next query check the
    connection once more (a `SELECT 1` round trip per call). A wait's reads there open and close
    their own connection (`with_db_slot`)."""
    caller = _current_caller()
    if caller.pooled:
        return await pooled(fn, caller.executor)
    if caller.executor is None:
        fn = _as_request(fn)
    return await sync_to_async(fn, thread_sensitive=True)()


def holds_a_thread() -> bool:
    """Whether a waiting call of this caller keeps a thread (WSGI's request thread, stdio's)."""
    return not _current_caller().pooled


def success(data: dict[str, Any]) -> CallToolResult:
    """The presenter's dict as structured content, and as JSON text for clients that read text."""
    return CallToolResult(
        content=[TextContent(type="text", text=json.dumps(data))], structured_content=data, is_error=False
    )


def failure(err: DomainError) -> CallToolResult:
    """A domain error as a tool result: `is_error`, and the REST error body (code, message, details,
    request id) as its JSON text. No structured content: that must match the tool's output schema,
    which describes the success body, and the TypeScript SDK 1.x client checks it on errors too
    (throwing -32602 instead of showing the error); the text is what every client shows."""
    body = render_domain_error(err)
    return CallToolResult(content=[TextContent(type="text", text=json.dumps(body))], is_error=True)


def error_text(result: CallToolResult) -> dict[str, Any]:
    """The error body an `is_error` result carries (for clients of ours: the pilot, the tests)."""
    return json.loads(result.content[0].text)


def refusal(err: DomainError, *, name: str | None = None) -> CallToolResult:
    """A call refused before any tool runs (bad arguments, no such tool): counted and logged like
    every refusal, answered with the REST body and its request id."""
    if current_request_id() is None:  # stdio: the call is its own request
        with _standalone_call():
            return refusal(err, name=name)
    if name is not None:
        bind_operation(name)
    report_error(err)
    return failure(err)


def invalid_arguments(name: str, fields: dict[str, str]) -> CallToolResult:
    """Arguments refused before the tool runs (the input schema, or values no database stores):
    REST's `validation_error`, each field with its problem. The rejected values are the caller's
    data and are not echoed."""
    return refusal(ValidationFailed(f"The arguments of {name} are not valid.", details={"fields": fields}), name=name)


def protocol_error(rpc_code: int, message: str, err: DomainError) -> MCPError:
    """A JSON-RPC error for a call refused before any tool runs, counted and logged like every
    refusal; its data carries our stable code and the request id."""
    if current_request_id() is None:  # stdio: the call is its own request
        with _standalone_call():
            return protocol_error(rpc_code, message, err)
    report_error(err)
    return MCPError(code=rpc_code, message=message, data={"code": err.code, "request_id": current_request_id()})


def unknown_tool(name: str) -> MCPError:
    """A call of a tool this server does not have: the spec's -32602 (tools/list names them all)."""
    shown = name[:100]
    return protocol_error(INVALID_PARAMS, f"Unknown tool: {shown!r}; tools/list names the tools.",
                          NotFound("No such tool.", code="unknown_tool", details={"tool": shown}))


def schema_problems(exc: ValidationError) -> dict[str, str]:
    return {".".join(str(part) for part in error["loc"]) or "arguments": error["msg"] for error in exc.errors()}


def unstorable_arguments(arguments: Any, path: str = "") -> dict[str, str]:
    """What REST's input fields refuse and the schema lets through: NUL and lone surrogates in text
    (PostgreSQL stores neither), integers past a 64-bit column. Field path -> problem."""
    problems: dict[str, str] = {}
    if isinstance(arguments, dict):
        for key, value in arguments.items():
            problems.update(unstorable_arguments(value, f"{path}.{key}" if path else str(key)))
    elif isinstance(arguments, list):
        for index, value in enumerate(arguments):
            problems.update(unstorable_arguments(value, f"{path}.{index}"))
    elif isinstance(arguments, str):
        if "\x00" in arguments:
            problems[path] = "Null characters are not allowed."
        else:
            try:
                arguments.encode("utf-8")
            except UnicodeEncodeError:
                problems[path] = "Text must be valid Unicode (no lone surrogates)."
    elif isinstance(arguments, int) and not isinstance(arguments, bool) and abs(arguments) > MAX_BIGINT:
        problems[path] = f"Ensure this value is at most {MAX_BIGINT}."
    return problems


async def run_tool(
    name: str, work: Callable[[Actor], dict[str, Any]], *, claims: dict[str, str | None] | None = None,
    claim_action: str = "",
) -> CallToolResult:
    """One tool call that is one sync step: `work(actor)` runs in the call's ORM thread. `claims`
    are the identity fields the arguments name (None: not given); naming another agent or
    workspace than the token's is refused and audited as `claim_action`, as REST does."""
    named = {k: v for k, v in (claims or {}).items() if v is not None}

    def checked(actor: Actor) -> dict[str, Any]:
        check_payload_identity(actor, named, action=claim_action)
        return work(actor)

    return await run_steps(name, lambda run: run(checked if named else work))


async def run_steps(name: str, steps: Callable[[Runner], Awaitable[dict[str, Any]]]) -> CallToolResult:
    """One tool call: name the operation, resolve the caller once, let `steps` run its sync ORM
    steps through `run(fn)` (each gets the actor), and present the dict it returns.

    Domain errors are audited and counted exactly like REST's (report_error) and become an
    `is_error` result with the REST body; anything else is a bug: logged with the request id
    and answered as a JSON-RPC internal error, never as a friendly result."""
    if current_request_id() is None:  # stdio: no HTTP request around the call, so it is its own
        with _standalone_call():
            return await run_steps(name, steps)
    bind_operation(name)
    caller = _current_caller()
    resolved: list[Actor] = []

    async def run(fn: Callable[[Actor], T]) -> T:
        def call() -> T:
            if not resolved:
                resolved.append(caller.resolve_actor())
                bind_caller(resolved[0])
            return fn(resolved[0])

        return await orm(call)

    async with orm_context():
        try:
            return success(await steps(run))
        except Exception as exc:
            err = to_domain_error(exc)
            if err is None:
                raise internal_error(name) from exc
            await orm(lambda: report_error(err))
            return failure(err)


@contextlib.contextmanager
def _standalone_call():
    """A tool call outside any HTTP request (stdio): a fresh request id and call record, and
    one log line like the request middleware's."""
    rid_token = bind_request_id(new_request_id())
    call_token = begin_call()
    started = time.perf_counter()
    try:
        yield
    finally:
        info = current_call()
        fields = {"transport": "stdio", "duration_ms": round((time.perf_counter() - started) * 1000, 2)}
        if info.error_code is not None:
            fields["error_code"] = info.error_code
        (logger.warning if info.error_code else logger.info)("mcp_call", **fields)
        end_call(call_token)
        reset_request_id(rid_token)


def internal_error(name: str) -> MCPError:
    logger.exception("mcp_tool_crashed", tool=name)
    current_call().error_code = "internal_error"
    return MCPError(
        code=INTERNAL_ERROR,
        message=f"internal_error: the server failed; request id {current_request_id()} identifies it in the logs.",
    )
