"""manage.py orkiva_runtime ACTION: launch an agent under the supervisor (managed, in tmux; Codex CLI
and Claude Code configured for the bridge), attach a pane a user started as managed, list runtimes,
pause/resume injection, deregister, wake an agent (optionally forced) or cancel a wake. JSON with --json."""
from __future__ import annotations

from typing import Any

from orkiva.commands import OrkivaCommand, render_mapping, render_rows
from orkiva.errors import ValidationFailed
from policy.identity import ROLE_PARTICIPANT, TOKEN_ROLES
from sessions.models import RUNTIME_TYPES
from supervisor import services
from supervisor.presenters import runtime_json, wake_json
from supervisor.selectors import runtime_list
from orkiva.versioning import SCHEMA_VERSION, iso

RUNTIME_COLUMNS = [("workspace", "workspace_id"), ("agent", "agent_id"), ("runtime", "runtime_type"),
                   ("mode", "management_mode"), ("state", "state"), ("paused", "paused"), ("agent state", "agent_state"),
                   ("pane", "pty_target"), ("session", "session_id"), ("last heartbeat", "last_heartbeat_at")]

ACTIONS = ("launch", "attach", "list", "pause", "resume", "deregister", "wake", "cancel-wake")
NEEDS_REASON = ("attach", "pause", "resume", "deregister", "cancel-wake")


