"""manage.py orkiva_inspect WHAT [ID]: read-only views for the operator (docs/operator.md).

  thread <id>         the thread, its summary (why it is blocked), its last messages, its escalations
  agent <agent_id>    (with --workspace-id) sessions, runtime, recent wakes and threads
  escalations         open escalations (--all for resolved too; --workspace-id, --thread-id, --reason-code)
  escalation <id>     one escalation
  audit               the audit log, newest first (--workspace-id, --action, --actor, --thread-id, ...)
  wake <id>           a wake with its trace (every step it took)
  config              the effective policy settings
"""
from __future__ import annotations

from datetime import datetime
from typing import Any

from orkiva.commands import OrkivaCommand, render_mapping, render_rows
from orkiva.errors import ValidationFailed
from orkiva.versioning import SCHEMA_VERSION
from policy import selectors
from policy.config import policy_config
from policy.models import Escalation
from policy.presenters import audit_json, escalation_json, policy_json

ESCALATION_COLUMNS = [("id", "escalation_id"), ("status", "status"), ("reason", "reason_code"),
                      ("blocking", "blocking"), ("thread", "thread_id"), ("workspace", "workspace_id"),
                      ("opened", "opened_at"), ("why", "reason")]
AUDIT_COLUMNS = [("id", "id"), ("at", "created_at"), ("action", "action"), ("actor", "actor_id"),
                 ("target", lambda e: f"{e['target_type']}:{e['target_id']}" if e["target_type"] else None),
                 ("code", "reason_code"), ("count", "count"), ("why", "reason")]
MESSAGE_COLUMNS = [("seq", "seq"), ("sender", "sender"), ("kind", "kind"), ("state", "item_state"),
                   ("reply to", "in_reply_to"), ("at", "created_at"), ("body", "body")]
WAKE_COLUMNS = [("wake", "wake_id"), ("status", "status"), ("reason", "reason_code"), ("path", "path"),
                ("thread", "thread_id"), ("created", "created_at"), ("finished", "finished_at")]

VIEWS = ("thread", "agent", "escalations", "escalation", "audit", "wake", "config")
NEEDS_ID = {"thread": "a thread id", "agent": "an agent id", "escalation": "an escalation id", "wake": "a wake id"}


def _since(value: str) -> datetime | None:
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValidationFailed("--since is an ISO 8601 time, e.g. 2026-11-25T14:00:00Z.", code="usage_error") from None
    if moment.tzinfo is None:
        raise ValidationFailed("--since needs a time zone (append Z for UTC).", code="usage_error")
    return moment


