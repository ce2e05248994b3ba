"""The agent's own signals: the hooks a launch configures in its CLI (Claude Code's hooks, Codex's
`notify`) report a session starting, a turn starting and ending, an approval awaited. They tell the
supervisor the agent's real session id and where it lives, acknowledge the wake whose prompt
started a turn, and say when the agent is idle again, so a wake held while it was busy runs."""
from __future__ import annotations

from datetime import datetime

from django.db import transaction
from django.utils import timezone

from orkiva.errors import Conflict, NotFound, ValidationFailed
from policy.identity import IDENTIFIER_HELP, Actor, is_identifier
from policy.roles import Op, authorize
from sessions.models import AgentSession
from sessions.services import session_record
from supervisor import reasons
from supervisor.clis import cli_for
from supervisor.models import AGENT_APPROVAL, AGENT_BUSY, AGENT_IDLE, AGENT_UNKNOWN, ST_DEREGISTERED, Runtime
from supervisor.services.trace import WAKE_REF_PREFIX, runtime_for_update, wakes_release
from supervisor.services.wakes import ACK_TURN, wakes_acknowledge, wakes_for_unread

# event -> the agent's state after it
EVENTS = {
    "session_started": AGENT_IDLE,
    "turn_started": AGENT_BUSY,
    "turn_completed": AGENT_IDLE,
    "idle": AGENT_IDLE,
    "approval_pending": AGENT_APPROVAL,
    "session_ended": AGENT_UNKNOWN,
}
HELD_WHILE_BUSY = (reasons.R_AGENT_BUSY, reasons.R_AWAITING_APPROVAL)
TURN_ENDS = ("turn_completed", "idle")


def check_signal_input(*, event: str, session_id: str, workdir: str, wake_ref: str) -> None:
    errors: dict[str, str] = {}
    if event not in EVENTS:
        errors["event"] = f"one of {', '.join(EVENTS)}"
    if session_id and not is_identifier(session_id):
        errors["session_id"] = IDENTIFIER_HELP
    if workdir and (not workdir.startswith("/") or len(workdir) > 1024 or "\x00" in workdir):
        errors["workdir"] = "an absolute path of at most 1024 characters"
    if wake_ref and not (wake_ref.startswith(WAKE_REF_PREFIX) and len(wake_ref) == 14
                         and all(c in "0123456789abcdef" for c in wake_ref[2:])):
        errors["wake_ref"] = "w- and 12 hexadecimal digits"
    if errors:
        raise ValidationFailed("The runtime event is not valid.", details={"fields": errors})


def check_signal_place(runtime: Runtime, *, actor: Actor, session_id: str, workdir: str) -> None:
    """What a signal may claim about where the agent works: a resume runs the CLI there, in that
    session, with this agent's token. So the directory is the runtime's own (or below it), and the
    session is no other agent's."""
    inside = workdir == runtime.workdir or workdir.startswith(runtime.workdir.rstrip("/") + "/")
    if workdir and runtime.workdir and not inside:
        raise Conflict("The directory is not this runtime's.", code="workdir_outside_runtime", details={
            "workdir": f"the runtime's directory ({runtime.workdir}) or one below it"})
    if session_id and AgentSession.objects.filter(session_id=session_id).exclude(
        workspace_id=actor.workspace_id, agent_id=actor.agent_id
    ).exists():
        raise Conflict("That session belongs to another agent.", code="session_taken",
                       details={"session_id": session_id})


@transaction.atomic
def runtime_signal(
    *, actor: Actor, event: str, session_id: str = "", workdir: str = "", wake_ref: str = "",
    now: datetime | None = None,
) -> Runtime:
    """Record what the caller's CLI reported (identity from the token; no audit row: these come with
    every turn and decide nothing by themselves). Not a heartbeat: a late `Stop` must not pass for the
    ack of a prompt just typed."""
    authorize(actor, Op.SESSION_HEARTBEAT)
    check_signal_input(event=event, session_id=session_id, workdir=workdir, wake_ref=wake_ref)
    moment = now or timezone.now()
    runtime = runtime_for_update(workspace_id=actor.workspace_id, agent_id=actor.agent_id)
    if runtime is None or runtime.state == ST_DEREGISTERED:
        raise NotFound("No runtime is registered for you.", code="runtime_not_found", details={"agent_id": actor.agent_id})
    check_signal_place(runtime, actor=actor, session_id=session_id, workdir=workdir)
    state = EVENTS[event]
    runtime.agent_state, runtime.agent_state_at, runtime.updated_at = state, moment, moment
    fields = ["agent_state", "agent_state_at", "updated_at"]
    if not runtime.state_source:  # an attached agent whose user added Orkiva's hook: its signals count now
        cli = cli_for(runtime.runtime_type)
        runtime.state_source = cli.state_source if cli else "hooks"
        fields.append("state_source")
    if session_id:
        session_record(actor=actor, session_id=session_id, runtime_type=runtime.runtime_type,
                       workdir=workdir or runtime.workdir, known_since=runtime.registered_at, now=moment)
        if runtime.session_id != session_id:
            runtime.session_id = session_id
            fields.append("session_id")
    runtime.save(update_fields=fields)
    if event == "turn_started" and wake_ref:
        wakes_acknowledge(actor=actor, signal=ACK_TURN, wake_ref=wake_ref, now=moment)
    if state == AGENT_IDLE:
        wakes_release(workspace_id=actor.workspace_id, agent_id=actor.agent_id, reason_codes=HELD_WHILE_BUSY,
                      now=moment)
        if event in TURN_ENDS:
            wakes_for_unread(workspace_id=actor.workspace_id, agent_id=actor.agent_id, now=moment)
    return runtime
