"""The agent CLIs the supervisor launches, wakes and reads: Codex CLI and Claude Code."""
from __future__ import annotations

from supervisor.clis.base import AgentCli
from supervisor.clis.claude import CLAUDE
from supervisor.clis.codex import CODEX

_CLIS: dict[str, AgentCli] = {cli.runtime_type: cli for cli in (CODEX, CLAUDE)}


def cli_for(runtime_type: str) -> AgentCli | None:
    """The CLI of a runtime type; None for `other` (its commands are the operator's templates)."""
    return _CLIS.get(runtime_type)
