"""REST authentication: the bearer token verified by policy.tokens.verify_token, the one verifier."""
from __future__ import annotations

from rest_framework.authentication import BaseAuthentication

from policy.tokens import bearer_from_header, verify_token


class BearerTokenAuthentication(BaseAuthentication):
    def authenticate(self, request):
        actor = verify_token(bearer_from_header(request.headers.get("Authorization")))
        return actor, actor

    def authenticate_header(self, request) -> str:
        return 'Bearer realm="orkiva"'
