"""Shared fixtures: actors, their signed tokens, authenticated clients, threads."""
from __future__ import annotations

import pytest
from django.db import connection
from rest_framework.test import APIClient

from policy.identity import Actor
from policy.tokens import mint_token
from tests.factories import ActorFactory, CoordinatorFactory, ThreadFactory


# The policy controls out of the way, for tests about something else that post a lot into one
# thread (ordering, concurrency, query counts). Rate limits stay on, high, so their query runs.
RELAXED_POLICY = {
    "ORKIVA_RATE_LIMIT_THREAD_POSTS": 1_000_000,
    "ORKIVA_RATE_LIMIT_WORKSPACE_POSTS": 1_000_000,
    "ORKIVA_LOOP_THRESHOLD_TURNS": 0,
    "ORKIVA_NO_PROGRESS_BLOCK_TURNS": 0,
    "ORKIVA_REPEATED_FINDING_LIMIT": 0,
}


@pytest.fixture
def relaxed_policy(settings):
    """Use with `pytestmark = pytest.mark.usefixtures("relaxed_policy")`; subprocesses take
    `subprocess_env(**RELAXED_POLICY)`."""
    for name, value in RELAXED_POLICY.items():
        setattr(settings, name, value)


def token_for(actor: Actor, *, ttl_seconds: int = 900, now=None) -> str:
    return mint_token(
        agent_id=actor.agent_id,
        workspace_id=actor.workspace_id,
        role=actor.role,
        session_id=actor.session_id,
        ttl_seconds=ttl_seconds,
        now=now,
    ).token


def client_for(actor: Actor) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token_for(actor)}")
    return client


@pytest.fixture
def is_postgres() -> bool:
    return connection.vendor == "postgresql"


@pytest.fixture
def coordinator() -> Actor:
    return CoordinatorFactory(agent_id="coordinator", workspace_id="ws-main")


@pytest.fixture
def executioner() -> Actor:
    return ActorFactory(agent_id="executioner", workspace_id="ws-main")


@pytest.fixture
def reviewer() -> Actor:
    return ActorFactory(agent_id="reviewer", workspace_id="ws-main")


@pytest.fixture
def auditor() -> Actor:
    return ActorFactory(agent_id="auditor", workspace_id="ws-main", role="auditor")


@pytest.fixture
def outsider() -> Actor:
    """A coordinator of another workspace."""
    return CoordinatorFactory(agent_id="coordinator", workspace_id="ws-other")


@pytest.fixture
def thread(db, coordinator):
    return ThreadFactory(coordinator=coordinator, participants=["executioner", "reviewer"])
