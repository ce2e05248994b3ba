"""Waiting agents on production's server (`gunicorn -c infra/gunicorn.conf.py`), real clients:
many waits hold neither a thread nor a database connection; a post made through another bridge
process wakes them through LISTEN/NOTIFY (polling set far slower than the test); a PostgreSQL
restart under waiters loses none of them; and two bridges with two supervisor clusters on one
database behave as one. Outcomes only: the timings are bench/waiters.py's."""
from __future__ import annotations

import asyncio
import re
import time

import httpx
import psycopg
import pytest
from django.db import connection

from supervisor import tmux
from supervisor.models import WakeRequest
from supervisor.presenters import wake_json
from tests.conftest import RELAXED_POLICY, token_for
from tests.factories import ThreadFactory
from tests.live import bridge_server, qcluster, subprocess_env
from tests.orkiva.test_mcp import client_for_mcp, ok, rest
from tests.serving.conftest import private_postgres
from tests.supervisor.conftest import agent_lines, launch_stand_in, tmux_server, wait_for  # noqa: F401 (a fixture)

pytestmark = [pytest.mark.postgres_only, pytest.mark.django_db(transaction=True)]

SLOW_POLL = "60"  # seconds: no wait here lasts that long, so only a notification can end one early
MCP_HEADERS = {"Accept": "application/json, text/event-stream", "MCP-Protocol-Version": "2025-06-18"}


def _wait_call(thread_id: str, timeout: float) -> dict:
    return {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"name": "wait_for_messages", "arguments": {"thread_id": thread_id, "timeout_seconds": timeout}}}


def _waiting(base_url: str) -> int:
    found = re.search(r"^orkiva_mcp_waiters (\S+)$", httpx.get(f"{base_url}/metrics", timeout=10).text, re.M)
    return int(float(found.group(1))) if found else 0


