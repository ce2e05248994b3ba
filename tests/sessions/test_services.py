"""Session registry writes: a heartbeat upserts the caller's session; identity from the token."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from orkiva.errors import Forbidden, ValidationFailed
from sessions.models import AgentSession
from sessions.services import session_heartbeat

pytestmark = pytest.mark.django_db


def test_heartbeat_upserts(executioner):
    t0 = timezone.now() - timedelta(minutes=10)
    first = session_heartbeat(actor=executioner, session_id="codex-1", runtime_type="codex", resumable=True, now=t0)
    t1 = t0 + timedelta(minutes=5)
    second = session_heartbeat(actor=executioner, session_id="codex-1", runtime_type="codex", resumable=False, now=t1)
    assert first.pk == second.pk and AgentSession.objects.count() == 1
    row = AgentSession.objects.get()
    assert (row.agent_id, row.workspace_id, row.session_id, row.runtime_type, row.resumable) == (
        "executioner", "ws-main", "codex-1", "codex", False)
    assert (row.created_at, row.last_heartbeat_at) == (t0, t1)


def test_each_runtime_session_is_its_own_row(executioner):
    session_heartbeat(actor=executioner, session_id="codex-1", runtime_type="codex", resumable=True)
    session_heartbeat(actor=executioner, session_id="claude-1", runtime_type="claude", resumable=True)
    assert AgentSession.objects.filter(agent_id="executioner").count() == 2


@pytest.mark.parametrize("fields", [{"session_id": "bad id"}, {"session_id": ""}, {"runtime_type": "gpt"}])
def test_heartbeat_validates(executioner, fields):
    kwargs = {"session_id": "s", "runtime_type": "codex", "resumable": True, **fields}
    with pytest.raises(ValidationFailed):
        session_heartbeat(actor=executioner, **kwargs)
    assert not AgentSession.objects.exists()


def test_auditors_do_not_heartbeat(auditor):
    with pytest.raises(Forbidden):
        session_heartbeat(actor=auditor, session_id="s", runtime_type="codex", resumable=True)
