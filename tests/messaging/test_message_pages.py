"""message_pages: the pages of the waiters one post woke, read together, are exactly the pages each
would have read alone (message_page), and a reader the batch cannot clear is left to read alone."""
from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from messaging.selectors import message_page, message_pages
from messaging.services import cursor_ack, message_post
from policy.identity import Actor
from tests.factories import ThreadFactory

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("relaxed_policy")]


def _same(page, alone) -> None:
    assert [m.seq for m in page.messages] == [m.seq for m in alone.messages]
    assert (page.last_read_seq, page.unread_count, page.next_after_seq) == \
        (alone.last_read_seq, alone.unread_count, alone.next_after_seq)
    assert page.thread.last_seq == alone.thread.last_seq


def test_pages_read_together_equal_the_pages_read_alone(coordinator, executioner, reviewer, auditor, outsider):
    thread = ThreadFactory(coordinator=coordinator, participants=["executioner", "reviewer"])
    for body in ["one", "two", "three", "four"]:
        message_post(actor=executioner, thread_id=str(thread.pk), body=body)
    message_post(actor=reviewer, thread_id=str(thread.pk), body="five")
    cursor_ack(actor=reviewer, thread_id=str(thread.pk), seq=2)
    stranger = Actor(agent_id="stranger", workspace_id=executioner.workspace_id, role="participant", session_id="s")
    reads = [(reviewer, 2, 10), (executioner, 0, 2), (reviewer, 2, 10), (auditor, 4, 10), (stranger, 0, 10),
             (outsider, 0, 10), (coordinator, 5, 10)]
    with CaptureQueriesContext(connection) as together:
        pages = message_pages(thread_id=thread.pk, reads=reads)
    # The thread, its participants, the cursors, a window per distinct (after_seq, limit) and an
    # unread count per reader behind the thread: not a query per read.
    assert len(together) <= 3 + 4 + 4
    assert pages[4] is None and pages[5] is None  # not a participant; another workspace: read alone
    for (actor, after_seq, limit), page in zip(reads, pages):
        if page is not None:
            _same(page, message_page(actor=actor, thread_id=str(thread.pk), after_seq=after_seq, limit=limit))
    assert [m.body for m in pages[0].messages] == ["three", "four", "five"]
    assert pages[0].messages is pages[2].messages  # one window read for both
    assert pages[0].unread_count == 2 and pages[6].messages == [] and pages[6].next_after_seq == 5


def test_a_vanished_thread_leaves_every_reader_to_read_alone(executioner):
    import uuid

    assert message_pages(thread_id=uuid.uuid4(), reads=[(executioner, 0, 10)]) == [None]


def test_the_tool_answers_read_together_equal_the_answers_read_alone(monkeypatch, coordinator, executioner, reviewer):
    """The MCP side (`_read_pages`, the waiters one post woke): several agents with their own
    cursors get exactly the page `_read_page` gives each alone, and each agent's wakes are
    acknowledged once, as its own read would; a reader that cannot be cleared gets None."""
    from orkiva.mcp import server

    thread = ThreadFactory(coordinator=coordinator, participants=["executioner", "reviewer", "tester"])
    tester = Actor(agent_id="tester", workspace_id=executioner.workspace_id, role="participant", session_id="t")
    for body in ["one", "two", "three"]:
        message_post(actor=executioner, thread_id=str(thread.pk), body=body)
    message_post(actor=tester, thread_id=str(thread.pk), body="four")
    cursor_ack(actor=reviewer, thread_id=str(thread.pk), seq=1)
    cursor_ack(actor=tester, thread_id=str(thread.pk), seq=3)
    stranger = Actor(agent_id="stranger", workspace_id=executioner.workspace_id, role="participant", session_id="s")
    reads = [(reviewer, 1, 50), (tester, 3, 50), (executioner, 0, 2), (reviewer, 1, 50), (stranger, 0, 50)]
    acknowledged: list[str] = []
    monkeypatch.setattr(server, "wakes_acknowledge", lambda *, actor, **kwargs: acknowledged.append(actor.agent_id))
    together = server._read_pages(thread.pk, reads)
    assert sorted(acknowledged) == ["executioner", "reviewer", "tester"]  # once each, the stranger not
    assert together[4] is None
    for (actor, after_seq, limit), answer in zip(reads[:4], together[:4]):
        assert answer == server._read_page(actor, str(thread.pk), after_seq, limit)
    assert [m["body"] for m in together[0]["messages"]] == ["two", "three", "four"]
    assert (together[0]["unread_count"], together[1]["unread_count"]) == (3, 0)  # the tester's own post is not unread
