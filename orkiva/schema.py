"""OpenAPI generation details: how drf-spectacular describes our bearer-token authenticator, and a
postprocessing hook (SPECTACULAR_SETTINGS["POSTPROCESSING_HOOKS"])."""
from __future__ import annotations

from typing import Any

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


BLANK = {"type": "string", "maxLength": 0}


def blank_alternative_any_of(result: dict[str, Any], generator, request, public) -> dict[str, Any]:
    """drf-spectacular writes a text field that may also be blank as `oneOf: [<the rule>, <blank>]`.
    Where the rule admits the blank text too (ours do: orkiva.api_base.TextField), "" matches both
    branches and so, by `oneOf`'s exactly-one rule, neither: a validator (Schemathesis) refuses the
    blank value the server accepts. `anyOf` says what is meant."""

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            alternatives = node.get("oneOf")
            if isinstance(alternatives, list) and BLANK in alternatives:
                node["anyOf"] = node.pop("oneOf")
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(result)
    return result
