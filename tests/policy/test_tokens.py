"""Token verification: the attack set over the real REST stack, each case with its own 401 code."""
from __future__ import annotations

import base64
import json
from datetime import timedelta

import jwt
import pytest
from django.conf import settings
from django.utils import timezone
from rest_framework.test import APIClient

from orkiva.errors import Unauthenticated
from policy.identity import Actor
from policy.models import AuditEvent
from policy.services import token_issue, token_refresh, token_revoke
from policy.tokens import REQUIRED_CLAIMS, verify_token
from tests.conftest import token_for

pytestmark = pytest.mark.django_db

OPERATOR = Actor.operator(name="tester", workspace_id="ws-main")


def claims(**overrides):
    now = int(timezone.now().timestamp())
    base = {
        "iss": settings.ORKIVA_JWT_ISSUER,
        "aud": settings.ORKIVA_JWT_AUDIENCE,
        "iat": now,
        "exp": now + 600,
        "jti": "jti-attack-0001",
        "agent_id": "executioner",
        "workspace_id": "ws-main",
        "role": "participant",
        "session_id": "session-x",
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not _DROP}


_DROP = object()


def signed(payload=None, *, key=None, algorithm=None):
    return jwt.encode(
        payload if payload is not None else claims(),
        key or settings.ORKIVA_SIGNING_KEY,
        algorithm=algorithm or settings.ORKIVA_JWT_ALGORITHM,
    )


def b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def forged(header: dict, payload: dict, signature: str = "c2ln") -> str:
    return f"{b64(header)}.{b64(payload)}.{signature}"


def tampered() -> str:
    header, _, signature = signed().split(".")
    return f"{header}.{b64(claims(role='coordinator'))}.{signature}"


def call(authorization: str | None):
    client = APIClient()
    if authorization is not None:
        client.credentials(HTTP_AUTHORIZATION=authorization)
    return client.get("/v1/threads")


ATTACKS = [
    # (case, Authorization header value (None: absent), expected code)
    ("missing header", lambda: None, "missing_token"),
    ("empty header", lambda: "", "missing_token"),
    ("basic scheme", lambda: "Basic dXNlcjpwYXNz", "malformed_token"),
    ("bearer without token", lambda: "Bearer ", "malformed_token"),
    ("token without scheme", lambda: signed(), "malformed_token"),
    ("not a jwt", lambda: "Bearer not.a.jwt", "malformed_token"),
    ("garbage", lambda: "Bearer %%%%", "malformed_token"),
    ("tampered payload", lambda: f"Bearer {tampered()}", "invalid_signature"),
    ("wrong key", lambda: f"Bearer {signed(key='x' * 48)}", "invalid_signature"),
    (
        "expired",
        lambda: f"Bearer {signed(claims(iat=int(timezone.now().timestamp()) - 3600, exp=int(timezone.now().timestamp()) - 60))}",
        "token_expired",
    ),
    ("wrong audience", lambda: f"Bearer {signed(claims(aud='someone-else'))}", "invalid_audience"),
    ("wrong issuer", lambda: f"Bearer {signed(claims(iss='evil'))}", "invalid_issuer"),
    ("alg none", lambda: f"Bearer {forged({'alg': 'none', 'typ': 'JWT'}, claims(), '')}", "unsupported_algorithm"),
    ("alg None mixed case", lambda: f"Bearer {forged({'alg': 'None'}, claims(), '')}", "unsupported_algorithm"),
    ("HS512 with the real key", lambda: f"Bearer {signed(algorithm='HS512')}", "unsupported_algorithm"),
    ("RS256 header", lambda: f"Bearer {forged({'alg': 'RS256', 'typ': 'JWT'}, claims())}", "unsupported_algorithm"),
    ("no alg header", lambda: f"Bearer {forged({'typ': 'JWT'}, claims())}", "unsupported_algorithm"),
    *[
        (f"missing claim {name}", (lambda n=name: f"Bearer {signed(claims(**{n: _DROP}))}"), "missing_claim")
        for name in REQUIRED_CLAIMS
    ],
    ("unknown role", lambda: f"Bearer {signed(claims(role='admin'))}", "invalid_claims"),
    ("operator role in a token", lambda: f"Bearer {signed(claims(role='operator'))}", "invalid_claims"),
    ("bad agent id", lambda: f"Bearer {signed(claims(agent_id='bad agent; rm -rf'))}", "invalid_claims"),
    ("non-string workspace", lambda: f"Bearer {signed(claims(workspace_id=42))}", "invalid_claims"),
    ("empty session id", lambda: f"Bearer {signed(claims(session_id=''))}", "invalid_claims"),
    ("bad jti", lambda: f"Bearer {signed(claims(jti='../../x y'))}", "invalid_claims"),
    # `$` in a regex also matches before a final newline: "executioner\n" must not be another identity
    ("agent id with a trailing newline", lambda: f"Bearer {signed(claims(agent_id='executioner' + chr(10)))}",
     "invalid_claims"),
    ("workspace id with a trailing newline", lambda: f"Bearer {signed(claims(workspace_id='ws-main' + chr(10)))}",
     "invalid_claims"),    # the system's own identities: nobody may act as the policy, the supervisor or an operator
    ("the policy's identity", lambda: f"Bearer {signed(claims(agent_id='orkiva:policy'))}", "invalid_claims"),
    ("the supervisor's identity", lambda: f"Bearer {signed(claims(agent_id='Supervisor'))}", "invalid_claims"),
    ("an operator's identity", lambda: f"Bearer {signed(claims(agent_id='operator:alice'))}", "invalid_claims"),
    # validly signed, malformed issue times: refused with a code, never a 500
    ("iat as a string", lambda: f"Bearer {signed(claims(iat='1700000000'))}", "invalid_claims"),
    ("iat as a float", lambda: f"Bearer {signed(claims(iat=1700000000.5))}", "invalid_claims"),
    ("iat hugely negative", lambda: f"Bearer {signed(claims(iat=-10**18))}", "invalid_claims"),
]


