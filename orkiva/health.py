"""Liveness and readiness. /healthz touches nothing; /readyz checks what the bridge depends on."""
from __future__ import annotations

from django.db import DEFAULT_DB_ALIAS, connections
from django.db.migrations.executor import MigrationExecutor
from django.http import JsonResponse
from django.views.decorators.http import require_GET

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


READINESS_CHECKS = {"database": _check_database, "migrations": _check_migrations}


@require_GET
def readyz(request) -> JsonResponse:
    checks: dict[str, dict] = {}
    for name, check in READINESS_CHECKS.items():
        try:
            checks[name] = check()
        except Exception as exc:  # a dependency failure is the answer here, not a server error
            checks[name] = {"ok": False, "error": type(exc).__name__, "message": str(exc)[:300]}
    ready = all(c["ok"] for c in checks.values())
    return JsonResponse(
        {"status": "ready" if ready else "not_ready", "checks": checks, "schema_version": SCHEMA_VERSION},
        status=200 if ready else 503,
    )