async def _until_waiting(base_url: str, count: int, tasks, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while await asyncio.to_thread(_waiting, base_url) < count:
        assert not any(task.done() for task in tasks), "a wait returned before any post"
        assert time.monotonic() < deadline, f"only {_waiting(base_url)} of {count} waits started"
        await asyncio.sleep(0.1)


def _bridge_connections() -> int:
    """Connections to the test database other than this test's own."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                       "AND pid <> pg_backend_pid()")
        return cursor.fetchone()[0]


def test_three_hundred_waits_hold_no_thread_nor_connection_and_one_post_wakes_them_all(
        tmp_path, thread, executioner, reviewer):
    """One worker with a pool of two threads holds 300 waits. Meanwhile the bridge has no more
    database connections than its pool's threads, its listener and its watcher; a read is answered
    at once; one REST post wakes every waiter with that post."""
    tid = str(thread.pk)
    env = subprocess_env(ORKIVA_THREADS="2", ORKIVA_MCP_WAIT_POLL_SECONDS=SLOW_POLL, **RELAXED_POLICY)
    with bridge_server(tmp_path, server="gunicorn", workers=1, env=env) as bridge:
        async def scenario():
            headers = {**MCP_HEADERS, "Authorization": f"Bearer {token_for(reviewer)}"}
            limits = httpx.Limits(max_connections=400, max_keepalive_connections=400)
            async with httpx.AsyncClient(base_url=bridge.base_url, headers=headers, timeout=60, limits=limits) as http:
                waits = [asyncio.create_task(http.post("/v1/mcp", json=_wait_call(tid, 45))) for _ in range(300)]
                await _until_waiting(bridge.base_url, 300, waits)
                connections = await asyncio.to_thread(_bridge_connections)
                read = await asyncio.to_thread(rest, bridge.base_url, reviewer, "GET", f"/threads/{tid}/messages")
                posted = await asyncio.to_thread(
                    rest, bridge.base_url, executioner, "POST", f"/threads/{tid}/messages", json={"body": "All of you."})
                answers = await asyncio.gather(*waits)
                return connections, read, posted, answers

        connections, read, posted, answers = asyncio.run(scenario())
    assert connections <= 2 + 2, connections  # the pool's two threads, the listener, the watcher
    assert read.status_code == 200 and read.json()["messages"] == []
    assert posted.status_code == 201
    bodies = [[m["body"] for m in a.json()["result"]["structuredContent"]["messages"]] for a in answers]
    assert bodies == [["All of you."]] * 300


def test_a_post_through_another_bridge_wakes_the_waiters_at_once(tmp_path, thread, executioner, reviewer, coordinator):
    """Bridge A holds MCP SDK clients' waits (45 s; A polls every 60 s); the post goes through
    bridge B, another process. A's listener hears the commit: every wait returns the post long
    before its timeout, and A never polled."""
    tid = str(thread.pk)
    env = subprocess_env(ORKIVA_MCP_WAIT_POLL_SECONDS=SLOW_POLL, **RELAXED_POLICY)
    with bridge_server(tmp_path, server="gunicorn", workers=1, env=env) as a, \
            bridge_server(tmp_path, server="gunicorn", workers=1, env=env) as b:
        async def scenario():
            async with client_for_mcp(a.base_url, token_for(reviewer)) as rev, \
                    client_for_mcp(a.base_url, token_for(coordinator)) as coord:
                waits = [asyncio.create_task(client.call_tool("wait_for_messages", {"thread_id": tid, "timeout_seconds": 45}))
                         for client in (rev, coord)]
                await _until_waiting(a.base_url, 2, waits)
                posted = await asyncio.to_thread(
                    rest, b.base_url, executioner, "POST", f"/threads/{tid}/messages", json={"body": "Via B."})
                started = time.monotonic()
                answers = [ok(result) for result in await asyncio.gather(*waits)]
                return posted, answers, time.monotonic() - started

        posted, answers, waited = asyncio.run(scenario())
    assert posted.status_code == 201
    assert [[m["body"] for m in answer["messages"]] for answer in answers] == [["Via B."], ["Via B."]]
    assert waited < 30  # the timeout (45 s) and A's poll (60 s) are both far off: the notification woke them


def test_waiters_survive_a_postgresql_restart_and_get_the_next_post(tmp_path, executioner, reviewer, coordinator):
    """A bridge on a PostgreSQL of the test's own; twelve waiters wait; the database restarts (every
    connection cut, the listener's too). The waiters are neither dropped nor told "nothing new": the
    listener reconnects, and the first post after the restart, made through another bridge process
    (so only the notification can reach them), wakes each with it."""
    with private_postgres() as pg:
        env = subprocess_env(DATABASE_URL=pg.url, ORKIVA_MCP_WAIT_POLL_SECONDS=SLOW_POLL, **RELAXED_POLICY)
        with bridge_server(tmp_path, server="gunicorn", workers=1, env=env) as bridge, \
                bridge_server(tmp_path, server="gunicorn", workers=1, env=env) as other:
            created = rest(bridge.base_url, coordinator, "POST", "/threads", json={
                "title": "restart", "type": "review", "participants": ["executioner", "reviewer"]})
            assert created.status_code == 201, created.text
            tid = created.json()["id"]

            async def scenario():
                headers = {**MCP_HEADERS, "Authorization": f"Bearer {token_for(reviewer)}"}
                async with httpx.AsyncClient(base_url=bridge.base_url, headers=headers, timeout=90) as http:
                    waits = [asyncio.create_task(http.post("/v1/mcp", json=_wait_call(tid, 45))) for _ in range(12)]
                    await _until_waiting(bridge.base_url, 12, waits)
                    await asyncio.to_thread(pg.restart)
                    await asyncio.to_thread(
                        wait_for, lambda: '"connects": 2' in bridge.log() or "connects=2" in bridge.log(),
                        timeout=30, what="the listener listening again")
                    still_waiting = sum(not task.done() for task in waits)
                    posted = await asyncio.to_thread(_post_until_accepted, other.base_url, executioner, tid)
                    return still_waiting, posted, await asyncio.gather(*waits)

            still_waiting, posted, answers = asyncio.run(scenario())
            log = bridge.log()
    assert still_waiting == 12
    assert posted.status_code == 201
    bodies = [[m["body"] for m in a.json()["result"]["structuredContent"]["messages"]] for a in answers]
    assert bodies == [["After the restart."]] * 12
    assert "mcp_listener_lost" in log


def _post_until_accepted(base_url: str, actor, thread_id: str) -> httpx.Response:
    """The first post after the restart (a request that meets a connection the restart cut gets a
    503 in the error contract, and is retried as a client would)."""
    deadline = time.monotonic() + 30
    while True:
        posted = rest(base_url, actor, "POST", f"/threads/{thread_id}/messages", json={"body": "After the restart."},
                      headers={"Idempotency-Key": "after-restart"})
        if posted.status_code != 503 or time.monotonic() > deadline:
            return posted
        time.sleep(0.2)


def test_two_bridges_and_two_supervisor_clusters_on_one_database(tmp_path, tmux_server, coordinator, executioner,
                                                                  reviewer):
    """Scale-out: the reviewer waits on bridge A (the MCP SDK client), the executioner posts through
    bridge B, two qclusters supervise. The waiter returns the post; the dormant tester (a stand-in
    agent in a managed tmux pane) is woken once, by one of the two clusters."""
    thread = ThreadFactory(coordinator=coordinator, participants=["executioner", "reviewer", "tester"])
    tid = str(thread.pk)
    log = tmp_path / "tester.jsonl"
    launched = launch_stand_in(agent_id="tester", log=log, ack=False)
    env = subprocess_env(
        ORKIVA_MCP_WAIT_POLL_SECONDS=SLOW_POLL, ORKIVA_TMUX_SOCKET=tmux_server.socket_name,
        ORKIVA_TMUX_CONFIG="/dev/null", ORKIVA_SUPERVISOR_HOST="test-host", ORKIVA_Q_POLL="0.1", ORKIVA_Q_WORKERS="1",
        ORKIVA_WAKE_ACK_TIMEOUT_SECONDS="30", **RELAXED_POLICY,
    )
    with bridge_server(tmp_path, server="gunicorn", workers=1, env=env) as a, \
            bridge_server(tmp_path, server="gunicorn", workers=1, env=env) as b, \
            qcluster(tmp_path, env=env, name="cluster-1") as one, qcluster(tmp_path, env=env, name="cluster-2") as two:
        async def scenario():
            async with client_for_mcp(a.base_url, token_for(reviewer)) as rev:
                waiting = asyncio.create_task(rev.call_tool("wait_for_messages", {"thread_id": tid, "timeout_seconds": 45}))
                await _until_waiting(a.base_url, 1, [waiting])
                posted = await asyncio.to_thread(
                    rest, b.base_url, executioner, "POST", f"/threads/{tid}/messages", json={"body": "Please test #7."})
                return posted, ok(await waiting)

        posted, answer = asyncio.run(scenario())
        wake = wait_for(lambda: WakeRequest.objects.filter(agent_id="tester").first(), what="the tester's wake")
        deadline = time.monotonic() + 45
        while wake.prompt not in tmux.capture(launched.runtime.pty_target):
            one.assert_running()
            two.assert_running()
            assert time.monotonic() < deadline, one.log() + two.log()
            time.sleep(0.1)
        assert wait_for(lambda: agent_lines(log), what="the tester reading its pane") == [wake.prompt]
        time.sleep(2)  # both clusters keep polling: a second delivery would show up here
        lines = agent_lines(log)
        wake.refresh_from_db()
    assert posted.status_code == 201 and [m["body"] for m in answer["messages"]] == ["Please test #7."]
    assert lines == [wake.prompt]
    assert WakeRequest.objects.filter(agent_id="tester").count() == 1
    assert not WakeRequest.objects.filter(agent_id="reviewer").exists()  # no runtime: never woken automatically
    assert [s["reason_code"] for s in wake_json(wake)["trace"]["steps"]] == ["wake_created", "injected"]


def test_a_stopping_worker_answers_its_waiters_rather_than_cutting_them_off(tmp_path, thread, reviewer):
    """SIGTERM (a deploy, a restart) while ten waits are in flight, with a graceful timeout of 40 s
    and waits of 45: each wait is answered at once, well-formed and empty (as at its timeout), so
    the agent simply waits again on a live worker; then the server exits."""
    tid = str(thread.pk)
    env = subprocess_env(ORKIVA_GRACEFUL_TIMEOUT="40", ORKIVA_MCP_WAIT_POLL_SECONDS=SLOW_POLL)
    with bridge_server(tmp_path, server="gunicorn", workers=1, env=env) as bridge:
        async def scenario():
            headers = {**MCP_HEADERS, "Authorization": f"Bearer {token_for(reviewer)}"}
            async with httpx.AsyncClient(base_url=bridge.base_url, headers=headers, timeout=90) as http:
                waits = [asyncio.create_task(http.post("/v1/mcp", json=_wait_call(tid, 45))) for _ in range(10)]
                await _until_waiting(bridge.base_url, 10, waits)
                bridge.process.send_signal(15)
                started = time.monotonic()
                answers = await asyncio.gather(*waits)
                return answers, time.monotonic() - started

        answers, waited = asyncio.run(scenario())
        exited = bridge.process.wait(timeout=30)
    assert [a.status_code for a in answers] == [200] * 10
    assert [a.json()["result"]["structuredContent"]["messages"] for a in answers] == [[]] * 10
    assert waited < 20  # not held until the graceful timeout (40 s), nor the waits' own (45 s)
    assert exited == 0
