#!/usr/bin/env python3
"""The dormant agent of bench/wakes.py, run in a managed tmux pane: each line typed into the pane
is stamped (wall clock, the moment it is read) into $WAKE_AGENT_LOG, then the agent heartbeats its
runtime through the bridge (the wake's acknowledgement), as a woken agent would."""
import json
import os
import sys
import time
import urllib.request


def heartbeat() -> int:
    request = urllib.request.Request(
        os.environ["ORKIVA_URL"].rstrip("/") + "/v1/runtimes/heartbeat", data=b"{}", method="POST",
        headers={"Authorization": f"Bearer {os.environ['ORKIVA_TOKEN']}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except Exception as exc:  # recorded, never fatal: the bench reads the log
        return getattr(exc, "code", -1)


print("wake agent ready", flush=True)
for line in sys.stdin:
    seen = time.time()
    with open(os.environ["WAKE_AGENT_LOG"], "a") as handle:
        handle.write(json.dumps({"seen": seen, "line": line.rstrip("\n")}) + "\n")
    print(f"woken; heartbeat {heartbeat()}", flush=True)
