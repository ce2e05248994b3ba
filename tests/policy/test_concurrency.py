"""The controls under concurrency: rate limits shared by two real servers on one database, and
exact counts when many writers race (PostgreSQL, real threads with their own connections)."""
from __future__ import annotations

import httpx
import pytest

from tests.conftest import token_for
from tests.live import bridge_server, subprocess_env

pytestmark = pytest.mark.django_db(transaction=True)

LIMIT = 4


def test_two_servers_share_one_limit(tmp_path, thread, executioner, reviewer):
    # An hour-long window, so the test cannot straddle a window boundary.
    env = subprocess_env(ORKIVA_RATE_LIMIT_THREAD_POSTS=str(LIMIT), ORKIVA_RATE_LIMIT_WINDOW_SECONDS="3600")
    url = f"/v1/threads/{thread.pk}/messages"
    mine = {"Authorization": f"Bearer {token_for(executioner)}"}
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with bridge_server(tmp_path / "a", env=env) as one, bridge_server(tmp_path / "b", env=env) as two:
        servers = (one, two)
        answers = [
            httpx.post(servers[n % 2].base_url + url, json={"body": f"post {n}"}, headers=mine) for n in range(LIMIT + 2)
        ]
        statuses = [a.status_code for a in answers]
        assert statuses == [201] * LIMIT + [429, 429], one.log() + two.log()
        for refused in answers[LIMIT:]:
            body = refused.json()["error"]
            assert body["code"] == "rate_limited" and body["details"]["scope"] == "thread"
            assert 1 <= int(refused.headers["Retry-After"]) <= 3600
            assert int(refused.headers["Retry-After"]) == body["details"]["retry_after_seconds"]
        # Another agent in the same thread has its own count, on either server.
        theirs = {"Authorization": f"Bearer {token_for(reviewer)}"}
        assert httpx.post(two.base_url + url, json={"body": "mine"}, headers=theirs).status_code == 201


@pytest.mark.postgres_only
def test_concurrent_posts_into_different_threads_never_pass_the_workspace_limit(settings, coordinator, executioner):
    """16 posts at once by one agent into 16 threads (no shared thread lock): exactly the limit pass."""
    from messaging.services import message_post
    from orkiva.errors import RateLimited
    from tests.factories import ThreadFactory
    from tests.messaging.test_concurrency import run_in_threads

    settings.ORKIVA_RATE_LIMIT_WORKSPACE_POSTS = 5
    threads = [ThreadFactory(coordinator=coordinator) for _ in range(16)]

    def work(i):
        try:
            message_post(actor=executioner, thread_id=str(threads[i].pk), body="hello")
            return 201
        except RateLimited:
            return 429

    assert sorted(run_in_threads(16, work)) == [201] * 5 + [429] * 11


@pytest.mark.postgres_only
def test_racing_writers_block_the_thread_exactly_once_after_the_twentieth_turn(coordinator):
    """16 agents post 3 times each at once into one thread: exactly 20 posts are stored, the
    thread blocks once, with one loop escalation and one no-progress escalation."""
    from messaging.models import Message
    from messaging.services import message_post
    from orkiva.errors import Conflict
    from policy.identity import Actor
    from policy.models import AuditEvent, Escalation
    from tests.factories import ThreadFactory
    from tests.messaging.test_concurrency import run_in_threads
    from threads.models import Thread

    agents = [Actor(agent_id=f"writer-{i:02d}", workspace_id="ws-main", role="participant", session_id=f"s-{i}")
              for i in range(16)]
    thread = ThreadFactory(coordinator=coordinator, participants=[a.agent_id for a in agents])

    def work(i):
        outcomes = []
        for n in range(3):
            try:
                message_post(actor=agents[i], thread_id=str(thread.pk), body=f"{i}/{n}")
                outcomes.append(201)
            except Conflict as exc:
                outcomes.append(exc.code)
        return outcomes

    outcomes = [o for batch in run_in_threads(16, work) for o in batch]
    assert outcomes.count(201) == 20 and outcomes.count("thread_blocked") == 28
    assert Message.objects.filter(thread=thread).exclude(kind="status").count() == 20
    thread = Thread.objects.get(pk=thread.pk)
    assert (thread.status, thread.status_reason_code, thread.turns_since_progress) == ("blocked", "no_progress", 20)
    assert sorted(Escalation.objects.filter(thread=thread).values_list("reason_code", flat=True)) == [
        "loop_threshold", "no_progress"]
    assert AuditEvent.objects.filter(action="thread.auto_block").count() == 1
