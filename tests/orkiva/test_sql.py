"""The hand-written hot-path statements (orkiva.sql) give what the ORM would: the same rows, as the
same Python values, on PostgreSQL and on SQLite (CI runs this file on both)."""
from __future__ import annotations

import uuid
from datetime import datetime

import pytest
from django.db import transaction
from django.forms.models import model_to_dict

from messaging.models import Message
from messaging.services import message_post
from policy.roles import Op
from tests.factories import ThreadFactory
from threads.models import Thread
from threads.selectors import thread_get

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("relaxed_policy")]


def values(instance) -> dict:
    """Every concrete field's value, as loaded (attnames: thread_id, not thread)."""
    return {f.attname: getattr(instance, f.attname) for f in type(instance)._meta.concrete_fields}


@pytest.mark.parametrize("lock", [False, True])
def test_thread_get_loads_the_row_as_the_orm_does(coordinator, executioner, lock):
    thread = ThreadFactory(coordinator=coordinator, participants=["executioner", "reviewer"])
    message_post(actor=executioner, thread_id=str(thread.pk), body="bump last_seq and updated_at")
    with transaction.atomic():
        got = thread_get(actor=executioner, thread_id=str(thread.pk), op=Op.MESSAGE_POST, lock=lock)
    expected = Thread.objects.get(pk=thread.pk)
    assert values(got) == values(expected)
    assert isinstance(got.pk, uuid.UUID)
    assert isinstance(got.updated_at, datetime) and got.updated_at.tzinfo is not None
    assert got._state.adding is False and got._state.db == "default"
    assert got.last_seq == 1


def test_a_posted_message_is_the_stored_row(coordinator, executioner, reviewer):
    thread = ThreadFactory(coordinator=coordinator, participants=["executioner", "reviewer"])
    first = message_post(actor=reviewer, thread_id=str(thread.pk), body="A finding", kind="finding").message
    posted = message_post(actor=executioner, thread_id=str(thread.pk), body="Fixed it", kind="resolution",
                          in_reply_to=first.seq, idempotency_key="key-1").message
    stored = Message.objects.get(pk=posted.pk)
    assert values(posted) == values(stored)
    assert posted.thread == thread and posted._state.adding is False
    assert (stored.seq, stored.sender_ordinal, stored.idempotency_key) == (2, 1, "key-1")
    # The reply's effect on its target was written with it.
    assert Message.objects.get(pk=first.pk).item_state == "resolved"
    assert model_to_dict(Thread.objects.get(pk=thread.pk))["last_seq"] == 2


def test_the_idempotency_lookup_finds_only_the_senders_own_key(coordinator, executioner, reviewer):
    thread = ThreadFactory(coordinator=coordinator, participants=["executioner", "reviewer"])
    mine = message_post(actor=executioner, thread_id=str(thread.pk), body="one", idempotency_key="k")
    theirs = message_post(actor=reviewer, thread_id=str(thread.pk), body="two", idempotency_key="k")
    again = message_post(actor=executioner, thread_id=str(thread.pk), body="one", idempotency_key="k")
    assert (mine.replay, theirs.replay, again.replay) == (False, False, True)
    assert again.message.pk == mine.message.pk and theirs.message.pk != mine.message.pk
    assert (theirs.message.sender_ordinal, mine.message.sender_ordinal) == (1, 1)
