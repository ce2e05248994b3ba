"""Query counts on the hot paths (post, read a page, ack, summary), flat in the thread's length."""
from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from messaging.services import message_post
from tests.conftest import client_for
from tests.factories import ThreadFactory

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("relaxed_policy")]

# Ceilings through the whole REST stack (savepoint statements counted). Post 11 on SQLite, where
# the post's statements run one by one: revocation lookup, lock the thread, the caller's
# membership under the lock, the sender's ordinal and idempotency key, the rate-limit UPSERT
# (both scopes), the reply target, bump last_seq and the turn counter, insert, 2 savepoint
# statements, and after the commit the auto-wake rule's runtime lookup; PostgreSQL sends the
# UPSERT with the ordinal read and the bump with the insert (9). Read 6, ack 9 (each with the
# probe for a wake of the reader's being delivered: a read or an ack in its thread acknowledges
# it), summary 9. A change that adds a query to a hot path must raise its ceiling here on purpose.
POST_MAX, READ_MAX, ACK_MAX, SUMMARY_MAX = 11, 6, 9, 9


def thread_with(coordinator, executioner, reviewer, n: int):
    thread = ThreadFactory(coordinator=coordinator, participants=["executioner", "reviewer"])
    for i in range(n):
        message_post(actor=(executioner, reviewer)[i % 2], thread_id=str(thread.pk), body=f"m{i}",
                     kind="finding" if i % 5 == 0 else "message")
    return thread


def count(call) -> tuple[int, object]:
    with CaptureQueriesContext(connection) as ctx:
        response = call()
    assert response.status_code < 300, response.content
    return len(ctx.captured_queries), response


@pytest.fixture
def clients(executioner, reviewer):
    return client_for(executioner), client_for(reviewer)


def test_post(coordinator, executioner, reviewer, clients, django_assert_max_num_queries,
              django_capture_on_commit_callbacks):
    thread = thread_with(coordinator, executioner, reviewer, 3)
    # The on-commit auto-wake rule runs on every post: its queries are the post's too.
    with django_assert_max_num_queries(POST_MAX), django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = clients[0].post(f"/v1/threads/{thread.pk}/messages", {"body": "x", "in_reply_to": 1},
                                   format="json", HTTP_IDEMPOTENCY_KEY="once")
    assert response.status_code == 201
    assert len(callbacks) == 1


def test_read_page(coordinator, executioner, reviewer, clients, django_assert_max_num_queries):
    thread = thread_with(coordinator, executioner, reviewer, 3)
    with django_assert_max_num_queries(READ_MAX):
        assert clients[0].get(f"/v1/threads/{thread.pk}/messages").status_code == 200


def test_ack(coordinator, executioner, reviewer, clients, django_assert_max_num_queries):
    thread = thread_with(coordinator, executioner, reviewer, 3)
    with django_assert_max_num_queries(ACK_MAX):
        assert clients[0].post(f"/v1/threads/{thread.pk}/ack", {"seq": 2}, format="json").status_code == 200


def test_summary(coordinator, executioner, reviewer, clients, django_assert_max_num_queries):
    thread = thread_with(coordinator, executioner, reviewer, 3)
    with django_assert_max_num_queries(SUMMARY_MAX):
        assert clients[0].get(f"/v1/threads/{thread.pk}/summary").status_code == 200


def test_hot_paths_do_not_grow_with_thread_length(coordinator, executioner, reviewer, clients):
    short = thread_with(coordinator, executioner, reviewer, 10)
    long = thread_with(coordinator, executioner, reviewer, 300)
    ex = clients[0]
    for path in ("messages", "messages?after_seq=5&limit=3", "summary"):
        n_short, _ = count(lambda: ex.get(f"/v1/threads/{short.pk}/{path}"))
        n_long, _ = count(lambda: ex.get(f"/v1/threads/{long.pk}/{path}"))
        assert n_short == n_long, (path, n_short, n_long)
    # The read page returns up to the default limit whatever the length; its unread count is exact.
    _, page = count(lambda: ex.get(f"/v1/threads/{long.pk}/messages"))
    assert page.json()["unread_count"] == 150
    n_short, _ = count(lambda: ex.post(f"/v1/threads/{short.pk}/ack", {"seq": 7}, format="json"))
    n_long, _ = count(lambda: ex.post(f"/v1/threads/{long.pk}/ack", {"seq": 250}, format="json"))
    assert n_short == n_long
    n_short, _ = count(lambda: ex.post(f"/v1/threads/{short.pk}/messages", {"body": "x"}, format="json"))
    n_long, _ = count(lambda: ex.post(f"/v1/threads/{long.pk}/messages", {"body": "x"}, format="json"))
    assert n_short == n_long
