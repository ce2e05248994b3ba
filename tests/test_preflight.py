"""`make test` without PostgreSQL says so in one line and points to `make test-sqlite`."""
from __future__ import annotations

import subprocess
import sys

import pytest

from tests.live import REPO, free_port
from tests.live import test_database_url as suite_database_url


def _preflight(url: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tests.preflight", url], cwd=REPO, capture_output=True, text=True,
                          timeout=30)


def test_no_postgresql_is_one_line_pointing_to_the_sqlite_pass():
    refused = _preflight(f"postgres://postgres@127.0.0.1:{free_port()}/orkiva")
    assert refused.returncode == 1 and refused.stdout == ""
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and "does not answer" in lines[0] and "make test-sqlite" in lines[0]


@pytest.mark.postgres_only
def test_the_suites_own_postgresql_passes():
    assert _preflight(suite_database_url()).returncode == 0
