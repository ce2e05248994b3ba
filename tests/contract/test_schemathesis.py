"""The REST contract: Schemathesis (pinned) against the live bridge's /v1/schema, every check, bounded
(a fixed seed and a number of examples per operation): schema-valid requests are accepted, invalid
ones refused, no 5xx, every status and body as documented."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import token_for
from tests.factories import ThreadFactory
from tests.live import REPO, bridge_server

# The contract is the API's, whatever the database: run once, on PostgreSQL (a minute and a half).
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres_only]

EXAMPLES = 25  # per operation and phase: about half a minute on this machine


def test_schemathesis_finds_no_contract_drift(tmp_path, coordinator):
    ThreadFactory(coordinator=coordinator, participants=["coordinator", "reviewer"])
    with bridge_server(tmp_path, server="gunicorn", workers=1) as bridge:
        run = subprocess.run(
            [sys.executable, "-m", "schemathesis.cli", "run", f"{bridge.base_url}/v1/schema",
             "--header", f"Authorization: Bearer {token_for(coordinator, ttl_seconds=3600)}",
             "--max-examples", str(EXAMPLES), "--seed", "1", "--no-color"],
            cwd=REPO, env={**os.environ, "SCHEMATHESIS_HOOKS": "tests.contract.schemathesis_hooks"},
            capture_output=True, text=True, timeout=600,
        )
    assert run.returncode == 0, run.stdout[-12000:] + run.stderr[-2000:]
    for phase in ("Coverage", "Fuzzing", "Stateful"):  # each phase ran, and passed
        assert f"✅  {phase}" in run.stdout, run.stdout[-4000:]
