"""Jobs log with the request id of the request that enqueued them, in process (sync) and in a
real `manage.py qcluster`; /readyz and /metrics report the running cluster's heartbeat."""
from __future__ import annotations

import time

import pytest
import structlog
from django.test import Client
from django_q.tasks import async_task
from prometheus_client.parser import text_string_to_metric_families

from orkiva.context import bind_job_context, bind_request_id, current_call, current_request_id, job_context, reset_request_id
from tests.live import qcluster, subprocess_env
from tests.orkiva.logcapture import captured_json_logs, wait_for_lines

PROBE = "tests.orkiva.test_logging_jobs.probe_job"


def probe_job(tag: str) -> str | None:
    structlog.get_logger("orkiva.probe").info("probe_job", tag=tag)
    return current_request_id()


def test_a_job_logs_with_the_request_id_that_enqueued_it(db):
    token = bind_request_id("req-job-1")
    try:
        with captured_json_logs() as lines:
            async_task(PROBE, "inline", sync=True)
        assert current_request_id() == "req-job-1"  # restored after the job
    finally:
        reset_request_id(token)
    (line,) = [r for r in lines() if r["event"] == "probe_job"]
    assert line["request_id"] == "req-job-1"
    assert line["operation"] == "job:probe_job"
    assert line["tag"] == "inline"


def test_a_job_enqueued_outside_any_request_gets_a_fresh_id(db):
    assert current_request_id() is None
    with captured_json_logs() as lines:
        async_task(PROBE, "a", sync=True)
        async_task(PROBE, "b", sync=True)
    ids = [r["request_id"] for r in lines() if r["event"] == "probe_job"]
    assert len(ids) == 2 and all(ids) and ids[0] != ids[1]
    assert current_request_id() is None


def test_job_context_helpers_for_work_outside_django_q():
    token = bind_request_id("req-helper-1")
    try:
        context = job_context()
    finally:
        reset_request_id(token)
    assert context == {"request_id": "req-helper-1"}
    with bind_job_context(context, operation="job:elsewhere") as request_id:
        assert request_id == current_request_id() == "req-helper-1"
        assert current_call().operation == "job:elsewhere"
    assert current_request_id() is None
    with bind_job_context({"request_id": "bad id with spaces"}, operation="job:elsewhere") as request_id:
        assert request_id != "bad id with spaces"  # never trusted blindly: a fresh one


def _metric(text: str, name: str) -> float | None:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                return sample.value
    return None


@pytest.mark.django_db(transaction=True)
def test_a_real_qcluster_logs_jobs_with_their_request_id_and_reports_its_heartbeat(tmp_path):
    env = subprocess_env(ORKIVA_LOG_FORMAT="json", ORKIVA_Q_POLL="0.1", ORKIVA_Q_WORKERS="1")
    with qcluster(tmp_path, env=env) as cluster:
        log_path = cluster.log_path
        token = bind_request_id("req-live-1")
        try:
            async_task(PROBE, "live")
        finally:
            reset_request_id(token)
        lines = wait_for_lines(log_path, lambda r: r.get("event") == "probe_job", timeout=30)
        assert lines, log_path.read_text()
        assert lines[0]["request_id"] == "req-live-1"
        assert lines[0]["operation"] == "job:probe_job"
        assert lines[0]["pid"] != cluster.pid  # logged by a worker process of the cluster

        # The shared cache may still hold the last heartbeat of an earlier test's cluster: find ours.
        # The job's result is saved by the cluster's monitor after the job has logged: wait for it too.
        deadline = time.monotonic() + 20
        while True:
            ready = Client().get("/readyz").json()
            ours = [c for c in ready["info"]["cluster"].get("clusters", []) if c["pid"] == cluster.pid]
            finished = ready["info"]["cluster"].get("last_task_finished_at") is not None
            if (ours and finished) or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        cluster_info = ready["info"]["cluster"]
        assert cluster_info["alive"] is True and ours, (ready, log_path.read_text())
        assert cluster_info["last_heartbeat_at"] == cluster_info["clusters"][0]["heartbeat_at"]
        assert ours[0]["workers"] == 1
        assert cluster_info["last_task_finished_at"] is not None
        assert ready["status"] == "ready"
        assert _metric(Client().get("/metrics").content.decode(), "orkiva_clusters_alive") >= 1
