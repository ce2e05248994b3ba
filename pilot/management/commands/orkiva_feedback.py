"""Record an operator's rating and pain points for a thread:
`manage.py orkiva_feedback --workspace-id W --thread T --rating 4 --tag slow-wake --text "..." --json`."""
from __future__ import annotations

from orkiva.commands import OrkivaCommand
from orkiva.versioning import iso
from pilot.services import feedback_record


class Command(OrkivaCommand):
    help = "Record an operator's rating (1-5) and pain points (tags, text) against a thread; audited."

    def add_options(self, parser):
        parser.add_argument("--workspace-id", required=True)
        parser.add_argument("--thread", required=True, help="The thread id.")
        parser.add_argument("--rating", type=int, default=None, help="1 (poor) to 5 (great).")
        parser.add_argument(
            "--tag", action="append", default=[], dest="tags",
            help="A pain point, e.g. slow-wake or lost-context (repeatable; also comma-separated).",
        )
        parser.add_argument("--text", default="", help="What happened, in the operator's words.")

    def run(self, **options):
        tags = [part for value in options["tags"] for part in value.split(",")]
        feedback = feedback_record(
            operator=self.operator_actor(options, workspace_id=options["workspace_id"]),
            thread_id=options["thread"], rating=options["rating"], tags=tags, text=options["text"],
        )
        return {
            "feedback_id": feedback.pk,
            "thread_id": str(feedback.thread_id),
            "workspace_id": feedback.workspace_id,
            "operator": feedback.operator,
            "rating": feedback.rating,
            "tags": feedback.tags,
            "text": feedback.text,
            "created_at": iso(feedback.created_at),
        }
