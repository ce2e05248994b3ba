"""Messaging reads: pages in seq order, unread counts, and reading never moving a cursor."""
from __future__ import annotations

import pytest

from messaging.models import ReadCursor
from messaging.selectors import message_page, unread_count
from messaging.services import cursor_ack, message_post
from orkiva.errors import NotFound

pytestmark = pytest.mark.django_db


def post(actor, thread, body="m", **kw):
    return message_post(actor=actor, thread_id=str(thread.pk), body=body, **kw).message


def cursor_row(thread, agent_id):
    return ReadCursor.objects.filter(thread=thread, agent_id=agent_id).values_list("last_read_seq", "updated_at").first()


def test_page_defaults_to_after_the_cursor(thread, executioner, reviewer):
    for sender in (executioner, reviewer, reviewer, executioner, reviewer):
        post(sender, thread)
    cursor_ack(actor=executioner, thread_id=thread.pk, seq=2)
    page = message_page(actor=executioner, thread_id=thread.pk, after_seq=None, limit=50)
    assert [m.seq for m in page.messages] == [3, 4, 5]
    assert (page.last_read_seq, page.unread_count, page.next_after_seq) == (2, 2, 5)


def test_page_with_after_seq_and_limit(thread, executioner, reviewer):
    for _ in range(7):
        post(reviewer, thread)
    page = message_page(actor=executioner, thread_id=thread.pk, after_seq=0, limit=3)
    assert [m.seq for m in page.messages] == [1, 2, 3] and page.next_after_seq == 3
    page = message_page(actor=executioner, thread_id=thread.pk, after_seq=page.next_after_seq, limit=3)
    assert [m.seq for m in page.messages] == [4, 5, 6]
    page = message_page(actor=executioner, thread_id=thread.pk, after_seq=6, limit=3)
    assert [m.seq for m in page.messages] == [7]
    empty = message_page(actor=executioner, thread_id=thread.pk, after_seq=10**12, limit=3)
    assert empty.messages == [] and empty.next_after_seq == 10**12


def test_reading_never_moves_the_cursor(thread, executioner, reviewer):
    for _ in range(5):
        post(reviewer, thread)
    cursor_ack(actor=executioner, thread_id=thread.pk, seq=1)
    before = cursor_row(thread, "executioner")
    for after_seq in (None, 0, 3, 5):
        page = message_page(actor=executioner, thread_id=thread.pk, after_seq=after_seq, limit=50)
        assert page.last_read_seq == 1 and page.unread_count == 4
    assert cursor_row(thread, "executioner") == before
    thread.refresh_from_db()
    assert unread_count(thread=thread, agent_id="executioner", last_read_seq=1) == 4


def test_reading_as_a_coordinator_creates_no_cursor(thread, coordinator, reviewer):
    post(reviewer, thread)
    message_page(actor=coordinator, thread_id=thread.pk, after_seq=None, limit=50)
    assert not ReadCursor.objects.filter(thread=thread, agent_id="coordinator").exists()


def test_unread_excludes_the_readers_own_messages(thread, executioner, reviewer):
    senders = [executioner, reviewer, executioner, executioner, reviewer, executioner, reviewer]
    for sender in senders:
        post(sender, thread)
    thread.refresh_from_db()
    for cursor in range(0, 8):
        expected = sum(1 for seq, s in enumerate(senders, start=1) if seq > cursor and s is not executioner)
        assert unread_count(thread=thread, agent_id="executioner", last_read_seq=cursor) == expected, cursor
        expected_rv = sum(1 for seq, s in enumerate(senders, start=1) if seq > cursor and s is not reviewer)
        assert unread_count(thread=thread, agent_id="reviewer", last_read_seq=cursor) == expected_rv, cursor


def test_unread_for_an_agent_that_never_posted(thread, executioner):
    for _ in range(4):
        post(executioner, thread)
    thread.refresh_from_db()
    assert unread_count(thread=thread, agent_id="reviewer", last_read_seq=1) == 3


def test_page_of_another_workspace_is_not_found(thread, outsider):
    with pytest.raises(NotFound):
        message_page(actor=outsider, thread_id=thread.pk, after_seq=None, limit=5)
