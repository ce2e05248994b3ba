"""The pilot with the real agent CLIs, run by hand (`pilot/run_pilot.sh --real`, docs/pilot.md):
an executioner in Codex CLI's TUI and a reviewer in Claude Code's TUI, both launched by
`orkiva_runtime launch`, review a change in one thread with no human relaying anything.

No model is reachable, so the models are this project's fake servers (pilot.fakemodel) playing the
roles (pilot.brains); everything else is real: the CLIs from node_modules (`make setup-clis`), the
bridge (runserver), the supervisor (`manage.py qcluster`), tmux. It is self-contained: its own
SQLite database, tmux server, HOME, CODEX_HOME and CLAUDE_CONFIG_DIR under var/pilot-real/<time>/,
so neither a running bridge nor your own Codex or Claude Code configuration is touched.

    python -m pilot.real [--timeout 300] [--keep]

It prints the pilot report and exits 0 once the thread is resolved, 1 if not within --timeout.
With --keep everything stays up after the report, for you to attach to the panes, until Ctrl-C."""
from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import httpx

from pilot import brains
from pilot.fakemodel import FakeModel

REPO = Path(__file__).resolve().parent.parent
BIN = REPO / "node_modules" / ".bin"
WORKSPACE = "pilot-real"
FAKE_ANTHROPIC_KEY = "sk-ant-orkiva-pilot-fake-key-0123456789abcdef"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def manage(*args: str, env: dict[str, str]) -> dict:
    done = subprocess.run([sys.executable, "manage.py", *args, "--json"], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=120)
    if done.returncode != 0:
        raise SystemExit(f"pilot: manage.py {args[0]} failed:\n{done.stdout}{done.stderr}")
    return json.loads(done.stdout)


def prepare(run: Path, codex_model: FakeModel, claude_model: FakeModel) -> dict[str, str]:
    """The run's folders and the CLIs' configuration: what a user who set both CLIs up would have."""
    home, codex_home, claude_config, project = (run / n for n in ("home", "codex-home", "claude-config", "project"))
    for folder in (home, codex_home, claude_config, project):
        folder.mkdir(parents=True)
    subprocess.run(["git", "init", "-q", str(project)], check=True)
    (project / "parser.py").write_text("def parse(header):\n    return header.split(':')\n")
    (codex_home / "config.toml").write_text(
        'model = "fake-model"\nmodel_provider = "fake"\ncheck_for_update_on_startup = false\n\n'
        f'[model_providers.fake]\nname = "fake"\nbase_url = "{codex_model.base_url}"\nwire_api = "responses"\n')
    (claude_config / ".claude.json").write_text(json.dumps({"hasCompletedOnboarding": True}))
    port = free_port()
    return {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{run / 'pilot.sqlite3'}", "ORKIVA_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "PORT": str(port), "ORKIVA_TMUX_SOCKET": f"orkiva-{run.name}", "ORKIVA_TMUX_CONFIG": "/dev/null",
        "ORKIVA_RUNTIME_DIR": str(run / "runtimes"), "ORKIVA_Q_POLL": "0.2", "ORKIVA_WAKE_ACK_POLL_SECONDS": "0.5",
        "HOME": str(home), "CODEX_HOME": str(codex_home), "CLAUDE_CONFIG_DIR": str(claude_config),
        "ANTHROPIC_BASE_URL": claude_model.base_url, "ANTHROPIC_API_KEY": FAKE_ANTHROPIC_KEY,
        "DISABLE_AUTOUPDATER": "1", "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1", "DISABLE_TELEMETRY": "1",
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "PYTHONUNBUFFERED": "1",
    }


def start(name: str, argv: list[str], env: dict[str, str], run: Path) -> subprocess.Popen:
    log = open(run / f"{name}.log", "w")
    return subprocess.Popen(argv, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def wait_http(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"pilot: the bridge did not answer at {url}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--timeout", type=float, default=300)
    parser.add_argument("--keep", action="store_true", help="after the report, keep everything up until Ctrl-C")
    args = parser.parse_args()
    for name in ("codex", "claude", "node"):
        if not (BIN / name).exists():
            print(f"pilot: {BIN / name} is missing; install the pinned CLIs with `make setup-clis`", file=sys.stderr)
            return 2
    run = REPO / "var" / "pilot-real" / datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    codex_model = FakeModel("openai", brains.working_executioner(fix_seconds=3)).start()
    claude_model = FakeModel("anthropic", brains.reviewer).start()
    env = prepare(run, codex_model, claude_model)
    url = env["ORKIVA_PUBLIC_URL"]
    processes: list[subprocess.Popen] = []
    resolved = False
    try:
        subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=REPO, env=env, check=True)
        processes.append(start("bridge", [sys.executable, "manage.py", "runserver", f"127.0.0.1:{env['PORT']}",
                                          "--noreload"], env, run))
        processes.append(start("qcluster", [sys.executable, "manage.py", "qcluster"], env, run))
        wait_http(url)
        token = manage("orkiva_issue_token", "--agent-id", "coordinator", "--workspace-id", WORKSPACE, "--role",
                       "coordinator", "--session-id", "pilot-coordinator", "--ttl", "3600", env=env)["token"]
        http = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=10)
        thread = http.post("/v1/threads", json={"title": "Pilot: review the parser change", "type": "review",
                                                "participants": ["executioner", "reviewer"]}).json()["id"]
        print(f"pilot: thread {thread} in workspace {WORKSPACE}; files in {run}")
        for agent, runtime, prompt in (("reviewer", "claude", ""),
                                       ("executioner", "codex", f"You are the executioner in thread {thread}. "
                                                                "Post your work for review, then fix what is found.")):
            launched = manage("orkiva_runtime", "launch", "--agent-id", agent, "--workspace-id", WORKSPACE,
                              "--runtime", runtime, "--workdir", str(run / "project"), "--reason", "pilot --real",
                              "--operator", "pilot", *(["--prompt", prompt] if prompt else []), env=env)
            print(f"pilot: {agent} ({runtime}): {launched['attach']}")
        deadline, seen = time.monotonic() + args.timeout, -1
        while time.monotonic() < deadline:
            status = http.get(f"/v1/threads/{thread}").json()["status"]
            count = http.get(f"/v1/threads/{thread}/summary").json()["counts"]["messages"]
            if count != seen:
                print(f"pilot: {count} messages, thread {status}")
                seen = count
            if status == "resolved":
                resolved = True
                break
            time.sleep(1)
        print(f"pilot: thread is {status}")
        report = subprocess.run([sys.executable, "manage.py", "orkiva_pilot_report", "--workspace-id", WORKSPACE,
                                 "--thread", thread], cwd=REPO, env=env, capture_output=True, text=True)
        print(report.stdout or report.stderr)
        if args.keep:
            print(f"pilot: everything is still up; attach with `tmux -L {env['ORKIVA_TMUX_SOCKET']} attach`. "
                  "Ctrl-C stops it.")
            while True:
                time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        for process in processes:
            try:
                os.killpg(process.pid, 15)
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, 9)
            except ProcessLookupError:
                pass
        subprocess.run(["tmux", "-L", env["ORKIVA_TMUX_SOCKET"], "kill-server"], capture_output=True)
        codex_model.stop()
        claude_model.stop()
    return 0 if resolved else 1


if __name__ == "__main__":
    sys.exit(main())
