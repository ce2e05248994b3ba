"""Reading structured logs in tests: JSON lines from a subprocess's output, or from this process."""
from __future__ import annotations

import io
import json
import logging
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from orkiva.logging import formatter


def json_lines(text: str) -> list[dict]:
    """The JSON objects among a process's output lines (gunicorn's own lines are plain text)."""
    rows = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return rows


def wait_for_lines(path: Path, match: Callable[[dict], bool], *, count: int = 1, timeout: float = 10) -> list[dict]:
    """Poll a log file until `count` JSON lines match (a subprocess flushes line by line)."""
    deadline = time.monotonic() + timeout
    while True:
        found = [row for row in json_lines(path.read_text(errors="replace")) if match(row)]
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


@contextmanager
def captured_json_logs(level: int = logging.DEBUG) -> Iterator[Callable[[], list[dict]]]:
    """Everything logged in this process while inside, rendered by the production JSON formatter."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter("json"))
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(level)
    try:
        yield lambda: json_lines(stream.getvalue())
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
