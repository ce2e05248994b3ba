"""/v1 thread endpoints: thin views over threads.services and threads.selectors."""
from __future__ import annotations

from django.conf import settings
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from messaging.api import IDEMPOTENCY_HEADER_PARAMETER, idempotency_key_of
from messaging.services import IDEMPOTENCY_KEY_RE
from orkiva.api_base import (
    NOT_BLANK, IdentifierField, QueryChoiceField, QueryIntegerField, TextField, errors, parse, payload_dict,
)
from orkiva.versioning import SCHEMA_VERSION
from policy.roles import Op
from policy.services import check_payload_identity
from threads import services, transitions
from threads.presenters import thread_json
from threads.selectors import thread_get, thread_list
from threads.summary import thread_summary


class ThreadCreateIn(serializers.Serializer):
    title = TextField(max_length=300, pattern=NOT_BLANK, pattern_help="must not be blank")
    type = TextField(pattern=services.TYPE_RE.pattern, pattern_help=services.TYPE_HELP,
                     help_text="A lowercase slug such as `review` or `task`.")
    participants = serializers.ListField(child=IdentifierField(), min_length=1,
                                         max_length=settings.ORKIVA_MAX_PARTICIPANTS)
    workspace_id = IdentifierField(required=False, help_text="Optional; must equal the token's workspace.")
    idempotency_key = TextField(pattern=IDEMPOTENCY_KEY_RE.pattern, pattern_help="1-255 characters, no control characters",
                                required=False, allow_null=True, default=None,
                                help_text="Makes a retry return the thread the first attempt made (or use the "
                                "Idempotency-Key header).")


class ThreadOut(serializers.Serializer):
    id = serializers.UUIDField()
    workspace_id = serializers.CharField()
    title = serializers.CharField()
    type = serializers.CharField()
    status = serializers.ChoiceField(choices=transitions.STATUSES)
    status_changed_at = serializers.DateTimeField()
    status_reason = serializers.CharField(allow_null=True)
    status_reason_code = serializers.CharField(allow_null=True)
    participants = serializers.ListField(child=serializers.CharField())
    created_by = serializers.CharField()
    last_seq = serializers.IntegerField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()
    schema_version = serializers.IntegerField()
    idempotent_replay = serializers.BooleanField(
        required=False, help_text="On create results: true when an idempotency key replayed an earlier create.")


class ThreadListOut(serializers.Serializer):
    threads = ThreadOut(many=True)
    total = serializers.IntegerField()
    limit = serializers.IntegerField()
    offset = serializers.IntegerField()
    schema_version = serializers.IntegerField()


class ThreadListQuery(serializers.Serializer):
    status = QueryChoiceField(choices=transitions.STATUSES, required=False)
    participant = IdentifierField(query=True, required=False)
    limit = QueryIntegerField(min_value=1, max_value=200, default=50)
    offset = QueryIntegerField(min_value=0, max_value=10**9, default=0)


class StatusIn(serializers.Serializer):
    status = serializers.ChoiceField(choices=transitions.STATUSES)
    reason = TextField(max_length=2000, required=False, default="", allow_blank=True)


class ParticipantsIn(serializers.Serializer):
    add = serializers.ListField(child=IdentifierField(), required=False, default=list, max_length=256)
    remove = serializers.ListField(child=IdentifierField(), required=False, default=list, max_length=256)
    reason = TextField(max_length=2000, required=False, default="", allow_blank=True)


class LastMessageOut(serializers.Serializer):
    seq = serializers.IntegerField()
    kind = serializers.CharField()
    excerpt = serializers.CharField()
    created_at = serializers.DateTimeField()


class SummaryParticipantOut(serializers.Serializer):
    agent_id = serializers.CharField()
    last_read_seq = serializers.IntegerField()
    unread_count = serializers.IntegerField()
    last_message = LastMessageOut(allow_null=True)


class OpenItemOut(serializers.Serializer):
    seq = serializers.IntegerField()
    kind = serializers.CharField()
    sender = serializers.CharField()
    state = serializers.CharField()
    excerpt = serializers.CharField()
    created_at = serializers.DateTimeField()


class CountsOut(serializers.Serializer):
    messages = serializers.IntegerField()
    by_kind = serializers.DictField(child=serializers.IntegerField())


