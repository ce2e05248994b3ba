"""Orkiva's own metrics and log hooks. Services call these functions; the metrics backend
(prometheus_client, exported with django-prometheus's HTTP and database metrics at /metrics)
is wired here and nowhere else. docs/operations.md lists every metric.

The function names are the contract other modules call; keep them stable.

Several processes (gunicorn workers, the qcluster and its workers, manage.py commands) each
count into their own files under PROMETHEUS_MULTIPROC_DIR and /metrics sums them. That mode
is chosen by prometheus_client when it is imported, so settings puts the directory into the
environment before anything imports it; `check_metrics_mode` refuses a process where that
ordering went wrong instead of silently exporting one worker's numbers.
"""
from __future__ import annotations

import os

import structlog
from django.http import HttpResponse
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import REGISTRY as PROCESS_REGISTRY
from prometheus_client import values as prometheus_values
from prometheus_client.core import GaugeMetricFamily

from orkiva.context import bind_caller, bind_operation, current_call  # noqa: F401  (re-exported)

logger = structlog.get_logger("orkiva")

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

MESSAGES_POSTED = Counter(
    "orkiva_messages_posted_total", "Posts accepted, by message kind; replay=true for idempotent replays.",
    ["kind", "replay"],
)
READS = Counter("orkiva_reads_total", "Message reads served (one per read call).")
MESSAGES_READ = Counter("orkiva_messages_read_total", "Messages returned by reads.")
CURSOR_ACKS = Counter("orkiva_cursor_acks_total", "Read-cursor acknowledgements.")
FAILURES = Counter(
    "orkiva_failures_total", "Client-caused failures (domain errors) by stable error code and HTTP status.",
    ["code", "status"],
)
AUTH_FAILURES = Counter("orkiva_auth_failures_total", "Refused authentications (401) by error code.", ["code"])
ESCALATIONS = Counter("orkiva_escalations_total", "Escalations opened by policy or operators, by reason code.", ["reason"])
AUTO_BLOCKS = Counter("orkiva_thread_auto_blocks_total", "Threads policy moved to blocked on its own, by reason code.", ["reason"])
RATE_LIMITED = Counter("orkiva_rate_limited_total", "Posts refused by a rate limit, by scope.", ["scope"])
WAKES_REQUESTED = Counter("orkiva_wakes_requested_total", "Wake requests created (deduplicated ones not counted), by source.", ["source"])
WAKES_FINISHED = Counter(
    "orkiva_wakes_finished_total", "Wakes that reached a final status, by the path that ended them and outcome.",
    ["path", "outcome"],
)
WAKE_SECONDS = Histogram(
    "orkiva_wake_duration_seconds", "Seconds from a wake's creation to its final status, by path and outcome.",
    ["path", "outcome"],
    buckets=(0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600, 1200, 1800, 3600, float("inf")),
)
MCP_WAITERS = Gauge(
    "orkiva_mcp_waiters", "wait_for_messages calls blocked right now (summed over live processes).",
    multiprocess_mode="livesum",
)


def record_failure(err, *, log: bool = True) -> None:
    """A refused request (any interface): counted by code; 401s also as auth failures."""
    FAILURES.labels(code=err.code, status=str(err.status)).inc()
    if err.status == 401:
        AUTH_FAILURES.labels(code=err.code).inc()
    current_call().error_code = err.code
    if not log:
        return
    log = logger.warning if err.status < 500 else logger.error
    fields = {}
    if err.status >= 500 and err.__cause__ is not None:  # the database's failure behind a 503
        fields = {"cause": f"{type(err.__cause__).__name__}: {err.__cause__}", "exc_info": err.__cause__}
    log("domain_error", error_code=err.code, status=err.status, error_message=err.as_body()["message"], **fields)


def message_posted(*, kind: str, replay: bool) -> None:
    """A post was accepted (replay=True when an idempotency key replayed an earlier post)."""
    MESSAGES_POSTED.labels(kind=kind, replay="true" if replay else "false").inc()


def messages_read(*, count: int) -> None:
    """A read returned `count` messages."""
    READS.inc()
    MESSAGES_READ.inc(count)


def cursor_acked() -> None:
    """A read cursor was acknowledged."""
    CURSOR_ACKS.inc()


def escalation_opened(*, reason_code: str) -> None:
    """Policy opened an escalation (loop_threshold, no_progress, repeated_finding, operator, ...)."""
    ESCALATIONS.labels(reason=reason_code).inc()
    logger.warning("escalation_opened", reason_code=reason_code)


def thread_auto_blocked(*, reason_code: str) -> None:
    """Policy moved a thread to blocked on its own."""
    AUTO_BLOCKS.labels(reason=reason_code).inc()
    logger.warning("thread_auto_blocked", reason_code=reason_code)


def rate_limited(*, scope: str) -> None:
    """A post was refused by a rate limit (scope: thread or workspace)."""
    RATE_LIMITED.labels(scope=scope).inc()


def wake_requested(*, source: str) -> None:
    """A wake request row was created (source: trigger, auto, operator); deduped ones are not counted."""
    WAKES_REQUESTED.labels(source=source).inc()


