"""Real processes for tests: a bridge server (runserver or gunicorn) and manage.py commands,
both pointed at the test database the pytest process created.

Use them from `transaction=True` tests (or `django_db(transaction=True)`), so that rows the
test writes are committed and visible to the subprocess, and vice versa.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import httpx
from django.db import connection

REPO = Path(__file__).resolve().parent.parent
MANAGE = str(REPO / "manage.py")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_database_url() -> str:
    """A DATABASE_URL for the database this test run is using (test_<name>, or the SQLite file)."""
    settings = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{settings['NAME']}"
    user = settings.get("USER") or "postgres"
    password = f":{settings['PASSWORD']}" if settings.get("PASSWORD") else ""
    host = settings.get("HOST") or "127.0.0.1"
    port = settings.get("PORT") or 5432
    return f"postgres://{user}{password}@{host}:{port}/{settings['NAME']}"


def subprocess_env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "DATABASE_URL": test_database_url(), "PYTHONUNBUFFERED": "1"}
    env.update({k: str(v) for k, v in extra.items()})
    return env


def run_manage(*args: str, env: dict[str, str] | None = None, timeout: float = 60, input: str | None = None):
    """Run `manage.py <args>` as a real subprocess; returns the CompletedProcess (text mode)."""
    return subprocess.run(
        [sys.executable, MANAGE, *args],
        cwd=REPO,
        env=env or subprocess_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        input=input,
    )


def run_manage_json(*args: str, **kwargs) -> tuple[int, dict]:
    """Run a `--json` command; return its exit code and parsed stdout."""
    proc = run_manage(*args, "--json", **kwargs)
    try:
        document = json.loads(proc.stdout)
    except json.JSONDecodeError as exc:
        raise AssertionError(f"not JSON (exit {proc.returncode}): {proc.stdout!r} {proc.stderr!r}") from exc
    return proc.returncode, document


class BridgeServer:
    def __init__(self, process: subprocess.Popen, base_url: str, log_path: Path):
        self.process = process
        self.base_url = base_url
        self.log_path = log_path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@contextmanager
def bridge_server(
    tmp_path: Path, *, server: str = "runserver", workers: int = 2, env: dict[str, str] | None = None
) -> Iterator[BridgeServer]:
    """Start a real bridge on a free loopback port and wait until /healthz answers.

    server="runserver" is the development server (WSGI); "gunicorn" is production's command,
    `gunicorn -c infra/gunicorn.conf.py` (ASGI, uvicorn workers), with `workers` processes.
    """
    port = free_port()
    if server == "runserver":
        command = [sys.executable, MANAGE, "runserver", f"127.0.0.1:{port}", "--noreload"]
    elif server == "gunicorn":
        command = [
            sys.executable, "-m", "gunicorn", "-c", str(REPO / "infra" / "gunicorn.conf.py"),
            "--bind", f"127.0.0.1:{port}", "--workers", str(workers),
        ]
    else:
        raise ValueError(server)
    log_path = tmp_path / f"bridge-{port}.log"
    log = open(log_path, "w")
    process = subprocess.Popen(
        command, cwd=REPO, env=env or subprocess_env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"bridge exited with {process.returncode}:\n{log_path.read_text()}")
            try:
                if httpx.get(f"{base_url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"bridge did not start:\n{log_path.read_text()}")
            time.sleep(0.1)
        yield BridgeServer(process, base_url, log_path)
    finally:
        stop(process, timeout=10, whole_group=True)
        log.close()


def stop(process: subprocess.Popen, *, timeout: float, whole_group: bool) -> None:
    """SIGTERM a process started with start_new_session=True (to its whole group, or to it alone
    when it stops its own children); SIGKILL its group if it is still there after `timeout`."""
    if process.poll() is not None:
        return
    if whole_group:
        os.killpg(process.pid, 15)
    else:
        process.send_signal(15)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, 9)
        process.wait()


class Cluster:
    def __init__(self, process: subprocess.Popen, log_path: Path):
        self.process = process
        self.pid = process.pid
        self.log_path = log_path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def assert_running(self) -> None:
        assert self.process.poll() is None, f"qcluster exited with {self.process.returncode}:\n{self.log()}"


@contextmanager
def qcluster(tmp_path: Path, *, env: dict[str, str] | None = None, name: str = "qcluster") -> Iterator[Cluster]:
    """A real `manage.py qcluster` (the supervisor) on the test database, its output in
    tmp_path/<name>.log; stopped with SIGTERM (it stops its own workers), killed if it hangs."""
    log_path = tmp_path / f"{name}.log"
    log = open(log_path, "w")
    process = subprocess.Popen(
        [sys.executable, MANAGE, "qcluster"], cwd=REPO, env=env or subprocess_env(), stdout=log,
        stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        yield Cluster(process, log_path)
    finally:
        stop(process, timeout=15, whole_group=False)  # qcluster stops its own workers
        log.close()
