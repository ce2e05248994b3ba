"""How many concurrent wait_for_messages calls one bridge process sustains, and what bounds it.

One gunicorn worker (production's gthread worker class) with `--threads` sized for the waiters.
N clients call wait_for_messages at once (spread over N/10 threads); once the bridge's
`orkiva_mcp_waiters` gauge says all N are waiting, one REST post per thread must wake every
waiter with that post. Waiters arrive in batches of 25. Reported per N: how many reached the waiting state, how many were woken
with the right message, wake latency (post -> answer), the worker's threads and peak RSS, and
the database connections open while everyone waits.

A second run shows the bound under the default configuration (2 workers x 4 threads): with 8
waiters every request thread is taken, and a /healthz probe waits until a waiter returns.

    BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/orkiva_bench_mcp \\
        .venv/bin/python bench/mcp_waiters.py [--counts 100,500,1000] [--poll 0.5]
"""
from __future__ import annotations

import argparse
import asyncio
import re
import time
from pathlib import Path

import common

WORKSPACE = "bench-mcp"
PER_THREAD = 10
ARRIVAL_BATCH = 25
HEADERS = {"Accept": "application/json, text/event-stream", "MCP-Protocol-Version": "2025-06-18"}


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


def worker_threads(master) -> int:
    statuses = common.worker_statuses(master).values()
    return sum(int(re.search(r"^Threads:\s+(\d+)", status, re.M).group(1)) for status in statuses)


async def run_waiters(url: str, master, count: int) -> dict:
    import httpx

    threads = await asyncio.to_thread(make_threads, max(1, count // PER_THREAD))
    reader = {**HEADERS, "Authorization": f"Bearer {common.token('reader', WORKSPACE)}"}
    writer = {"Authorization": f"Bearer {common.token('writer', WORKSPACE)}"}
    limits = httpx.Limits(max_connections=count + 16, max_keepalive_connections=count + 16)
    async with httpx.AsyncClient(timeout=120, limits=limits) as http:
        answered: dict[int, tuple[float, dict]] = {}

        async def wait_one(i: int) -> None:
            response = await http.post(f"{url}/v1/mcp", json=call(threads[i % len(threads)], 60), headers=reader)
            answered[i] = (time.perf_counter(), response.json())

        # Agents arrive in batches (an arrival costs a token check and a read on a request thread
        # and its connection, like any request); the figure measured is the waiting, not a stampede.
        tasks: list[asyncio.Task] = []
        started = time.perf_counter()
        reached = 0.0
        for first in range(0, count, ARRIVAL_BATCH):
            tasks += [asyncio.create_task(wait_one(i)) for i in range(first, min(count, first + ARRIVAL_BATCH))]
            while time.perf_counter() - started < 120:
                reached = await waiting_count(http, url)
                if reached >= len(tasks):
                    break
                await asyncio.sleep(0.1)
        arrived_s = time.perf_counter() - started
        connections = await asyncio.to_thread(db_connections)
        threads_now = worker_threads(master)
        peak = {"connections": connections}
        sampling = asyncio.Event()

        async def sample_connections() -> None:
            while not sampling.is_set():
                peak["connections"] = max(peak["connections"], await asyncio.to_thread(db_connections))
                await asyncio.sleep(0.02)

        sampler = asyncio.create_task(sample_connections())
        posted_at: dict[str, float] = {}
        bodies: dict[str, str] = {}
        for thread_id in threads:
            response = await http.post(f"{url}/v1/threads/{thread_id}/messages", json={"body": f"wake {thread_id}"},
                                       headers=writer)
            posted_at[thread_id] = time.perf_counter()
            bodies[thread_id] = response.json()["body"]
        await asyncio.gather(*tasks)
        sampling.set()
        await sampler
    latencies, woken = [], 0
    for i, (at, body) in answered.items():
        thread_id = threads[i % len(threads)]
        messages = body.get("result", {}).get("structuredContent", {}).get("messages", [])
        if [m["body"] for m in messages] == [bodies[thread_id]]:
            woken += 1
            latencies.append(at - posted_at[thread_id])
    return {
        "waiters": count,
        "reached_waiting": int(reached),
        "woken_with_the_post": woken,
        "wake_p50_ms": round(common.percentile(latencies, 50) * 1000, 1),
        "wake_p99_ms": round(common.percentile(latencies, 99) * 1000, 1),
        "worker_threads": threads_now,
        "arrival_s": round(arrived_s, 1),
        "db_connections_while_waiting": connections,
        "db_connections_peak_during_wake": peak["connections"],
        "worker_peak_rss_mib": round(max(common.worker_peak_rss_kib(master).values()) / 1024, 1),
    }


async def probe_default_config(url: str) -> dict:
    """Default 2x4 threads: 8 waiters (5 s) take every request thread; how long does /healthz wait?"""
    import httpx

    threads = await asyncio.to_thread(make_threads, 1)
    reader = {**HEADERS, "Authorization": f"Bearer {common.token('reader', WORKSPACE)}"}
    async with httpx.AsyncClient(timeout=60) as http:
        waits = [asyncio.create_task(http.post(f"{url}/v1/mcp", json=call(threads[0], 5), headers=reader))
                 for _ in range(8)]
        await asyncio.sleep(1)  # let the 8 waits take their threads (the gauge itself needs a thread)
        started = time.perf_counter()
        await http.get(f"{url}/healthz")
        probe_ms = (time.perf_counter() - started) * 1000
        await asyncio.gather(*waits)
    return {"waiters": 8, "request_threads": 8, "healthz_wait_ms": round(probe_ms, 1), "wait_timeout_s": 5}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", default="100,500,1000")
    parser.add_argument("--poll", type=float, default=0.5, help="ORKIVA_MCP_WAIT_POLL_SECONDS")
    args = parser.parse_args()
    common.setup_django()
    common.reset_tables()
    env = {"ORKIVA_MCP_WAIT_POLL_SECONDS": str(args.poll), "ORKIVA_MCP_WAIT_MAX_SECONDS": "60"}
    rows = []
    for count in [int(c) for c in args.counts.split(",")]:
        with common.bridge(workers=1, threads=count + 8, extra_env=env) as (url, master):
            rows.append(asyncio.run(run_waiters(url, master, count)))
        common.print_table("one process, gthread sized for the waiters", rows[-1:])
    with common.bridge(extra_env=env) as (url, _master):
        bound = asyncio.run(probe_default_config(url))
    common.print_table("default config (2 workers x 4 threads)", [bound])
    common.write_results("mcp_waiters", {"poll_seconds": args.poll, "one_process": rows, "default_config": bound})


if __name__ == "__main__":
    main()