@pytest.mark.parametrize("case,authorization,code", ATTACKS, ids=[a[0] for a in ATTACKS])
def test_attack_is_refused_with_its_code(case, authorization, code):
    response = call(authorization())
    assert response.status_code == 401, response.content
    body = response.json()
    assert body["error"]["code"] == code
    assert body["request_id"] == response["X-Request-ID"]
    challenge = response["WWW-Authenticate"]
    if code == "missing_token":  # no token sent: no error named (RFC 6750 section 3.1)
        assert challenge == 'Bearer realm="orkiva"'
    else:
        assert f'error="invalid_token", error_description="{code}"' in challenge, challenge


def test_a_valid_token_passes():
    assert call(f"Bearer {signed()}").status_code == 200


def test_expiry_uses_the_passed_clock():
    issued = timezone.now() - timedelta(hours=1)
    minted = token_issue(issuer=OPERATOR, agent_id="a1", workspace_id="ws-main", role="participant",
                         session_id="s1", ttl_seconds=60, now=issued)
    from orkiva.errors import Unauthenticated

    assert verify_token(minted.token, now=issued + timedelta(seconds=30)).agent_id == "a1"
    with pytest.raises(Unauthenticated) as exc:
        verify_token(minted.token, now=issued + timedelta(seconds=60 + settings.ORKIVA_JWT_LEEWAY_SECONDS))
    assert exc.value.code == "token_expired"


def test_revoked_by_jti():
    actor = Actor(agent_id="executioner", workspace_id="ws-main", role="participant", session_id="s-jti")
    minted = token_issue(issuer=OPERATOR, agent_id=actor.agent_id, workspace_id=actor.workspace_id,
                         role=actor.role, session_id=actor.session_id)
    other = token_issue(issuer=OPERATOR, agent_id=actor.agent_id, workspace_id=actor.workspace_id,
                        role=actor.role, session_id=actor.session_id)
    assert call(f"Bearer {minted.token}").status_code == 200
    token_revoke(operator=OPERATOR, reason="leaked", jti=minted.jti)
    refused = call(f"Bearer {minted.token}")
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "token_revoked"
    assert "WWW-Authenticate" in refused
    # Only that token: another token of the same session still works.
    assert call(f"Bearer {other.token}").status_code == 200


def test_revoked_by_session_then_a_newer_token_of_that_session_works():
    now = timezone.now()
    actor = Actor(agent_id="executioner", workspace_id="ws-main", role="participant", session_id="s-sess")
    old = token_for(actor, now=now - timedelta(seconds=30))
    other_workspace = token_for(Actor("executioner", "ws-other", "participant", "s-sess"), now=now - timedelta(seconds=30))
    assert call(f"Bearer {old}").status_code == 200
    token_revoke(operator=OPERATOR, reason="compromised host", session_id="s-sess", workspace_id="ws-main",
                 now=now - timedelta(seconds=10))
    refused = call(f"Bearer {old}")
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "token_revoked"
    # The same session id in another workspace is another session.
    assert call(f"Bearer {other_workspace}").status_code == 200
    fresh = token_for(actor, now=now)
    assert call(f"Bearer {fresh}").status_code == 200


def test_refresh_returns_a_fresh_token_with_the_same_claims():
    actor = Actor(agent_id="reviewer", workspace_id="ws-main", role="coordinator", session_id="s-refresh")
    old = token_for(actor)
    response = APIClient().post("/v1/auth/refresh", HTTP_AUTHORIZATION=f"Bearer {old}")
    assert response.status_code == 200, response.content
    body = response.json()
    assert set(body) >= {"token", "jti", "expires_at", "schema_version"}
    refreshed = verify_token(body["token"])
    assert (refreshed.agent_id, refreshed.workspace_id, refreshed.role, refreshed.session_id) == (
        "reviewer", "ws-main", "coordinator", "s-refresh")
    assert refreshed.jti == body["jti"] != verify_token(old).jti
    assert AuditEvent.objects.filter(action="token.refresh", target_id=body["jti"]).exists()


