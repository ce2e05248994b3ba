"""/v1 message endpoints: post (idempotent), read after a cursor, ack."""
from __future__ import annotations

import re

from django.conf import settings
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from messaging import kinds, services
from messaging.presenters import cursor_json, message_json, page_json
from messaging.selectors import message_page
from orkiva.api_base import (
    NOT_BLANK, IdentifierField, QueryIntegerField, QuerySeqField, SeqField, TextField, errors, parse, payload_dict,
)
from orkiva.errors import ValidationFailed
from policy.services import check_payload_identity
from supervisor.services import ACK_CURSOR, ACK_READ, wakes_acknowledge

IDEMPOTENCY_HEADER = "Idempotency-Key"
# In a header a key is visible ASCII, spaces only inside (HTTP trims them at the ends): the rule the
# header is checked against, as the OpenAPI document states it.
IDEMPOTENCY_HEADER_RE = re.compile(r"[!-~](?:[ -~]{0,253}[!-~])?")
IDEMPOTENCY_HEADER_PARAMETER = OpenApiParameter(
    IDEMPOTENCY_HEADER, str, OpenApiParameter.HEADER, required=False, pattern=f"^{IDEMPOTENCY_HEADER_RE.pattern}$",
    description="Makes a retry safe (or the body's idempotency_key): 1-255 visible ASCII characters.")


class MessagePostIn(serializers.Serializer):
    body = TextField(pattern=NOT_BLANK, pattern_help="must not be blank",
                     help_text="The message text (limit: ORKIVA_MAX_MESSAGE_BODY_CHARS; longer is 413 body_too_large).")
    kind = serializers.ChoiceField(choices=kinds.POSTABLE_KINDS, default=kinds.MESSAGE)
    in_reply_to = SeqField(min_value=1, required=False, allow_null=True, default=None)
    idempotency_key = TextField(pattern=services.IDEMPOTENCY_KEY_RE.pattern, required=False, allow_null=True,
                                default=None, pattern_help="1-255 characters, no control characters")
    sender = IdentifierField(required=False, help_text="Optional; must equal the token's agent_id.")


class MessageOut(serializers.Serializer):
    id = serializers.IntegerField()
    thread_id = serializers.UUIDField()
    seq = serializers.IntegerField()
    sender = serializers.CharField()
    kind = serializers.ChoiceField(choices=kinds.KINDS)
    body = serializers.CharField()
    in_reply_to = serializers.IntegerField(allow_null=True)
    item_state = serializers.CharField(allow_null=True, help_text="open/addressed/resolved/answered for findings and questions.")
    idempotency_key = serializers.CharField(allow_null=True)
    created_at = serializers.DateTimeField()
    schema_version = serializers.IntegerField()
    idempotent_replay = serializers.BooleanField(required=False, help_text="Present on post responses.")


class MessagePageOut(serializers.Serializer):
    thread_id = serializers.UUIDField()
    messages = MessageOut(many=True)
    last_seq = serializers.IntegerField()
    last_read_seq = serializers.IntegerField()
    unread_count = serializers.IntegerField()
    next_after_seq = serializers.IntegerField()
    schema_version = serializers.IntegerField()


class MessageListQuery(serializers.Serializer):
    after_seq = QuerySeqField(required=False, help_text="Default: the caller's read cursor.")
    # the bound as the OpenAPI document states it; the check reads the setting as it is now
    limit = QueryIntegerField(min_value=1, max_value=settings.ORKIVA_READ_LIMIT_MAX, required=False)

    def validate_limit(self, value: int) -> int:
        if value > settings.ORKIVA_READ_LIMIT_MAX:
            raise serializers.ValidationError(f"at most {settings.ORKIVA_READ_LIMIT_MAX}")
        return value


class AckIn(serializers.Serializer):
    seq = SeqField()


class CursorOut(serializers.Serializer):
    thread_id = serializers.UUIDField()
    last_read_seq = serializers.IntegerField()
    unread_count = serializers.IntegerField()
    schema_version = serializers.IntegerField()


def idempotency_key_of(request, payload_key: str | None) -> str | None:
    header_key = request.headers.get(IDEMPOTENCY_HEADER)
    if header_key is not None and IDEMPOTENCY_HEADER_RE.fullmatch(header_key) is None:
        raise ValidationFailed("The Idempotency-Key header is 1-255 visible ASCII characters.",
                               code="invalid_idempotency_key")
    if header_key is not None and payload_key is not None and header_key != payload_key:
        raise ValidationFailed(
            "The Idempotency-Key header and the idempotency_key field differ.", code="idempotency_key_mismatch"
        )
    return header_key if header_key is not None else payload_key


class MessageCollectionView(APIView):
    @extend_schema(
        operation_id="messages_list",
        parameters=[MessageListQuery],
        responses={200: MessagePageOut, **errors(400, 401, 403, 404)},
        description="Messages after `after_seq` (default: your read cursor) in seq order. Reading never moves the cursor.",
    )
    def get(self, request, thread_id: str):
        query = parse(MessageListQuery, request.query_params)
        page = message_page(
            actor=request.user,
            thread_id=thread_id,
            after_seq=query.get("after_seq"),
            limit=query.get("limit", settings.ORKIVA_READ_LIMIT_DEFAULT),
        )
        wakes_acknowledge(actor=request.user, thread_id=page.thread.pk, signal=ACK_READ)
        return Response(page_json(page))

    @extend_schema(
        operation_id="messages_post",
        request=MessagePostIn,
        parameters=[IDEMPOTENCY_HEADER_PARAMETER],
        responses={
            201: MessageOut,
            200: OpenApiResponse(MessageOut, description="Idempotent replay of an earlier post."),
            **errors(400, 401, 403, 404, 409, 413, 429),
        },
    )
    def post(self, request, thread_id: str):
        payload = payload_dict(request.data)
        check_payload_identity(request.user, payload, action="message.post")
        data = parse(MessagePostIn, payload)
        result = services.message_post(
            actor=request.user,
            thread_id=thread_id,
            body=data["body"],
            kind=data["kind"],
            in_reply_to=data["in_reply_to"],
            idempotency_key=idempotency_key_of(request, data["idempotency_key"]),
        )
        return Response(
            message_json(result.message, replay=result.replay),
            status=status.HTTP_200_OK if result.replay else status.HTTP_201_CREATED,
        )


class AckView(APIView):
    @extend_schema(
        operation_id="messages_ack",
        request=AckIn,
        responses={200: CursorOut, **errors(400, 401, 403, 404, 409)},
        description="Move your read cursor forward to `seq`. An older seq is a no-op returning the current cursor.",
    )
    def post(self, request, thread_id: str):
        data = parse(AckIn, payload_dict(request.data))
        state = services.cursor_ack(actor=request.user, thread_id=thread_id, seq=data["seq"])
        wakes_acknowledge(actor=request.user, thread_id=state.thread.pk, signal=ACK_CURSOR)
        return Response(cursor_json(state))
