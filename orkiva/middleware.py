"""Request id and request log middleware: take X-Request-ID or make one, bind it (and the call's
operation and caller) for the request, echo it back, and write one structured log line per
request with method, path, status, duration, operation and caller.

Every middleware of the stack serves both of Django's chains: the sync one (WSGI, and REST under
ASGI, on the worker's thread pool) and the async one (MCP under ASGI, on the event loop). In the
async chain Django runs a sync-only middleware, and each sync hook of a `MiddlewareMixin`, on
asgiref's one shared thread: a thread hand-off per hook and per request, all requests of the
worker queued through one thread. None of these hooks does I/O, so `InlineAsync` runs them on
the loop itself; Django's and django-prometheus's middleware are used through it.
"""
from __future__ import annotations

import asyncio
import time

import structlog
from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.middleware.common import CommonMiddleware as DjangoCommonMiddleware
from django.middleware.security import SecurityMiddleware as DjangoSecurityMiddleware
from django_prometheus.middleware import PrometheusAfterMiddleware as DjangoPrometheusAfter
from django_prometheus.middleware import PrometheusBeforeMiddleware as DjangoPrometheusBefore

from orkiva.context import (
    accept_request_id,
    begin_call,
    bind_caller,
    bind_request_id,
    current_call,
    end_call,
    reset_request_id,
)

REQUEST_ID_HEADER = "X-Request-ID"
# Probes and scrapes answer every few seconds: their successful lines are DEBUG, not INFO.
QUIET_OPERATIONS = frozenset({"healthz", "readyz", "metrics"})
# Logged (never sent) for a request whose client left before its answer, as nginx does.
CLIENT_CLOSED_REQUEST = 499

request_logger = structlog.get_logger("orkiva.request")

_operation_cache: dict[tuple[object, str], str | None] = {}


def _schema_operation_id(view_class: type, method: str) -> str | None:
    """The OpenAPI operation id a DRF view's method declares with @extend_schema(operation_id=...)."""
    handler = getattr(view_class, method.lower(), None)
    schema_class = getattr(handler, "kwargs", {}).get("schema") if handler is not None else None
    if schema_class is None:
        return None
    view = view_class()
    view.request, view.args, view.kwargs = None, (), {}
    schema = schema_class()
    schema.view = view
    schema.method = method.upper()
    try:
        return schema.get_operation_id()
    except Exception:  # no explicit id: drf-spectacular would derive one from the path; use the URL name
        return None


def operation_for(view_func, method: str, url_name: str | None) -> str | None:
    """The operation a view serves: its OpenAPI operation id, else its URL name (cached)."""
    key = (view_func, method)
    if key not in _operation_cache:
        view_class = getattr(view_func, "cls", None)  # DRF's as_view() marks the view function
        operation = _schema_operation_id(view_class, method) if view_class is not None else None
        _operation_cache[key] = operation or url_name
    return _operation_cache[key]


def _inline_view_hooks(middleware) -> None:
    """In the async chain, Django wraps a sync `process_view`/`process_exception` for asgiref's
    shared thread: hand it coroutine versions that call them inline instead."""
    for name in ("process_view", "process_exception"):
        hook = getattr(middleware, name, None)
        if hook is not None and not iscoroutinefunction(hook):
            setattr(middleware, name, _inline(hook))


def _inline(hook):
    async def run(*args, **kwargs):
        return hook(*args, **kwargs)

    return run


class InlineAsync:
    """A `MiddlewareMixin` whose hooks run inline in the async chain (they do no I/O)."""

    def __init__(self, get_response):
        super().__init__(get_response)
        if self.async_mode:
            _inline_view_hooks(self)

    async def __acall__(self, request):
        response = self.process_request(request) if hasattr(self, "process_request") else None
        response = response or await self.get_response(request)
        if hasattr(self, "process_response"):
            response = self.process_response(request, response)
        return response


class PrometheusBeforeMiddleware(InlineAsync, DjangoPrometheusBefore):
    pass


class SecurityMiddleware(InlineAsync, DjangoSecurityMiddleware):
    pass


class CommonMiddleware(InlineAsync, DjangoCommonMiddleware):
    pass


class PrometheusAfterMiddleware(InlineAsync, DjangoPrometheusAfter):
    pass


class RequestIdMiddleware:
    sync_capable = True
    async_capable = True

    def __init__(self, get_response):
        self.get_response = get_response
        self.async_mode = iscoroutinefunction(get_response)
        if self.async_mode:
            markcoroutinefunction(self)
            _inline_view_hooks(self)

    def __call__(self, request):
        if self.async_mode:
            return self.__acall__(request)
        request_id, tokens, started = self._begin(request)
        response = None
        try:
            response = self.get_response(request)
        finally:
            self._end(request, response, tokens, started)
        response[REQUEST_ID_HEADER] = request_id
        return response

    async def __acall__(self, request):
        request_id, tokens, started = self._begin(request)
        response, gone = None, False
        try:
            response = await self.get_response(request)
        except asyncio.CancelledError:
            gone = True  # the client went away (orkiva.serving cancels the view): not a server error
            raise
        finally:
            self._end(request, response, tokens, started, status=CLIENT_CLOSED_REQUEST if gone else None)
        response[REQUEST_ID_HEADER] = request_id
        return response

    @staticmethod
    def _begin(request):
        request_id = accept_request_id(request.headers.get(REQUEST_ID_HEADER))
        request.request_id = request_id
        return request_id, (bind_request_id(request_id), begin_call()), time.perf_counter()

    def _end(self, request, response, tokens, started: float, status: int | None = None) -> None:
        token, call_token = tokens
        try:
            self._log(request, response, started, status)
        finally:
            end_call(call_token)
            reset_request_id(token)

    def process_view(self, request, view_func, view_args, view_kwargs):
        info = current_call()
        if info.operation is None:
            match = getattr(request, "resolver_match", None)
            info.operation = operation_for(view_func, request.method, match.url_name if match else None)
        return None

    @staticmethod
    def _log(request, response, started: float, status: int | None = None) -> None:
        info = current_call()
        if info.agent_id is None:
            # DRF copies the authenticated user onto the Django request; Actor carries the claims.
            user = getattr(request, "user", None)
            if getattr(user, "workspace_id", None) is not None:
                bind_caller(user)
        if status is None:
            status = response.status_code if response is not None else 500
        log_request(request.method, request.path, status, started)


def log_request(method: str, path: str, status: int, started: float) -> None:
    """The request's one log line (the call's operation, caller and error code come from the context)."""
    info = current_call()
    fields = {
        "method": method,
        "path": path,
        "status": status,
        "duration_ms": round((time.perf_counter() - started) * 1000, 2),
    }
    if info.error_code is not None:
        fields["error_code"] = info.error_code
    if status >= 500:
        log = request_logger.error
    elif status >= 400:
        log = request_logger.warning
    elif info.operation in QUIET_OPERATIONS:
        log = request_logger.debug
    else:
        log = request_logger.info
    log("request", **fields)
