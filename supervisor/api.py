"""/v1 supervisor endpoints: trigger a wake (202, answers at once), read a wake, and the caller's
own runtime registration (register, heartbeat, deregister; identity from the token)."""
from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from orkiva.api_base import IdentifierField, TextField, errors, parse, payload_dict
from orkiva.versioning import EVENT_VERSION
from policy.services import check_payload_identity
from sessions.models import RUNTIME_TYPES
from supervisor import services
from supervisor.models import AGENT_STATES, PTY_BACKENDS, PTY_NONE
from supervisor.presenters import runtime_json, wake_json
from supervisor.selectors import wake_get
from supervisor.services.runtimes import PANE_TARGET
from supervisor.services.signals import EVENTS, runtime_signal


class WakeIn(serializers.Serializer):
    agent_id = IdentifierField(help_text="The participant to wake.")
    reason = TextField(max_length=1000, required=False, default="", allow_blank=True)


class WakeStepOut(serializers.Serializer):
    step = serializers.CharField()
    outcome = serializers.CharField()
    reason_code = serializers.CharField()
    at = serializers.DateTimeField()
    started_at = serializers.DateTimeField()
    detail = serializers.DictField()


class WakeTraceOut(serializers.Serializer):
    trace_id = serializers.CharField()
    dedupe_key = serializers.CharField()
    event_version = serializers.IntegerField(help_text="The version of the steps' shape (events of the chain).")
    steps = WakeStepOut(many=True)


class WakeOut(serializers.Serializer):
    wake_id = serializers.UUIDField()
    status = serializers.CharField()
    thread_id = serializers.UUIDField()
    agent_id = serializers.CharField()
    workspace_id = serializers.CharField()
    source = serializers.CharField()
    reason_code = serializers.CharField()
    reason = serializers.CharField(allow_null=True)
    force = serializers.BooleanField()
    deduped = serializers.BooleanField()
    final = serializers.BooleanField()
    path = serializers.CharField(allow_null=True)
    attempts = serializers.DictField(child=serializers.IntegerField())
    created_at = serializers.DateTimeField()
    next_attempt_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    trace = WakeTraceOut()
    schema_version = serializers.IntegerField()


class RuntimeIn(serializers.Serializer):
    runtime_type = serializers.ChoiceField(choices=RUNTIME_TYPES, default="codex")
    session_id = IdentifierField(required=False, default="", allow_blank=True)
    pid = serializers.IntegerField(min_value=1, max_value=2**31 - 1, required=False, allow_null=True, default=None)
    pty_backend = serializers.ChoiceField(choices=PTY_BACKENDS, default=PTY_NONE)
    pty_target = TextField(max_length=256, required=False, default="", allow_blank=True, pattern=PANE_TARGET.pattern,
                           pattern_help="a tmux target: session:window.pane, or a pane id such as %3")
    host = TextField(max_length=255, required=False, default="", allow_blank=True)
    agent_id = IdentifierField(required=False, help_text="Optional; must equal the token's agent_id.")
    workspace_id = IdentifierField(required=False, help_text="Optional; must equal the token's workspace_id.")


class RuntimeHeartbeatIn(serializers.Serializer):
    session_id = IdentifierField(required=False, default="", allow_blank=True)


class RuntimeEventIn(serializers.Serializer):
    event = serializers.ChoiceField(choices=list(EVENTS), help_text="What the agent's CLI reported.")
    session_id = IdentifierField(required=False, default="", allow_blank=True,
                                 help_text="The CLI's own session id (Codex's thread id, Claude Code's session id).")
    workdir = TextField(max_length=1024, required=False, default="", allow_blank=True, pattern=r"/[^\x00]*",
                        pattern_help="an absolute path", help_text="The directory the session runs in (an absolute path).")
    wake_ref = TextField(max_length=32, required=False, default="", allow_blank=True, pattern=r"w-[0-9a-f]{12}",
                         pattern_help="w- and 12 hexadecimal digits",
                         help_text="turn_started: the wake marker (w-...) found in the prompt, if any.")
    event_version = serializers.IntegerField(
        required=False, default=EVENT_VERSION, min_value=1, max_value=EVENT_VERSION,
        help_text=f"The version of the event's shape ({EVENT_VERSION}); a newer one than the bridge knows is refused.")


class RuntimeDeregisterIn(serializers.Serializer):
    reason = TextField(max_length=1000, required=False, default="", allow_blank=True)


