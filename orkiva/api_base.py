"""Shared pieces of the /v1 views: safe input fields, input parsing, the error schema."""
from __future__ import annotations

from typing import Any

from django.core.validators import RegexValidator
from drf_spectacular.utils import OpenApiResponse
from rest_framework import parsers, serializers
from rest_framework.exceptions import ParseError

from orkiva.errors import ValidationFailed
from policy.identity import IDENTIFIER_HELP, IDENTIFIER_RE

MAX_BIGINT = 2**63 - 1


def _encodable(value: str) -> None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise serializers.ValidationError("Text must be valid Unicode (no lone surrogates).") from None


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser, with a body nested deeper than the parser goes (`[[[[...`, a few kB) a 400
    `malformed_json` like any other bad JSON (DRF catches ValueError only: it was a 500)."""

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError("JSON parse error - nested too deeply.") from None


# Text rules as patterns matched whole, written so Python and ECMA-262 read them alike (REST's
# OpenAPI document and MCP's input schemas publish them): no NUL; neither blank nor NUL.
NO_NUL = r"[^\x00]*"
NOT_BLANK = r"(?=[\s\S]*\S)[^\x00]*"


class TextField(serializers.CharField):
    """A CharField that refuses what the database cannot store (NUL, DRF's own check, and lone
    surrogates) and anything not a string (DRF would take 0 for "0"). `pattern` (a regex matched
    whole) is enforced and published in the OpenAPI document, so the schema states the rule."""

    def __init__(self, *, pattern: str | None = None, pattern_help: str = "", **kwargs):
        kwargs.setdefault("trim_whitespace", False)
        super().__init__(**kwargs)
        self.validators.append(_encodable)
        if pattern is None:
            pattern, pattern_help = NO_NUL, pattern_help or "Null characters are not allowed."
        elif self.allow_blank:
            pattern = rf"(?:{pattern})?"  # a blank value is valid too (DRF skips the validators for it)
        # \A and \Z: the whole text (drf-spectacular writes them as ECMA's ^ and $)
        message = (pattern_help or f"must match {pattern}").replace("%", "%%")  # Django formats it with params
        self.validators.append(RegexValidator(rf"\A(?:{pattern})\Z", message=message))

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


def IdentifierField(*, query: bool = False, **kwargs) -> TextField:  # noqa: N802 - a field, named like one
    """An agent, workspace or session id, its rule (policy.identity) stated in the schema."""
    return (QueryTextField if query else TextField)(pattern=IDENTIFIER_RE.pattern, pattern_help=IDENTIFIER_HELP,
                                                    **kwargs)


class _BlankIsAValue:
    """A query parameter given blank (`?status=`) is a value to validate (and refuse), not one left out."""

    def get_value(self, dictionary):
        if dictionary.get(self.field_name) == "":
            return ""
        return super().get_value(dictionary)


class QueryChoiceField(_BlankIsAValue, serializers.ChoiceField):
    pass


class QueryTextField(_BlankIsAValue, TextField):
    pass


class QueryIntegerField(_BlankIsAValue, serializers.IntegerField):
    pass


class SeqField(serializers.IntegerField):
    def __init__(self, **kwargs):
        kwargs.setdefault("min_value", 0)
        kwargs.setdefault("max_value", MAX_BIGINT)
        super().__init__(**kwargs)


class QuerySeqField(_BlankIsAValue, SeqField):
    pass


def parse(serializer_class: type[serializers.Serializer], data: Any) -> dict[str, Any]:
    """Validate input with a serializer; raise the domain's validation error with field details."""
    serializer = serializer_class(data=data)
    fields = _bound_fields(serializer_class)
    if fields is not None:
        serializer.__dict__["fields"] = fields  # DRF's cached_property, filled in
    if not serializer.is_valid():
        raise ValidationFailed("The request is not valid.", details={"fields": serializer.errors})
    return serializer.validated_data


_BOUND_FIELDS: dict[type, Any] = {}


def _bound_fields(serializer_class: type[serializers.Serializer]):
    """The serializer's fields, bound once per class. DRF deep-copies the declared fields for every
    instance (a tenth of a post's CPU, docs/performance.md); flat input fields keep no state between
    validations, so one bound set (on a prototype instance, context empty) serves every request.
    A nested serializer keeps state on its child while validating, and a HiddenField reads the
    context: a class with either is bound per instance, as DRF does (None here)."""
    if serializer_class not in _BOUND_FIELDS:
        fields = serializer_class().fields
        _BOUND_FIELDS[serializer_class] = None if any(_stateful(f) for f in fields.values()) else fields
    return _BOUND_FIELDS[serializer_class]


def _stateful(field) -> bool:
    child = getattr(field, "child", None)
    return isinstance(field, (serializers.BaseSerializer, serializers.HiddenField)) or (
        child is not None and _stateful(child))


def payload_dict(data: Any) -> dict[str, Any]:
    """The JSON body as an object, or a clear 400."""
    if not isinstance(data, dict):
        raise ValidationFailed("The request body must be a JSON object.", code="invalid_body")
    return data


class ErrorDetailOut(serializers.Serializer):
    code = serializers.CharField(help_text="Stable machine-readable error code.")
    message = serializers.CharField(help_text="Human-readable explanation.")
    details = serializers.DictField(help_text="Structured details; shape depends on the code.")


class ErrorOut(serializers.Serializer):
    error = ErrorDetailOut()
    request_id = serializers.CharField(allow_null=True)


def errors(*statuses: int) -> dict[int, OpenApiResponse]:
    """The error responses of an operation, for the OpenAPI document."""
    return {s: OpenApiResponse(ErrorOut, description="Error; see `error.code`.") for s in statuses}
