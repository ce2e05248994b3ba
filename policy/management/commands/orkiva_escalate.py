"""manage.py orkiva_escalate --thread-id T --reason R [--block] --json: an operator escalates a thread."""
from __future__ import annotations

from orkiva.commands import OrkivaCommand
from policy.escalations import escalation_raise
from policy.presenters import thread_action_json
from policy.selectors import thread_workspace


class Command(OrkivaCommand):
    help = "Open an escalation on a thread (reason code `operator`); --block also blocks the thread until unblocked."
    mutating = True

    def add_options(self, parser):
        parser.add_argument("--thread-id", required=True)
        parser.add_argument("--block", action="store_true", help="Block the thread: posts get 409 thread_blocked.")

    def run(self, **options):
        operator = self.operator_actor(options, workspace_id=thread_workspace(options["thread_id"]))
        action = escalation_raise(
            operator=operator, thread_id=options["thread_id"], reason=options["reason"], block=options["block"]
        )
        return thread_action_json(action)