def wake_finished(*, path: str, outcome: str, seconds: float) -> None:
    """A wake reached its final status (path: inject, resume, spawn, none; outcome: delivered, failed, ...)."""
    WAKES_FINISHED.labels(path=path, outcome=outcome).inc()
    WAKE_SECONDS.labels(path=path, outcome=outcome).observe(max(seconds, 0.0))
    logger.info("wake_finished", path=path, outcome=outcome, seconds=round(seconds, 3))


def mcp_waiter_started() -> None:
    """A wait_for_messages call began waiting (nothing new yet)."""
    MCP_WAITERS.inc()


def mcp_waiter_finished() -> None:
    """That wait ended (woken or timed out)."""
    MCP_WAITERS.dec()


# --- the scrape ------------------------------------------------------------------------------------
def multiprocess_dir() -> str | None:
    return os.environ.get(MULTIPROC_ENV) or None


def check_metrics_mode() -> None:
    """Fail loudly if prometheus_client was imported before PROMETHEUS_MULTIPROC_DIR was set
    (or the other way round): each process would then count only for itself."""
    from django.core.exceptions import ImproperlyConfigured

    multiprocess_values = getattr(prometheus_values.ValueClass, "_multiprocess", False)
    if bool(multiprocess_dir()) != bool(multiprocess_values):
        raise ImproperlyConfigured(
            f"{MULTIPROC_ENV} must be in the environment before prometheus_client is imported "
            "(set ORKIVA_METRICS_DIR or PROMETHEUS_MULTIPROC_DIR before the process starts)"
        )


class QueueCollector:
    """Collected at scrape time from the database: the task queue (django-q2's ORM broker table)
    and the cluster's last heartbeat. A database outage leaves these out of the scrape rather
    than failing it (/readyz reports the outage)."""

    def collect(self):
        try:
            state = queue_state()
        except Exception:  # the scrape must not fail with the database; the gauge is just absent
            logger.debug("queue_state_unavailable", exc_info=True)
            return
        if state is None:
            return
        depth = GaugeMetricFamily("orkiva_task_queue_depth", "Jobs waiting in the task queue and due now.")
        depth.add_metric([], state["depth"])
        yield depth
        delayed = GaugeMetricFamily(
            "orkiva_task_queue_delayed", "Jobs locked until later: scheduled for later, or delivered and running."
        )
        delayed.add_metric([], state["delayed"])
        yield delayed
        oldest = GaugeMetricFamily(
            "orkiva_task_queue_oldest_age_seconds", "Age of the longest-waiting due job (0 when none)."
        )
        oldest.add_metric([], state["oldest_age_seconds"])
        yield oldest
        try:
            alive = len(cluster_heartbeats())
        except Exception:
            logger.debug("cluster_heartbeats_unavailable", exc_info=True)
            return
        clusters = GaugeMetricFamily("orkiva_clusters_alive", "qclusters with a fresh heartbeat.")
        clusters.add_metric([], alive)
        yield clusters


def queue_state(now=None) -> dict | None:
    """Depth and age of django-q2's ORM queue (table django_q_ormq); None without django_q."""
    from django.apps import apps
    from django.db.models import Count, Min, Q
    from django.utils import timezone

    if not apps.is_installed("django_q"):
        return None
    from django_q.conf import Conf
    from django_q.models import OrmQ

    moment = now or timezone.now()
    due, later = Q(lock__lte=moment), Q(lock__gt=moment)
    found = OrmQ.objects.using(Conf.ORM or "default").filter(key=Conf.CLUSTER_NAME).aggregate(
        oldest=Min("lock", filter=due), depth=Count("id", filter=due), delayed=Count("id", filter=later)
    )
    oldest = found["oldest"]
    return {
        "depth": found["depth"],
        "delayed": found["delayed"],
        "oldest_age_seconds": max((moment - oldest).total_seconds(), 0.0) if oldest else 0.0,
    }


def cluster_heartbeats() -> list[dict]:
    """The qclusters whose heartbeat (django-q2's Stat, kept in the shared cache for a few
    seconds) is fresh: id, host, status, workers and the heartbeat's time."""
    from django.apps import apps

    if not apps.is_installed("django_q"):
        return []
    from django_q.status import Stat

    found = []
    for stat in Stat.get_all():
        found.append(
            {
                "cluster_id": str(stat.cluster_id),
                "host": stat.host,
                "status": stat.status,
                "pid": stat.pid,
                "workers": len(stat.workers),
                "heartbeat_at": stat.timestamp.isoformat(),
            }
        )
    return sorted(found, key=lambda c: c["heartbeat_at"], reverse=True)


def metrics_registry() -> CollectorRegistry:
    """What /metrics exports: every process's counters summed when several processes share
    the multiprocess directory, this process's registry otherwise, plus the queue gauges."""
    from prometheus_client import multiprocess

    registry = CollectorRegistry()
    if multiprocess_dir():
        multiprocess.MultiProcessCollector(registry)
    else:
        registry.register(PROCESS_REGISTRY)
    registry.register(QueueCollector())
    return registry


@require_GET
def metrics_view(request) -> HttpResponse:
    """GET /metrics: the Prometheus text exposition (never django-prometheus's export port)."""
    bind_operation("metrics")
    return HttpResponse(generate_latest(metrics_registry()), content_type=CONTENT_TYPE_LATEST)

