"""Every wake status, step, outcome and reason code in one place (docs/supervisor.md lists them)."""
from __future__ import annotations

# --- wake statuses ---------------------------------------------------------------------------
PENDING = "pending"  # created; its job is queued
DEFERRED = "deferred"  # a human is typing in the target pane; re-checked every recheck interval
AWAITING_ACK = "awaiting_ack"  # prompt typed into the pane; waiting for a heartbeat or read progress
QUEUED = "queued"  # held: max defer reached, or the runtime is paused; the sweep retries it
UNMANAGED_RUNTIME = "unmanaged_runtime"  # never typed into; routed to resume/spawn
RESUMING = "resuming"  # in the resume step (between attempts)
SPAWNING = "spawning"
ACTIVE_STATUSES = (PENDING, DEFERRED, AWAITING_ACK, QUEUED, UNMANAGED_RUNTIME, RESUMING, SPAWNING)

DELIVERED = "delivered"  # injected and acknowledged
RESUMED = "resumed"  # `codex exec resume` ran and exited 0
SPAWNED = "spawned"  # a fresh session ran with the thread summary
FAILED = "failed"  # every step failed or was impossible
EXPIRED = "expired"  # stayed queued past the queue TTL
CANCELLED = "cancelled"  # an operator stopped it (orkiva_runtime cancel-wake)
FINAL_STATUSES = (DELIVERED, RESUMED, SPAWNED, FAILED, EXPIRED, CANCELLED)
STATUSES = ACTIVE_STATUSES + FINAL_STATUSES

# --- chain stages -------------------------------------------------------------------------------
STAGE_INJECT, STAGE_RESUME, STAGE_SPAWN, STAGE_DONE = "inject", "resume", "spawn", "done"
STAGES = (STAGE_INJECT, STAGE_RESUME, STAGE_SPAWN, STAGE_DONE)

# --- sources ---------------------------------------------------------------------------------------
SOURCE_TRIGGER, SOURCE_AUTO, SOURCE_OPERATOR = "trigger", "auto", "operator"
SOURCES = (SOURCE_TRIGGER, SOURCE_AUTO, SOURCE_OPERATOR)

# --- attempt outcomes --------------------------------------------------------------------------
OUT_CREATED = "created"
OUT_DEFERRED = "deferred"
OUT_QUEUED = "queued"
OUT_INJECTED = "injected"
OUT_ACKED = "acked"
OUT_NO_ACK = "no_ack"
OUT_SKIPPED = "skipped"
OUT_FAILED = "failed"
OUT_SUCCEEDED = "succeeded"
OUT_EXPIRED = "expired"

# --- reason codes ----------------------------------------------------------------------------------
R_CREATED = "wake_created"
R_NO_RUNTIME = "no_runtime"
R_RUNTIME_INACTIVE = "runtime_inactive"  # deregistered or expired: no live target
R_UNMANAGED = "unmanaged_runtime"
R_NOT_TMUX = "no_pty_target"
R_OTHER_HOST = "runtime_on_other_host"
R_PAUSED = "runtime_paused"
R_TARGET_MISSING = "target_missing"
R_TARGET_DEAD = "target_dead"
R_HUMAN_TYPING = "human_typing"
R_MAX_DEFER = "max_defer_reached"
R_FORCED = "forced_injection"
R_INJECTED = "injected"
R_SEND_FAILED = "send_failed"
R_ACKED = "delivered_acked"
R_ACK_TIMEOUT = "ack_timeout"
R_QUEUE_EXPIRED = "queue_expired"
R_NO_SESSION = "no_resumable_session"
R_STALE_SESSION = "stale_session"
R_NO_COMMAND = "no_command_template"
R_RESUME_OK = "resume_ok"
R_RESUME_FAILED = "resume_failed"
R_RESUME_TIMEOUT = "resume_timeout"
R_SPAWN_OK = "spawn_ok"
R_SPAWN_FAILED = "spawn_failed"
R_SPAWN_TIMEOUT = "spawn_timeout"
R_COMMAND_NOT_FOUND = "command_not_found"
R_CHAIN_EXHAUSTED = "chain_exhausted"
R_OPERATOR_RESUMED = "operator_resumed"
R_INTERNAL_ERROR = "internal_error"  # a step raised (a bug): the wake fails, the traceback is logged
R_OPERATOR_CANCELLED = "operator_cancelled"
# The agent's state and screen (real CLIs): held, deferred, or the paste not taken.
R_AGENT_BUSY = "agent_busy"  # a turn is running: held until the agent is idle
R_AWAITING_APPROVAL = "awaiting_approval"  # the CLI waits for a human's approval: held (Enter would approve)
R_DIALOG_OPEN = "dialog_open"  # a dialog of the CLI is showing (a first-run question): held
R_INPUT_NOT_EMPTY = "input_not_empty"  # the input line holds a human's draft: deferred, never merged into
R_NOT_SUBMITTED = "not_submitted"  # pasted, but the TUI did not take it within the submit timeout
R_UNACKNOWLEDGED = "unacknowledged"  # typed, never acknowledged, and the agent's pane still runs
R_SCREEN_UNRECOGNIZED = "screen_unrecognized"  # an attached pane shows something other than its CLI: held
R_ALREADY_READ = "already_read"  # a held auto wake whose agent read the thread to the end meanwhile
# Resume and spawn: what the run's output says besides its exit code.
R_NO_WORKDIR = "no_workdir"  # where the session lives is not known
R_TOOLS_REFUSED = "tools_refused"  # the CLI denied the Orkiva tools (no permission rule)
R_MCP_UNAVAILABLE = "mcp_unavailable"  # the Orkiva MCP server did not connect (a refused token, say)
R_RESUME_UNACKED = "resume_unacknowledged"  # exit 0, but the agent never read or acked the thread
R_SPAWN_UNACKED = "spawn_unacknowledged"

MANAGED_GUIDANCE = (
    "This runtime is unmanaged: the supervisor never types into it and wakes it by resume or spawn only. "
    "To make it managed, stop it and start it under the supervisor: "
    "manage.py orkiva_runtime launch --agent-id {agent_id} --workspace-id {workspace_id} "
    "--runtime {runtime_type} --command '<the agent command>' --reason '<why>'"
)
