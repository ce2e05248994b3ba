"""Waiting agents on production's server: how many one server sustains, what each costs, and how
fast a post made through another bridge process reaches them (PostgreSQL LISTEN/NOTIFY).

Server A (`gunicorn -c infra/gunicorn.conf.py`, 2 workers) holds the waiters; server B (1 worker)
takes the posts, so every delivery crosses processes. Polling is set to 60 s: only a notification
can deliver within a wait.

- sustain: N waiters (default 2,000) over N/10 threads arrive in batches; once the bridge's
  `orkiva_mcp_waiters` gauge says all N wait, the workers' RSS and the database connections are
  read, then one post per thread through B must wake every waiter with that post. The memory each
  waiter costs is (RSS while N wait - RSS idle after a warm-up) / N.
- delivery, one thread: K waiters (100, then 1,000) on one thread, one post through B wakes them
  all; several rounds. The worst case: one post, every waiter answered at once.
- delivery, spread: K waiters over K/5 threads (five agents a thread, a team's shape), then one
  post through B to each thread in turn, 20 ms apart: each post wakes its five while the other
  waiters keep waiting.
  Delivery is measured from the moment the post's request is sent to B (before its commit, so an
  upper bound) to the moment each waiter's answer has arrived.

The waiters are raw HTTP/1.1 clients on one event loop (one connection each, MCP 2025-06-18 JSON
responses), so the client's own cost stays small beside the server's.

    BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/orkiva_bench_waiters \\
        .venv/bin/python bench/waiters.py [--sustain 2000] [--delivery 100,1000] [--rounds 5]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import re
import resource
import time

import common

WORKSPACE = "bench-waiters"
PER_THREAD = 10
ARRIVAL_BATCH = 200
WAIT_SECONDS = 110


def make_threads(count: int) -> list[str]:
    from policy.identity import Actor
    from threads.services import thread_create

    coordinator = Actor(agent_id="bench-coordinator", workspace_id=WORKSPACE, role="coordinator", session_id="bench")
    return [
        str(thread_create(actor=coordinator, title=f"wait bench {i}", type="bench", participants=["reader", "writer"]).pk)
        for i in range(count)
    ]


def db_connections() -> int:
    import psycopg

    base, name = common.database_url().rsplit("/", 1)
    with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
        return conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (name,)).fetchone()[0]


def rss_kib(master) -> list[int]:
    found = []
    for status in common.worker_statuses(master).values():
        found.append(int(re.search(r"^VmRSS:\s+(\d+)", status, re.M).group(1)))
    return sorted(found)


def waiters_now(url: str) -> int:
    import httpx

    found = re.search(r"^orkiva_mcp_waiters (\S+)$", httpx.get(f"{url}/metrics", timeout=10).text, re.M)
    return int(float(found.group(1))) if found else 0


class Waiter:
    """One agent's wait_for_messages over its own raw HTTP/1.1 connection."""

    def __init__(self, port: int, token: str, thread_id: str) -> None:
        self.port, self.thread_id, self.answered_at, self.messages = port, thread_id, 0.0, None
        body = json.dumps({
            "jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"name": "wait_for_messages", "arguments": {"thread_id": thread_id, "timeout_seconds": WAIT_SECONDS}},
        }).encode()
        self.request = (
            f"POST /v1/mcp HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {token}\r\n"
            "Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\n"
            f"MCP-Protocol-Version: 2025-06-18\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        ).encode() + body

    async def run(self) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        try:
            writer.write(self.request)
            head = await reader.readuntil(b"\r\n\r\n")
            self.answered_at = time.perf_counter()
            length = int(re.search(rb"content-length: (\d+)", head, re.I).group(1))
            document = json.loads(await reader.readexactly(length))
            self.messages = [m["body"] for m in document["result"]["structuredContent"]["messages"]]
        finally:
            writer.close()


async def arrive(url: str, port: int, token: str, thread_ids: list[str], count: int) -> list[tuple[Waiter, asyncio.Task]]:
    """`count` waiters over `thread_ids`, in batches, until the gauge says every one is waiting."""
    waiters: list[tuple[Waiter, asyncio.Task]] = []
    for first in range(0, count, ARRIVAL_BATCH):
        for i in range(first, min(count, first + ARRIVAL_BATCH)):
            waiter = Waiter(port, token, thread_ids[i % len(thread_ids)])
            waiters.append((waiter, asyncio.create_task(waiter.run())))
        deadline = time.monotonic() + 60
        while await asyncio.to_thread(waiters_now, url) < len(waiters):
            failed = [task for _, task in waiters if task.done()]
            if failed:
                await failed[0]  # raises what went wrong
                raise RuntimeError("a waiter returned before any post")
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {waiters_now(url)} of {len(waiters)} waiters are waiting")
            await asyncio.sleep(0.05)
    return waiters


def post(http, url: str, token: str, thread_id: str, body: str) -> float:
    sent = time.perf_counter()
    response = http.post(f"{url}/v1/threads/{thread_id}/messages", json={"body": body},
                         headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 201, response.text
    return sent


async def sustain(a: str, a_master, b: str, count: int) -> dict:
    import httpx

    port, reader, writer = int(a.rsplit(":", 1)[1]), common.token("reader", WORKSPACE), common.token("writer", WORKSPACE)
    warm_thread, *threads = await asyncio.to_thread(make_threads, 1 + max(1, count // PER_THREAD))
    # Warm-up: every code path of a wait and a wake has run once in both workers.
    warm = await arrive(a, port, reader, [warm_thread], 20)
    with httpx.Client(timeout=60) as http:
        await asyncio.to_thread(post, http, b, writer, warm_thread, "warm-up")
        await asyncio.gather(*(task for _, task in warm))
        await asyncio.sleep(1)
        idle = rss_kib(a_master)
        started = time.perf_counter()
        waiters = await arrive(a, port, reader, threads, count)
        arrival = time.perf_counter() - started
        await asyncio.sleep(1)
        waiting, connections = rss_kib(a_master), await asyncio.to_thread(db_connections)
        for thread_id in threads:
            await asyncio.to_thread(post, http, b, writer, thread_id, f"wake {thread_id}")
        await asyncio.gather(*(task for _, task in waiters))
    woken = sum(1 for waiter, _ in waiters if waiter.messages[-1:] == [f"wake {waiter.thread_id}"])
    return {
        "waiters": count,
        "woken_with_their_post": woken,
        "arrival_s": round(arrival, 1),
        "rss_idle_mib": "/".join(str(round(k / 1024)) for k in idle),
        "rss_waiting_mib": "/".join(str(round(k / 1024)) for k in waiting),
        "kib_per_waiter": round((sum(waiting) - sum(idle)) / count, 1),
        "db_connections_while_waiting": connections,
    }


def _figures(latencies: list[float]) -> dict:
    """Delivery latencies in ms: p50, p99 and the slowest."""
    return {
        "p50_ms": round(common.percentile(latencies, 50) * 1000, 1),
        "p99_ms": round(common.percentile(latencies, 99) * 1000, 1),
        "max_ms": round(max(latencies) * 1000, 1),
    }


async def delivery(a: str, b: str, count: int, rounds: int) -> dict:
    import httpx

    port, reader, writer = int(a.rsplit(":", 1)[1]), common.token("reader", WORKSPACE), common.token("writer", WORKSPACE)
    latencies, delivered = [], 0
    with httpx.Client(timeout=60) as http:
        for round_ in range(rounds):
            (thread_id,) = await asyncio.to_thread(make_threads, 1)
            waiters = await arrive(a, port, reader, [thread_id], count)
            await asyncio.sleep(0.5)
            sent = await asyncio.to_thread(post, http, b, writer, thread_id, f"round {round_}")
            await asyncio.gather(*(task for _, task in waiters))
            for waiter, _ in waiters:
                if waiter.messages == [f"round {round_}"]:
                    delivered += 1
                    latencies.append(waiter.answered_at - sent)
    return {"waiters": count, "rounds": rounds, "delivered": f"{delivered}/{count * rounds}", **_figures(latencies)}


async def delivery_spread(a: str, b: str, count: int, per_thread: int = 5) -> dict:
    import httpx

    port, reader, writer = int(a.rsplit(":", 1)[1]), common.token("reader", WORKSPACE), common.token("writer", WORKSPACE)
    threads = await asyncio.to_thread(make_threads, max(1, count // per_thread))
    waiters = await arrive(a, port, reader, threads, count)
    await asyncio.sleep(0.5)
    sent_at: dict[str, float] = {}
    with httpx.Client(timeout=60) as http:
        for thread_id in threads:
            sent_at[thread_id] = await asyncio.to_thread(post, http, b, writer, thread_id, f"to {thread_id}")
            await asyncio.sleep(0.02)
        await asyncio.gather(*(task for _, task in waiters))
    latencies = [w.answered_at - sent_at[w.thread_id] for w, _ in waiters if w.messages == [f"to {w.thread_id}"]]
    return {"waiters": count, "per_thread": per_thread, "delivered": f"{len(latencies)}/{count}",
            **_figures(latencies)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sustain", type=int, default=2000)
    parser.add_argument("--delivery", default="100,1000")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2, help="server A's workers")
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    common.setup_django()
    common.reset_tables()
    env = {"ORKIVA_MCP_WAIT_POLL_SECONDS": "60", "ORKIVA_MCP_WAIT_MAX_SECONDS": str(WAIT_SECONDS)}
    results: dict = {"workers_a": args.workers}
    with common.bridge(workers=args.workers, extra_env=env) as (a, a_master), common.bridge(workers=1, extra_env=env) as (b, _):
        counts = [int(count) for count in args.delivery.split(",") if count]
        rows = [asyncio.run(delivery(a, b, count, args.rounds)) for count in counts]
        common.print_table(f"delivery across processes, one thread (post through B, waiters on A, {args.workers} workers)", rows)
        spread = [asyncio.run(delivery_spread(a, b, count)) for count in counts]
        common.print_table("delivery across processes, five waiters a thread, a post to each thread in turn", spread)
        results["delivery_one_thread"], results["delivery_spread"] = rows, spread
        if args.sustain:
            held = asyncio.run(sustain(a, a_master, b, args.sustain))
            common.print_table(f"waiters sustained by A ({args.workers} workers)", [held])
            results["sustain"] = held
    common.write_results("waiters", results)


if __name__ == "__main__":
    main()
