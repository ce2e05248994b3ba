"""Input parsing (orkiva.api_base.parse): serializers share one bound field set per class, so
nothing of one request's validation may reach another's, in sequence or across threads."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from django.test import override_settings

from messaging.api import MessageListQuery, MessagePostIn
from orkiva.api_base import parse
from orkiva.errors import ValidationFailed


def post_errors(payload) -> dict | None:
    try:
        parse(MessagePostIn, payload)
    except ValidationFailed as err:
        return err.details["fields"]
    return None


def test_errors_and_values_do_not_carry_over_between_parses():
    assert set(post_errors({"kind": "nope", "in_reply_to": -1})) == {"body", "kind", "in_reply_to"}
    data = parse(MessagePostIn, {"body": "fine"})
    assert data == {"body": "fine", "kind": "message", "in_reply_to": None, "idempotency_key": None}
    assert post_errors({"body": "x", "idempotency_key": ""}) == {"idempotency_key": ["This field may not be blank."]}
    assert parse(MessagePostIn, {"body": "y", "kind": "finding", "in_reply_to": 3})["in_reply_to"] == 3


@override_settings(ORKIVA_READ_LIMIT_MAX=10)
def test_a_serializers_own_validate_method_still_runs():
    assert parse(MessageListQuery, {"limit": "10"}) == {"limit": 10}
    with pytest.raises(ValidationFailed) as err:
        parse(MessageListQuery, {"limit": "11"})
    assert err.value.details["fields"] == {"limit": ["at most 10"]}


def test_concurrent_parses_each_get_their_own_result():
    def one(i: int):
        if i % 2:
            return post_errors({"body": "", "in_reply_to": i})
        return parse(MessagePostIn, {"body": f"b{i}", "in_reply_to": i + 1, "idempotency_key": f"k{i}"})

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(one, range(2000)))
    for i, result in enumerate(results):
        if i % 2:
            assert result == {"body": ["This field may not be blank."]}, (i, result)
        else:
            assert (result["body"], result["in_reply_to"], result["idempotency_key"]) == (f"b{i}", i + 1, f"k{i}")


def test_a_serializer_with_a_nested_serializer_keeps_drfs_own_binding():
    """A nested serializer keeps state on its child while validating: such a class is not shared."""
    from rest_framework import serializers

    from orkiva.api_base import _bound_fields

    class Item(serializers.Serializer):
        name = serializers.CharField()

    class Outer(serializers.Serializer):
        items = Item(many=True)
        note = serializers.CharField()

    assert _bound_fields(Outer) is None
    assert _bound_fields(MessagePostIn) is not None
    assert parse(Outer, {"items": [{"name": "a"}], "note": "n"}) == {"items": [{"name": "a"}], "note": "n"}
    with pytest.raises(ValidationFailed) as err:
        parse(Outer, {"items": [{}], "note": "n"})
    assert set(err.value.details["fields"]) == {"items"}
