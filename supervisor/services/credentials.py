"""A managed agent's credential: the token a launch puts in the agent's environment. Both CLIs read
it once, at start-up (Codex's `bearer_token_env_var`, Claude Code's `${ORKIVA_TOKEN}` header), and
neither re-reads it on a 401, so it must last as long as the agent: it lives while the runtime is
registered (ORKIVA_RUNTIME_CREDENTIAL_TTL_SECONDS at most) and is revoked, by its token session,
when the runtime is deregistered, expires, goes offline or is launched again."""
from __future__ import annotations

import uuid
from datetime import datetime

from django.conf import settings

from policy.identity import Actor
from policy.services import token_issue, token_revoke
from policy.tokens import MintedToken
from supervisor.models import Runtime
from supervisor.services.trace import supervisor_actor

REASON_CODE = "runtime_ended"


def credential_issue(*, operator: Actor, agent_id: str, workspace_id: str, role: str, reason: str,
                     now: datetime) -> tuple[MintedToken, str]:
    """A token for a managed runtime, in a token session of its own (`rt-...`), and that session."""
    ttl = settings.ORKIVA_RUNTIME_CREDENTIAL_TTL_SECONDS
    session = f"rt-{uuid.uuid4().hex[:12]}"
    minted = token_issue(
        issuer=operator, agent_id=agent_id, workspace_id=workspace_id, role=role, session_id=session,
        ttl_seconds=ttl, max_ttl_seconds=ttl, reason=reason or "runtime credential", now=now,
    )
    return minted, session


def credential_revoke(runtime: Runtime, *, reason: str, now: datetime, actor: Actor | None = None) -> bool:
    """Revoke the runtime's credential (every token of its session). The caller holds a transaction."""
    if not runtime.credential_session:
        return False
    credential_session_revoke(workspace_id=runtime.workspace_id, session=runtime.credential_session, reason=reason,
                              now=now, actor=actor)
    # only if it is still that credential: a launch meanwhile gave the runtime a new one
    Runtime.objects.filter(pk=runtime.pk, credential_session=runtime.credential_session).update(credential_session="")
    runtime.credential_session = ""
    return True


def credential_session_revoke(*, workspace_id: str, session: str, reason: str, now: datetime,
                              actor: Actor | None = None) -> None:
    token_revoke(operator=actor or supervisor_actor(workspace_id), reason=reason, session_id=session,
                 workspace_id=workspace_id, reason_code=REASON_CODE, now=now)
