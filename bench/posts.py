"""post_message throughput and latency over REST, as a ratio to the database ceiling.

The ceiling is the same transaction a post makes (lock the thread row, bump last_seq,
insert the message) issued straight through psycopg by the same number of clients, in
the same run, on the same PostgreSQL. Run by hand (docs/performance.md):

    .venv/bin/python bench/posts.py [--clients 1,8,32] [--seconds 10] [--threads 64] [--mcp-clients 1,8]
                                    [--workers N --gthreads N] [--client wrk|httpx] [--warmup 2]

The HTTP load comes from wrk (bench/wrk_posts.lua: one thread and one keep-alive connection per
agent, closed loop); `--client httpx` uses Python threads of this process instead. Layouts: posts
spread over 64 threads, and all on one hot thread. Then MCP post_message vs REST post_message
(same bridge, same threads): the adapter's overhead as a latency ratio and as bridge CPU per
call. Each row reports the CPU (in cores) the load client, the bridge's workers and PostgreSQL
used: they share the machine. Each HTTP phase follows --warmup seconds of its own load, not
measured (each worker thread's connection and prepared statements). Ends with the peak RSS (VmHWM) of each bridge worker after the load.

Needs PostgreSQL (BENCH_DATABASE_URL, default postgres://postgres@127.0.0.1:5432/orkiva_bench).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path

import common

WORKSPACE = "bench"
MCP_HEADERS = {"Accept": "application/json, text/event-stream", "MCP-Protocol-Version": "2025-06-18"}


def make_threads(count: int, agents: list[str]) -> list[str]:
    from policy.identity import Actor
    from threads.services import thread_create

    coordinator = Actor(agent_id="bench-coordinator", workspace_id=WORKSPACE, role="coordinator", session_id="bench")
    return [
        str(thread_create(actor=coordinator, title=f"bench {i}", type="bench", participants=agents).pk)
        for i in range(count)
    ]


def run_clients(clients: int, seconds: float, work) -> tuple[list[float], float, int]:
    """Run `work(client_index, stop_at, latencies, errors)` in `clients` threads; gather latencies."""
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors = [0] * clients
    start_barrier = threading.Barrier(clients + 1)
    stop_at_box: list[float] = []

    def body(index: int) -> None:
        start_barrier.wait()
        work(index, stop_at_box[0], latencies[index], errors)

    workers = [threading.Thread(target=body, args=(i,)) for i in range(clients)]
    for w in workers:
        w.start()
    stop_at_box.append(time.monotonic() + seconds)
    started = time.monotonic()
    start_barrier.wait()
    for w in workers:
        w.join()
    elapsed = time.monotonic() - started
    return [x for lane in latencies for x in lane], elapsed, sum(errors)


def ceiling(clients: int, seconds: float, thread_ids: list[str]) -> dict:
    """The post's transaction straight through psycopg. The connections open before the timed
    phase and close after PostgreSQL's CPU is read, so their backends' CPU is counted."""
    import psycopg

    url = common.database_url()
    connections = [psycopg.connect(url) for _ in range(clients)]

    def work(index, stop_at, lat, errors):
        sender = f"agent-{index}"
        conn = connections[index]
        while time.monotonic() < stop_at:
            tid = random.choice(thread_ids)
            t0 = time.perf_counter()
            try:
                with conn.transaction():
                    (last_seq,) = conn.execute(
                        "SELECT last_seq FROM threads_thread WHERE id = %s FOR UPDATE", (tid,)
                    ).fetchone()
                    previous = conn.execute(
                        "SELECT sender_ordinal FROM messaging_message WHERE thread_id = %s AND sender = %s "
                        "ORDER BY seq DESC LIMIT 1",
                        (tid, sender),
                    ).fetchone()
                    conn.execute(
                        "UPDATE threads_thread SET last_seq = %s, updated_at = now() WHERE id = %s",
                        (last_seq + 1, tid),
                    )
                    conn.execute(
                        "INSERT INTO messaging_message (thread_id, seq, sender, sender_ordinal, kind, body, "
                        "in_reply_to, item_state, idempotency_key, request_hash, finding_fingerprint, created_at) "
                        "VALUES (%s, %s, %s, %s, 'message', %s, NULL, '', %s, '', '', now())",
                        (tid, last_seq + 1, sender, (previous[0] if previous else 0) + 1,
                         "ceiling message body", uuid.uuid4().hex),
                    )
            except psycopg.Error as exc:
                errors[index] += 1
                if errors[index] == 1:
                    print(f"ceiling client {index}: {exc}")
                continue
            lat.append(time.perf_counter() - t0)

    client_before, db_before = common.process_cpu_seconds(), common.postgres_cpu_seconds()
    try:
        latencies, elapsed, errors = run_clients(clients, seconds, work)
        db_cpu = common.postgres_cpu_used(db_before, common.postgres_cpu_seconds())
        client_cpu = common.process_cpu_seconds() - client_before
    finally:
        for conn in connections:
            conn.close()
        time.sleep(0.5)  # let their backends exit before the next phase reads PostgreSQL's CPU
    return {**common.summarize(latencies, elapsed), "errors": errors, "elapsed": elapsed,
            "client_cpu": round(client_cpu / elapsed, 2), "db_cpu": round(db_cpu / elapsed, 2)}


def rest(clients: int, seconds: float, thread_ids: list[str], url: str):
    """POST /v1/threads/<id>/messages, one keep-alive connection per client."""

    def request(tid: str) -> tuple[str, dict]:
        return f"/v1/threads/{tid}/messages", {"body": "bench message body", "idempotency_key": uuid.uuid4().hex}

    return _http_posts(clients, seconds, thread_ids, url, request, lambda r: r.status_code == 201, {})


def mcp(clients: int, seconds: float, thread_ids: list[str], url: str):
    """The same post through the MCP adapter: a tools/call of post_message on /v1/mcp."""

    def request(tid: str) -> tuple[str, dict]:
        arguments = {"thread_id": tid, "body": "bench message body", "idempotency_key": uuid.uuid4().hex}
        return "/v1/mcp", {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                           "params": {"name": "post_message", "arguments": arguments}}

    def ok(response) -> bool:
        return response.status_code == 200 and not response.json().get("result", {}).get("isError", True)

    return _http_posts(clients, seconds, thread_ids, url, request, ok, MCP_HEADERS)


def wrk_posts(mode: str, clients: int, seconds: float, thread_ids: list[str], url: str) -> dict:
    """The REST or MCP post load from wrk (bench/wrk_posts.lua): one wrk thread and one keep-alive
    connection per agent, closed loop. A C client leaves the two cores to the bridge and PostgreSQL
    (the Python client spent about 1 ms of CPU per request). Latencies are wrk's, per request."""
    with tempfile.TemporaryDirectory() as tmp:
        files = {name: Path(tmp) / name for name in ("tokens", "threads", "out.json")}
        files["tokens"].write_text("\n".join(common.token(f"agent-{i}", WORKSPACE) for i in range(clients)) + "\n")
        files["threads"].write_text("\n".join(thread_ids) + "\n")
        env = {**os.environ, "WRK_TOKENS": str(files["tokens"]), "WRK_THREADS": str(files["threads"]),
               "WRK_MODE": mode, "WRK_OUT": str(files["out.json"]), "WRK_RUN": uuid.uuid4().hex}
        cpu_before = _children_cpu_seconds()
        run = subprocess.run(["wrk", f"-t{clients}", f"-c{clients}", f"-d{max(1, round(seconds))}s", "--timeout", "30s",
                              "-s", str(common.REPO / "bench" / "wrk_posts.lua"), url],
                             env=env, capture_output=True, text=True)
        if run.returncode != 0:
            raise RuntimeError(f"wrk failed ({run.returncode}): {run.stderr or run.stdout}")
        client_cpu = _children_cpu_seconds() - cpu_before
        result = json.loads(files["out.json"].read_text())
    elapsed = result["duration_us"] / 1e6
    ok = result["requests"] - result["errors"]
    if result["errors"] or result["socket_errors"]:
        print(f"wrk {mode}: {result['errors']} failed responses, {result['socket_errors']} socket errors")
    return {
        "requests": ok,
        "throughput_per_s": round(ok / elapsed, 1),
        "p50_ms": round(result["p50_us"] / 1000, 2),
        "p99_ms": round(result["p99_us"] / 1000, 2),
        "errors": result["errors"] + result["socket_errors"],
        "client_cpu": round(client_cpu / elapsed, 2),
        "elapsed": elapsed,
    }


