"""The one token verification function (REST, MCP and stdio all call it) and token minting."""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone as dt_timezone
from functools import lru_cache
from types import MappingProxyType
from typing import Any, Mapping

import jwt
from django.conf import settings
from django.utils import timezone

from orkiva import sql
from orkiva.errors import Unauthenticated
from policy.identity import TOKEN_ROLES, Actor, is_identifier, is_reserved_agent_id
from policy.models import Revocation

REQUIRED_CLAIMS = ("iss", "aud", "exp", "iat", "jti", "agent_id", "workspace_id", "role", "session_id")


@dataclass(frozen=True)
class MintedToken:
    token: str
    jti: str
    issued_at: datetime
    expires_at: datetime

    def as_json(self) -> dict:
        return {"token": self.token, "jti": self.jti, "expires_at": self.expires_at.isoformat().replace("+00:00", "Z")}


def mint_token(
    *, agent_id: str, workspace_id: str, role: str, session_id: str, ttl_seconds: int, now: datetime | None = None
) -> MintedToken:
    """Sign a token. Callers validate the claims and audit (policy.services.token_issue)."""
    issued_at = (now or timezone.now()).replace(microsecond=0)
    expires_at = issued_at + timedelta(seconds=ttl_seconds)
    jti = uuid.uuid4().hex
    claims = {
        "iss": settings.ORKIVA_JWT_ISSUER,
        "aud": settings.ORKIVA_JWT_AUDIENCE,
        "iat": int(issued_at.timestamp()),
        "exp": int(expires_at.timestamp()),
        "jti": jti,
        "agent_id": agent_id,
        "workspace_id": workspace_id,
        "role": role,
        "session_id": session_id,
    }
    token = jwt.encode(claims, settings.ORKIVA_SIGNING_KEY, algorithm=settings.ORKIVA_JWT_ALGORITHM)
    return MintedToken(token=token, jti=jti, issued_at=issued_at, expires_at=expires_at)


def _fail(code: str, message: str) -> Unauthenticated:
    return Unauthenticated(message, code=code)


class _MalformedHeader(Exception):
    pass


class _UnsupportedAlgorithm(Exception):
    pass


def _decode(raw: str) -> Mapping[str, Any]:
    """The token's claims, its signature and registered claims verified (not its expiry: the caller
    checks that against its own clock). See `_decode_with`; this names the settings it depends on."""
    return _decode_with(
        raw, (settings.ORKIVA_SIGNING_KEY, *settings.ORKIVA_SIGNING_KEYS_PREVIOUS), settings.ORKIVA_JWT_ALGORITHM,
        settings.ORKIVA_JWT_AUDIENCE, settings.ORKIVA_JWT_ISSUER, settings.ORKIVA_JWT_LEEWAY_SECONDS,
    )


@lru_cache(maxsize=4096)
def _decode_with(raw: str, keys: tuple[str, ...], algorithm: str, audience: str, issuer: str,
                 leeway: int) -> Mapping[str, Any]:
    """Decode with the current signing key, then with each previous one (a rotation in progress:
    tokens signed before it stay valid until they expire; new ones use the current key). Only the
    last key's failure reaches the caller.

    An agent sends the same token on every call until it refreshes it: a verified token is kept
    (per process, the last 4096; only verified ones, so tokens nobody signed cannot fill it; its
    header is parsed in here too, PyJWT checking every character of every segment), keyed by
    everything the verification depends on, so a key the
    rotation drops, or another audience or issuer, verifies again and fails. Nothing here depends
    on the clock except the issue time, which only moves further into the past; failures are not
    kept. Revocation and expiry are checked on every call (verify_token)."""

    # The algorithm is pinned by settings; the token's header never chooses it (no `none`, no swaps).
    try:
        header = jwt.get_unverified_header(raw)
    except jwt.DecodeError:
        raise _MalformedHeader from None
    if header.get("alg") != algorithm:
        raise _UnsupportedAlgorithm

    def decode(key: str) -> dict:
        return jwt.decode(
            raw,
            key,
            algorithms=[algorithm],
            audience=audience,
            issuer=issuer,
            leeway=leeway,
            options={"require": list(REQUIRED_CLAIMS), "verify_exp": False},
        )

    *earlier, last = keys
    for key in earlier:
        try:
            return MappingProxyType(decode(key))
        except jwt.InvalidSignatureError:
            continue  # perhaps signed with a key the rotation kept
    return MappingProxyType(decode(last))


