"""Orkiva's own metrics, counted in process by the real services and views, and the /metrics scrape."""
from __future__ import annotations

import os

import pytest
from django.test import Client
from django_q.tasks import async_task
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from rest_framework.test import APIClient

from messaging.selectors import message_page
from messaging.services import cursor_ack, message_post
from orkiva import observability
from tests.conftest import client_for
from tests.factories import CoordinatorFactory, ThreadFactory
from tests.live import run_manage, subprocess_env


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


class Delta:
    """The change of one sample across a block."""

    def __init__(self, name: str, **labels: str):
        self.name, self.labels = name, labels

    def __enter__(self):
        self.before = value(self.name, **self.labels)
        return self

    def __exit__(self, *exc):
        self.change = value(self.name, **self.labels) - self.before


def test_posts_replays_reads_and_acks_are_counted(db, thread, executioner, reviewer):
    with Delta("orkiva_messages_posted_total", kind="finding", replay="false") as posted, Delta(
        "orkiva_messages_posted_total", kind="finding", replay="true"
    ) as replayed:
        message_post(actor=executioner, thread_id=thread.pk, body="bug in x", kind="finding", idempotency_key="k1")
        message_post(actor=executioner, thread_id=thread.pk, body="bug in x", kind="finding", idempotency_key="k1")
        message_post(actor=executioner, thread_id=thread.pk, body="bug in y", kind="finding")
    assert (posted.change, replayed.change) == (2, 1)

    with Delta("orkiva_reads_total") as reads, Delta("orkiva_messages_read_total") as returned:
        message_page(actor=reviewer, thread_id=thread.pk, after_seq=None, limit=50)
        message_page(actor=reviewer, thread_id=thread.pk, after_seq=1, limit=50)
    assert (reads.change, returned.change) == (2, 3)

    with Delta("orkiva_cursor_acks_total") as acks:
        cursor_ack(actor=reviewer, thread_id=thread.pk, seq=2)
    assert acks.change == 1


def test_a_refused_post_is_not_counted_as_posted(db, thread, outsider):
    with Delta("orkiva_messages_posted_total", kind="message", replay="false") as posted, Delta(
        "orkiva_failures_total", code="thread_not_found", status="404"
    ) as failed:
        response = client_for(outsider).post(f"/v1/threads/{thread.pk}/messages", {"body": "hi"}, format="json")
    assert response.status_code == 404
    assert (posted.change, failed.change) == (0, 1)


@pytest.mark.parametrize(
    ("headers", "code"),
    [({}, "missing_token"), ({"HTTP_AUTHORIZATION": "Bearer not.a.jwt"}, "malformed_token")],
)
def test_auth_failures_are_counted_by_code(db, headers, code):
    with Delta("orkiva_auth_failures_total", code=code) as auth, Delta(
        "orkiva_failures_total", code=code, status="401"
    ) as failures:
        assert APIClient().get("/v1/threads", **headers).status_code == 401
    assert (auth.change, failures.change) == (1, 1)


def test_domain_errors_that_are_not_401_are_not_auth_failures(db, thread, executioner):
    with Delta("orkiva_failures_total", code="validation_error", status="400") as failures:
        response = client_for(executioner).post(f"/v1/threads/{thread.pk}/messages", {"body": ""}, format="json")
    assert response.status_code == 400 and response.json()["error"]["code"] == "validation_error"
    assert failures.change == 1
    assert value("orkiva_auth_failures_total", code="validation_error") == 0


# The hooks policy and the supervisor call: one table, one test, every hook.
HOOKS = [
    (lambda: observability.escalation_opened(reason_code="loop_threshold"), "orkiva_escalations_total", {"reason": "loop_threshold"}),
    (lambda: observability.thread_auto_blocked(reason_code="no_progress"), "orkiva_thread_auto_blocks_total", {"reason": "no_progress"}),
    (lambda: observability.rate_limited(scope="thread"), "orkiva_rate_limited_total", {"scope": "thread"}),
    (lambda: observability.wake_requested(source="auto"), "orkiva_wakes_requested_total", {"source": "auto"}),
    (
        lambda: observability.wake_finished(path="resume", outcome="delivered", seconds=12.5),
        "orkiva_wakes_finished_total",
        {"path": "resume", "outcome": "delivered"},
    ),
]


@pytest.mark.parametrize(("call", "name", "labels"), HOOKS)
def test_each_hook_counts_under_its_labels(call, name, labels):
    with Delta(name, **labels) as counted:
        call()
    assert counted.change == 1


def test_wake_latency_lands_in_the_right_bucket():
    labels = {"path": "inject", "outcome": "failed"}
    with Delta("orkiva_wake_duration_seconds_bucket", le="10.0", **labels) as le10, Delta(
        "orkiva_wake_duration_seconds_bucket", le="20.0", **labels
    ) as le20, Delta("orkiva_wake_duration_seconds_sum", **labels) as total:
        observability.wake_finished(seconds=12.5, **labels)
    assert (le10.change, le20.change, total.change) == (0, 1, 12.5)