def _children_cpu_seconds() -> float:
    times = os.times()
    return times.children_user + times.children_system


def _http_posts(clients, seconds, thread_ids, url, request, ok, headers):
    import httpx

    tokens = [common.token(f"agent-{i}", WORKSPACE) for i in range(clients)]

    def work(index, stop_at, lat, errors):
        auth = {**headers, "Authorization": f"Bearer {tokens[index]}"}
        with httpx.Client(base_url=url, headers=auth, timeout=30) as client:
            while time.monotonic() < stop_at:
                path, payload = request(random.choice(thread_ids))
                t0 = time.perf_counter()
                response = client.post(path, json=payload)
                elapsed = time.perf_counter() - t0
                if not ok(response):
                    errors[index] += 1
                    if errors[index] == 1:
                        print(f"client {index}: {response.status_code} {response.text[:200]}")
                    continue
                lat.append(elapsed)

    return run_clients(clients, seconds, work)


def warm_up(phase, clients: int, seconds: float, targets: list[str], url: str) -> None:
    """The phase's own load for a moment, not measured: every worker thread that will serve it has
    opened its database connection and prepared its statements, so the figures are the steady
    state's, not the first seconds' (which the first phase after the bridge started paid alone)."""
    if seconds > 0:
        phase(clients, seconds, targets, url)


