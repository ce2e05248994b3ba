"""Policy writes: issuing, refreshing and revoking tokens; payload identity guards."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from orkiva.errors import Forbidden, ValidationFailed
from policy.audit import audit_record
from policy.identity import IDENTIFIER_HELP, TOKEN_ROLES, Actor, is_identifier, is_reserved_agent_id
from policy.models import Revocation
from policy.tokens import MintedToken, mint_token


def check_token_request(
    *, agent_id: str, workspace_id: str, role: str, session_id: str, ttl_seconds: int, max_ttl_seconds: int | None = None
) -> None:
    errors: dict[str, str] = {}
    for name, value in (("agent_id", agent_id), ("workspace_id", workspace_id), ("session_id", session_id)):
        if not is_identifier(value):
            errors[name] = IDENTIFIER_HELP
    if "agent_id" not in errors and is_reserved_agent_id(agent_id):
        errors["agent_id"] = "reserved for the system's own identities (orkiva:*, operator:*, supervisor)"
    if role not in TOKEN_ROLES:
        errors["role"] = f"one of {', '.join(TOKEN_ROLES)}"
    longest = settings.ORKIVA_TOKEN_MAX_TTL_SECONDS if max_ttl_seconds is None else max_ttl_seconds
    if not 1 <= ttl_seconds <= longest:
        errors["ttl"] = f"between 1 and {longest} seconds"
    if errors:
        raise ValidationFailed("The token request is not valid.", details={"fields": errors})


@transaction.atomic
def token_issue(
    *,
    issuer: Actor,
    agent_id: str,
    workspace_id: str,
    role: str,
    session_id: str,
    ttl_seconds: int | None = None,
    max_ttl_seconds: int | None = None,
    reason: str = "",
    now: datetime | None = None,
) -> MintedToken:
    """Mint a short-lived token for an agent and audit who issued it (never the token itself).
    `max_ttl_seconds` lifts ORKIVA_TOKEN_MAX_TTL_SECONDS for a caller that bounds the token's life
    otherwise (a managed runtime's credential, revoked when the runtime ends)."""
    ttl = settings.ORKIVA_TOKEN_TTL_SECONDS if ttl_seconds is None else ttl_seconds
    check_token_request(agent_id=agent_id, workspace_id=workspace_id, role=role, session_id=session_id, ttl_seconds=ttl,
                        max_ttl_seconds=max_ttl_seconds)
    minted = mint_token(
        agent_id=agent_id, workspace_id=workspace_id, role=role, session_id=session_id, ttl_seconds=ttl, now=now
    )
    audit_record(
        actor=issuer,
        workspace_id=workspace_id,
        action="token.issue",
        target_type="token",
        target_id=minted.jti,
        reason=reason,
        new={"agent_id": agent_id, "role": role, "session_id": session_id, "expires_at": minted.expires_at.isoformat()},
    )
    return minted


@transaction.atomic
def token_refresh(*, actor: Actor, now: datetime | None = None) -> MintedToken:
    """A fresh short-lived token with the caller's verified claims (the old one stays valid until it expires)."""
    minted = mint_token(
        agent_id=actor.agent_id,
        workspace_id=actor.workspace_id,
        role=actor.role,
        session_id=actor.session_id,
        ttl_seconds=settings.ORKIVA_TOKEN_TTL_SECONDS,
        now=now,
    )
    audit_record(
        actor=actor,
        action="token.refresh",
        target_type="token",
        target_id=minted.jti,
        old={"jti": actor.jti},
        new={"jti": minted.jti, "expires_at": minted.expires_at.isoformat()},
    )
    return minted


@transaction.atomic
def token_revoke(
    *,
    operator: Actor,
    reason: str,
    jti: str | None = None,
    session_id: str | None = None,
    workspace_id: str | None = None,
    reason_code: str = "operator_revoked",
    now: datetime | None = None,
) -> Revocation:
    """Revoke one token by jti, or every token of a session issued up to now. Audited."""
    if bool(jti) == bool(session_id):
        raise ValidationFailed("Name exactly one of jti or session_id.", code="usage_error")
    if not reason.strip():
        raise ValidationFailed("A reason is required.", code="reason_required")
    value = jti or session_id
    if not is_identifier(value):
        raise ValidationFailed("The jti or session id is not a valid identifier.", details={"value": IDENTIFIER_HELP})
    if session_id and not workspace_id:
        raise ValidationFailed("Revoking a session needs its workspace id.", code="usage_error")
    kind = Revocation.KIND_JTI if jti else Revocation.KIND_SESSION
    revocation = Revocation.objects.create(
        kind=kind,
        value=value,
        workspace_id=workspace_id or "",
        revoked_at=now or timezone.now(),
        reason=reason,
        revoked_by=operator.agent_id,
    )
    audit_record(
        actor=operator,
        workspace_id=workspace_id or "",
        action="token.revoke",
        target_type=kind,
        target_id=value,
        reason=reason,
        reason_code=reason_code,
        new={"kind": kind, "value": value, "revoked_at": revocation.revoked_at.isoformat()},
    )
    return revocation


def check_payload_identity(actor: Actor, payload: dict[str, Any], *, action: str) -> None:
    """Identity comes from the token: a payload naming another agent or workspace is refused (audited)."""
    named = {
        "sender": actor.agent_id,
        "agent_id": actor.agent_id,
        "workspace_id": actor.workspace_id,
    }
    for field, expected in named.items():
        if field in payload and payload[field] is not None and payload[field] != expected:
            raise Forbidden(
                f"The payload's {field!r} does not match the authenticated token.",
                code="claim_mismatch",
                details={"field": field},
                audit={
                    "actor": actor,
                    "action": action,
                    "target_type": "claim",
                    "target_id": field,
                    "new": {"claimed": str(payload[field])[:200]},
                },
            )
