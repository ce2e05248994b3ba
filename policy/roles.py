"""The role matrix: which role may do which operation, and where. Enforced here and nowhere else."""
from __future__ import annotations

from enum import StrEnum

from orkiva.errors import Forbidden
from policy.identity import ROLE_AUDITOR, ROLE_COORDINATOR, ROLE_OPERATOR, ROLE_PARTICIPANT, Actor


class Op(StrEnum):
    THREAD_CREATE = "thread.create"
    THREAD_LIST = "thread.list"
    THREAD_READ = "thread.read"  # get, summary
    THREAD_TRANSITION = "thread.transition"
    PARTICIPANTS_MANAGE = "thread.participants"
    MESSAGE_POST = "message.post"
    MESSAGE_READ = "message.read"
    CURSOR_ACK = "cursor.ack"
    SESSION_HEARTBEAT = "session.heartbeat"
    SESSION_READ = "session.read"
    WAKE_TRIGGER = "wake.trigger"
    TOKEN_REFRESH = "token.refresh"


class Scope(StrEnum):
    """Where a role may perform an operation. Workspace scoping applies to every cell."""

    DENY = "deny"
    MEMBER = "member"  # only in threads that list the caller as a participant
    WORKSPACE = "workspace"  # anywhere in the caller's workspace
    SELF = "self"  # only on the caller's own records


_P, _C, _A = ROLE_PARTICIPANT, ROLE_COORDINATOR, ROLE_AUDITOR
MATRIX: dict[Op, dict[str, Scope]] = {
    Op.THREAD_CREATE: {_P: Scope.DENY, _C: Scope.WORKSPACE, _A: Scope.DENY},
    Op.THREAD_LIST: {_P: Scope.MEMBER, _C: Scope.WORKSPACE, _A: Scope.WORKSPACE},
    Op.THREAD_READ: {_P: Scope.MEMBER, _C: Scope.WORKSPACE, _A: Scope.WORKSPACE},
    Op.THREAD_TRANSITION: {_P: Scope.MEMBER, _C: Scope.WORKSPACE, _A: Scope.DENY},
    Op.PARTICIPANTS_MANAGE: {_P: Scope.DENY, _C: Scope.WORKSPACE, _A: Scope.DENY},
    Op.MESSAGE_POST: {_P: Scope.MEMBER, _C: Scope.WORKSPACE, _A: Scope.DENY},
    Op.MESSAGE_READ: {_P: Scope.MEMBER, _C: Scope.WORKSPACE, _A: Scope.WORKSPACE},
    Op.CURSOR_ACK: {_P: Scope.MEMBER, _C: Scope.WORKSPACE, _A: Scope.DENY},
    Op.SESSION_HEARTBEAT: {_P: Scope.SELF, _C: Scope.SELF, _A: Scope.DENY},
    Op.SESSION_READ: {_P: Scope.WORKSPACE, _C: Scope.WORKSPACE, _A: Scope.WORKSPACE},
    Op.WAKE_TRIGGER: {_P: Scope.MEMBER, _C: Scope.WORKSPACE, _A: Scope.DENY},
    Op.TOKEN_REFRESH: {_P: Scope.SELF, _C: Scope.SELF, _A: Scope.SELF},
}


def scope_for(actor: Actor, op: Op) -> Scope:
    if actor.role == ROLE_OPERATOR:  # a person at the shell of the host: every operation
        return Scope.WORKSPACE
    return MATRIX[op].get(actor.role, Scope.DENY)


def authorize(actor: Actor, op: Op, *, is_participant: bool | None = None, target: str = "") -> Scope:
    """Raise Forbidden (audited) unless `actor` may perform `op`; for MEMBER scope pass whether the
    actor is one of the thread's participants."""
    scope = scope_for(actor, op)
    if scope is Scope.DENY:
        raise Forbidden(
            f"The {actor.role} role may not perform {op.value}.",
            code="forbidden",
            details={"operation": op.value, "role": actor.role},
            audit={"actor": actor, "action": "access.denied", "target_type": "operation", "target_id": target or op.value},
        )
    if scope is Scope.MEMBER and is_participant is False:
        raise Forbidden(
            "Only the thread's participants may do that.",
            code="not_a_participant",
            details={"operation": op.value},
            audit={"actor": actor, "action": "access.denied", "target_type": "thread", "target_id": target},
        )
    return scope