def verify_token(raw: str | None, *, now: datetime | None = None) -> Actor:
    """Verify a bearer token and return its Actor, or raise Unauthenticated with a distinct code."""
    if not raw:
        raise _fail("missing_token", "An Authorization: Bearer <token> header is required.")
    moment = now or timezone.now()
    try:
        claims = _decode(raw)
    except _MalformedHeader:
        raise _fail("malformed_token", "The bearer token is not a well-formed JWT.") from None
    except _UnsupportedAlgorithm:
        raise _fail("unsupported_algorithm", f"Tokens must be signed with {settings.ORKIVA_JWT_ALGORITHM}.") from None
    except jwt.InvalidSignatureError:
        raise _fail("invalid_signature", "The token's signature does not verify.") from None
    except jwt.MissingRequiredClaimError as exc:
        raise _fail("missing_claim", f"The token lacks the required claim {exc.claim!r}.") from None
    except jwt.InvalidAudienceError:
        raise _fail("invalid_audience", "The token was issued for another audience.") from None
    except jwt.InvalidIssuerError:
        raise _fail("invalid_issuer", "The token was issued by another issuer.") from None
    except jwt.ImmatureSignatureError:
        raise _fail("token_not_yet_valid", "The token's issue time is in the future.") from None
    except jwt.InvalidTokenError:
        raise _fail("malformed_token", "The bearer token could not be decoded.") from None

    # Expiry is checked against our clock (passable in tests), not PyJWT's.
    exp = claims.get("exp")
    if not isinstance(exp, int) or exp + settings.ORKIVA_JWT_LEEWAY_SECONDS <= moment.timestamp():
        raise _fail("token_expired", "The token has expired; request a fresh one.")
    iat = claims.get("iat")
    # Every claim's type is checked before use: a signed token with a string, a float or an absurd
    # `iat` is refused with a code, not a crash in the revocation check's date arithmetic.
    if type(iat) is not int or not 0 <= iat <= exp:
        raise _fail("invalid_claims", "The token's 'iat' claim is not a time at or before its expiry.")
    for name in ("agent_id", "workspace_id", "session_id", "jti"):
        if not is_identifier(claims.get(name)):
            raise _fail("invalid_claims", f"The token's {name!r} claim is not a valid identifier.")
    if is_reserved_agent_id(claims["agent_id"]):
        raise _fail("invalid_claims", "The token names one of the system's own identities.")
    if claims.get("role") not in TOKEN_ROLES:
        raise _fail("invalid_claims", "The token's 'role' claim is not a known role.")

    if _is_revoked(claims):
        raise _fail("token_revoked", "The token has been revoked.")
    return Actor(
        agent_id=claims["agent_id"],
        workspace_id=claims["workspace_id"],
        role=claims["role"],
        session_id=claims["session_id"],
        jti=claims["jti"],
    )


def _is_revoked(claims: Mapping[str, Any]) -> bool:
    """The token's jti is revoked, or its session was revoked at or after the token was issued.
    Every request asks: one hand-written statement (orkiva.sql)."""
    issued_at = datetime.fromtimestamp(claims["iat"], tz=dt_timezone.utc)
    return sql.fetchone(
        sql.statement("token_revoked", _revoked_sql),
        [Revocation.KIND_JTI, claims["jti"], Revocation.KIND_SESSION, claims["session_id"], claims["workspace_id"],
         sql.param(Revocation, "revoked_at", issued_at)],
    ) is not None


def _revoked_sql() -> str:
    kind, value = sql.column(Revocation, "kind"), sql.column(Revocation, "value")
    return (
        f"SELECT 1 FROM {sql.table(Revocation)} WHERE ({kind} = %s AND {value} = %s) OR ({kind} = %s AND {value} = %s "
        f"AND {sql.column(Revocation, 'workspace_id')} = %s AND {sql.column(Revocation, 'revoked_at')} >= %s) LIMIT 1"
    )


def bearer_from_header(value: str | None) -> str | None:
    """The token in an `Authorization: Bearer <token>` header value; raises on other schemes."""
    if not value:
        return None
    scheme, _, token = value.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise _fail("malformed_token", "The Authorization header must be 'Bearer <token>'.")
    return token.strip()
