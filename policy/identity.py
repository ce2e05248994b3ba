"""Who is acting: the verified identity every service takes as `actor`, and identifier rules."""
from __future__ import annotations

import re
from dataclasses import dataclass

ROLE_PARTICIPANT = "participant"
ROLE_COORDINATOR = "coordinator"
ROLE_AUDITOR = "auditor"
ROLE_OPERATOR = "operator"  # a person at the shell (manage.py orkiva_*), never in a token
ROLE_SYSTEM = "system"  # the bridge's own policy decisions (auto-block, escalations); never authorized
POLICY_AGENT_ID = "orkiva:policy"
SUPERVISOR_AGENT_ID = "supervisor"  # the supervisor's own wakes and runtime changes
OPERATOR_PREFIX = "operator:"  # a person at the shell: `operator:<name>`
# The system's own identities: no token is issued for them, and no token naming one is accepted,
# so nobody can post, ack or change a thread as the policy, the supervisor or an operator.
RESERVED_AGENT_PREFIXES = ("orkiva:", OPERATOR_PREFIX)
TOKEN_ROLES = (ROLE_PARTICIPANT, ROLE_COORDINATOR, ROLE_AUDITOR)

# Agent, workspace and session ids: short, printable, safe in logs, tmux names and shells. Matched
# whole (fullmatch): `$` would also accept a trailing newline, and "a\n" would be another identity.
IDENTIFIER_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@\-]{0,127}")
IDENTIFIER_HELP = "1-128 characters: letters, digits and . _ : @ -, starting with a letter or digit"


def is_reserved_agent_id(value: str) -> bool:
    """One of the system's own identities (RESERVED_AGENT_PREFIXES, the supervisor), in any case."""
    folded = value.casefold()
    return folded == SUPERVISOR_AGENT_ID or folded.startswith(RESERVED_AGENT_PREFIXES)


def is_identifier(value: object) -> bool:
    """The one check of every agent, workspace and session id (REST, MCP, tokens, commands)."""
    return isinstance(value, str) and IDENTIFIER_RE.fullmatch(value) is not None


@dataclass(frozen=True)
class Actor:
    """A verified caller. Built only from a verified token, or by an operator command."""

    agent_id: str
    workspace_id: str
    role: str
    session_id: str
    jti: str | None = None

    # DRF reads these off request.user: a verified actor is an authenticated user.
    is_authenticated = True
    is_anonymous = False

    @property
    def is_operator(self) -> bool:
        return self.role == ROLE_OPERATOR

    @classmethod
    def operator(cls, *, name: str, workspace_id: str) -> "Actor":
        return cls(agent_id=f"{OPERATOR_PREFIX}{name}", workspace_id=workspace_id, role=ROLE_OPERATOR, session_id="cli")

    @classmethod
    def system(cls, *, workspace_id: str) -> "Actor":
        """The bridge itself, deciding by policy (recorded as the actor of automatic decisions)."""
        return cls(agent_id=POLICY_AGENT_ID, workspace_id=workspace_id, role=ROLE_SYSTEM, session_id="policy")
