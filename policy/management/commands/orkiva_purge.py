"""manage.py orkiva_purge --reason R [--dry-run] --json: delete expired closed threads, only when
ORKIVA_RETENTION_MODE=expire (with the default `indefinite` it refuses: exit 4, retention_indefinite)."""
from __future__ import annotations

from orkiva.commands import OrkivaCommand
from orkiva.versioning import SCHEMA_VERSION, iso
from policy.retention import retention_purge


class Command(OrkivaCommand):
    help = "Purge closed threads older than ORKIVA_RETENTION_DAYS (refused while retention is indefinite)."
    mutating = True

    def add_options(self, parser):
        parser.add_argument("--dry-run", action="store_true", help="Count what would be purged; change nothing.")

    def run(self, **options):
        result = retention_purge(
            operator=self.operator_actor(options, workspace_id=""), reason=options["reason"], dry_run=options["dry_run"]
        )
        return {
            "dry_run": result.dry_run,
            "cutoff": iso(result.cutoff),
            "threads": len(result.thread_ids),
            "messages": result.messages,
            "thread_ids": result.thread_ids,
            "schema_version": SCHEMA_VERSION,
        }
