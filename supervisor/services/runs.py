"""The resume and spawn steps: wake the agent without its pane, by running its CLI once.

Resume continues the agent's own session (the one its CLI reported, else its latest resumable one)
in the directory where that session lives (Claude Code finds a session only from its directory;
Codex runs where it is resumed). Spawn starts a fresh session there, seeded with the thread's
summary, and records the new session's id from the CLI's JSON output. A run succeeds only when the
agent acknowledged the wake while it ran (it read the thread, acked in it, or heartbeated): exit 0
alone is not delivery. Refused tools and a missing MCP server are failures of their own."""
from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from django.conf import settings

from policy.identity import ROLE_PARTICIPANT, is_identifier
from policy.services import token_issue
from sessions.models import AgentSession
from sessions.selectors import latest_resumable_session
from supervisor import reasons, runner
from supervisor.clis import cli_for
from supervisor.clis.base import AgentPlace, RunOutcome
from supervisor.models import Runtime, WakeRequest
from supervisor.selectors import last_activity, runtime_of, wake_ack
from supervisor.services.launch import runtime_dir
from supervisor.services.steps import Step, finish, to_stage
from supervisor.services.trace import supervisor_actor, typeable, wake_ref_of
from threads.models import Thread
from threads.summary import summary_of, summary_text

# Failures a second try would meet again: the chain moves on at once.
DETERMINISTIC = (reasons.R_COMMAND_NOT_FOUND, reasons.R_TOOLS_REFUSED, reasons.R_MCP_UNAVAILABLE)


def _runtime_type_for(runtime: Runtime | None, session: AgentSession | None) -> str:
    if runtime is not None:
        return runtime.runtime_type
    return session.runtime_type if session is not None else "codex"


def _agent_env(wake: WakeRequest, *, session_id: str, now: datetime) -> dict[str, str]:
    """A fresh token for the woken agent, for as long as the run may last."""
    minted = token_issue(
        issuer=supervisor_actor(wake.workspace_id), agent_id=wake.agent_id, workspace_id=wake.workspace_id,
        role=ROLE_PARTICIPANT, session_id=session_id if is_identifier(session_id) else f"wake-{wake.trace_id[:12]}",
        ttl_seconds=max(settings.ORKIVA_RUNTIME_TOKEN_TTL_SECONDS, int(settings.ORKIVA_WAKE_COMMAND_TIMEOUT_SECONDS) + 60),
        max_ttl_seconds=max(settings.ORKIVA_TOKEN_MAX_TTL_SECONDS, int(settings.ORKIVA_WAKE_COMMAND_TIMEOUT_SECONDS) + 60),
        reason=f"wake {wake.pk}", now=now,
    )
    return {
        "ORKIVA_TOKEN": minted.token,
        "ORKIVA_URL": settings.ORKIVA_PUBLIC_URL,
        "ORKIVA_AGENT_ID": wake.agent_id,
        "ORKIVA_WORKSPACE_ID": wake.workspace_id,
        "ORKIVA_WAKE_ID": str(wake.pk),
        "ORKIVA_TRACE_ID": wake.trace_id,
    }


def _fields(wake: WakeRequest, **extra: str) -> dict[str, str]:
    return {"thread_id": str(wake.thread_id), "agent_id": wake.agent_id, "workspace_id": wake.workspace_id,
            "wake_ref": wake_ref_of(wake.trace_id), **extra}


def _session_to_resume(wake: WakeRequest, runtime: Runtime | None) -> tuple[str, str, AgentSession | None]:
    """The session to resume and the directory it lives in: the one the agent's CLI reported for its
    runtime (hooks, launch, attach), else its latest resumable session."""
    session = None
    if runtime is not None and runtime.session_id:
        session = AgentSession.objects.filter(workspace_id=wake.workspace_id, agent_id=wake.agent_id,
                                              session_id=runtime.session_id).first()
        if session is None:
            return runtime.session_id, runtime.workdir, None
    session = session or latest_resumable_session(workspace_id=wake.workspace_id, agent_id=wake.agent_id)
    if session is None:
        return "", runtime.workdir if runtime else "", None
    return session.session_id, session.workdir or (runtime.workdir if runtime else ""), session


def _place(wake: WakeRequest, workdir: str) -> AgentPlace:
    return AgentPlace(agent_id=wake.agent_id, workspace_id=wake.workspace_id, workdir=workdir,
                      runtime_dir=runtime_dir(workspace_id=wake.workspace_id, agent_id=wake.agent_id))


def _judge(kind: str, result: runner.CommandResult, outcome: RunOutcome, acked: str | None) -> str:
    """The reason code of a run, worst first."""
    if result.timed_out:
        return reasons.R_RESUME_TIMEOUT if kind == "resume" else reasons.R_SPAWN_TIMEOUT
    if result.not_found:
        return reasons.R_COMMAND_NOT_FOUND
    if outcome.mcp_unavailable:
        return reasons.R_MCP_UNAVAILABLE
    if outcome.tools_refused:
        return reasons.R_TOOLS_REFUSED
    if result.exit_code != 0:
        return reasons.R_RESUME_FAILED if kind == "resume" else reasons.R_SPAWN_FAILED
    if not acked:
        return reasons.R_RESUME_UNACKED if kind == "resume" else reasons.R_SPAWN_UNACKED
    return reasons.R_RESUME_OK if kind == "resume" else reasons.R_SPAWN_OK


