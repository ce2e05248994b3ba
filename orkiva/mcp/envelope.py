"""The JSON-RPC envelope of a request to /v1/mcp, checked before the SDK sees it.

The SDK validates a message against a union of four pydantic models and answers any mismatch with
-32602 and a kilobyte of pydantic text; a request whose `id` is null or a boolean it takes for a
notification and answers 202 with nothing. The spec's answers are short: -32700 for a body that is
not JSON, -32600 for a message that is not a valid request (a batch array: MCP 2025-06-18 removed
batching; an id that is not a string or an integer: MCP forbids null), and 400 for an
`MCP-Protocol-Version` this server does not speak. Each is a JSON-RPC error response with HTTP 400,
its `data` carrying our stable code and the request id, so a client can quote it.
"""
from __future__ import annotations

import json
from typing import Any

from django.http import JsonResponse
from mcp_types import INVALID_REQUEST, PARSE_ERROR
from mcp_types.version import KNOWN_PROTOCOL_VERSIONS

from orkiva.context import current_call, current_request_id

PROTOCOL_HEADER = "MCP-Protocol-Version"


class EnvelopeError(Exception):
    def __init__(self, rpc_code: int, code: str, message: str, request_id: Any = None) -> None:
        super().__init__(message)
        self.rpc_code, self.code, self.message, self.request_id = rpc_code, code, message, request_id


def _valid_id(value: Any) -> bool:
    return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))


def check_message(body: bytes, protocol_version: str | None) -> None:
    """Raise EnvelopeError unless `body` is one well-formed JSON-RPC message of a version we speak."""
    try:
        message = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise EnvelopeError(PARSE_ERROR, "parse_error", "Parse error: the body is not valid JSON.") from None
    except RecursionError:  # nested deeper than the parser goes: a bad body, not a crash
        raise EnvelopeError(PARSE_ERROR, "parse_error", "Parse error: the JSON is nested too deeply.") from None
    if isinstance(message, list):
        raise EnvelopeError(INVALID_REQUEST, "batch_not_supported",
                            "Batch requests are not supported (MCP removed JSON-RPC batching); send one message "
                            "per request.")
    if not isinstance(message, dict):
        raise EnvelopeError(INVALID_REQUEST, "invalid_request", "A JSON-RPC message must be a JSON object.")
    rid = message.get("id")
    rid = rid if _valid_id(rid) else None
    if message.get("jsonrpc") != "2.0":
        raise EnvelopeError(INVALID_REQUEST, "invalid_request", '"jsonrpc" must be "2.0".', rid)
    if "method" in message:
        if not isinstance(message["method"], str) or not message["method"]:
            raise EnvelopeError(INVALID_REQUEST, "invalid_request", '"method" must be a non-empty string.', rid)
        if "id" in message and not _valid_id(message["id"]):
            raise EnvelopeError(INVALID_REQUEST, "invalid_request",
                                '"id" must be a string or an integer (MCP does not allow null).')
        if "params" in message and not isinstance(message["params"], dict):
            raise EnvelopeError(INVALID_REQUEST, "invalid_request", '"params" must be an object.', rid)
    elif not ("id" in message and ("result" in message or "error" in message)):
        raise EnvelopeError(INVALID_REQUEST, "invalid_request",
                            'A request needs a "method" (a response, an "id" and a "result" or "error").', rid)
    if protocol_version is not None and protocol_version not in KNOWN_PROTOCOL_VERSIONS:
        raise EnvelopeError(
            INVALID_REQUEST, "unsupported_protocol_version",
            f"Unsupported {PROTOCOL_HEADER} {protocol_version[:40]!r}; this server speaks "
            f"{', '.join(KNOWN_PROTOCOL_VERSIONS)}.", rid)


def envelope_refusal(body: bytes, protocol_version: str | None) -> JsonResponse | None:
    """None if the message may go to the SDK, else the JSON-RPC error answer (HTTP 400)."""
    try:
        check_message(body, protocol_version)
    except EnvelopeError as err:
        current_call().error_code = err.code
        request_id = current_request_id()
        return JsonResponse({"jsonrpc": "2.0", "id": err.request_id, "error": {
            "code": err.rpc_code, "message": err.message, "data": {"code": err.code, "request_id": request_id}}},
            status=400)
    return None
