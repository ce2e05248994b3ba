"""Wake latency: from a committed post to the wake prompt taken by a dormant agent in its tmux pane.

A real bridge (gunicorn, infra config), a real `manage.py qcluster`, a private tmux server and one
managed runtime. By default it is the tests' stand-in agent (tests/supervisor/bin/stand_in_agent.py,
launched like `orkiva_runtime launch` does), which stamps the moment each prompt line reaches it,
then heartbeats (the wake's acknowledgement). With `--real codex` or `--real claude` it is the real
TUI (node_modules, `make setup-clis`) launched by `runtime_launch` and configured by it, against a
fake model server (pilot.fakemodel) whose brain reads the thread and acks it: the time is taken when
the model receives the wake's prompt, i.e. when the TUI submitted it. For each of `--wakes` rounds:
wait until the agent is idle (the stand-in: its heartbeat older than the idle threshold; a real CLI:
its hooks or notify say its turn is over), post one message over REST as another participant, and
time post-returned -> prompt taken. No human is attached to the pane. Run by hand:

    BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/orkiva_bench_perf \\
        .venv/bin/python bench/wakes.py [--wakes 50] [--q-poll 0.5] [--idle 1] [--real codex|claude]

The cluster's poll interval (ORKIVA_Q_POLL) bounds how soon a queued wake job is picked up.
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


def _real_cli_env(run_dir: Path, model) -> dict[str, str]:
    """An isolated HOME, CODEX_HOME and CLAUDE_CONFIG_DIR for the real CLIs, pointed at the fake model
    (what tests/realcli sets up), and the project's node_modules/.bin first on PATH."""
    home, codex_home, claude_config = run_dir / "home", run_dir / "codex-home", run_dir / "claude-config"
    for folder in (home, codex_home, claude_config, run_dir / "project"):
        folder.mkdir(parents=True, exist_ok=True)
    (codex_home / "config.toml").write_text(
        'model = "fake-model"\nmodel_provider = "fake"\ncheck_for_update_on_startup = false\n\n'
        f'[model_providers.fake]\nname = "fake"\nbase_url = "{model.base_url}"\nwire_api = "responses"\n')
    (claude_config / ".claude.json").write_text(json.dumps({"hasCompletedOnboarding": True}))
    return {
        "HOME": str(home), "CODEX_HOME": str(codex_home), "CLAUDE_CONFIG_DIR": str(claude_config),
        "ANTHROPIC_BASE_URL": model.base_url, "ANTHROPIC_API_KEY": "sk-ant-orkiva-bench-fake-key-0123456789abcdef",
        "DISABLE_AUTOUPDATER": "1", "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1", "DISABLE_TELEMETRY": "1",
        "PATH": f"{common.REPO / 'node_modules' / '.bin'}{os.pathsep}{os.environ['PATH']}",
        "ORKIVA_RUNTIME_DIR": str(run_dir / "runtimes"),
    }