class SummaryBlockedOut(serializers.Serializer):
    reason_code = serializers.CharField(allow_null=True, help_text="no_progress, repeated_finding, operator_escalation, ...")
    reason = serializers.CharField(allow_null=True)
    escalation_id = serializers.IntegerField(allow_null=True, help_text="The open escalation holding the block, if any.")
    since = serializers.DateTimeField()


class SummaryOut(serializers.Serializer):
    thread_id = serializers.UUIDField()
    title = serializers.CharField()
    type = serializers.CharField()
    status = serializers.CharField()
    status_changed_at = serializers.DateTimeField()
    status_reason = serializers.CharField(allow_null=True)
    status_reason_code = serializers.CharField(allow_null=True)
    blocked = SummaryBlockedOut(allow_null=True, help_text="Why the thread is blocked; null unless it is.")
    turns_since_progress = serializers.IntegerField(
        help_text="Posts since the last status change or settled open item (the loop controls' counter)."
    )
    participants = SummaryParticipantOut(many=True)
    open_items = OpenItemOut(many=True)
    open_findings = serializers.IntegerField()
    open_questions = serializers.IntegerField()
    counts = CountsOut()
    last_seq = serializers.IntegerField()
    schema_version = serializers.IntegerField()


class ThreadCollectionView(APIView):
    @extend_schema(
        operation_id="threads_list",
        parameters=[ThreadListQuery],
        responses={200: ThreadListOut, **errors(400, 401, 403)},
    )
    def get(self, request):
        query = parse(ThreadListQuery, request.query_params)
        threads, total = thread_list(
            actor=request.user,
            status=query.get("status"),
            participant=query.get("participant"),
            limit=query["limit"],
            offset=query["offset"],
        )
        return Response(
            {
                "threads": [thread_json(t) for t in threads],
                "total": total,
                "limit": query["limit"],
                "offset": query["offset"],
                "schema_version": SCHEMA_VERSION,
            }
        )

    @extend_schema(
        operation_id="threads_create",
        request=ThreadCreateIn,
        parameters=[IDEMPOTENCY_HEADER_PARAMETER],
        responses={
            201: ThreadOut,
            200: OpenApiResponse(ThreadOut, description="Idempotent replay of an earlier create."),
            **errors(400, 401, 403, 409, 413),
        },
    )
    def post(self, request):
        payload = payload_dict(request.data)
        check_payload_identity(request.user, payload, action="thread.create")
        data = parse(ThreadCreateIn, payload)
        thread = services.thread_create(
            actor=request.user, title=data["title"], type=data["type"], participants=data["participants"],
            idempotency_key=idempotency_key_of(request, data["idempotency_key"]),
        )
        replay = thread.idempotent_replay
        return Response(thread_json(thread, replay=replay),
                        status=status.HTTP_200_OK if replay else status.HTTP_201_CREATED)


class ThreadDetailView(APIView):
    @extend_schema(operation_id="threads_get", responses={200: ThreadOut, **errors(401, 403, 404)})
    def get(self, request, thread_id: str):
        return Response(thread_json(thread_get(actor=request.user, thread_id=thread_id, op=Op.THREAD_READ)))


class ThreadStatusView(APIView):
    @extend_schema(
        operation_id="threads_status",
        request=StatusIn,
        responses={200: ThreadOut, **errors(400, 401, 403, 404, 409)},
        description="Change the thread's status. Allowed moves: "
        + "; ".join(f"{k} -> {', '.join(v) or '(none: final)'}" for k, v in transitions.ALLOWED.items()),
    )
    def post(self, request, thread_id: str):
        data = parse(StatusIn, payload_dict(request.data))
        thread = services.thread_transition(
            actor=request.user, thread_id=thread_id, status=data["status"], reason=data["reason"]
        )
        return Response(thread_json(thread))


class ThreadParticipantsView(APIView):
    @extend_schema(
        operation_id="threads_participants",
        request=ParticipantsIn,
        responses={200: ThreadOut, **errors(400, 401, 403, 404, 409)},
    )
    def post(self, request, thread_id: str):
        data = parse(ParticipantsIn, payload_dict(request.data))
        thread = services.participants_change(
            actor=request.user, thread_id=thread_id, add=data["add"], remove=data["remove"], reason=data["reason"]
        )
        return Response(thread_json(thread))


class ThreadSummaryView(APIView):
    @extend_schema(operation_id="threads_summary", responses={200: SummaryOut, **errors(401, 403, 404)})
    def get(self, request, thread_id: str):
        return Response(thread_summary(actor=request.user, thread_id=thread_id))

