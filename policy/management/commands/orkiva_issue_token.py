"""Issue a short-lived bridge token for an agent: `manage.py orkiva_issue_token --agent-id A ... --json`."""
from __future__ import annotations

from orkiva.commands import OrkivaCommand
from policy.identity import TOKEN_ROLES
from policy.services import token_issue


class Command(OrkivaCommand):
    help = "Issue a signed, short-lived token for an agent (prints the token once; audit keeps its jti)."

    def add_options(self, parser):
        parser.add_argument("--agent-id", required=True)
        parser.add_argument("--workspace-id", required=True)
        parser.add_argument("--role", required=True, choices=TOKEN_ROLES)
        parser.add_argument("--session-id", required=True, help="The logical session this token belongs to.")
        parser.add_argument("--ttl", type=int, default=None, help="Lifetime in seconds (default ORKIVA_TOKEN_TTL_SECONDS).")
        parser.add_argument("--reason", default="", help="Optional note recorded in the audit row.")

    def run(self, **options):
        minted = token_issue(
            issuer=self.operator_actor(options, workspace_id=options["workspace_id"]),
            agent_id=options["agent_id"],
            workspace_id=options["workspace_id"],
            role=options["role"],
            session_id=options["session_id"],
            ttl_seconds=options["ttl"],
            reason=options["reason"],
        )
        return {
            **minted.as_json(),
            "agent_id": options["agent_id"],
            "workspace_id": options["workspace_id"],
            "role": options["role"],
            "session_id": options["session_id"],
        }
