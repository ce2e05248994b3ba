"""Collision control is a pure function of (client activity, now, deferral start, force, policy)."""
from datetime import datetime, timedelta, timezone

import pytest

from supervisor.collision import DEFER, INJECT, QUEUE, CollisionPolicy, collision_decide

POLICY = CollisionPolicy(quiet_window=20, recheck=5, max_defer=60)
NOW = datetime(2026, 11, 1, 12, 0, 0, tzinfo=timezone.utc)
T = NOW.timestamp()


@pytest.mark.parametrize(
    "activity, deferred_for, force, action, reason, retry_in",
    [
        ([], None, False, INJECT, "injected", 0),  # nobody attached
        ([int(T) - 20], None, False, INJECT, "injected", 0),  # quiet exactly the window
        ([int(T) - 300, int(T) - 21], None, False, INJECT, "injected", 0),  # every client quiet
        ([int(T) - 300, int(T) - 3], None, False, DEFER, "human_typing", 5),  # one client typing
        ([int(T) - 1], 30, False, DEFER, "human_typing", 5),
        ([int(T) - 1], 58, False, DEFER, "human_typing", 2),  # never re-check past the max defer
        ([int(T) - 1], 60, False, QUEUE, "max_defer_reached", 0),
        ([int(T) - 1], 60, True, INJECT, "forced_injection", 0),  # operator force, after the max defer
        ([int(T) - 1], 10, True, DEFER, "human_typing", 5),  # force does not skip the defer window
    ],
)
def test_collision_table(activity, deferred_for, force, action, reason, retry_in):
    since = None if deferred_for is None else NOW - timedelta(seconds=deferred_for)
    decision = collision_decide(client_activity=activity, now=NOW, deferred_since=since, force=force, policy=POLICY)
    assert (decision.action, decision.reason_code, decision.retry_in) == (action, reason, retry_in)


def test_policy_defaults_are_the_backlog_values(settings):
    policy = CollisionPolicy.from_settings()
    assert (policy.quiet_window, policy.recheck, policy.max_defer) == (20, 5, 60)
