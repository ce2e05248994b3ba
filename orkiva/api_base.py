"""Shared pieces of the /v1 views: safe input fields, input parsing, the error schema."""
from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers

from orkiva.errors import ValidationFailed

MAX_BIGINT = 2**63 - 1


def _encodable(value: str) -> None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise serializers.ValidationError("Text must be valid Unicode (no lone surrogates).") from None


class TextField(serializers.CharField):
    """A CharField that refuses what the database cannot store: NUL (DRF's own check) and lone surrogates."""

    def __init__(self, **kwargs):
        kwargs.setdefault("trim_whitespace", False)
        super().__init__(**kwargs)
        self.validators.append(_encodable)


class SeqField(serializers.IntegerField):
    def __init__(self, **kwargs):
        kwargs.setdefault("min_value", 0)
        kwargs.setdefault("max_value", MAX_BIGINT)
        super().__init__(**kwargs)


def parse(serializer_class: type[serializers.Serializer], data: Any) -> dict[str, Any]:
    """Validate input with a serializer; raise the domain's validation error with field details."""
    serializer = serializer_class(data=data)
    serializer.__dict__["fields"] = _bound_fields(serializer_class)  # DRF's cached_property, filled in
    if not serializer.is_valid():
        raise ValidationFailed("The request is not valid.", details={"fields": serializer.errors})
    return serializer.validated_data


_BOUND_FIELDS: dict[type, Any] = {}


def _bound_fields(serializer_class: type[serializers.Serializer]):
    """The serializer's fields, bound once per class. DRF deep-copies the declared fields for every
    instance (a tenth of a post's CPU, docs/performance.md); input fields keep no state between
    validations, so one bound set (on a prototype instance, context empty) serves every request."""
    fields = _BOUND_FIELDS.get(serializer_class)
    if fields is None:
        fields = _BOUND_FIELDS[serializer_class] = serializer_class().fields
    return fields


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
