"""Runtime commands (resume, spawn): built by the CLI's adapter (supervisor/clis) or, for runtime
type `other`, rendered from the templates in settings; run as argv lists without a shell, in their
own process group, killed with their children on timeout."""
from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import time
from dataclasses import dataclass, field

from django.conf import settings


def command_template(runtime_type: str, kind: str) -> list[str]:
    """The argv template for `kind` (resume/spawn) of a runtime type; [] when none is configured."""
    raw = settings.ORKIVA_WAKE_COMMANDS.get(runtime_type, {}).get(kind, "")
    return shlex.split(raw) if raw and raw.strip() else []


class _Fields(dict):
    def __missing__(self, key: str) -> str:
        raise KeyError(key)


def render(template: list[str], **values: str) -> list[str]:
    """Fill each argument's {placeholders}; a value stays one argument whatever it contains."""
    return [part.format_map(_Fields(values)) for part in template]


@dataclass
class CommandResult:
    argv: list[str]
    exit_code: int | None
    timed_out: bool
    not_found: bool
    output_tail: str
    seconds: float
    session_id: str | None = None
    output: str = field(default="", repr=False)  # all of it, for the CLI's adapter to read (not stored)

    def as_detail(self) -> dict:
        return {
            "argv": self.argv,
            "exit_code": self.exit_code,
            "timed_out": self.timed_out,
            "seconds": round(self.seconds, 3),
            "output_tail": self.output_tail,
            **({"session_id": self.session_id} if self.session_id else {}),
        }


def session_id_from_output(output: str) -> str | None:
    """The new session id from JSONL output: Codex's thread.started{thread_id}, or a session_id field."""
    for line in output.splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if not isinstance(event, dict):
            continue
        if event.get("type") == "thread.started" and isinstance(event.get("thread_id"), str):
            return event["thread_id"]
        if isinstance(event.get("session_id"), str):
            return event["session_id"]
    return None


def run_command(argv: list[str], *, env: dict[str, str], workdir: str | None, timeout: float) -> CommandResult:
    tail_chars = settings.ORKIVA_WAKE_OUTPUT_TAIL_CHARS
    started = time.monotonic()
    try:
        process = subprocess.Popen(
            argv,
            cwd=workdir or None,
            env={**os.environ, **env},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: a timeout kills its children too
        )
    except (FileNotFoundError, PermissionError, NotADirectoryError) as exc:
        return CommandResult(argv, None, False, True, str(exc)[-tail_chars:], time.monotonic() - started)
    timed_out = False
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        _kill_group(process.pid)
        output, _ = process.communicate()
    text = output.decode("utf-8", errors="replace")
    return CommandResult(
        argv=argv,
        exit_code=process.returncode,
        timed_out=timed_out,
        not_found=False,
        output_tail=text[-tail_chars:],
        seconds=time.monotonic() - started,
        session_id=session_id_from_output(text),
        output=text,
    )


def _kill_group(pgid: int) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        if sig == signal.SIGTERM:
            time.sleep(0.2)
