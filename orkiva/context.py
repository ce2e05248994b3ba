"""Per-request context: the request id and the call (operation, caller), readable from any layer
(logs, error bodies, audit rows, jobs)."""
from __future__ import annotations

import contextvars
import re
import uuid
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Iterator

_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("orkiva_request_id", default=None)

# An upstream X-Request-ID is trusted only if it is short and printable: it lands in logs and headers.
_VALID_REQUEST_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")


def new_request_id() -> str:
    return uuid.uuid4().hex


def accept_request_id(candidate: str | None) -> str:
    """The caller's request id when it is well formed, a fresh one otherwise."""
    if candidate and _VALID_REQUEST_ID.fullmatch(candidate):
        return candidate
    return new_request_id()


def current_request_id() -> str | None:
    return _request_id.get()


def bind_request_id(request_id: str | None) -> contextvars.Token:
    return _request_id.set(request_id)


def reset_request_id(token: contextvars.Token) -> None:
    _request_id.reset(token)


# --- the call: what is being done and by whom, for logs and metrics -----------------------------
@dataclass
class CallInfo:
    """Who is calling and which operation runs, for the request's log lines.

    Mutable on purpose: code that runs in a copied context (an MCP tool on the adapter's event
    loop, a `sync_to_async` thread) fills in the object the request's middleware created, so
    the request log line written after the view returns sees the tool's name and the caller.
    """

    operation: str | None = None
    agent_id: str | None = None
    workspace_id: str | None = None
    role: str | None = None
    error_code: str | None = None

    def fields(self) -> dict[str, str]:
        return {k: v for k, v in asdict(self).items() if v is not None and k != "error_code"}


_call: contextvars.ContextVar[CallInfo | None] = contextvars.ContextVar("orkiva_call", default=None)


def begin_call(*, operation: str | None = None) -> contextvars.Token:
    """Start a fresh call record (a request, a command, a job); reset it with `end_call`."""
    return _call.set(CallInfo(operation=operation))


def end_call(token: contextvars.Token) -> None:
    _call.reset(token)


def current_call() -> CallInfo:
    """The current call record, created on first use outside a request (tests, shells)."""
    info = _call.get()
    if info is None:
        info = CallInfo()
        _call.set(info)
    return info


def bind_operation(name: str) -> None:
    """Name the operation being served (a /v1 operation id, an MCP tool, a command, a job)."""
    current_call().operation = name


def bind_caller(actor) -> None:
    """Record the verified caller (a policy.identity.Actor) for this call's log lines."""
    info = current_call()
    info.agent_id, info.workspace_id, info.role = actor.agent_id, actor.workspace_id, actor.role


def log_context() -> dict[str, str]:
    """The fields every log line of this call carries: request_id, operation and the caller."""
    fields: dict[str, str] = {}
    request_id = _request_id.get()
    if request_id is not None:
        fields["request_id"] = request_id
    info = _call.get()
    if info is not None:
        fields.update(info.fields())
    return fields


# --- jobs: the request id of the request that caused them ----------------------------------------
JOB_CONTEXT_KEY = "orkiva_context"


def job_context() -> dict[str, str]:
    """What a job needs to log as part of the request that enqueued it. django-q2 jobs get it
    automatically (orkiva.jobs stores it in the task package); pass it by hand to anything else."""
    context: dict[str, str] = {}
    request_id = _request_id.get()
    if request_id is not None:
        context["request_id"] = request_id
    return context


@contextmanager
def bind_job_context(context: dict[str, str] | None, *, operation: str) -> Iterator[str]:
    """Run a job under the request id it was enqueued with (a fresh one when it has none,
    e.g. a scheduled job) and its own operation name; yields the request id."""
    request_id = accept_request_id((context or {}).get("request_id"))
    rid_token = bind_request_id(request_id)
    call_token = begin_call(operation=operation)
    try:
        yield request_id
    finally:
        end_call(call_token)
        reset_request_id(rid_token)