class Command(OrkivaCommand):
    help = __doc__
    action_needs = {
        "launch": "--agent-id, --workspace-id; --runtime (codex, default; claude; other, which needs --command); "
                  "optional --prompt, --workdir, --session-id, --role",
        "attach": "--agent-id, --workspace-id, --target (the tmux pane), --reason; optional --runtime, --tmux-socket",
        "list": "nothing; optional --workspace-id",
        "pause": "--agent-id, --workspace-id, --reason",
        "resume": "--agent-id, --workspace-id, --reason",
        "deregister": "--agent-id, --workspace-id, --reason",
        "wake": "--agent-id, --workspace-id, --thread-id; --force needs --reason",
        "cancel-wake": "--wake-id, --workspace-id, --reason",
    }

    def add_options(self, parser) -> None:
        parser.add_argument("action", choices=ACTIONS)
        parser.add_argument("--reason", default="",
                            help="Why (required for attach, pause, resume, deregister, cancel-wake and --force).")
        parser.add_argument("--agent-id", default="")
        parser.add_argument("--workspace-id", default="")
        parser.add_argument("--runtime", default="codex", choices=RUNTIME_TYPES, help="launch: the runtime type.")
        parser.add_argument("--command", default="",
                            help="launch: the agent command (split like a shell, run without one). Default: the "
                            "runtime's CLI (codex, claude), which the launch configures; required for --runtime other.")
        parser.add_argument("--prompt", default="", help="launch: the CLI's first prompt (its role and thread, say).")
        parser.add_argument("--session-id", default="", help="launch, attach: the agent's session id, if known.")
        parser.add_argument("--workdir", default="",
                            help="launch: the agent's working directory (default: this one); attach: the pane's.")
        parser.add_argument("--target", default="", help="attach: the tmux pane (session:window.pane, or %%N).")
        parser.add_argument("--tmux-socket", default="",
                            help="attach: the tmux server's socket path (default: the one you are in, else yours).")
        parser.add_argument("--role", default=ROLE_PARTICIPANT, choices=TOKEN_ROLES, help="launch: the token's role.")
        parser.add_argument("--thread-id", default="", help="wake: the thread to wake the agent about.")
        parser.add_argument("--wake-id", default="", help="cancel-wake: the wake to stop.")
        parser.add_argument("--force", action="store_true", help="wake: inject even past a typing human (audited).")

    def run(self, **options) -> dict[str, Any]:
        action = options["action"]
        reason = (options.get("reason") or "").strip()
        if action in NEEDS_REASON and not reason:
            raise ValidationFailed("This command changes state: give a non-empty --reason.", code="reason_required")
        agent_id, workspace_id = options["agent_id"], options["workspace_id"]
        if action == "list":
            runtimes = runtime_list(workspace_id=workspace_id or None)
            return {"runtimes": [runtime_json(r) for r in runtimes], "count": len(runtimes),
                    "schema_version": SCHEMA_VERSION}
        if action == "cancel-wake":
            if not options["wake_id"] or not workspace_id:
                raise ValidationFailed("cancel-wake needs --wake-id and --workspace-id (see --help).", code="usage_error")
            wake = services.wake_cancel(
                operator=self.operator_actor(options, workspace_id=workspace_id), wake_id=options["wake_id"],
                reason=reason,
            )
            return wake_json(wake)
        if not agent_id or not workspace_id:
            raise ValidationFailed(f"{action} needs --agent-id and --workspace-id (see --help).", code="usage_error")
        operator = self.operator_actor(options, workspace_id=workspace_id)
        if action == "launch":
            result = services.runtime_launch(
                operator=operator, agent_id=agent_id, workspace_id=workspace_id, runtime_type=options["runtime"],
                command=options["command"], prompt=options["prompt"], session_id=options["session_id"],
                workdir=options["workdir"], role=options["role"], reason=reason,
            )
            return {
                "runtime": runtime_json(result.runtime),
                "tmux_session": result.session_name,
                "attach": result.attach_command,
                "token_expires_at": iso(result.token_expires_at),
                "configured": result.configured,
                "note": "The agent's environment has ORKIVA_TOKEN, valid while the runtime is registered (revoked "
                "when it is deregistered, expires or goes offline), and ORKIVA_URL. The supervisor may type wake "
                "prompts into this pane; pause it with `orkiva_runtime pause`.",
                "schema_version": SCHEMA_VERSION,
            }
        if action == "attach":
            if not options["target"]:
                raise ValidationFailed("attach needs --target, the tmux pane the agent runs in (see --help).",
                                       code="usage_error")
            result = services.runtime_attach(
                operator=operator, agent_id=agent_id, workspace_id=workspace_id, runtime_type=options["runtime"],
                target=options["target"], tmux_socket=options["tmux_socket"], session_id=options["session_id"],
                workdir=options["workdir"], reason=reason,
            )
            return {
                "runtime": runtime_json(result.runtime),
                "attach": result.attach_command,
                "note": "The supervisor may now type wake prompts into this pane. The agent keeps its own MCP "
                "configuration and token; without Orkiva's hooks in its CLI's settings it reports no state, and "
                "the quiet-window rule alone decides when to type (docs/supervisor.md, Attach).",
                "schema_version": SCHEMA_VERSION,
            }
        if action in ("pause", "resume"):
            runtime = services.runtime_set_paused(
                operator=operator, workspace_id=workspace_id, agent_id=agent_id, paused=action == "pause", reason=reason
            )
            return {"runtime": runtime_json(runtime), "schema_version": SCHEMA_VERSION}
        if action == "deregister":
            runtime = services.runtime_deregister(
                actor=operator, workspace_id=workspace_id, agent_id=agent_id, reason=reason
            )
            return {"runtime": runtime_json(runtime), "schema_version": SCHEMA_VERSION}
        # wake
        if not options["thread_id"]:
            raise ValidationFailed("wake needs --thread-id (see --help).", code="usage_error")
        wake = services.wake_trigger(
            actor=operator, thread_id=options["thread_id"], agent_id=agent_id, reason=reason, force=options["force"]
        )
        return wake_json(wake)

    def render_table(self, result: dict[str, Any]) -> str:
        if "runtimes" in result:
            table = render_rows(result["runtimes"], RUNTIME_COLUMNS, empty="no runtimes")
            guidance = next((r["guidance"] for r in result["runtimes"] if "guidance" in r), None)
            return table + (f"\n\n{guidance}" if guidance else "")
        return render_mapping(result)
