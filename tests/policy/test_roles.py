"""The role matrix: every role x operation cell, exercised through the real /v1 endpoints.

One table (policy.roles.MATRIX), one test, every cell, each in a thread the caller belongs
to and in one it does not. The expected answer is derived from the cell's scope:
DENY -> 403 `forbidden`; MEMBER outside the thread -> 403 `not_a_participant`
(for listing: the thread is simply not listed); MEMBER inside, WORKSPACE, SELF -> success.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from policy.identity import TOKEN_ROLES, Actor
from policy.models import AuditEvent
from policy.roles import MATRIX, Op, Scope
from sessions.services import session_heartbeat
from tests.conftest import client_for
from tests.factories import CoordinatorFactory, ThreadFactory

pytestmark = pytest.mark.django_db

DOCS_API = Path(__file__).resolve().parents[2] / "docs" / "api.md"


def _thread_ok(response, thread_id, actor):
    return response.status_code == 200 and response.json()["id"] == thread_id


# Op -> (perform(client, thread_id, actor) -> response, success(response, thread_id, actor) -> bool)
OPERATIONS = {
    Op.THREAD_CREATE: (
        lambda c, t, a: c.post("/v1/threads", {"title": "t", "type": "task", "participants": ["p1"]}, format="json"),
        lambda r, t, a: r.status_code == 201 and r.json()["workspace_id"] == a.workspace_id,
    ),
    Op.THREAD_LIST: (
        lambda c, t, a: c.get("/v1/threads"),
        lambda r, t, a: r.status_code == 200 and t in [x["id"] for x in r.json()["threads"]],
    ),
    Op.THREAD_READ: (lambda c, t, a: c.get(f"/v1/threads/{t}"), _thread_ok),
    Op.THREAD_TRANSITION: (
        lambda c, t, a: c.post(f"/v1/threads/{t}/status", {"status": "active"}, format="json"),
        lambda r, t, a: r.status_code == 200 and r.json()["status"] == "active",
    ),
    Op.PARTICIPANTS_MANAGE: (
        lambda c, t, a: c.post(f"/v1/threads/{t}/participants", {"add": ["newcomer"]}, format="json"),
        lambda r, t, a: r.status_code == 200 and "newcomer" in r.json()["participants"],
    ),
    Op.MESSAGE_POST: (
        lambda c, t, a: c.post(f"/v1/threads/{t}/messages", {"body": "hello"}, format="json"),
        lambda r, t, a: r.status_code == 201 and r.json()["sender"] == a.agent_id,
    ),
    Op.MESSAGE_READ: (
        lambda c, t, a: c.get(f"/v1/threads/{t}/messages?after_seq=0"),
        lambda r, t, a: r.status_code == 200 and [m["seq"] for m in r.json()["messages"]] == [1],
    ),
    Op.CURSOR_ACK: (
        lambda c, t, a: c.post(f"/v1/threads/{t}/ack", {"seq": 1}, format="json"),
        lambda r, t, a: r.status_code == 200 and r.json()["last_read_seq"] == 1,
    ),
    Op.SESSION_HEARTBEAT: (
        lambda c, t, a: c.post("/v1/sessions/heartbeat", {"session_id": "rt-1", "runtime_type": "codex"}, format="json"),
        lambda r, t, a: r.status_code == 200 and r.json()["agent_id"] == a.agent_id,
    ),
    Op.SESSION_READ: (
        lambda c, t, a: c.get("/v1/sessions/sleeper"),
        lambda r, t, a: r.status_code == 200 and r.json()["latest_resumable"]["session_id"] == "sleeper-session",
    ),
    Op.WAKE_TRIGGER: (
        lambda c, t, a: c.post(f"/v1/threads/{t}/wake", {"agent_id": "sleeper"}, format="json"),
        lambda r, t, a: r.status_code == 202 and r.json()["agent_id"] == "sleeper",
    ),
    Op.TOKEN_REFRESH: (
        lambda c, t, a: c.post("/v1/auth/refresh"),
        lambda r, t, a: r.status_code == 200 and r.json()["token"],
    ),
}

CELLS = [(role, op, member) for op in Op for role in TOKEN_ROLES for member in (True, False)]


def test_the_table_covers_every_operation_and_role():
    assert set(OPERATIONS) == set(Op) == set(MATRIX)
    for op, row in MATRIX.items():
        assert set(row) == set(TOKEN_ROLES), op


@pytest.mark.parametrize("role,op,member", CELLS, ids=[f"{r}-{o.value}-{'member' if m else 'outsider'}" for r, o, m in CELLS])
def test_role_matrix_cell(role, op, member):
    creator = CoordinatorFactory(agent_id="boss", workspace_id="ws-main")
    actor = Actor(agent_id="caller", workspace_id="ws-main", role=role, session_id="caller-session")
    participants = ["sleeper", "caller"] if member else ["sleeper"]
    thread = ThreadFactory(coordinator=creator, participants=participants)
    thread_id = str(thread.pk)
    # Something to read and ack, and a session to look up.
    from messaging.services import message_post

    message_post(actor=creator, thread_id=thread_id, body="first")
    sleeper = Actor(agent_id="sleeper", workspace_id="ws-main", role="participant", session_id="s")
    session_heartbeat(actor=sleeper, session_id="sleeper-session", runtime_type="codex", resumable=True)

    perform, success = OPERATIONS[op]
    response = perform(client_for(actor), thread_id, actor)
    scope = MATRIX[op][role]

    if scope is Scope.DENY:
        assert response.status_code == 403, response.content
        assert response.json()["error"]["code"] == "forbidden"
        assert response.json()["error"]["details"] == {"operation": op.value, "role": role}
        assert AuditEvent.objects.filter(action="access.denied", actor_id="caller", reason_code="forbidden").exists()
    elif scope is Scope.MEMBER and not member:
        if op is Op.THREAD_LIST:  # listing is filtered, not refused
            assert response.status_code == 200
            assert thread_id not in [t["id"] for t in response.json()["threads"]]
        else:
            assert response.status_code == 403, response.content
            assert response.json()["error"]["code"] == "not_a_participant"
            assert AuditEvent.objects.filter(
                action="access.denied", actor_id="caller", target_id=thread_id, reason_code="not_a_participant"
            ).exists()
    else:
        assert success(response, thread_id, actor), (response.status_code, response.content)


def test_policy_facts_the_issue_names():
    """Pinned independently of the table: auditors write nothing, participants create nothing."""
    writes = {Op.THREAD_CREATE, Op.THREAD_TRANSITION, Op.PARTICIPANTS_MANAGE, Op.MESSAGE_POST, Op.CURSOR_ACK,
              Op.SESSION_HEARTBEAT, Op.WAKE_TRIGGER}
    assert all(MATRIX[op]["auditor"] is Scope.DENY for op in writes)
    assert all(MATRIX[op]["auditor"] is Scope.WORKSPACE for op in (Op.THREAD_READ, Op.THREAD_LIST, Op.MESSAGE_READ))
    assert MATRIX[Op.THREAD_CREATE]["participant"] is Scope.DENY
    assert MATRIX[Op.PARTICIPANTS_MANAGE]["participant"] is Scope.DENY
    assert MATRIX[Op.THREAD_CREATE]["coordinator"] is Scope.WORKSPACE
    for op in (Op.MESSAGE_POST, Op.MESSAGE_READ, Op.THREAD_READ, Op.CURSOR_ACK, Op.THREAD_TRANSITION):
        assert MATRIX[op]["participant"] is Scope.MEMBER


def _markdown_table_after(heading: str) -> list[list[str]]:
    text = DOCS_API.read_text()
    start = text.index(heading)
    rows: list[list[str]] = []
    for line in text[start:].splitlines()[1:]:
        if line.startswith("|"):
            rows.append([cell.strip().strip("`") for cell in line.strip().strip("|").split("|")])
        elif rows:
            break
    return [r for r in rows if not all(re.fullmatch(r":?-+:?", c) for c in r)]


def test_docs_role_matrix_matches_the_code():
    rows = _markdown_table_after("<!-- role-matrix -->")
    header, body = rows[0], rows[1:]
    assert header[1:] == list(TOKEN_ROLES)
    documented = {row[0]: dict(zip(header[1:], row[1:])) for row in body}
    expected = {op.value: {role: MATRIX[op][role].value for role in TOKEN_ROLES} for op in Op}
    assert documented == expected
