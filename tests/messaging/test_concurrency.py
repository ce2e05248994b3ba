"""Concurrency against PostgreSQL with real threads (each its own connection) and real HTTP clients.

Invariants, not timings: 16 writers x 25 posts into one thread give seqs exactly 1..400 with no
gap and no duplicate; 16 concurrent retries of one idempotency key give one row and 16 answers
naming the same message.
"""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from django.db import connections

from messaging.models import Message
from messaging.services import message_post
from policy.identity import Actor
from tests.conftest import RELAXED_POLICY, token_for
from tests.factories import ThreadFactory
from tests.live import bridge_server, subprocess_env

# 400 posts into one thread without progress: the policy controls would (rightly) stop that.
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres_only, pytest.mark.usefixtures("relaxed_policy")]

WRITERS, POSTS_EACH = 16, 25
COORDINATOR = Actor(agent_id="coordinator", workspace_id="ws-main", role="coordinator", session_id="s-c")


def writers() -> list[Actor]:
    return [Actor(agent_id=f"writer-{i:02d}", workspace_id="ws-main", role="participant", session_id=f"s-{i}")
            for i in range(WRITERS)]


def run_in_threads(count: int, work) -> list:
    """Run work(i) in `count` real threads released together; each closes its own connection."""
    barrier = threading.Barrier(count)

    def runner(i):
        try:
            barrier.wait(timeout=30)
            return work(i)
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(runner, range(count)))


def assert_gapless(thread, total: int) -> None:
    seqs = list(Message.objects.filter(thread=thread).order_by("seq").values_list("seq", flat=True))
    assert seqs == list(range(1, total + 1))
    thread.refresh_from_db()
    assert thread.last_seq == total


def assert_sender_order(thread) -> None:
    """Each writer's own posts keep their order, and their ordinals are 1..n in seq order."""
    by_sender: dict[str, list[tuple[int, str, int]]] = {}
    for seq, sender, body, ordinal in Message.objects.filter(thread=thread).order_by("seq").values_list(
        "seq", "sender", "body", "sender_ordinal"
    ):
        by_sender.setdefault(sender, []).append((seq, body, ordinal))
    for sender, rows in by_sender.items():
        assert [body for _, body, _ in rows] == [f"{sender} #{n}" for n in range(len(rows))]
        assert [ordinal for _, _, ordinal in rows] == list(range(1, len(rows) + 1))


def test_sixteen_writers_get_seqs_one_to_four_hundred():
    agents = writers()
    thread = ThreadFactory(coordinator=COORDINATOR, participants=[a.agent_id for a in agents])

    def work(i):
        return [message_post(actor=agents[i], thread_id=str(thread.pk), body=f"{agents[i].agent_id} #{n}").message.seq
                for n in range(POSTS_EACH)]

    returned = [seq for seqs in run_in_threads(WRITERS, work) for seq in seqs]
    assert sorted(returned) == list(range(1, WRITERS * POSTS_EACH + 1))
    assert_gapless(thread, WRITERS * POSTS_EACH)
    assert_sender_order(thread)


def test_sixteen_concurrent_retries_of_one_key_make_one_row():
    thread = ThreadFactory(coordinator=COORDINATOR, participants=["executioner"])
    actor = Actor(agent_id="executioner", workspace_id="ws-main", role="participant", session_id="s-e")

    def work(i):
        result = message_post(actor=actor, thread_id=str(thread.pk), body="exactly once", idempotency_key="retry-1")
        return result.message.pk, result.message.seq, result.replay

    answers = run_in_threads(WRITERS, work)
    assert len({(pk, seq) for pk, seq, _ in answers}) == 1
    assert sorted(replay for _, _, replay in answers) == [False] + [True] * (WRITERS - 1)
    assert Message.objects.filter(thread=thread).count() == 1
    assert_gapless(thread, 1)


