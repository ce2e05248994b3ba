"""manage.py orkiva_unblock (--thread-id T | --escalation-id E) --reason R --json: let a thread continue."""
from __future__ import annotations

from orkiva.commands import OrkivaCommand
from policy.escalations import UNBLOCK_TARGETS, thread_unblock
from policy.presenters import thread_action_json
from policy.selectors import escalation_get, thread_workspace


class Command(OrkivaCommand):
    help = (
        "Unblock a thread (to --status, default active), reset its progress counters and resolve its open "
        "escalations. Name the thread, or one of its escalations."
    )
    mutating = True

    def add_options(self, parser):
        target = parser.add_mutually_exclusive_group(required=True)
        target.add_argument("--thread-id")
        target.add_argument("--escalation-id")
        parser.add_argument("--status", default=UNBLOCK_TARGETS[0], choices=UNBLOCK_TARGETS)

    def run(self, **options):
        thread_id = options["thread_id"]
        if options["escalation_id"]:
            thread_id = escalation_get(options["escalation_id"]).thread_id
        operator = self.operator_actor(options, workspace_id=thread_workspace(thread_id))
        action = thread_unblock(operator=operator, thread_id=thread_id, reason=options["reason"], status=options["status"])
        return thread_action_json(action)
