#!/usr/bin/env python3
"""A stand-in agent for tests, run in a tmux pane: every line typed into the pane is recorded
(JSON line in $STANDIN_LOG, with `seen`: the wall clock when the line was read); when $STANDIN_ACK
is "1" it then heartbeats its runtime through the bridge's REST API with its own token
($ORKIVA_URL, $ORKIVA_TOKEN), as a woken agent would. bench/wakes.py runs it too."""
import json
import os
import sys
import time
import urllib.request


def heartbeat() -> int:
    request = urllib.request.Request(
        os.environ["ORKIVA_URL"].rstrip("/") + "/v1/runtimes/heartbeat",
        data=b"{}",
        headers={"Authorization": f"Bearer {os.environ['ORKIVA_TOKEN']}", "Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except Exception as exc:  # recorded, never fatal: the test reads the log
        return getattr(exc, "code", -1)


print("stand-in agent ready", flush=True)
for line in sys.stdin:
    seen = time.time()
    text = line.rstrip("\n")
    status = heartbeat() if os.environ.get("STANDIN_ACK") == "1" else None
    with open(os.environ["STANDIN_LOG"], "a") as handle:
        handle.write(json.dumps({"line": text, "heartbeat_status": status, "seen": seen}) + "\n")
    print(f"got {len(text)} chars", flush=True)
