"""Shared benchmark plumbing: a dedicated PostgreSQL database, a production-configured bridge,
tokens, percentiles, and a results table + JSON file. Benchmarks are run by hand, never by tests.
"""
from __future__ import annotations

import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
DEFAULT_PG = "postgres://postgres@127.0.0.1:5432/orkiva_bench"


# Benchmarks post far past what the policy controls allow one agent: keep the rate limits on but
# out of reach (so their counter UPSERT is measured) and the loop controls off.
POLICY_ENV = {
    "ORKIVA_RATE_LIMIT_THREAD_POSTS": "100000000",
    "ORKIVA_RATE_LIMIT_WORKSPACE_POSTS": "100000000",
    "ORKIVA_LOOP_THRESHOLD_TURNS": "0",
    "ORKIVA_NO_PROGRESS_BLOCK_TURNS": "0",
    "ORKIVA_REPEATED_FINDING_LIMIT": "0",
}


def database_url() -> str:
    return os.environ.get("BENCH_DATABASE_URL", DEFAULT_PG)


def setup_django() -> None:
    """Point Django at the benchmark database (created and migrated if needed)."""
    url = database_url()
    os.environ["DATABASE_URL"] = url
    for name, value in POLICY_ENV.items():
        os.environ.setdefault(name, value)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "orkiva.settings")
    sys.path.insert(0, str(REPO))
    _ensure_database(url)
    import logging

    import django

    django.setup()
    logging.getLogger("httpx").setLevel(logging.WARNING)
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def _ensure_database(url: str) -> None:
    import psycopg

    base, name = url.rsplit("/", 1)
    with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def reset_tables() -> None:
    """Empty the domain tables between runs (the audit trigger forbids DELETE, TRUNCATE is allowed)."""
    from django.db import OperationalError, connection

    # A load client that stops at a deadline (wrk) can leave requests in flight in the bridge; their
    # transactions hold locks the TRUNCATE would wait for and deadlock with (failing them): wait
    # until they are done, and retry if one slipped in.
    with connection.cursor() as cursor:
        for _ in range(100):
            cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                           "AND pid <> pg_backend_pid() AND backend_type = 'client backend' "
                           "AND state IN ('active', 'idle in transaction')")
            if not cursor.fetchone()[0]:
                break
            time.sleep(0.1)
    for attempt in range(10):
        try:
            with connection.cursor() as cursor:
                cursor.execute(
                    "TRUNCATE messaging_message, messaging_readcursor, threads_participant, threads_thread, "
                    "policy_auditevent, policy_escalation, policy_ratecounter RESTART IDENTITY CASCADE"
                )
            return
        except OperationalError:
            if attempt == 9:
                raise
            time.sleep(0.5)


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def bridge(workers: int | None = None, threads: int | None = None, extra_env: dict | None = None) -> Iterator[tuple[str, subprocess.Popen]]:
    """The bridge as production runs it: `gunicorn -c infra/gunicorn.conf.py` (ASGI, uvicorn workers),
    ORKIVA_ENV=production."""
    import httpx

    from django.conf import settings

    port = free_port()
    # Production settings (infra/orkiva.env): JSON request logs at INFO, written to the bridge log.
    # The signing key is this process's, so the tokens it mints verify.
    # Metrics as production collects them with several workers (docs/operations.md): multiprocess
    # files, in a directory of this run's own.
    metrics_dir = RESULTS / f"metrics-{port}"
    shutil.rmtree(metrics_dir, ignore_errors=True)
    production = {"ORKIVA_ENV": "production", "ORKIVA_SIGNING_KEY": settings.ORKIVA_SIGNING_KEY,
                  "ORKIVA_METRICS_DIR": str(metrics_dir), "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}
    env = {**POLICY_ENV, **os.environ, **production, "DATABASE_URL": database_url(), **(extra_env or {})}
    command = [sys.executable, "-m", "gunicorn", "-c", str(REPO / "infra" / "gunicorn.conf.py"),
               "--bind", f"127.0.0.1:{port}"]
    if workers:
        command += ["--workers", str(workers)]
    if threads:
        env["ORKIVA_THREADS"] = str(threads)  # each worker's pool for the database work
    RESULTS.mkdir(parents=True, exist_ok=True)
    log = open(RESULTS / f"bridge-{port}.log", "w")
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("bridge did not start")
        time.sleep(0.1)
    try:
        yield url, process
    finally:
        stop_process(process)
        shutil.rmtree(metrics_dir, ignore_errors=True)


def stop_process(process: subprocess.Popen, timeout: float = 20) -> None:
    """SIGTERM a process started with start_new_session=True; its whole group if it hangs."""
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def worker_statuses(master: subprocess.Popen) -> dict[int, str]:
    """/proc/<pid>/status of each gunicorn worker under `master`."""
    found: dict[int, str] = {}
    for child in Path("/proc").iterdir():
        if not child.name.isdigit():
            continue
        try:
            status = (child / "status").read_text()
        except OSError:
            continue
        if f"PPid:\t{master.pid}\n" in status:
            found[int(child.name)] = status
    return found


def worker_peak_rss_kib(master: subprocess.Popen) -> dict[int, int]:
    """Peak RSS (VmHWM) of each gunicorn worker under `master`."""
    peaks: dict[int, int] = {}
    for pid, status in worker_statuses(master).items():
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        if "VmHWM" in fields:
            peaks[pid] = int(fields["VmHWM"].split()[0])
    return peaks


def bridge_cpu_seconds(master: subprocess.Popen) -> float:
    """User + system CPU seconds the bridge's workers have used so far."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in worker_statuses(master):
        try:
            fields = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return total / ticks


def postgres_cpu_seconds() -> dict[int, float]:
    """User + system CPU seconds of each of this machine's PostgreSQL processes so far, by pid.
    Take the difference of two readings with `postgres_cpu_used`."""
    ticks = os.sysconf("SC_CLK_TCK")
    found: dict[int, float] = {}
    for child in Path("/proc").iterdir():
        if not child.name.isdigit():
            continue
        try:
            head, tail = (child / "stat").read_text().rsplit(")", 1)
        except OSError:
            continue
        if head.endswith("(postgres"):
            fields = tail.split()
            found[int(child.name)] = (int(fields[11]) + int(fields[12])) / ticks
    return found


def postgres_cpu_used(before: dict[int, float], after: dict[int, float]) -> float:
    """PostgreSQL's CPU seconds between two readings: processes alive at the second one (those
    started in between count from zero). A process that exited in between (an autovacuum worker)
    takes its CPU with it, so this is a lower bound."""
    return sum(seconds - before.get(pid, 0.0) for pid, seconds in after.items())


def process_cpu_seconds() -> float:
    """User + system CPU seconds of this (bench client) process, all its threads."""
    times = os.times()
    return times.user + times.system


def token(agent_id: str, workspace_id: str, role: str = "participant", ttl: int = 3600) -> str:
    from policy.tokens import mint_token

    return mint_token(agent_id=agent_id, workspace_id=workspace_id, role=role, session_id=f"bench-{agent_id}",
                      ttl_seconds=ttl).token


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


def summarize(latencies_s: list[float], elapsed_s: float) -> dict:
    return {
        "requests": len(latencies_s),
        "throughput_per_s": round(len(latencies_s) / elapsed_s, 1) if elapsed_s else 0.0,
        "p50_ms": round(percentile(latencies_s, 50) * 1000, 2),
        "p99_ms": round(percentile(latencies_s, 99) * 1000, 2),
    }


def print_table(title: str, rows: list[dict]) -> None:
    if not rows:
        return
    columns = list(rows[0])
    widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in columns}
    print(f"\n{title}")
    print("  ".join(c.ljust(widths[c]) for c in columns))
    for row in rows:
        print("  ".join(str(row.get(c, "")).ljust(widths[c]) for c in columns))


def write_results(name: str, payload: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS / f"{name}-{stamp}.json"
    payload = {
        "benchmark": name,
        "at": stamp,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        **payload,
    }
    path.write_text(json.dumps(payload, indent=2))
    print(f"\nresults written to {path.relative_to(REPO)}")
    return path