def _run(wake: WakeRequest, kind: str, argv: list[str], *, session_id: str, workdir: str, runtime_type: str,
         now: datetime) -> tuple[str, dict, RunOutcome]:
    result = runner.run_command(argv, env=_agent_env(wake, session_id=session_id, now=now), workdir=workdir or None,
                                timeout=settings.ORKIVA_WAKE_COMMAND_TIMEOUT_SECONDS)
    cli = cli_for(runtime_type)
    outcome = cli.outcome(result.output) if cli else RunOutcome(session_id=result.session_id)
    acked = wake_ack(wake, since=now)
    detail = {**result.as_detail(), **outcome.as_detail(), "workdir": workdir or None, "acked_by": acked}
    return _judge(kind, result, outcome, acked), detail, outcome


def step_resume(wake: WakeRequest, step: Step, now: datetime) -> None:
    runtime = runtime_of(workspace_id=wake.workspace_id, agent_id=wake.agent_id)
    session_id, workdir, session = _session_to_resume(wake, runtime)
    beat = last_activity(runtime, workspace_id=wake.workspace_id, agent_id=wake.agent_id)
    runtime_type = _runtime_type_for(runtime, session)
    cli = cli_for(runtime_type)
    template = runner.command_template(runtime_type, "resume")
    skip, detail = None, {"session_id": session_id or None, "last_heartbeat_at": beat.isoformat() if beat else None}
    if not session_id:
        skip = reasons.R_NO_SESSION
    elif beat is None or (now - beat).total_seconds() > settings.ORKIVA_WAKE_STALE_HEARTBEAT_SECONDS:
        skip = reasons.R_STALE_SESSION
    elif cli is None and not template:
        skip = reasons.R_NO_COMMAND
    elif cli is not None and not (workdir and Path(workdir).is_dir()):
        skip = reasons.R_NO_WORKDIR
    if skip:
        step.attempt("resume", reasons.OUT_SKIPPED, skip, {**detail, "runtime_type": runtime_type,
                                                           "workdir": workdir or None})
        to_stage(step, reasons.STAGE_SPAWN, reason_code=skip, now=now)
        return
    argv = (cli.resume_argv(_place(wake, workdir), session_id=session_id, prompt=wake.prompt) if cli
            else runner.render(template, **_fields(wake, session_id=session_id, prompt=wake.prompt)))
    code, detail, _ = _run(wake, "resume", argv, session_id=session_id, workdir=workdir, runtime_type=runtime_type,
                           now=now)
    attempts = wake.resume_attempts + 1
    step.changes["resume_attempts"] = attempts
    detail["attempt"] = attempts
    if code == reasons.R_RESUME_OK:
        step.attempt("resume", reasons.OUT_SUCCEEDED, code, detail)
        finish(step, status=reasons.RESUMED, path="resume", reason_code=code, now=now)
        return
    step.attempt("resume", reasons.OUT_FAILED, code, detail)
    if attempts < settings.ORKIVA_WAKE_RESUME_ATTEMPTS and code not in DETERMINISTIC:
        backoff = settings.ORKIVA_WAKE_RESUME_BACKOFF_SECONDS * attempts
        step.changes.update(status=reasons.RESUMING, reason_code=code, next_attempt_at=now + timedelta(seconds=backoff))
    else:
        to_stage(step, reasons.STAGE_SPAWN, reason_code=code, now=now)


def step_spawn(wake: WakeRequest, step: Step, now: datetime) -> None:
    runtime = runtime_of(workspace_id=wake.workspace_id, agent_id=wake.agent_id)
    _, workdir, session = _session_to_resume(wake, runtime)
    runtime_type = _runtime_type_for(runtime, session)
    cli = cli_for(runtime_type)
    template = runner.command_template(runtime_type, "spawn")
    if cli is None and not template:
        step.attempt("spawn", reasons.OUT_SKIPPED, reasons.R_NO_COMMAND, {"runtime_type": runtime_type})
        finish(step, status=reasons.FAILED, path="spawn", reason_code=reasons.R_CHAIN_EXHAUSTED, now=now)
        return
    if cli is not None and not (workdir and Path(workdir).is_dir()):
        step.attempt("spawn", reasons.OUT_SKIPPED, reasons.R_NO_WORKDIR, {"runtime_type": runtime_type,
                                                                         "workdir": workdir or None})
        finish(step, status=reasons.FAILED, path="spawn", reason_code=reasons.R_NO_WORKDIR, now=now)
        return
    thread = Thread.objects.get(pk=wake.thread_id)
    text = typeable(summary_text(summary_of(thread)))
    prompt = settings.ORKIVA_WAKE_SPAWN_PROMPT.format_map(_fields(wake, summary=text, title=typeable(thread.title)))
    if cli is not None:
        argv, chosen = cli.spawn_argv(_place(wake, workdir), prompt=prompt)
    else:
        argv, chosen = runner.render(template, **_fields(wake, prompt=prompt, session_id="")), ""
    code, detail, outcome = _run(wake, "spawn", argv, session_id=chosen, workdir=workdir, runtime_type=runtime_type,
                                 now=now)
    new_session = outcome.session_id or chosen
    if new_session and is_identifier(new_session) and code != reasons.R_COMMAND_NOT_FOUND:
        step.record_session = (new_session, runtime_type, workdir)  # a session ran: it can be resumed
    if code == reasons.R_SPAWN_OK:
        step.attempt("spawn", reasons.OUT_SUCCEEDED, code, detail)
        finish(step, status=reasons.SPAWNED, path="spawn", reason_code=code, now=now)
        return
    step.attempt("spawn", reasons.OUT_FAILED, code, detail)
    finish(step, status=reasons.FAILED, path="spawn", reason_code=code, now=now)
