"""Counters summed across processes: gunicorn with three workers, a qcluster with two workers and
a manage.py command all count into one PROMETHEUS_MULTIPROC_DIR, and /metrics (served by any
worker) reports the sums."""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from django_q.models import Task
from django_q.tasks import async_task
from prometheus_client.parser import text_string_to_metric_families

from messaging.services import message_post
from tests.conftest import RELAXED_POLICY, token_for
from tests.factories import ActorFactory
from tests.live import bridge_server, qcluster, run_manage, subprocess_env
from tests.orkiva.logcapture import json_lines

# 66 posts by one agent into one thread: the policy controls would (rightly) stop that.
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("relaxed_policy")]

HTTP_POSTS = 60
JOB_POSTS = 6


def post_job(thread_id: str, n: int) -> int:
    """Runs in a qcluster worker: a real post, counted in that worker's metrics file."""
    actor = ActorFactory(agent_id="executioner", workspace_id="ws-main")
    return message_post(actor=actor, thread_id=thread_id, body=f"from the cluster {n}").message.seq


def summed(text: str, sample_name: str, **labels: str) -> float:
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == sample_name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def test_counters_are_summed_across_gunicorn_workers_the_cluster_and_commands(tmp_path, thread, executioner):
    metrics_dir = tmp_path / "metrics"
    env = subprocess_env(PROMETHEUS_MULTIPROC_DIR=str(metrics_dir), ORKIVA_LOG_FORMAT="json", **RELAXED_POLICY)
    headers = {"Authorization": f"Bearer {token_for(executioner)}"}

    with bridge_server(tmp_path, server="gunicorn", workers=3, env=env) as bridge:
        def post(n: int) -> int:
            # A fresh connection per request, several at once, so every worker gets some.
            return httpx.post(
                f"{bridge.base_url}/v1/threads/{thread.pk}/messages", json={"body": f"post {n}"}, headers=headers
            ).status_code

        with ThreadPoolExecutor(max_workers=12) as pool:
            statuses = list(pool.map(post, range(HTTP_POSTS)))
        assert statuses == [201] * HTTP_POSTS, bridge.log()
        served_by = {
            row["pid"] for row in json_lines(bridge.log())
            if row.get("event") == "request" and row.get("operation") == "messages_post"
        }
        assert len(served_by) >= 2, f"one worker served every post: {served_by}"

        # A management command, a separate short-lived process, counting a failure.
        command = run_manage("orkiva_revoke_token", "--session-id", "s-1", "--reason", "t", "--json", env=env)
        assert command.returncode == 2 and '"usage_error"' in command.stdout

        # The cluster's worker processes post too.
        with qcluster(tmp_path, env={**env, "ORKIVA_Q_POLL": "0.1", "ORKIVA_Q_WORKERS": "2"}) as cluster:
            for n in range(JOB_POSTS):
                async_task("tests.orkiva.test_metrics_multiprocess.post_job", str(thread.pk), n)
            deadline = time.monotonic() + 45
            while Task.objects.filter(success=True).count() < JOB_POSTS:
                cluster.assert_running()
                assert time.monotonic() < deadline, cluster.log()
                time.sleep(0.1)

        scrapes = [httpx.get(f"{bridge.base_url}/metrics").text for _ in range(3)]

    for text in scrapes:  # whichever worker answers, the sums are the same
        assert summed(text, "orkiva_messages_posted_total", kind="message", replay="false") == HTTP_POSTS + JOB_POSTS
        assert summed(text, "orkiva_failures_total", code="usage_error") == 1
        assert summed(
            text, "django_http_responses_total_by_status_view_method_total", method="POST", status="201"
        ) == HTTP_POSTS
    writers = {path.name.rsplit("_", 1)[-1] for path in metrics_dir.glob("counter_*.db")}
    assert len(writers) >= 3 + 1 + 2, writers  # gunicorn workers, the command, the cluster's workers
