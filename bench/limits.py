"""Clients that try to starve the server, and one big read, against production's server
(`gunicorn -c infra/gunicorn.conf.py`, 2 workers).

- slow bodies: 200 connections send a valid token and headers, then trickle their body one byte a
  second (ORKIVA_BODY_TIMEOUT_SECONDS raised to 60 here so that all 200 stay open while measuring;
  the default, 10 s, cuts them sooner). Meanwhile /healthz and real posts (REST, 4 clients) are
  timed: p50/p99. Then the same figures with no slow connection, for comparison.
- big read: 500 messages of 65,536 four-byte characters (256 KiB of UTF-8 each, about 0.8 MB as
  JSON); one MCP `read_messages` with limit=500, then paging on through next_after_seq to the end,
  over MCP and over REST. Reported: the first page's size and message count, pages to read all,
  and each worker's peak RSS (VmHWM) before and after.

    BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/orkiva_bench_limits \\
        .venv/bin/python bench/limits.py [--slow 200] [--seconds 10] [--big 500]
"""
from __future__ import annotations

import argparse
import json
import socket
import threading
import time

import common

WORKSPACE = "bench-limits"
BIG_BODY = "\U0001F600" * 65536
MCP_HEADERS = {"Accept": "application/json, text/event-stream", "MCP-Protocol-Version": "2025-06-18"}


def make_thread() -> str:
    from policy.identity import Actor
    from threads.services import thread_create

    coordinator = Actor(agent_id="bench-coordinator", workspace_id=WORKSPACE, role="coordinator", session_id="bench")
    return str(thread_create(actor=coordinator, title="limits", type="bench", participants=["writer", "reader"]).pk)


def timed(fn, count: int) -> list[float]:
    latencies = []
    for _ in range(count):
        started = time.perf_counter()
        fn()
        latencies.append(time.perf_counter() - started)
    return latencies


def probe(url: str, thread_id: str, seconds: float) -> dict:
    """/healthz from one client and posts from four, for `seconds`."""
    import httpx

    writer = {"Authorization": f"Bearer {common.token('writer', WORKSPACE)}"}
    health, posts, stop = [], [], time.monotonic() + seconds

    def healthz() -> None:
        with httpx.Client(timeout=30) as http:
            while time.monotonic() < stop:
                started = time.perf_counter()
                assert http.get(f"{url}/healthz").status_code == 200
                health.append(time.perf_counter() - started)
                time.sleep(0.01)

    def poster() -> None:
        with httpx.Client(timeout=30, headers=writer) as http:
            while time.monotonic() < stop:
                started = time.perf_counter()
                response = http.post(f"{url}/v1/threads/{thread_id}/messages", json={"body": "still here"})
                assert response.status_code == 201, response.text
                posts.append(time.perf_counter() - started)

    workers = [threading.Thread(target=healthz)] + [threading.Thread(target=poster) for _ in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    row = {}
    for name, values in (("healthz", health), ("post", posts)):
        row[f"{name}_n"] = len(values)
        row[f"{name}_p50_ms"] = round(common.percentile(values, 50) * 1000, 1)
        row[f"{name}_p99_ms"] = round(common.percentile(values, 99) * 1000, 1)
    return row


def slow_bodies(url: str, count: int, seconds: float) -> list[dict]:
    thread_id = make_thread()
    port, token = int(url.rsplit(":", 1)[1]), common.token("writer", WORKSPACE)
    rows = [{"slow_connections": 0, **probe(url, thread_id, seconds)}]
    sockets = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port))
        sock.sendall(f"POST /v1/threads/{thread_id}/messages HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
                     "Content-Length: 1000\r\n\r\n{\"body\": \"".encode())
        sockets.append(sock)
    stop = threading.Event()

    def trickle() -> None:
        while not stop.wait(1):
            for sock in sockets:
                try:
                    sock.send(b"x")
                except OSError:
                    pass

    trickler = threading.Thread(target=trickle)
    trickler.start()
    try:
        rows.append({"slow_connections": count, **probe(url, thread_id, seconds)})
    finally:
        stop.set()
        trickler.join()
        for sock in sockets:
            sock.close()
    return rows


def big_read(url: str, master, count: int) -> list[dict]:
    import httpx
    from messaging.services import message_post
    from policy.identity import Actor

    thread_id = make_thread()
    writer = Actor(agent_id="writer", workspace_id=WORKSPACE, role="participant", session_id="bench")
    for _ in range(count):
        message_post(actor=writer, thread_id=thread_id, body=BIG_BODY)
    reader = {"Authorization": f"Bearer {common.token('reader', WORKSPACE)}"}
    before = max(common.worker_peak_rss_kib(master).values())
    rows = []
    with httpx.Client(timeout=120, headers=reader) as http:
        for transport in ("mcp", "rest"):
            after, pages, seen, first = 0, 0, 0, None
            while True:
                if transport == "mcp":
                    call = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
                        "name": "read_messages", "arguments": {"thread_id": thread_id, "after_seq": after, "limit": 500}}}
                    response = http.post(f"{url}/v1/mcp", json=call, headers=MCP_HEADERS)
                    page = response.json()["result"]["structuredContent"]
                else:
                    response = http.get(f"{url}/v1/threads/{thread_id}/messages", params={"after_seq": after, "limit": 500})
                    page = response.json()
                if first is None:
                    first = {"first_page_mb": round(len(response.content) / 1e6, 1), "first_page_messages": len(page["messages"])}
                if not page["messages"]:
                    break
                pages, seen, after = pages + 1, seen + len(page["messages"]), page["next_after_seq"]
            rows.append({"transport": transport, **first, "pages_to_read_all": pages, "messages_read": seen,
                         "worker_peak_rss_mib_before": round(before / 1024),
                         "worker_peak_rss_mib_after": round(max(common.worker_peak_rss_kib(master).values()) / 1024)})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slow", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--big", type=int, default=500)
    args = parser.parse_args()
    common.setup_django()
    common.reset_tables()
    results = {}
    with common.bridge(workers=2, extra_env={"ORKIVA_BODY_TIMEOUT_SECONDS": "60"}) as (url, master):
        results["slow_bodies"] = slow_bodies(url, args.slow, args.seconds)
        common.print_table(f"/healthz and posts while slow bodies are open ({args.seconds:g} s each)", results["slow_bodies"])
    if args.big:
        with common.bridge(workers=2) as (url, master):
            results["big_read"] = big_read(url, master, args.big)
        common.print_table(f"reading {args.big} messages of 256 KiB (limit=500)", results["big_read"])
    common.write_results("limits", results)


if __name__ == "__main__":
    main()
