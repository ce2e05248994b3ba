"""What the operator commands print for a person (no --json): aligned tables with headers, values as
JSON would write them, errors once, and --help saying what each action needs."""
from __future__ import annotations

import re

import pytest

from supervisor.management.commands.orkiva_runtime import ACTIONS
from tests.live import run_manage, subprocess_env

pytestmark = pytest.mark.django_db(transaction=True)


def _columns(header: str, rule: str) -> list[str]:
    """A `simple` table's column names, read from its header and the dashes under it."""
    assert set(rule.replace(" ", "")) == {"-"}, rule
    return [header[m.start():m.end()].strip() for m in re.finditer(r"-+", rule)]


def test_lists_are_aligned_tables_with_headers():
    for agent in ("alice", "bob"):
        issued = run_manage("orkiva_issue_token", "--agent-id", agent, "--workspace-id", "ws-main", "--role",
                            "participant", "--session-id", f"{agent}-1", "--json")
        assert issued.returncode == 0, issued.stderr
    shown = run_manage("orkiva_inspect", "audit", "--workspace-id", "ws-main")
    assert shown.returncode == 0, shown.stderr
    header, rule, *rows = shown.stdout.splitlines()
    assert _columns(header, rule) == ["id", "at", "action", "actor", "target", "code", "count", "why"]
    assert len(rows) == 2 and all(" token.issue " in row for row in rows)
    starts = {row.index("token.issue") for row in rows}
    assert starts == {header.index("action")}  # aligned under its header
    assert all(re.search(r"\s-\s", row) for row in rows)  # an empty field is "-", not blank


def test_a_document_is_a_field_value_table_with_json_values():
    shown = run_manage("orkiva_inspect", "config")
    assert shown.returncode == 0, shown.stderr
    header, rule, *rows = shown.stdout.splitlines()
    assert _columns(header, rule) == ["field", "value"]
    values = dict(row.split(None, 1) for row in rows)
    assert values["content_redaction"] == "false"  # not Python's False
    assert values["retention_mode"] == "indefinite"


def test_an_error_is_printed_once_with_its_request_id():
    failed = run_manage("orkiva_revoke_token", "--session-id", "s-1", "--reason", "test",
                        env=subprocess_env(ORKIVA_LOG_FORMAT="console"))
    assert failed.returncode == 2
    assert failed.stderr.count("Revoking a session needs its workspace id.") == 1, failed.stderr
    assert re.search(r"error: usage_error: .* \(request id [0-9a-f]{32}\)", failed.stderr), failed.stderr


def test_help_says_what_each_action_needs():
    shown = run_manage("orkiva_runtime", "--help")
    assert shown.returncode == 0
    needs = shown.stdout[shown.stdout.index("what each action needs:"):]
    lines = {line.split()[0]: line for line in needs.splitlines()[1:] if line.strip()}
    assert set(lines) == set(ACTIONS)
    assert "--reason" in lines["cancel-wake"] and "--wake-id" in lines["cancel-wake"]
    assert "--target" in lines["attach"]
    refused = run_manage("orkiva_runtime", "cancel-wake", "--reason", "stale")
    assert "cancel-wake needs --wake-id and --workspace-id (see --help)" in refused.stderr