def test_refresh_needs_a_valid_token():
    response = APIClient().post("/v1/auth/refresh")
    assert response.status_code == 401 and response.json()["error"]["code"] == "missing_token"


def test_refresh_of_a_revoked_session_is_refused():
    actor = Actor(agent_id="reviewer", workspace_id="ws-main", role="participant", session_id="s-r2")
    old = token_for(actor, now=timezone.now() - timedelta(seconds=30))
    token_revoke(operator=OPERATOR, reason="gone", session_id="s-r2", workspace_id="ws-main",
                 now=timezone.now() - timedelta(seconds=5))
    response = APIClient().post("/v1/auth/refresh", HTTP_AUTHORIZATION=f"Bearer {old}")
    assert response.status_code == 401 and response.json()["error"]["code"] == "token_revoked"


def test_token_refresh_service_keeps_claims():
    actor = Actor(agent_id="a9", workspace_id="ws-9", role="auditor", session_id="s9", jti="oldjti")
    minted = token_refresh(actor=actor)
    verified = verify_token(minted.token)
    assert (verified.agent_id, verified.workspace_id, verified.role, verified.session_id) == ("a9", "ws-9", "auditor", "s9")


@pytest.mark.parametrize(
    "fields",
    [
        {"agent_id": "bad id"},
        {"agent_id": "execA\n"},
        {"agent_id": "orkiva:policy"},
        {"agent_id": "supervisor"},
        {"agent_id": "operator:alice"},
        {"session_id": "s1\n"},
        {"workspace_id": ""},
        {"session_id": "x" * 200},
        {"role": "operator"},
        {"ttl_seconds": 0},
        {"ttl_seconds": 10**9},
    ],
)
def test_token_issue_validates_its_request(fields):
    from orkiva.errors import ValidationFailed

    request = {"agent_id": "a", "workspace_id": "w", "role": "participant", "session_id": "s", "ttl_seconds": 60}
    request.update(fields)
    with pytest.raises(ValidationFailed):
        token_issue(issuer=OPERATOR, **request)
    assert not AuditEvent.objects.filter(action="token.issue").exists()


# --- key rotation --------------------------------------------------------------------------------
def test_a_rotation_keeps_tokens_signed_with_a_previous_key_valid_and_signs_with_the_new(settings):
    old_key, new_key = settings.ORKIVA_SIGNING_KEY, "n" * 48
    old_token = signed(key=old_key)
    settings.ORKIVA_SIGNING_KEY, settings.ORKIVA_SIGNING_KEYS_PREVIOUS = new_key, [old_key]
    assert verify_token(old_token).agent_id == "executioner"  # still in circulation: accepted
    refreshed = token_refresh(actor=verify_token(old_token))
    jwt.decode(refreshed.token, new_key, algorithms=[settings.ORKIVA_JWT_ALGORITHM],
               audience=settings.ORKIVA_JWT_AUDIENCE)  # the fresh token is signed with the new key
    settings.ORKIVA_SIGNING_KEYS_PREVIOUS = []  # rotation finished
    with pytest.raises(Unauthenticated) as caught:
        verify_token(old_token)
    assert caught.value.code == "invalid_signature"


def test_a_previous_key_does_not_accept_tokens_signed_with_an_unknown_key(settings):
    settings.ORKIVA_SIGNING_KEYS_PREVIOUS = ["p" * 48]
    with pytest.raises(Unauthenticated) as caught:
        verify_token(signed(key="x" * 48))
    assert caught.value.code == "invalid_signature"


def test_a_verified_token_is_kept_but_expiry_revocation_and_settings_still_apply(settings):
    """The same token on every call is verified once per process (policy.tokens._decode_with);
    what can change between calls is checked on each one."""
    from policy.tokens import _decode_with

    token = signed(claims(jti="kept-token"))
    before = _decode_with.cache_info()
    assert verify_token(token).agent_id == "executioner"
    assert verify_token(token).agent_id == "executioner"
    after = _decode_with.cache_info()
    assert after.hits >= before.hits + 1 and after.misses == before.misses + 1

    # Expiry is our clock's, on every call.
    later = timezone.now() + timedelta(days=30)
    with pytest.raises(Unauthenticated) as caught:
        verify_token(token, now=later)
    assert caught.value.code == "token_expired"
    # Revocation too (test_revoked_by_jti: accepted, revoked, refused). Another audience: verified
    # again, refused.
    settings.ORKIVA_JWT_AUDIENCE = "another-bridge"
    with pytest.raises(Unauthenticated) as caught:
        verify_token(token)
    assert caught.value.code == "invalid_audience"