def test_real_clients_against_gunicorn(tmp_path):
    """The same two invariants through HTTP: real concurrent clients, several gunicorn workers."""
    agents = writers()
    thread = ThreadFactory(coordinator=COORDINATOR, participants=[a.agent_id for a in agents])
    tokens = {a.agent_id: token_for(a) for a in agents}
    with bridge_server(tmp_path, server="gunicorn", workers=2, env=subprocess_env(**RELAXED_POLICY)) as bridge:
        url = f"{bridge.base_url}/v1/threads/{thread.pk}/messages"

        # 16 retries of one key by one agent, at once.
        def retry(i):
            with httpx.Client(timeout=60) as client:
                response = client.post(url, json={"body": "exactly once"},
                                       headers={"Authorization": f"Bearer {tokens['writer-00']}",
                                                "Idempotency-Key": "http-retry"})
            return response.status_code, response.json()

        answers = run_in_threads(WRITERS, retry)
        assert sorted(status for status, _ in answers) == [200] * (WRITERS - 1) + [201], bridge.log()
        bodies = [{k: v for k, v in body.items() if k != "idempotent_replay"} for _, body in answers]
        assert all(body == bodies[0] for body in bodies)
        assert sorted(body["idempotent_replay"] for _, body in answers) == [False] + [True] * (WRITERS - 1)
        assert Message.objects.filter(thread=thread).count() == 1

        # 16 writers x 25 posts, each writer on its own connection.
        def write(i):
            agent = agents[i].agent_id
            with httpx.Client(timeout=60, headers={"Authorization": f"Bearer {tokens[agent]}"}) as client:
                statuses = [client.post(url, json={"body": f"{agent} #{n + (1 if i == 0 else 0)}"}).status_code
                            for n in range(POSTS_EACH)]
            return statuses

        statuses = [s for batch in run_in_threads(WRITERS, write) for s in batch]
        assert statuses == [201] * (WRITERS * POSTS_EACH), bridge.log()
    total = WRITERS * POSTS_EACH + 1
    assert_gapless(thread, total)
    # writer-00 posted "exactly once" first, then "#1".."#25"; rename for the order check.
    first = Message.objects.get(thread=thread, seq=1)
    assert (first.sender, first.body) == ("writer-00", "exactly once")
    Message.objects.filter(pk=first.pk).update(body="writer-00 #0")
    assert_sender_order(thread)


def test_a_participant_removed_while_its_post_waits_for_the_lock_is_refused():
    """The post waits for the thread's row lock while a coordinator removes its sender; once the
    removal commits, the post must see it (PostgreSQL re-reads the locked row, not the statement's
    subqueries: thread_get reads membership once it holds the lock)."""
    from django.db import connection, transaction

    from orkiva.errors import Forbidden
    from threads.services import participants_change

    thread = ThreadFactory(coordinator=COORDINATOR, participants=["executioner", "reviewer"])
    reviewer = Actor(agent_id="reviewer", workspace_id="ws-main", role="participant", session_id="s-r")
    locked, outcome = threading.Event(), {}

    def post():
        try:
            locked.wait(timeout=30)
            message_post(actor=reviewer, thread_id=str(thread.pk), body="after my removal?")
            outcome["result"] = "stored"
        except Forbidden as err:
            outcome["result"] = err.code
        finally:
            connections.close_all()

    poster = threading.Thread(target=post)
    poster.start()
    with transaction.atomic():
        participants_change(actor=COORDINATOR, thread_id=str(thread.pk), add=[], remove=["reviewer"])
        locked.set()
        # Commit only once the post is waiting for the row lock this transaction holds.
        with connections["default"].cursor() as cursor:
            for _ in range(300):
                cursor.execute("SELECT pg_stat_clear_snapshot()")  # else a transaction sees one snapshot
                cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                               "AND pid <> pg_backend_pid() AND datname = current_database()")
                if cursor.fetchone()[0]:
                    break
                threading.Event().wait(0.05)
            else:
                pytest.fail("the post never waited for the thread's lock")
    poster.join(timeout=30)
    assert outcome["result"] == "not_a_participant", outcome
    assert not Message.objects.filter(thread_id=thread.pk, sender="reviewer").exists()
    assert connection.vendor == "postgresql"