def _reader(turn):
    """The bench's model: read the thread the prompt names, ack it, end the turn."""
    from pilot.brains import THREAD
    from pilot.fakemodel import Call, Say

    thread = THREAD.search(turn.prompt)
    if thread is None or "read_messages" not in turn.tools:
        if "WaitForMcpServers" in turn.tools and not turn.called("WaitForMcpServers"):
            return Call("WaitForMcpServers", {"servers": ["orkiva"]}, mcp=False)
        return Say("Nothing to do.")
    read = turn.last("read_messages")
    if read is None:
        return Call("read_messages", {"thread_id": thread.group(1)})
    if not turn.called("ack_read") and isinstance(read.output, dict):
        return Call("ack_read", {"thread_id": thread.group(1), "seq": read.output.get("last_seq", 0)})
    return Say("Read.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--wakes", type=int, default=50)
    parser.add_argument("--q-poll", default="0.5", help="ORKIVA_Q_POLL for the cluster (the settings default: 0.5)")
    parser.add_argument("--idle", type=int, default=1, help="ORKIVA_RUNTIME_IDLE_SECONDS (paces the stand-in's rounds)")
    parser.add_argument("--real", choices=("codex", "claude"), default=None,
                        help="wake the real CLI's TUI instead of the stand-in")
    args = parser.parse_args()
    socket = f"orkiva-bench-{uuid.uuid4().hex[:8]}"
    workspace = f"bench-wake-{uuid.uuid4().hex[:6]}"
    common.RESULTS.mkdir(parents=True, exist_ok=True)
    log = common.RESULTS / f"wake-agent-{socket}.jsonl"
    wake_env = {
        "ORKIVA_TMUX_SOCKET": socket, "ORKIVA_TMUX_CONFIG": "/dev/null", "ORKIVA_SUPERVISOR_HOST": "bench-host",
        "ORKIVA_RUNTIME_IDLE_SECONDS": str(args.idle), "ORKIVA_WAKE_DEDUPE_WINDOW_SECONDS": "0",
        "ORKIVA_WAKE_RATE_LIMIT": "100000", "ORKIVA_WAKE_ACK_POLL_SECONDS": "0.2", "ORKIVA_Q_POLL": args.q_poll,
    }
    model = None
    if args.real:
        sys.path.insert(0, str(common.REPO))
        from pilot.fakemodel import FakeModel

        model = FakeModel("openai" if args.real == "codex" else "anthropic", _reader).start()
        wake_env.update(_real_cli_env(common.RESULTS / f"real-{socket}", model))
    os.environ.update(wake_env)  # this process launches the runtime on the same tmux server
    common.setup_django()
    from django.conf import settings

    from policy.identity import Actor
    from supervisor import reasons
    from supervisor.models import Runtime, WakeRequest
    from supervisor.services import runtime_launch
    from threads.services import thread_create

    common.reset_tables()
    latencies, post_ms = [], []
    with common.bridge(extra_env=wake_env) as (url, master):
        settings.ORKIVA_PUBLIC_URL = url
        settings.ORKIVA_RUNTIME_DIR = Path(os.environ.get("ORKIVA_RUNTIME_DIR", settings.ORKIVA_RUNTIME_DIR))
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
            if args.real:
                runtime_launch(operator=operator, agent_id=AGENT, workspace_id=workspace, runtime_type=args.real,
                               workdir=str(common.RESULTS / f"real-{socket}" / "project"), reason="wake bench")

                def idle() -> bool:  # Codex says nothing before its first turn ends: unknown is not busy
                    return Runtime.objects.filter(agent_id=AGENT, workspace_id=workspace,
                                                  agent_state__in=("idle", "unknown")).exists()

                def taken() -> list[float]:
                    return [r.received_at for r in model.turns() if not r.turn.results
                            and r.turn.prompt.startswith("Orkiva wake")]
            else:
                command = shlex.join(["env", f"STANDIN_LOG={log}", "STANDIN_ACK=1", sys.executable,
                                      str(common.REPO / "tests" / "supervisor" / "bin" / "stand_in_agent.py")])
                runtime_launch(operator=operator, agent_id=AGENT, workspace_id=workspace, runtime_type="other",
                               command=command, reason="wake bench")

                def idle() -> bool:
                    time.sleep(args.idle + 0.3)  # the agent's last heartbeat is now older than the idle threshold
                    return True

                def taken() -> list[float]:
                    return _stamps(log)
            import httpx

            headers = {"Authorization": f"Bearer {common.token(SENDER, workspace)}"}
            with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
                for i in range(args.wakes):
                    _wait(idle, timeout=60, what=f"the agent idle before round {i}", interval=0.05)
                    before = len(taken())
                    t0 = time.perf_counter()
                    response = client.post(f"/v1/threads/{thread.pk}/messages", json={"body": f"wake round {i}"})
                    returned = time.time()
                    post_ms.append((time.perf_counter() - t0) * 1000)
                    assert response.status_code == 201, response.text
                    seen = _wait(lambda: taken()[before:], timeout=60, what=f"wake {i} taken")[0]
                    latencies.append(seen - returned)
                    _wait(lambda: not WakeRequest.objects.filter(thread_id=thread.pk,
                                                                 status__in=reasons.ACTIVE_STATUSES).exists(),
                          timeout=60, what=f"wake {i} acknowledged", interval=0.05)
            statuses = list(WakeRequest.objects.filter(thread_id=thread.pk).values_list("status", flat=True))
        finally:
            common.stop_process(cluster)
            cluster_log.close()
            subprocess.run(["tmux", "-L", socket, "kill-server"], capture_output=True)
            Path(f"/tmp/tmux-{os.getuid()}", socket).unlink(missing_ok=True)  # kill-server leaves it behind
            if model is not None:
                model.stop()
    row = {
        "agent": args.real or "stand-in",
        "wakes": len(latencies),
        "q_poll_s": float(args.q_poll),
        "p50_ms": round(common.percentile(latencies, 50) * 1000, 1),
        "p99_ms": round(common.percentile(latencies, 99) * 1000, 1),
        "min_ms": round(min(latencies) * 1000, 1),
        "max_ms": round(max(latencies) * 1000, 1),
        "post_p50_ms": round(common.percentile([x / 1000 for x in post_ms], 50) * 1000, 2),
        "delivered": statuses.count(reasons.DELIVERED),
    }
    title = "wake latency: post committed -> " + (
        f"the {args.real} TUI submitted the prompt to its model" if args.real else "prompt read in the stand-in's pane")
    common.print_table(title, [row])
    common.write_results(f"wakes-{args.real}" if args.real else "wakes",
                         {"row": row, "latencies_ms": [round(x * 1000, 1) for x in latencies]})


if __name__ == "__main__":
    main()
