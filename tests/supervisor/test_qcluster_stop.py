"""`manage.py qcluster` stops promptly whether SIGTERM reaches its whole process group (systemd's
default KillMode, a shell's `kill %job`) or its main process alone (an orderly stop). Real
processes on the test database."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from tests.live import MANAGE, REPO, subprocess_env
from tests.supervisor.conftest import wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False


@pytest.mark.parametrize("to_the_group", [True, False], ids=["the whole group", "the main process"])
def test_sigterm_stops_the_cluster_and_all_its_processes_promptly(tmp_path, to_the_group):
    log = tmp_path / "qcluster.log"
    with open(log, "w") as out:
        cluster = subprocess.Popen([sys.executable, MANAGE, "qcluster"], cwd=REPO, env=subprocess_env(),
                                   stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for(lambda: "running." in log.read_text(), timeout=30, what="the cluster running")
        if to_the_group:
            os.killpg(cluster.pid, signal.SIGTERM)
        else:
            cluster.send_signal(signal.SIGTERM)
        exited = cluster.wait(timeout=20)  # django-q2 alone hung for good on the group signal
        deadline = time.monotonic() + 10
        while _group_alive(cluster.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _group_alive(cluster.pid), "a cluster process outlived the stop"
    finally:
        if cluster.poll() is None or _group_alive(cluster.pid):
            os.killpg(cluster.pid, signal.SIGKILL)
            cluster.wait()
    assert exited in (0, -signal.SIGTERM), log.read_text()
