"""Wake latency: from a committed post to the wake prompt in a dormant agent's tmux pane.

A real bridge (gunicorn, infra config), a real `manage.py qcluster`, a private tmux server and one
managed runtime (the tests' stand-in agent, tests/supervisor/bin/stand_in_agent.py, launched like
`orkiva_runtime launch` does) that stamps the moment each prompt line reaches it, then heartbeats
(the wake's acknowledgement). For each of `--wakes` rounds: wait until the agent is idle,
post one message over REST as another participant, and time post-returned -> prompt read.
No human is attached to the pane, so no wake meets a collision (deferral). Run by hand:

    BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/orkiva_bench_perf \\
        .venv/bin/python bench/wakes.py [--wakes 50] [--q-poll 0.5] [--idle 1]

The cluster's poll interval (ORKIVA_Q_POLL) bounds how soon a queued wake job is picked up; the
idle threshold only paces the rounds (an agent that heartbeated within it is active, not woken).
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
import uuid
from pathlib import Path

import common

AGENT = "sleeper"
SENDER = "poster"


def _wait(predicate, *, timeout: float, what: str, interval: float = 0.002):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise RuntimeError(f"timed out waiting for {what}")


def _stamps(log: Path) -> list[float]:
    if not log.exists():
        return []
    return [json.loads(line)["seen"] for line in log.read_text().splitlines() if line.strip()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--wakes", type=int, default=50)
    parser.add_argument("--q-poll", default="0.5", help="ORKIVA_Q_POLL for the cluster (the settings default: 0.5)")
    parser.add_argument("--idle", type=int, default=1, help="ORKIVA_RUNTIME_IDLE_SECONDS (paces the rounds)")
    args = parser.parse_args()
    socket = f"orkiva-bench-{uuid.uuid4().hex[:8]}"
    workspace = f"bench-wake-{uuid.uuid4().hex[:6]}"
    log = common.RESULTS / f"wake-agent-{socket}.jsonl"
    wake_env = {
        "ORKIVA_TMUX_SOCKET": socket, "ORKIVA_TMUX_CONFIG": "/dev/null", "ORKIVA_SUPERVISOR_HOST": "bench-host",
        "ORKIVA_RUNTIME_IDLE_SECONDS": str(args.idle), "ORKIVA_WAKE_DEDUPE_WINDOW_SECONDS": "0",
        "ORKIVA_WAKE_RATE_LIMIT": "100000", "ORKIVA_WAKE_ACK_POLL_SECONDS": "0.2", "ORKIVA_Q_POLL": args.q_poll,
    }
    os.environ.update(wake_env)  # this process launches the runtime on the same tmux server
    common.setup_django()
    common.RESULTS.mkdir(parents=True, exist_ok=True)
    from django.conf import settings

    from policy.identity import Actor
    from supervisor import reasons
    from supervisor.models import WakeRequest
    from supervisor.services import runtime_launch
    from threads.services import thread_create

    common.reset_tables()
    latencies, post_ms = [], []
    with common.bridge(extra_env=wake_env) as (url, master):
        settings.ORKIVA_PUBLIC_URL = url
        cluster_log = open(common.RESULTS / f"qcluster-{socket}.log", "w")
        cluster = subprocess.Popen(
            [sys.executable, "manage.py", "qcluster"], cwd=common.REPO, stdout=cluster_log, stderr=subprocess.STDOUT,
            env={**common.POLICY_ENV, **os.environ, "DATABASE_URL": common.database_url()}, start_new_session=True,
        )
        try:
            operator = Actor.operator(name="bench", workspace_id=workspace)
            coordinator = Actor(agent_id="bench-coordinator", workspace_id=workspace, role="coordinator",
                                session_id="bench")
            thread = thread_create(actor=coordinator, title="wake bench", type="bench", participants=[AGENT, SENDER])
            command = shlex.join(["env", f"STANDIN_LOG={log}", "STANDIN_ACK=1", sys.executable,
                                  str(common.REPO / "tests" / "supervisor" / "bin" / "stand_in_agent.py")])
            runtime_launch(operator=operator, agent_id=AGENT, workspace_id=workspace, runtime_type="other",
                           command=command, reason="wake bench")
            import httpx

            headers = {"Authorization": f"Bearer {common.token(SENDER, workspace)}"}
            with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
                for i in range(args.wakes):
                    time.sleep(args.idle + 0.3)  # the agent's last heartbeat is now older than the idle threshold
                    before = len(_stamps(log))
                    t0 = time.perf_counter()
                    response = client.post(f"/v1/threads/{thread.pk}/messages", json={"body": f"wake round {i}"})
                    returned = time.time()
                    post_ms.append((time.perf_counter() - t0) * 1000)
                    assert response.status_code == 201, response.text
                    seen = _wait(lambda: _stamps(log)[before:], timeout=30, what=f"wake {i} in the pane")[0]
                    latencies.append(seen - returned)
                    _wait(lambda: not WakeRequest.objects.filter(thread_id=thread.pk,
                                                                 status__in=reasons.ACTIVE_STATUSES).exists(),
                          timeout=30, what=f"wake {i} acknowledged", interval=0.05)
            statuses = list(WakeRequest.objects.filter(thread_id=thread.pk).values_list("status", flat=True))
        finally:
            common.stop_process(cluster)
            cluster_log.close()
            subprocess.run(["tmux", "-L", socket, "kill-server"], capture_output=True)
            Path(f"/tmp/tmux-{os.getuid()}", socket).unlink(missing_ok=True)  # kill-server leaves it behind
    row = {
        "wakes": len(latencies),
        "q_poll_s": float(args.q_poll),
        "p50_ms": round(common.percentile(latencies, 50) * 1000, 1),
        "p99_ms": round(common.percentile(latencies, 99) * 1000, 1),
        "min_ms": round(min(latencies) * 1000, 1),
        "max_ms": round(max(latencies) * 1000, 1),
        "post_p50_ms": round(common.percentile([x / 1000 for x in post_ms], 50) * 1000, 2),
        "delivered": statuses.count(reasons.DELIVERED),
    }
    common.print_table("wake latency: post committed -> prompt read in the dormant agent's pane", [row])
    common.write_results("wakes", {"row": row, "latencies_ms": [round(x * 1000, 1) for x in latencies]})


if __name__ == "__main__":
    main()
