"""REST authentication: the bearer token verified by policy.tokens.verify_token, the one verifier."""
from __future__ import annotations

from rest_framework.authentication import BaseAuthentication

from orkiva.context import bind_caller
from policy.tokens import bearer_from_header, verify_token


class BearerTokenAuthentication(BaseAuthentication):
    def authenticate(self, request):
        actor = verify_token(bearer_from_header(request.headers.get("Authorization")))
        bind_caller(actor)  # the request's log lines (and error logs) name the caller
        return actor, actor

    def authenticate_header(self, request) -> str:
        return 'Bearer realm="orkiva"'
