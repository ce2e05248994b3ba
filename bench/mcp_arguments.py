"""The cost, per MCP tool call, of checking its arguments against the published input schema
(orkiva.mcp.arguments, issue 18), for each tool with arguments a model would send. Run by hand:

    .venv/bin/python bench/mcp_arguments.py [--calls 20000]

Prints microseconds per call; compare with a tool call's whole cost (about a millisecond,
docs/performance.md).
"""
from __future__ import annotations

import argparse
import os
import time

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "orkiva.settings")
django.setup()

from orkiva.mcp.arguments import argument_problems  # noqa: E402
from orkiva.mcp.server import build_server  # noqa: E402

THREAD = "25c69c26-d8ab-40b5-bedb-f684ad4f3c3f"
CALLS = {
    "wait_for_messages": {"thread_id": THREAD, "after_seq": 3, "timeout_seconds": 30},
    "read_messages": {"thread_id": THREAD},
    "post_message": {"thread_id": THREAD, "body": "The parser drops tabs. " * 80, "kind": "finding",
                     "idempotency_key": "k-1"},
    "create_thread": {"title": "Review the parser", "type": "review", "participants": ["executioner", "reviewer"]},
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=20000)
    calls = parser.parse_args().calls
    server = build_server()
    for tool, arguments in CALLS.items():
        validator = server._argument_validator(tool)
        assert not argument_problems(validator, arguments), tool
        started = time.perf_counter()
        for _ in range(calls):
            argument_problems(validator, arguments)
        print(f"{tool:20} {(time.perf_counter() - started) / calls * 1e6:6.1f} us per call")


if __name__ == "__main__":
    main()