def _measured(phase, *args, master=None):
    """Run a phase; add the CPU (in cores) the bench client and the bridge's workers took to its summary.
    A phase returns (latencies, elapsed, errors) from Python clients, or a wrk summary (its own CPU)."""
    client_before = common.process_cpu_seconds()
    bridge_before = common.bridge_cpu_seconds(master) if master else 0.0
    db_before = common.postgres_cpu_seconds()
    outcome = phase(*args)
    db_cpu = common.postgres_cpu_used(db_before, common.postgres_cpu_seconds())
    if isinstance(outcome, dict):
        summary = outcome
        elapsed = summary.pop("elapsed")
    else:
        latencies, elapsed, errors = outcome
        summary = common.summarize(latencies, elapsed)
        summary["errors"] = errors
        summary["client_cpu"] = round((common.process_cpu_seconds() - client_before) / elapsed, 2)
    if master:
        summary["bridge_cpu"] = round((common.bridge_cpu_seconds(master) - bridge_before) / elapsed, 2)
    summary.setdefault("db_cpu", round(db_cpu / elapsed, 2))
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", default="1,8,32")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--threads", type=int, default=64, help="threads to spread posts over")
    parser.add_argument("--warmup", type=float, default=2.0,
                        help="seconds of the same load, not measured, before each HTTP phase (0: none)")
    parser.add_argument("--layouts", default="spread,hot", help="spread (over --threads threads), hot (one thread)")
    parser.add_argument("--mcp-clients", default="1,8", help="client counts for MCP vs REST ('' to skip)")
    parser.add_argument("--workers", type=int, default=None, help="gunicorn workers (default: infra config)")
    parser.add_argument("--gthreads", type=int, default=None, help="each worker's thread pool (ORKIVA_THREADS)")
    parser.add_argument("--client", choices=("wrk", "httpx"), default="wrk",
                        help="HTTP load client: wrk (C, apt-get install wrk) or httpx threads in this process")
    args = parser.parse_args()
    if args.client == "wrk" and shutil.which("wrk") is None:
        parser.error("wrk is not installed: apt-get install wrk (or --client httpx)")
    if args.client == "wrk":
        rest_phase = lambda clients, seconds, targets, url: wrk_posts("rest", clients, seconds, targets, url)  # noqa: E731
        mcp_phase = lambda clients, seconds, targets, url: wrk_posts("mcp", clients, seconds, targets, url)  # noqa: E731
    else:
        rest_phase, mcp_phase = rest, mcp
    common.setup_django()
    client_counts = [int(c) for c in args.clients.split(",")]
    mcp_counts = [int(c) for c in args.mcp_clients.split(",") if c]
    agents = [f"agent-{i}" for i in range(max(client_counts + mcp_counts))]

    rows, mcp_rows = [], []
    with common.bridge(args.workers, args.gthreads) as (url, master):
        for layout in args.layouts.split(","):
            for clients in client_counts:
                common.reset_tables()
                spread = make_threads(args.threads, agents)
                targets = spread if layout == "spread" else spread[:1]
                c = _measured(ceiling, clients, args.seconds, targets)
                warm_up(rest_phase, clients, args.warmup, targets, url)
                r = _measured(rest_phase, clients, args.seconds, targets, url, master=master)
                rows.append({
                    "layout": layout if layout == "hot" else f"{args.threads} threads",
                    "clients": clients,
                    "ceiling_per_s": c["throughput_per_s"],
                    "rest_per_s": r["throughput_per_s"],
                    "ratio": round(r["throughput_per_s"] / c["throughput_per_s"], 3) if c["throughput_per_s"] else None,
                    "ceiling_p50_ms": c["p50_ms"],
                    "ceiling_p99_ms": c["p99_ms"],
                    "rest_p50_ms": r["p50_ms"],
                    "rest_p99_ms": r["p99_ms"],
                    "ceiling_db_cpu": c["db_cpu"],
                    "client_cpu": r["client_cpu"],
                    "bridge_cpu": r["bridge_cpu"],
                    "db_cpu": r["db_cpu"],
                    "errors": c["errors"] + r["errors"],
                })
                common.print_table("post_message: REST vs psycopg ceiling", rows[-1:])
        for clients in mcp_counts:
            common.reset_tables()
            targets = make_threads(args.threads, agents)
            warm_up(rest_phase, clients, args.warmup, targets, url)
            r = _measured(rest_phase, clients, args.seconds, targets, url, master=master)
            warm_up(mcp_phase, clients, args.warmup, targets, url)
            m = _measured(mcp_phase, clients, args.seconds, targets, url, master=master)
            mcp_rows.append({
                "clients": clients,
                "rest_per_s": r["throughput_per_s"],
                "mcp_per_s": m["throughput_per_s"],
                "rest_p50_ms": r["p50_ms"],
                "mcp_p50_ms": m["p50_ms"],
                "mcp_over_rest_p50": round(m["p50_ms"] / r["p50_ms"], 2) if r["p50_ms"] else None,
                "mcp_over_rest_cpu_per_call": round((m["bridge_cpu"] / m["throughput_per_s"])
                                                    / (r["bridge_cpu"] / r["throughput_per_s"]), 2)
                if m["throughput_per_s"] and r["throughput_per_s"] and r["bridge_cpu"] else None,
                "errors": r["errors"] + m["errors"],
            })
            common.print_table("post_message: MCP vs REST", mcp_rows[-1:])
        rss = common.worker_peak_rss_kib(master)
    common.print_table("post_message: REST vs psycopg ceiling (all)", rows)
    common.print_table("post_message: MCP vs REST (all)", mcp_rows)
    print(f"\npeak RSS of bridge workers (KiB, VmHWM): {rss}")
    common.write_results("posts", {"seconds": args.seconds, "client": args.client, "rows": rows, "mcp_rows": mcp_rows,
                                   "worker_peak_rss_kib": rss})


if __name__ == "__main__":
    main()
