"""`manage.py orkiva_mcp_stdio`: the bridge's MCP tools over stdio, for clients that only launch
stdio servers. Same tools, services and database as /v1/mcp; the caller is the token in the
environment (ORKIVA_TOKEN by default), verified with the one verifier on every call, so expiry
and revocation apply mid-session as they do over HTTP.

stdout carries the protocol only; logs go to stderr.
"""
from __future__ import annotations

import os
import sys

import anyio
from django.core.management.base import BaseCommand

from orkiva.commands import exit_code_for
from orkiva.errors import DomainError, report_error
from orkiva.mcp.calls import McpCaller, bind_mcp_caller, reset_mcp_caller
from orkiva.mcp.server import build_server
from policy.identity import Actor
from policy.tokens import verify_token


class Command(BaseCommand):
    help = "Serve the Orkiva MCP tools over stdio, as the agent whose token is in $ORKIVA_TOKEN."
    requires_system_checks: list[str] = []

    def add_arguments(self, parser):
        parser.add_argument(
            "--token-env", default="ORKIVA_TOKEN", help="The environment variable holding the bearer token."
        )

    def handle(self, *args, **options):
        variable = options["token_env"]

        def resolve_actor() -> Actor:
            return verify_token(os.environ.get(variable) or None)

        try:
            actor = resolve_actor()  # refuse to start with a bad token rather than fail every call
        except DomainError as err:
            report_error(err)
            sys.stderr.write(f"orkiva_mcp_stdio: {err.code}: {err.message} (token from ${variable})\n")
            sys.exit(exit_code_for(err))
        sys.stderr.write(
            f"orkiva_mcp_stdio: serving MCP on stdio as {actor.agent_id} ({actor.role}) in {actor.workspace_id}\n"
        )
        token = bind_mcp_caller(McpCaller(resolve_actor=resolve_actor))
        try:
            anyio.run(build_server().run_stdio_async)
        finally:
            reset_mcp_caller(token)
