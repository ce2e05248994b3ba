"""manage.py orkiva_override --thread-id T --status S --reason R --json: force a status with authority."""
from __future__ import annotations

from orkiva.commands import OrkivaCommand
from policy.escalations import thread_override
from policy.presenters import thread_action_json
from policy.selectors import thread_workspace
from threads import transitions


class Command(OrkivaCommand):
    help = (
        "Move a thread to a status with an operator's authority (e.g. close a disputed thread). The transition "
        "table still holds; closing or leaving blocked resolves the thread's open escalations."
    )
    mutating = True

    def add_options(self, parser):
        parser.add_argument("--thread-id", required=True)
        parser.add_argument("--status", required=True, choices=transitions.STATUSES)

    def run(self, **options):
        operator = self.operator_actor(options, workspace_id=thread_workspace(options["thread_id"]))
        action = thread_override(
            operator=operator, thread_id=options["thread_id"], status=options["status"], reason=options["reason"]
        )
        return thread_action_json(action)
