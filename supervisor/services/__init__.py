"""Supervisor writes, by job: the runtime registry (runtimes), launching managed agents (launch),
wake requests (wakes) and the wake chain (chain); trace holds what they share. The queue of wake
jobs is supervisor.queue; the jobs themselves are supervisor.tasks."""
from supervisor.services.chain import wake_advance
from supervisor.services.launch import LaunchResult, runtime_attach, runtime_launch
from supervisor.services.runtimes import (
    check_runtime_input,
    runtime_deregister,
    runtime_heartbeat,
    runtime_register,
    runtime_set_paused,
    runtimes_expire,
)
from supervisor.services.signals import runtime_signal
from supervisor.services.trace import SYSTEM_ID, SYSTEM_ROLE, supervisor_actor
from supervisor.services.wakes import (
    ACK_CURSOR, ACK_READ, ACK_TURN, dedupe_key_for, wake_cancel, wake_prompt, wake_trigger, wakes_acknowledge,
    wakes_for_post, wakes_missed,
)

__all__ = [
    "ACK_CURSOR", "ACK_READ", "ACK_TURN", "wakes_acknowledge",
    "LaunchResult", "runtime_attach", "runtime_signal", "SYSTEM_ID", "SYSTEM_ROLE", "check_runtime_input", "dedupe_key_for", "runtime_deregister",
    "runtime_heartbeat", "runtime_launch", "runtime_register", "runtime_set_paused", "runtimes_expire",
    "supervisor_actor", "wake_advance", "wake_cancel", "wake_prompt", "wake_trigger", "wakes_for_post",
    "wakes_missed",
]
