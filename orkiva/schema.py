"""OpenAPI generation details: how drf-spectacular describes our bearer-token authenticator."""
from drf_spectacular.extensions import OpenApiAuthenticationExtension


class BearerTokenScheme(OpenApiAuthenticationExtension):
    target_class = "orkiva.auth.BearerTokenAuthentication"
    name = "bearerAuth"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT",
            "description": "A short-lived token from `manage.py orkiva_issue_token` or POST /v1/auth/refresh.",
        }
