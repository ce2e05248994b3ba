"""Request id and request log middleware: take X-Request-ID or make one, bind it (and the call's
operation and caller) for the request, echo it back, and write one structured log line per
request with method, path, status, duration, operation and caller."""
from __future__ import annotations

import time

import structlog

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


class RequestIdMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        request_id = accept_request_id(request.headers.get(REQUEST_ID_HEADER))
        request.request_id = request_id
        token = bind_request_id(request_id)
        call_token = begin_call()
        started = time.perf_counter()
        response = None
        try:
            response = self.get_response(request)
        finally:
            self._log(request, response, started)
            end_call(call_token)
            reset_request_id(token)
        response[REQUEST_ID_HEADER] = request_id
        return response

    def process_view(self, request, view_func, view_args, view_kwargs):
        info = current_call()
        if info.operation is None:
            match = getattr(request, "resolver_match", None)
            info.operation = operation_for(view_func, request.method, match.url_name if match else None)
        return None

    @staticmethod
    def _log(request, response, started: float) -> None:
        duration_ms = round((time.perf_counter() - started) * 1000, 2)
        info = current_call()
        if info.agent_id is None:
            # DRF copies the authenticated user onto the Django request; Actor carries the claims.
            user = getattr(request, "user", None)
            if getattr(user, "workspace_id", None) is not None:
                bind_caller(user)
        status = response.status_code if response is not None else 500
        fields = {
            "method": request.method,
            "path": request.path,
            "status": status,
            "duration_ms": duration_ms,
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
