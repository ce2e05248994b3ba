"""The shipped systemd units (infra/systemd/) run the documented commands and stop the way the
processes expect: SIGTERM to the main process alone (KillMode=mixed), with time to finish."""
from __future__ import annotations

import configparser

from tests.live import REPO

UNITS = REPO / "infra" / "systemd"


def _unit(name: str) -> configparser.ConfigParser:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # systemd keys are case-sensitive
    unit.read(UNITS / name)
    return unit


def test_the_bridge_unit_runs_production_s_command_and_gives_requests_their_graceful_time():
    service = _unit("orkiva-bridge.service")["Service"]
    assert service["ExecStart"].endswith("/gunicorn -c infra/gunicorn.conf.py")
    assert service["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert service["KillMode"] == "mixed"
    assert int(service["TimeoutStopSec"]) > 30  # above ORKIVA_GRACEFUL_TIMEOUT's default
    assert int(service["LimitNOFILE"]) >= 4000  # ORKIVA_MAX_CONNECTIONS per worker


def test_the_cluster_unit_runs_qcluster_and_stops_it_in_order():
    unit = _unit("orkiva-qcluster.service")
    assert unit["Service"]["ExecStart"].endswith("/python manage.py qcluster")
    assert unit["Service"]["KillMode"] == "mixed"
    assert "orkiva-bridge.service" in unit["Unit"]["After"]
