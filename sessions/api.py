"""/v1 session endpoints: heartbeat (upsert the caller's session) and lookup by agent id."""
from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from orkiva.api_base import IdentifierField, errors, parse, payload_dict
from policy.identity import IDENTIFIER_HELP, IDENTIFIER_RE
from policy.services import check_payload_identity
from sessions.models import RUNTIME_TYPES
from sessions.presenters import agent_sessions_json, session_json
from sessions.selectors import agent_sessions
from sessions.services import session_heartbeat


class HeartbeatIn(serializers.Serializer):
    session_id = IdentifierField(help_text="The runtime's resumable session id (e.g. Codex's thread id).")
    runtime_type = serializers.ChoiceField(choices=RUNTIME_TYPES, default="codex")
    resumable = serializers.BooleanField(default=True)
    agent_id = IdentifierField(required=False, help_text="Optional; must equal the token's agent_id.")
    workspace_id = IdentifierField(required=False, help_text="Optional; must equal the token's workspace_id.")


class SessionOut(serializers.Serializer):
    agent_id = serializers.CharField()
    workspace_id = serializers.CharField()
    session_id = serializers.CharField()
    runtime_type = serializers.ChoiceField(choices=RUNTIME_TYPES)
    resumable = serializers.BooleanField()
    last_heartbeat_at = serializers.DateTimeField()
    schema_version = serializers.IntegerField()


class AgentSessionsOut(serializers.Serializer):
    agent_id = serializers.CharField()
    latest_resumable = SessionOut(allow_null=True)
    sessions = SessionOut(many=True)
    schema_version = serializers.IntegerField()


class HeartbeatView(APIView):
    @extend_schema(operation_id="sessions_heartbeat", request=HeartbeatIn, responses={200: SessionOut, **errors(400, 401, 403)})
    def post(self, request):
        payload = payload_dict(request.data)
        check_payload_identity(request.user, payload, action="session.heartbeat")
        data = parse(HeartbeatIn, payload)
        session = session_heartbeat(
            actor=request.user, session_id=data["session_id"], runtime_type=data["runtime_type"], resumable=data["resumable"]
        )
        return Response(session_json(session))


class AgentSessionsView(APIView):
    @extend_schema(
        operation_id="sessions_get",
        parameters=[OpenApiParameter("agent_id", str, OpenApiParameter.PATH, pattern=f"^{IDENTIFIER_RE.pattern}$",
                                     description=f"An agent id: {IDENTIFIER_HELP}.")],
        responses={200: AgentSessionsOut, **errors(400, 401, 403, 404)},
    )
    def get(self, request, agent_id: str):
        latest, recent = agent_sessions(actor=request.user, agent_id=agent_id)
        return Response(agent_sessions_json(agent_id, latest, recent))