def families(text: str) -> dict:
    return {family.name: family for family in text_string_to_metric_families(text)}


def test_metrics_exports_library_http_and_db_metrics_ours_and_the_queue(db, thread, executioner):
    from supervisor.queue import enqueue_wake

    client_for(executioner).post(f"/v1/threads/{thread.pk}/messages", {"body": "hi"}, format="json")
    async_task("tests.orkiva.test_logging_jobs.probe_job", "queued")  # stays queued: no cluster runs
    enqueue_wake("00000000-0000-0000-0000-000000000000", delay_seconds=600)  # a delayed job

    response = Client().get("/metrics")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    found = families(response.content.decode())
    # django-prometheus's own HTTP and database metrics
    assert "django_http_requests_total_by_method" in found
    assert "django_http_responses_total_by_status_view_method" in found
    assert "django_db_execute" in found
    # ours
    posted = found["orkiva_messages_posted"]
    assert posted.type == "counter"
    assert any(s.labels == {"kind": "message", "replay": "false"} and s.value >= 1 for s in posted.samples)
    # the queue, read from the database at scrape time
    assert found["orkiva_task_queue_depth"].samples[0].value == 1
    assert found["orkiva_task_queue_delayed"].samples[0].value == 1
    assert found["orkiva_task_queue_oldest_age_seconds"].samples[0].value >= 0
    assert found["orkiva_clusters_alive"].samples[0].value == 0


def test_metrics_refuses_writes(db):
    assert Client().post("/metrics").status_code == 405


# --- the multiprocess switch --------------------------------------------------------------------
def test_orkiva_metrics_dir_is_exported_and_created_before_prometheus_client_loads(tmp_path):
    target = tmp_path / "new" / "metrics"
    proc = run_manage(
        "shell", "-c",
        "import os; from prometheus_client import values; "
        "print(os.environ['PROMETHEUS_MULTIPROC_DIR'], values.ValueClass._multiprocess)",
        env=subprocess_env(ORKIVA_METRICS_DIR=str(target)),
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1].split() == [str(target), "True"]
    assert target.is_dir()


def test_a_process_that_imported_prometheus_client_too_early_refuses_to_start(tmp_path):
    import subprocess
    import sys

    from tests.live import REPO

    code = (
        "import prometheus_client, os, django\n"  # imported before settings exported the directory
        "os.environ['DJANGO_SETTINGS_MODULE'] = 'orkiva.settings'\n"
        "django.setup()\n"
    )
    env = subprocess_env(ORKIVA_METRICS_DIR=str(tmp_path / "m"))
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert "PROMETHEUS_MULTIPROC_DIR must be in the environment before prometheus_client is imported" in proc.stderr


def test_the_two_directory_settings_must_agree(tmp_path):
    env = subprocess_env(ORKIVA_METRICS_DIR=str(tmp_path / "a"), PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "b"))
    proc = run_manage("check", env=env)
    assert proc.returncode != 0 and "name different directories" in proc.stderr


def test_gunicorn_child_exit_drops_a_dead_workers_live_gauges_and_keeps_its_counters(tmp_path, monkeypatch):
    import runpy
    from types import SimpleNamespace

    from tests.live import REPO

    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "")  # recorded, so the conf's export is undone after
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR")
    monkeypatch.setenv("ORKIVA_METRICS_DIR", str(tmp_path))
    conf = runpy.run_path(str(REPO / "infra" / "gunicorn.conf.py"))
    assert os.environ["PROMETHEUS_MULTIPROC_DIR"] == str(tmp_path)  # exported for the workers it forks
    (tmp_path / "gauge_livesum_4242.db").write_bytes(b"")
    (tmp_path / "counter_4242.db").write_bytes(b"")
    conf["child_exit"](None, SimpleNamespace(pid=4242))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["counter_4242.db"]


def test_policy_decisions_count_through_the_real_controls(db, settings, thread, executioner, reviewer,
                                                         django_capture_on_commit_callbacks):
    """Not the hooks alone: a repeated finding blocks the thread and a flood is refused, and the
    scrape says so, by reason and scope."""
    from orkiva.errors import RateLimited

    with Delta("orkiva_thread_auto_blocks_total", reason="repeated_finding") as blocks, Delta(
        "orkiva_escalations_total", reason="repeated_finding"
    ) as escalations:
        with django_capture_on_commit_callbacks(execute=True):
            for _ in range(3):
                message_post(actor=reviewer, thread_id=thread.pk, body="Null deref in parse()", kind="finding")
    assert (blocks.change, escalations.change) == (1, 1)

    settings.ORKIVA_RATE_LIMIT_THREAD_POSTS = 1
    other = ThreadFactory(coordinator=CoordinatorFactory(agent_id="coordinator", workspace_id="ws-main"),
                          participants=["executioner"])
    with Delta("orkiva_rate_limited_total", scope="thread") as limited:
        message_post(actor=executioner, thread_id=other.pk, body="one")
        with pytest.raises(RateLimited):
            message_post(actor=executioner, thread_id=other.pk, body="two")
    assert limited.change == 1
