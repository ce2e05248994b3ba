"""/v1/auth endpoints: refresh a short-lived token."""
from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from orkiva.api_base import errors
from orkiva.versioning import SCHEMA_VERSION
from policy.roles import Op, authorize
from policy.services import token_refresh


class TokenOut(serializers.Serializer):
    token = serializers.CharField()
    jti = serializers.CharField()
    expires_at = serializers.DateTimeField()
    schema_version = serializers.IntegerField()


class RefreshView(APIView):
    @extend_schema(operation_id="auth_refresh", request=None, responses={200: TokenOut, **errors(401)})
    def post(self, request):
        authorize(request.user, Op.TOKEN_REFRESH)
        return Response({**token_refresh(actor=request.user).as_json(), "schema_version": SCHEMA_VERSION})
