"""A PostgreSQL server of the test's own, for tests that restart the database under a bridge (the
suite's shared server must stay up). Built from the same installation's initdb and pg_ctl."""
from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.live import free_port, run_manage, subprocess_env


def _binary(name: str) -> str:
    found = shutil.which(name) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)), None)
    if not found:
        pytest.fail(f"{name} (PostgreSQL's server tools) is needed to run a private PostgreSQL; install postgresql")
    return found


class PrivatePostgres:
    def __init__(self, root: Path) -> None:
        self.root, self.data, self.port = root, root / "data", free_port()
        self.url = f"postgres://postgres@127.0.0.1:{self.port}/orkiva"
        # The server refuses to run as root: it runs as the postgres account then.
        self._as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    def _run(self, *command: str, timeout: float = 60) -> None:
        done = subprocess.run([*self._as, *command], capture_output=True, text=True, timeout=timeout)
        assert done.returncode == 0, f"{command[0]} failed:\n{done.stdout}\n{done.stderr}"

    def init(self) -> None:
        if self._as:
            shutil.chown(self.root, "postgres", "postgres")
        self._run(_binary("initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8",
                  "--no-sync")

    def _pg_ctl(self, *args: str) -> None:
        # With its log file named, the server holds none of our pipes (else run() waits for it forever).
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(_binary("pg_ctl"), "-D", str(self.data), "-o", options, "-l", str(self.root / "server.log"),
                  "-w", *args)

    def start(self) -> None:
        self._pg_ctl("start")

    def restart(self) -> None:
        """A fast restart: every connection is terminated, and the server is down for a moment."""
        self._pg_ctl("-m", "fast", "restart")

    def stop(self) -> None:
        self._pg_ctl("-m", "immediate", "stop")


@contextmanager
def private_postgres() -> Iterator[PrivatePostgres]:
    """A migrated database `orkiva` on a server of this test's own. Its files live outside pytest's
    private tmp directory, which the postgres account (the server's, when tests run as root) cannot enter."""
    root = Path(tempfile.mkdtemp(prefix="orkiva-pg-"))
    server = PrivatePostgres(root)
    try:
        server.init()
        server.start()
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
    try:
        subprocess.run(["createdb", "-h", "127.0.0.1", "-p", str(server.port), "-U", "postgres", "orkiva"],
                       check=True, timeout=30)
        migrated = run_manage("migrate", "--noinput", env=subprocess_env(DATABASE_URL=server.url), timeout=180)
        assert migrated.returncode == 0, migrated.stderr
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)
