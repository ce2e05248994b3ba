"""A tool's input schema is the one statement of what its arguments may be: the server checks every
call against the very schema `tools/list` publishes, before the SDK's own (lax) parsing, so a
client that validates against the schema and the server always agree.

The schemas come from the tools' type hints (orkiva.mcp.server), and state each rule the services
enforce: identifier patterns, text that is neither blank nor holds NUL (PostgreSQL stores none),
bounds up to a 64-bit column, enums, and `additionalProperties: false`. Their patterns are written
for ECMA-262 (what JSON Schema specifies and JavaScript clients run); Python's `$` also matches
before a final newline, so the check here reads an ending `$` as `\\Z`, the end of the text.
tests/orkiva/test_mcp_arguments.py holds server and schema equal over generated inputs.
"""
from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from jsonschema import Draft202012Validator, ValidationError, validators

from messaging.services import IDEMPOTENCY_KEY_RE
from orkiva import api_base
from policy.identity import IDENTIFIER_RE
from threads.services import TYPE_RE

# The text rules, as patterns (lookaheads: one linear scan each, in both engines).
NO_NUL = f"^{api_base.NO_NUL}$"
NOT_BLANK = f"^{api_base.NOT_BLANK}$"
UUID_TEXT = r"^[0-9A-Fa-f-]{32,36}$"
IDENTIFIER_PATTERN = f"^{IDENTIFIER_RE.pattern}$"
TYPE_PATTERN = f"^{TYPE_RE.pattern}$"
IDEMPOTENCY_KEY_PATTERN = f"^{IDEMPOTENCY_KEY_RE.pattern}$"


def pattern(regex: str) -> dict[str, str]:
    """`Field(json_schema_extra=pattern(...))`: a pattern the schema publishes and the strict check
    enforces; not pydantic's own `pattern=`, whose Rust regex engine has no lookahead."""
    return {"pattern": regex}


@lru_cache(maxsize=256)
def _python_regex(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern[:-1] + r"\Z" if pattern.endswith("$") and not pattern.endswith(r"\$") else pattern)


def _pattern(validator, pattern: str, instance: Any, schema: dict[str, Any]):
    if validator.is_type(instance, "string") and not _python_regex(pattern).search(instance):
        yield ValidationError(f"does not match {pattern}")


StrictValidator = validators.extend(Draft202012Validator, {"pattern": _pattern})


def strict_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """The published input schema: unknown arguments refused."""
    return {**schema, "additionalProperties": False}


def _describe(error: ValidationError, properties: dict[str, Any]) -> tuple[str, str]:
    """(argument path, what is wrong) for one error, never echoing the rejected value (it is the
    caller's data)."""
    path = ".".join(str(part) for part in error.absolute_path)
    keyword, expected = error.validator, error.validator_value
    if keyword == "anyOf":  # `X | None`: say what the non-null branch wanted
        inner = [e for e in error.context or () if not (e.validator == "type" and e.validator_value == "null")]
        if inner:
            return _describe(inner[0], properties) if not path else (path, _describe(inner[0], properties)[1])
    if keyword == "required":
        missing = [name for name in expected if name not in (error.instance or {})]
        return (missing[0] if missing else path or "arguments"), "This argument is required."
    if keyword == "additionalProperties":
        extra = sorted(set(error.instance or {}) - set(properties))
        return (extra[0] if extra else "arguments"), "No such argument for this tool."
    messages = {
        "type": lambda: f"Must be of type {expected if isinstance(expected, str) else ' or '.join(expected)}.",
        "pattern": lambda: "Must not be blank or hold NUL characters." if expected == NOT_BLANK
        else "Must not hold NUL characters." if expected == NO_NUL else f"Must match the pattern {expected}.",
        "enum": lambda: f"Must be one of: {', '.join(map(str, expected))}.",
        "minLength": lambda: f"Must be at least {expected} characters.",
        "maxLength": lambda: f"Must be at most {expected} characters.",
        "minItems": lambda: f"Must hold at least {expected} items.",
        "maxItems": lambda: f"Must hold at most {expected} items.",
        "minimum": lambda: f"Must be at least {expected}.",
        "maximum": lambda: f"Must be at most {expected}.",
    }
    return path or "arguments", messages.get(keyword, lambda: "Is not valid here.")()


def argument_problems(validator: Draft202012Validator, arguments: Any) -> dict[str, str]:
    """Argument path -> problem, for every way `arguments` breaks the validator's schema (empty: valid)."""
    properties = validator.schema.get("properties", {})
    problems: dict[str, str] = {}
    for error in validator.iter_errors(arguments):
        path, problem = _describe(error, properties)
        problems.setdefault(path, problem)
    return problems
