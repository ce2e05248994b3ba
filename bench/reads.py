"""read_messages latency (50 after a cursor, with the unread count) at growing thread lengths.

The cost of a read must not grow with the thread: the figure to watch is the ratio of the
largest thread's latency to the smallest's (target <= 1.3). Run by hand:

    .venv/bin/python bench/reads.py [--lengths 100,10000,100000] [--requests 400]

The reader lags (its cursor sits in the middle of the thread) and both agents have posted
throughout, which is the worst case for the unread count.
"""
from __future__ import annotations

import argparse
import time

import common

WORKSPACE = "bench"
PAGE = 50


def build_thread(length: int) -> str:
    """A thread of `length` messages alternating between two agents, written in bulk SQL."""
    from django.db import connection

    from policy.identity import Actor
    from threads.services import thread_create

    coordinator = Actor(agent_id="bench-coordinator", workspace_id=WORKSPACE, role="coordinator", session_id="bench")
    thread = thread_create(actor=coordinator, title=f"read bench {length}", type="bench", participants=["reader", "writer"])
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO messaging_message (thread_id, seq, sender, sender_ordinal, kind, body, in_reply_to,
                                           item_state, idempotency_key, request_hash, finding_fingerprint, created_at)
            SELECT %s, s, CASE WHEN s %% 2 = 0 THEN 'reader' ELSE 'writer' END, (s + 1) / 2,
                   'message', 'message body number ' || s, NULL, '', NULL, '', '', now()
            FROM generate_series(1, %s) AS s
            """,
            [thread.pk, length],
        )
        cursor.execute("UPDATE threads_thread SET last_seq = %s WHERE id = %s", [length, thread.pk])
        cursor.execute(
            "UPDATE messaging_readcursor SET last_read_seq = %s WHERE thread_id = %s AND agent_id = 'reader'",
            [length // 2, thread.pk],
        )
        cursor.execute("ANALYZE messaging_message")
    return str(thread.pk)


def measure(url: str, thread_id: str, requests: int) -> tuple[list[float], int]:
    import httpx

    headers = {"Authorization": f"Bearer {common.token('reader', WORKSPACE)}"}
    latencies = []
    with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
        for i in range(requests + 20):
            t0 = time.perf_counter()
            response = client.get(f"/v1/threads/{thread_id}/messages", params={"limit": PAGE})
            elapsed = time.perf_counter() - t0
            body = response.json()
            assert response.status_code == 200 and len(body["messages"]) == PAGE, body
            if i >= 20:  # warm-up excluded
                latencies.append(elapsed)
    return latencies, body["unread_count"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lengths", default="100,10000,100000")
    parser.add_argument("--requests", type=int, default=400)
    args = parser.parse_args()
    common.setup_django()
    common.reset_tables()
    lengths = [int(n) for n in args.lengths.split(",")]
    threads = {n: build_thread(n) for n in lengths}
    rows = []
    with common.bridge(workers=1, extra_env={"ORKIVA_LOG_LEVEL": "WARNING"}) as (url, _master):
        for n in lengths:
            latencies, unread = measure(url, threads[n], args.requests)
            rows.append({"messages": n, "unread_count": unread, **common.summarize(latencies, sum(latencies))})
    smallest, largest = rows[0], rows[-1]
    ratio = {"p50": round(largest["p50_ms"] / smallest["p50_ms"], 3), "p99": round(largest["p99_ms"] / smallest["p99_ms"], 3)}
    common.print_table(f"read_messages ({PAGE} after a cursor) by thread length", rows)
    print(f"\nlatency ratio largest/smallest: p50 {ratio['p50']}  p99 {ratio['p99']}  (target <= 1.3)")
    common.write_results("reads", {"rows": rows, "ratio_largest_smallest": ratio})


if __name__ == "__main__":
    main()
