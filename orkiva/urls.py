"""URL map: /v1 (REST), /v1/mcp (MCP), /v1/schema (OpenAPI), /healthz, /readyz and /metrics."""
from django.conf import settings
from django.urls import path
from drf_spectacular.renderers import OpenApiJsonRenderer
from drf_spectacular.views import SpectacularAPIView

from messaging.api import AckView, MessageCollectionView
from orkiva.health import healthz, readyz
from orkiva.mcp.view import mcp_async_view, mcp_view
from orkiva.observability import metrics_view
from policy.api import RefreshView
from sessions.api import AgentSessionsView, HeartbeatView
from supervisor.api import (
    RuntimeDeregisterView,
    RuntimeEventView,
    RuntimeHeartbeatView,
    RuntimeRegisterView,
    WakeDetailView,
    WakeTriggerView,
)
from threads.api import (
    ThreadCollectionView,
    ThreadDetailView,
    ThreadParticipantsView,
    ThreadStatusView,
    ThreadSummaryView,
)


class SchemaView(SpectacularAPIView):
    """The generated OpenAPI 3 document; public, so clients can be generated without a token."""

    authentication_classes = []
    permission_classes = []
    renderer_classes = [OpenApiJsonRenderer]


urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("readyz", readyz, name="readyz"),
    path("metrics", metrics_view, name="metrics"),
    path("v1/schema", SchemaView.as_view(), name="schema"),
    # On the event loop under ASGI (production), on its request thread under WSGI (orkiva.mcp.view).
    path("v1/mcp", mcp_async_view if settings.ORKIVA_ASGI else mcp_view, name="mcp"),
    path("v1/threads", ThreadCollectionView.as_view(), name="threads"),
    path("v1/threads/<str:thread_id>", ThreadDetailView.as_view(), name="thread"),
    path("v1/threads/<str:thread_id>/status", ThreadStatusView.as_view(), name="thread-status"),
    path("v1/threads/<str:thread_id>/participants", ThreadParticipantsView.as_view(), name="thread-participants"),
    path("v1/threads/<str:thread_id>/summary", ThreadSummaryView.as_view(), name="thread-summary"),
    path("v1/threads/<str:thread_id>/messages", MessageCollectionView.as_view(), name="thread-messages"),
    path("v1/threads/<str:thread_id>/ack", AckView.as_view(), name="thread-ack"),
    path("v1/sessions/heartbeat", HeartbeatView.as_view(), name="session-heartbeat"),
    path("v1/sessions/<str:agent_id>", AgentSessionsView.as_view(), name="agent-sessions"),
    path("v1/auth/refresh", RefreshView.as_view(), name="auth-refresh"),
    path("v1/threads/<str:thread_id>/wake", WakeTriggerView.as_view(), name="thread-wake"),
    path("v1/wakes/<str:wake_id>", WakeDetailView.as_view(), name="wake"),
    path("v1/runtimes", RuntimeRegisterView.as_view(), name="runtimes"),
    path("v1/runtimes/heartbeat", RuntimeHeartbeatView.as_view(), name="runtime-heartbeat"),
    path("v1/runtimes/events", RuntimeEventView.as_view(), name="runtime-event"),
    path("v1/runtimes/deregister", RuntimeDeregisterView.as_view(), name="runtime-deregister"),
]

handler400 = "orkiva.errors.json_handler400"
handler404 = "orkiva.errors.json_handler404"
handler500 = "orkiva.errors.json_handler500"
