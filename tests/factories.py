"""factory_boy factories. Domain rows are made through the services, so tests exercise real invariants."""
from __future__ import annotations

import factory

from policy.identity import ROLE_COORDINATOR, ROLE_PARTICIPANT, Actor
from threads.services import thread_create


class ActorFactory(factory.Factory):
    class Meta:
        model = Actor

    agent_id = factory.Sequence(lambda n: f"agent-{n}")
    workspace_id = "ws-main"
    role = ROLE_PARTICIPANT
    session_id = factory.Sequence(lambda n: f"session-{n}")
    jti = factory.Sequence(lambda n: f"jti{n:08d}")


class CoordinatorFactory(ActorFactory):
    agent_id = factory.Sequence(lambda n: f"coordinator-{n}")
    role = ROLE_COORDINATOR


class ThreadFactory(factory.Factory):
    """Creates a thread through `thread_create` as a coordinator of the same workspace."""

    class Meta:
        model = dict

    title = factory.Sequence(lambda n: f"Review change {n}")
    type = "review"
    participants = factory.LazyFunction(lambda: ["executioner", "reviewer"])
    coordinator = factory.SubFactory(CoordinatorFactory)

    @classmethod
    def _create(cls, model_class, *, coordinator, title, type, participants):
        return thread_create(actor=coordinator, title=title, type=type, participants=participants)
