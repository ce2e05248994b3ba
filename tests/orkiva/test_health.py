"""/healthz answers without dependencies; /readyz checks the database, migrations and the task
queue table, answering 503 with per-check JSON when one fails."""
from __future__ import annotations

import httpx
import pytest
from django.db import connection
from django.test import Client
from django_q.tasks import async_task

from tests.live import bridge_server, free_port, subprocess_env


def test_healthz_touches_nothing(db, django_assert_num_queries):
    with django_assert_num_queries(0):
        response = Client().get("/healthz")
    assert response.status_code == 200 and response.json()["status"] == "ok"


def test_readyz_reports_every_check_and_the_cluster(db):
    async_task("tests.orkiva.test_logging_jobs.probe_job", "queued")  # waits: no cluster in this test
    response = Client().get("/readyz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ready"
    assert body["checks"]["database"] == {"ok": True}
    assert body["checks"]["migrations"] == {"ok": True}
    queue = body["checks"]["task_queue"]
    assert (queue["ok"], queue["depth"], queue["delayed"]) == (True, 1, 0)
    cluster = body["info"]["cluster"]
    assert (cluster["alive"], cluster["clusters"], cluster["last_heartbeat_at"]) == (False, [], None)


def test_readyz_is_503_when_the_task_queue_table_is_missing(db):
    with connection.cursor() as cursor:  # rolled back with the test's transaction
        cursor.execute("DROP TABLE django_q_ormq")
    response = Client().get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "not_ready"
    assert body["checks"]["database"]["ok"] and body["checks"]["migrations"]["ok"]
    failed = body["checks"]["task_queue"]
    assert failed["ok"] is False and failed["error"] in {"ProgrammingError", "OperationalError"}


def test_healthz_answers_and_readyz_refuses_while_the_database_is_unreachable(tmp_path):
    closed_port = free_port()  # nothing listens there
    env = subprocess_env(DATABASE_URL=f"postgres://postgres@127.0.0.1:{closed_port}/orkiva")
    with bridge_server(tmp_path, server="gunicorn", workers=1, env=env) as bridge:  # waits for /healthz 200
        assert httpx.get(f"{bridge.base_url}/healthz").status_code == 200
        response = httpx.get(f"{bridge.base_url}/readyz")
        metrics = httpx.get(f"{bridge.base_url}/metrics")
    # The scrape still answers (it is how the outage is seen), without the database-read gauges.
    assert metrics.status_code == 200 and "django_db_new_connection_errors_total" in metrics.text
    assert "orkiva_task_queue_depth" not in metrics.text
    assert response.status_code == 503
    checks = response.json()["checks"]
    assert checks["database"]["ok"] is False and checks["database"]["error"] == "OperationalError"
    assert checks["migrations"] == checks["task_queue"] == {"ok": False, "skipped": "database unavailable"}


def test_readyz_refuses_while_migrations_are_unapplied(tmp_path):
    env = subprocess_env(DATABASE_URL=f"sqlite:///{tmp_path / 'fresh.sqlite3'}")  # an empty database
    with bridge_server(tmp_path, server="gunicorn", workers=1, env=env) as bridge:
        response = httpx.get(f"{bridge.base_url}/readyz")
    assert response.status_code == 503
    checks = response.json()["checks"]
    assert checks["database"] == {"ok": True}
    assert checks["migrations"]["ok"] is False
    assert {"messaging.0001_initial", "django_q.0001_initial"} <= set(checks["migrations"]["pending"])
    assert checks["task_queue"]["ok"] is False  # its table does not exist yet


@pytest.mark.django_db(transaction=True)
def test_a_migrated_database_is_ready_in_a_real_process(tmp_path):
    with bridge_server(tmp_path) as bridge:
        response = httpx.get(f"{bridge.base_url}/readyz")
    assert response.status_code == 200, response.text
    assert all(check["ok"] for check in response.json()["checks"].values())
