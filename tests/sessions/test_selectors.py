"""Session registry reads: the latest resumable session per (agent, workspace), by agent id."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from orkiva.errors import NotFound, ValidationFailed
from policy.identity import Actor
from sessions.selectors import RECENT_LIMIT, agent_sessions, latest_resumable_session
from sessions.services import session_heartbeat

pytestmark = pytest.mark.django_db


def beat(actor, session_id, *, minutes_ago, resumable=True, runtime_type="codex"):
    return session_heartbeat(actor=actor, session_id=session_id, runtime_type=runtime_type, resumable=resumable,
                             now=timezone.now() - timedelta(minutes=minutes_ago))


def test_latest_resumable_wins(executioner, reviewer):
    beat(executioner, "old", minutes_ago=30)
    beat(executioner, "mid", minutes_ago=20, runtime_type="claude")
    beat(executioner, "newest-not-resumable", minutes_ago=1, resumable=False)
    beat(reviewer, "reviewers", minutes_ago=0)
    latest, recent = agent_sessions(actor=reviewer, agent_id="executioner")
    assert latest.session_id == "mid" and latest.runtime_type == "claude"
    assert [s.session_id for s in recent] == ["newest-not-resumable", "mid", "old"]
    # A heartbeat on the old session makes it the latest again.
    beat(executioner, "old", minutes_ago=0)
    assert latest_resumable_session(workspace_id="ws-main", agent_id="executioner").session_id == "old"


def test_no_resumable_session(executioner):
    beat(executioner, "gone", minutes_ago=5, resumable=False)
    latest, recent = agent_sessions(actor=executioner, agent_id="executioner")
    assert latest is None and len(recent) == 1


def test_recent_is_bounded(executioner):
    for i in range(RECENT_LIMIT + 3):
        beat(executioner, f"s{i}", minutes_ago=i)
    assert len(agent_sessions(actor=executioner, agent_id="executioner")[1]) == RECENT_LIMIT


def test_other_workspace_is_invisible(executioner):
    beat(executioner, "mine", minutes_ago=1)
    stranger = Actor(agent_id="executioner", workspace_id="ws-other", role="coordinator", session_id="x")
    with pytest.raises(NotFound):
        agent_sessions(actor=stranger, agent_id="executioner")
    assert latest_resumable_session(workspace_id="ws-other", agent_id="executioner") is None


def test_unknown_and_invalid_agent(executioner):
    with pytest.raises(NotFound) as exc:
        agent_sessions(actor=executioner, agent_id="nobody")
    assert exc.value.code == "agent_not_found"
    with pytest.raises(ValidationFailed):
        agent_sessions(actor=executioner, agent_id="bad id")