class RuntimeOut(serializers.Serializer):
    agent_id = serializers.CharField()
    workspace_id = serializers.CharField()
    session_id = serializers.CharField(allow_null=True)
    runtime_type = serializers.CharField()
    pid = serializers.IntegerField(allow_null=True)
    pty_backend = serializers.CharField()
    pty_target = serializers.CharField(allow_null=True)
    management_mode = serializers.CharField()
    host = serializers.CharField(allow_null=True)
    workdir = serializers.CharField(allow_null=True)
    paused = serializers.BooleanField()
    state = serializers.CharField()
    state_source = serializers.CharField(allow_null=True, help_text="Which signals report the agent's state.")
    agent_state = serializers.ChoiceField(choices=AGENT_STATES, help_text="What the agent itself is doing.")
    agent_state_at = serializers.DateTimeField(allow_null=True)
    last_heartbeat_at = serializers.DateTimeField(allow_null=True)
    registered_at = serializers.DateTimeField()
    guidance = serializers.CharField(required=False)
    schema_version = serializers.IntegerField()


class WakeTriggerView(APIView):
    @extend_schema(
        operation_id="wakes_trigger",
        request=WakeIn,
        responses={202: WakeOut, **errors(400, 401, 403, 404, 409, 429)},
        description="Ask the supervisor to wake a participant about this thread. Answers at once with the "
        "wake's id, status and trace; a burst of triggers collapses onto one wake (`deduped`).",
    )
    def post(self, request, thread_id: str):
        payload = payload_dict(request.data)
        # `agent_id` here names the agent to wake, not the caller: only the workspace is checked.
        check_payload_identity(request.user, {"workspace_id": payload.get("workspace_id")}, action="wake.trigger")
        data = parse(WakeIn, {k: v for k, v in payload.items() if k != "workspace_id"})
        wake = services.wake_trigger(
            actor=request.user, thread_id=thread_id, agent_id=data["agent_id"], reason=data["reason"]
        )
        return Response(wake_json(wake), status=status.HTTP_202_ACCEPTED)


class WakeDetailView(APIView):
    @extend_schema(operation_id="wakes_get", responses={200: WakeOut, **errors(401, 403, 404)})
    def get(self, request, wake_id: str):
        return Response(wake_json(wake_get(actor=request.user, wake_id=wake_id)))


class RuntimeRegisterView(APIView):
    @extend_schema(
        operation_id="runtimes_register",
        request=RuntimeIn,
        responses={200: RuntimeOut, **errors(400, 401, 403)},
        description="Register your own runtime. Self-registered runtimes are unmanaged (never typed into); "
        "the response's `guidance` says how to run the agent managed.",
    )
    def post(self, request):
        payload = payload_dict(request.data)
        check_payload_identity(request.user, payload, action="runtime.register")
        data = parse(RuntimeIn, payload)
        runtime = services.runtime_register(
            actor=request.user, runtime_type=data["runtime_type"], session_id=data["session_id"], pid=data["pid"],
            pty_backend=data["pty_backend"], pty_target=data["pty_target"], host=data["host"],
        )
        return Response(runtime_json(runtime))


class RuntimeHeartbeatView(APIView):
    @extend_schema(operation_id="runtimes_heartbeat", request=RuntimeHeartbeatIn,
                   responses={200: RuntimeOut, **errors(400, 401, 403, 404)})
    def post(self, request):
        data = parse(RuntimeHeartbeatIn, payload_dict(request.data))
        runtime = services.runtime_heartbeat(actor=request.user, session_id=data["session_id"])
        return Response(runtime_json(runtime))


class RuntimeEventView(APIView):
    @extend_schema(
        operation_id="runtimes_event",
        request=RuntimeEventIn,
        responses={200: RuntimeOut, **errors(400, 401, 403, 404, 409)},
        description="What your CLI is doing, reported by the hooks a launch configures (supervisor/hook.py): "
        "a session or a turn started or ended, an approval awaited. Not a heartbeat.",
    )
    def post(self, request):
        data = parse(RuntimeEventIn, payload_dict(request.data))
        runtime = runtime_signal(actor=request.user, event=data["event"], session_id=data["session_id"],
                                 workdir=data["workdir"], wake_ref=data["wake_ref"])
        return Response(runtime_json(runtime))


class RuntimeDeregisterView(APIView):
    @extend_schema(operation_id="runtimes_deregister", request=RuntimeDeregisterIn,
                   responses={200: RuntimeOut, **errors(400, 401, 403, 404)})
    def post(self, request):
        data = parse(RuntimeDeregisterIn, payload_dict(request.data))
        actor = request.user
        runtime = services.runtime_deregister(
            actor=actor, workspace_id=actor.workspace_id, agent_id=actor.agent_id, reason=data["reason"]
        )
        return Response(runtime_json(runtime))
