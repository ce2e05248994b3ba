"""Revoke a token by jti, or every token of a session: `manage.py orkiva_revoke_token --jti J --reason R --json`."""
from __future__ import annotations

from orkiva.commands import OrkivaCommand
from orkiva.versioning import iso
from policy.services import token_revoke


class Command(OrkivaCommand):
    help = "Revoke one token (--jti) or all tokens of a session issued so far (--session-id with --workspace-id)."
    mutating = True

    def add_options(self, parser):
        target = parser.add_mutually_exclusive_group(required=True)
        target.add_argument("--jti")
        target.add_argument("--session-id")
        parser.add_argument("--workspace-id", default="", help="Required with --session-id.")

    def run(self, **options):
        revocation = token_revoke(
            operator=self.operator_actor(options, workspace_id=options["workspace_id"]),
            reason=options["reason"],
            jti=options["jti"],
            session_id=options["session_id"],
            workspace_id=options["workspace_id"] or None,
        )
        return {
            "revoked": True,
            "kind": revocation.kind,
            "value": revocation.value,
            "workspace_id": revocation.workspace_id or None,
            "revoked_at": iso(revocation.revoked_at),
            "reason": revocation.reason,
            "revoked_by": revocation.revoked_by,
        }
