"""The domain error family and its one REST renderer: `{"error": {code, message, details}, "request_id"}`."""
from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import RequestDataTooBig
from django.db import InterfaceError, OperationalError
from django.http import Http404, JsonResponse
from rest_framework import exceptions as drf_exceptions
from rest_framework.response import Response

from orkiva.context import current_request_id

logger = logging.getLogger("orkiva.errors")


class DomainError(Exception):
    """A failure a client can cause and fix: a stable machine `code`, a human message, details."""

    status = 400
    code = "bad_request"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        details: dict[str, Any] | None = None,
        status: int | None = None,
        headers: dict[str, str] | None = None,
        audit: dict[str, Any] | list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        self.details = details or {}
        self.headers = headers or {}
        # Keyword arguments for policy.audit.audit_record (or a list of them, written in one
        # statement), written by the renderer after the failed transaction has rolled back, so a
        # refused attempt stays on the record.
        self.audit = audit

    def as_body(self) -> dict[str, Any]:
        # Details may echo the client's input (DRF: '"\ud800" is not a valid choice.'): make it encodable.
        return {"code": self.code, "message": encodable(self.message), "details": encodable(self.details)}


def encodable(value: Any) -> Any:
    """`value` with every string made valid UTF-8 (lone surrogates become `\\udxxx` escapes)."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return value.encode("utf-8", "backslashreplace").decode("utf-8")
        return value
    if isinstance(value, dict):
        return {encodable(k): encodable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [encodable(v) for v in value]
    return value


class ValidationFailed(DomainError):
    status = 400
    code = "validation_error"


def bearer_challenge(code: str) -> str:
    """The WWW-Authenticate header of a 401 (RFC 6750 section 3): a request that sent no token is
    told only the scheme and realm; a token that failed names `invalid_token` and our code."""
    if code == "missing_token":
        return 'Bearer realm="orkiva"'
    return f'Bearer realm="orkiva", error="invalid_token", error_description="{code}"'


class Unauthenticated(DomainError):
    status = 401
    code = "unauthenticated"

    def __init__(self, message: str, *, code: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(
            message,
            code=code,
            details=details,
            headers={"WWW-Authenticate": bearer_challenge(code)},
        )


class Forbidden(DomainError):
    status = 403
    code = "forbidden"


class NotFound(DomainError):
    status = 404
    code = "not_found"


class Conflict(DomainError):
    status = 409
    code = "conflict"


class PayloadTooLarge(DomainError):
    status = 413
    code = "payload_too_large"


class RateLimited(DomainError):
    status = 429
    code = "rate_limited"


class ServiceUnavailable(DomainError):
    status = 503


# The database's own failures, by SQLSTATE (PostgreSQL) or result code (SQLite), with how long to
# wait: contention clears at once, an unavailable or overloaded server takes longer. Anything else
# a driver reports as an OperationalError (a missing table, a syntax error) is a bug: a 500.
_CONTENTION, _UNAVAILABLE = 1, 5
_SQLSTATE_CLASSES = {"40": _CONTENTION, "08": _UNAVAILABLE, "53": _UNAVAILABLE, "57": _UNAVAILABLE}
_SQLSTATES = {"55P03": _CONTENTION}  # lock_not_available (lock_timeout)
_SQLITE_CODES = {"SQLITE_BUSY": _CONTENTION, "SQLITE_LOCKED": _CONTENTION}


def _retry_after(exc: BaseException) -> int | None:
    """Seconds to wait if `exc` is the database failing the request, else None."""
    if isinstance(exc, InterfaceError):  # the connection is closed
        return _UNAVAILABLE
    if not isinstance(exc, OperationalError):
        return None
    driver_error = exc.__cause__
    sqlstate = getattr(driver_error, "sqlstate", None)
    if sqlstate is not None:
        return _SQLSTATES.get(sqlstate) or _SQLSTATE_CLASSES.get(sqlstate[:2])
    if hasattr(driver_error, "sqlite_errorname"):
        return _SQLITE_CODES.get(driver_error.sqlite_errorname)
    # psycopg without a SQLSTATE: the server could not be reached or the connection broke.
    return _UNAVAILABLE if type(driver_error).__module__.startswith("psycopg") else None


def database_unavailable(exc: BaseException, retry_after: int) -> ServiceUnavailable:
    """The database failed the request, not the request the database: a connection refused or
    dropped, a deadlock, a lock or statement timeout, an overloaded server, SQLite busy. The
    transaction rolled back unless the failure hit its COMMIT, so the request was most likely not
    applied; a post retried with its idempotency key is stored once in either case. The cause
    goes to the log (with its traceback), not to the client."""
    err = ServiceUnavailable(
        "The database could not complete this request; it was most likely not applied. Retry it "
        "(a post with the same idempotency key is stored once).",
        code="database_unavailable", details={"retry_after_seconds": retry_after},
        headers={"Retry-After": str(retry_after)},
    )
    err.__cause__ = exc
    return err


def error_body(code: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "error": {"code": code, "message": message, "details": details or {}},
        "request_id": current_request_id(),
    }


# DRF's own exceptions, mapped onto stable codes (its `default_code`s are not a contract).
_DRF_CODES: dict[type, str] = {
    drf_exceptions.ParseError: "malformed_json",
    drf_exceptions.UnsupportedMediaType: "unsupported_media_type",
    drf_exceptions.MethodNotAllowed: "method_not_allowed",
    drf_exceptions.NotAcceptable: "not_acceptable",
    drf_exceptions.NotFound: "not_found",
    drf_exceptions.NotAuthenticated: "missing_token",
    drf_exceptions.AuthenticationFailed: "invalid_token",
    drf_exceptions.PermissionDenied: "forbidden",
    drf_exceptions.Throttled: "rate_limited",
    drf_exceptions.ValidationError: "validation_error",
}


def _domain_from_drf(exc: drf_exceptions.APIException) -> DomainError:
    code = next((c for cls, c in _DRF_CODES.items() if isinstance(exc, cls)), "bad_request")
    if isinstance(exc, drf_exceptions.ValidationError):
        return ValidationFailed("The request is not valid.", details={"fields": exc.detail})
    message = str(exc.detail) if not isinstance(exc.detail, (list, dict)) else "Request failed."
    if isinstance(exc, drf_exceptions.ParseError):
        message = "The request body is not valid JSON."
    headers = {}
    if isinstance(exc, (drf_exceptions.NotAuthenticated, drf_exceptions.AuthenticationFailed)):
        headers["WWW-Authenticate"] = bearer_challenge(code)
    return DomainError(message, code=code, status=exc.status_code, headers=headers)


def to_domain_error(exc: BaseException) -> DomainError | None:
    """Translate anything a client can cause, and the database's failures, into a DomainError;
    None for real bugs."""
    if isinstance(exc, DomainError):
        return exc
    if (retry_after := _retry_after(exc)) is not None:
        return database_unavailable(exc, retry_after)
    if isinstance(exc, RequestDataTooBig):
        return PayloadTooLarge("The request body is larger than the server accepts.", code="request_too_large")
    if isinstance(exc, Http404):
        return NotFound("Not found.")
    if isinstance(exc, drf_exceptions.APIException):
        return _domain_from_drf(exc)
    return None


def report_error(err: DomainError, *, log: bool = True) -> None:
    """Every interface's renderer calls this once per failure: audit the refusal, count it, log it
    (`log=False`: a command that prints the error to a person itself)."""
    from orkiva import observability
    from policy.audit import audit_refusal

    if err.audit:
        audit_refusal(err)
    observability.record_failure(err, log=log)


def render_domain_error(err: DomainError) -> dict[str, Any]:
    return {"error": err.as_body(), "request_id": current_request_id()}


def refusal_response(err: DomainError) -> JsonResponse:
    """A domain error answered outside DRF (the MCP view, the ASGI server): reported, then rendered."""
    report_error(err)
    return JsonResponse(render_domain_error(err), status=err.status, headers=err.headers)


def api_exception_handler(exc: BaseException, context: dict[str, Any]) -> Response | None:
    """DRF's EXCEPTION_HANDLER: the only place a REST error body is shaped."""
    err = to_domain_error(exc)
    if err is None:
        return None  # a bug: Django logs it and answers 500 through handler500
    from rest_framework.views import set_rollback  # imported late: DRF's views import our auth class

    set_rollback()
    report_error(err)
    return Response(render_domain_error(err), status=err.status, headers=err.headers)


def json_handler404(request, exception=None) -> JsonResponse:
    return JsonResponse(error_body("not_found", "No such endpoint."), status=404)


def json_handler500(request) -> JsonResponse:
    return JsonResponse(
        error_body("internal_error", "The server failed; the request id identifies it in the logs."), status=500
    )


def json_handler400(request, exception=None) -> JsonResponse:
    from django.core.exceptions import DisallowedHost

    if isinstance(exception, DisallowedHost):  # say which setting decides, not only that it failed
        return JsonResponse(error_body(
            "disallowed_host",
            "The Host header names a host this bridge does not serve; add it to ORKIVA_ALLOWED_HOSTS.",
        ), status=400)
    return JsonResponse(error_body("bad_request", "The request could not be understood."), status=400)
