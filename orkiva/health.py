"""Liveness and readiness. /healthz touches nothing; /readyz checks what the bridge depends on.

/healthz must answer while the database is down (a dependency outage would otherwise become
a restart loop). /readyz checks the database, that every migration is applied and that the
task queue table answers, with 503 and the failing check's details when one fails; it also
reports the qcluster's last heartbeat, as information only (the bridge can serve without it).
"""
from __future__ import annotations

from django.apps import apps
from django.db import DEFAULT_DB_ALIAS, connections, transaction
from django.db.migrations.executor import MigrationExecutor
from django.http import JsonResponse
from django.views.decorators.http import require_GET

from orkiva.observability import cluster_heartbeats, queue_state
from orkiva.versioning import SCHEMA_VERSION


@require_GET
def healthz(request) -> JsonResponse:
    return JsonResponse({"status": "ok", "schema_version": SCHEMA_VERSION})


def _check_database() -> dict:
    with connections[DEFAULT_DB_ALIAS].cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return {"ok": True}


def _check_migrations() -> dict:
    connection = connections[DEFAULT_DB_ALIAS]
    executor = MigrationExecutor(connection)
    pending = executor.migration_plan(executor.loader.graph.leaf_nodes())
    if pending:
        return {"ok": False, "pending": [f"{m.app_label}.{m.name}" for m, _ in pending]}
    return {"ok": True}


def _check_task_queue() -> dict:
    """django-q2's ORM broker table (`django_q_ormq`) answers; reports its depth."""
    state = queue_state()
    if state is None:
        return {"ok": True, "skipped": "django_q is not installed"}
    return {
        "ok": True,
        "depth": state["depth"],
        "delayed": state["delayed"],
        "oldest_age_seconds": round(state["oldest_age_seconds"], 3),
    }


READINESS_CHECKS = {"database": _check_database, "migrations": _check_migrations, "task_queue": _check_task_queue}


def _failure(exc: Exception) -> dict:
    return {"ok": False, "error": type(exc).__name__, "message": str(exc)[:300]}


def cluster_info() -> dict:
    """The qcluster's last heartbeat (django-q2 keeps it in the shared cache for a few seconds
    while a cluster runs) and the newest finished job, which dates a cluster that has stopped."""
    if not apps.is_installed("django_q"):
        return {"installed": False}
    from django_q.models import Task

    info: dict = {"installed": True}
    try:
        with transaction.atomic():
            clusters = cluster_heartbeats()
        info.update(
            alive=bool(clusters),
            clusters=clusters,
            last_heartbeat_at=clusters[0]["heartbeat_at"] if clusters else None,
        )
    except Exception as exc:  # information only: a missing cache table must not fail readiness
        info.update(alive=None, heartbeat_error=_failure(exc))
    try:
        with transaction.atomic():
            last = Task.objects.order_by("-stopped").values_list("stopped", flat=True).first()
        info["last_task_finished_at"] = last.isoformat() if last else None
    except Exception as exc:
        info["last_task_error"] = _failure(exc)
    return info


@require_GET
def readyz(request) -> JsonResponse:
    checks: dict[str, dict] = {}
    for name, check in READINESS_CHECKS.items():
        if name != "database" and not checks["database"]["ok"]:
            # Without a database the other checks cannot answer; do not wait on it again.
            checks[name] = {"ok": False, "skipped": "database unavailable"}
            continue
        try:
            with transaction.atomic():  # a failed check (e.g. a missing table) does not poison the next
                checks[name] = check()
        except Exception as exc:  # a dependency failure is the answer here, not a server error
            checks[name] = _failure(exc)
    ready = all(c["ok"] for c in checks.values())
    body = {"status": "ready" if ready else "not_ready", "checks": checks, "schema_version": SCHEMA_VERSION}
    if checks["database"]["ok"]:
        body["info"] = {"cluster": cluster_info()}
    return JsonResponse(body, status=200 if ready else 503)