class Command(OrkivaCommand):
    help = "Inspect threads, agents, escalations, the audit log, wakes and the effective policy (read-only)."
    action_needs = {
        "thread": "a thread id; optional --limit (messages shown)",
        "agent": "an agent id and --workspace-id",
        "escalations": "nothing (open ones); optional --all, --workspace-id, --thread-id, --reason-code, --limit",
        "escalation": "an escalation id",
        "audit": "nothing; optional --workspace-id, --action, --actor, --target-type, --target-id, --thread-id, "
                 "--reason-code, --since, --before-id, --limit",
        "wake": "a wake id",
        "config": "nothing",
    }

    def add_options(self, parser) -> None:
        parser.add_argument("what", choices=VIEWS)
        parser.add_argument("id", nargs="?", default="", help="The thread, agent, escalation or wake id.")
        parser.add_argument("--workspace-id", default="", help="agent: required; escalations, audit: a filter.")
        parser.add_argument("--thread-id", default="", help="escalations, audit: only rows about this thread.")
        parser.add_argument("--reason-code", default="", help="escalations, audit: a filter.")
        parser.add_argument("--all", action="store_true", help="escalations: resolved ones too.")
        parser.add_argument("--action", default="", help="audit: e.g. thread.auto_block, escalation.open.")
        parser.add_argument("--actor", default="", help="audit: an actor id, e.g. operator:alice or orkiva:policy.")
        parser.add_argument("--target-type", default="", help="audit: thread, escalation, jti, ...")
        parser.add_argument("--target-id", default="")
        parser.add_argument("--since", default="", help="audit: only rows at or after this ISO 8601 time.")
        parser.add_argument("--before-id", type=int, default=None, help="audit: page back from this row id.")
        parser.add_argument("--limit", type=int, default=selectors.DEFAULT_LIMIT, help="Most rows (or messages) shown.")

    def run(self, **options) -> dict[str, Any]:
        what, ident = options["what"], options["id"]
        if what in NEEDS_ID and not ident:
            raise ValidationFailed(f"orkiva_inspect {what} needs {NEEDS_ID[what]}.", code="usage_error")
        if not 1 <= options["limit"] <= 1000:
            raise ValidationFailed("--limit is between 1 and 1000.", code="usage_error")
        return getattr(self, f"view_{what}")(ident, options)

    def view_thread(self, thread_id: str, options) -> dict[str, Any]:
        from messaging.models import Message
        from messaging.presenters import message_json
        from threads.presenters import thread_json
        from threads.selectors import thread_get
        from threads.summary import summary_of
        from policy.roles import Op

        actor = self.operator_actor(options, workspace_id=selectors.thread_workspace(thread_id))
        thread = thread_get(actor=actor, thread_id=thread_id, op=Op.THREAD_READ)
        tail = list(Message.objects.filter(thread=thread).order_by("-seq")[: options["limit"]])
        escalations = selectors.escalation_list(status=None, thread_id=thread.pk, limit=options["limit"])
        return {
            "thread": thread_json(thread),
            "summary": summary_of(thread),
            "messages": [message_json(m) for m in reversed(tail)],
            "escalations": [escalation_json(e) for e in escalations],
            "schema_version": SCHEMA_VERSION,
        }

    def view_agent(self, agent_id: str, options) -> dict[str, Any]:
        from sessions.presenters import session_json
        from supervisor.presenters import runtime_json, wake_json

        if not options["workspace_id"]:
            raise ValidationFailed("orkiva_inspect agent needs --workspace-id.", code="usage_error")
        found = selectors.agent_overview(workspace_id=options["workspace_id"], agent_id=agent_id, limit=options["limit"])
        return {
            "agent_id": found.agent_id,
            "workspace_id": found.workspace_id,
            "sessions": [session_json(s) for s in found.sessions],
            "runtime": runtime_json(found.runtime) if found.runtime else None,
            "wakes": [wake_json(w) for w in found.wakes],
            "threads": [
                {"thread_id": str(t.pk), "title": t.title, "status": t.status,
                 "turns_since_progress": t.turns_since_progress, "last_seq": t.last_seq}
                for t in found.threads
            ],
            "schema_version": SCHEMA_VERSION,
        }

    def view_escalations(self, _ident: str, options) -> dict[str, Any]:
        found = selectors.escalation_list(
            status=None if options["all"] else Escalation.STATUS_OPEN,
            workspace_id=options["workspace_id"] or None,
            thread_id=options["thread_id"] or None,
            reason_code=options["reason_code"] or None,
            limit=options["limit"],
        )
        return {"escalations": [escalation_json(e) for e in found], "count": len(found), "schema_version": SCHEMA_VERSION}

    def view_escalation(self, escalation_id: str, options) -> dict[str, Any]:
        return escalation_json(selectors.escalation_get(escalation_id))

    def view_audit(self, _ident: str, options) -> dict[str, Any]:
        from policy.audit import audit_tallies_flush

        audit_tallies_flush()  # repeats of windows that are over, even where no supervisor sweeps
        found = selectors.audit_list(
            workspace_id=options["workspace_id"] or None,
            action=options["action"] or None,
            actor_id=options["actor"] or None,
            target_type=options["target_type"] or None,
            target_id=options["target_id"] or None,
            thread_id=options["thread_id"] or None,
            reason_code=options["reason_code"] or None,
            since=_since(options["since"]),
            before_id=options["before_id"],
            limit=options["limit"],
        )
        return {"events": [audit_json(e) for e in found], "count": len(found), "schema_version": SCHEMA_VERSION}

    def view_wake(self, wake_id: str, options) -> dict[str, Any]:
        from supervisor.presenters import wake_json

        return wake_json(selectors.wake_lookup(wake_id))

    def view_config(self, _ident: str, options) -> dict[str, Any]:
        return policy_json(policy_config())

    def render_table(self, result: dict[str, Any]) -> str:
        if "escalations" in result and "thread" not in result:
            return render_rows(result["escalations"], ESCALATION_COLUMNS, empty="no escalations")
        if "events" in result:
            return render_rows(result["events"], AUDIT_COLUMNS, empty="no audit events")
        if "thread" in result:
            summary = result["summary"]
            parts = [render_mapping({k: summary[k] for k in (
                "thread_id", "title", "status", "status_reason_code", "turns_since_progress", "blocked",
                "open_findings", "open_questions", "last_seq")})]
            parts.append(render_rows(result["messages"], MESSAGE_COLUMNS, empty="no messages"))
            if result["escalations"]:
                parts.append(render_rows(result["escalations"], ESCALATION_COLUMNS, empty=""))
            return "\n\n".join(parts)
        if "sessions" in result:  # an agent
            parts = [render_mapping({"agent_id": result["agent_id"], "workspace_id": result["workspace_id"],
                                     "runtime": result["runtime"]})]
            parts.append(render_rows(result["threads"], [("thread", "thread_id"), ("status", "status"),
                                                         ("turns", "turns_since_progress"), ("last seq", "last_seq"),
                                                         ("title", "title")], empty="no threads"))
            parts.append(render_rows(result["wakes"], WAKE_COLUMNS, empty="no wakes"))
            parts.append(render_rows(result["sessions"], [("session", "session_id"), ("runtime", "runtime_type"),
                                                          ("resumable", "resumable"),
                                                          ("last heartbeat", "last_heartbeat_at")],
                                     empty="no sessions"))
            return "\n\n".join(parts)
        return render_mapping(result)
