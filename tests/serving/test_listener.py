"""The watcher's PostgreSQL listener in-process, against the test database: a commit from another
connection wakes a waiter through NOTIFY (polling set too slow to be what woke it), the
read-to-register window loses nothing, and a listening connection that is killed is re-opened
and checked against what was posted meanwhile."""
from __future__ import annotations

import asyncio
import time

import pytest
from django.db import connection, connections

from messaging.services import message_post
from orkiva.mcp.waiting import ThreadWatcher
from tests.factories import ThreadFactory

pytestmark = [pytest.mark.postgres_only, pytest.mark.django_db(transaction=True)]

SLOW_POLL = 60  # seconds: longer than any wait here, so only NOTIFY (or a check it asked for) wakes


def post_elsewhere(**kwargs) -> None:
    """A post on a thread of its own, with its own connection (another bridge process, in effect)."""
    try:
        message_post(**kwargs)
    finally:
        connections.close_all()


async def _until(predicate, what: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"never: {what}"
        await asyncio.sleep(0.01)


def test_a_commit_elsewhere_wakes_the_waiter_through_notify(coordinator, executioner):
    thread = ThreadFactory(coordinator=coordinator)

    async def scenario():
        watcher = ThreadWatcher(poll_seconds=SLOW_POLL, listen=True)
        watcher.start_listening()
        await _until(lambda: watcher.listening, "listening")
        waiting = asyncio.create_task(watcher.wait(thread_id=thread.pk, after_seq=0, timeout=30))
        await asyncio.sleep(0.2)
        checks = watcher.checks
        await asyncio.to_thread(post_elsewhere, actor=executioner, thread_id=thread.pk, body="hello")
        woken = await asyncio.wait_for(waiting, timeout=20)  # far below SLOW_POLL and the wait's 30 s
        await watcher.aclose()
        return woken, watcher.checks - checks

    woken, checks_meanwhile = asyncio.run(scenario())
    assert woken is True and checks_meanwhile == 0  # no query: the notification said which thread moved


def test_a_post_between_the_read_and_the_registration_is_not_lost(coordinator, executioner):
    """A waiter reads (nothing new), a post commits and is announced, then the waiter registers:
    the watcher remembers the seq announced and the registration returns at once."""
    thread = ThreadFactory(coordinator=coordinator)

    async def scenario():
        watcher = ThreadWatcher(poll_seconds=SLOW_POLL, listen=True)
        watcher.start_listening()
        await _until(lambda: watcher.listening, "listening")
        await asyncio.to_thread(post_elsewhere, actor=executioner, thread_id=thread.pk, body="in the window")
        await _until(lambda: watcher._latest.get(thread.pk) == 1, "the notification")
        started = time.monotonic()
        woken = await watcher.wait(thread_id=thread.pk, after_seq=0, timeout=30)
        await watcher.aclose()
        return woken, time.monotonic() - started

    woken, waited = asyncio.run(scenario())
    assert woken is True and waited < 5


def test_a_lost_listener_reconnects_and_finds_what_was_posted_meanwhile(coordinator, executioner):
    """The listening connection is terminated by the server (as a restart does). While it is away a
    post commits: its NOTIFY reaches nobody. Listening again, the watcher checks every watched
    thread once, so the waiter is woken with no help from polling."""
    thread = ThreadFactory(coordinator=coordinator)

    async def scenario():
        watcher = ThreadWatcher(poll_seconds=SLOW_POLL, listen=True)
        waiting = asyncio.create_task(watcher.wait(thread_id=thread.pk, after_seq=0, timeout=40))
        await _until(lambda: watcher.listening, "listening")
        listener = watcher.listener
        pid = listener.backend_pid()
        # Block the listener's reconnection until the post has committed: its NOTIFY is lost.
        await asyncio.to_thread(_terminate_and_post, pid, executioner, thread.pk, listener)
        await _until(lambda: listener.connects == 2 and listener.listening, "listening again")
        woken = await asyncio.wait_for(waiting, timeout=20)
        await watcher.aclose()
        return woken, listener.connects

    woken, connects = asyncio.run(scenario())
    assert woken is True and connects == 2


def _terminate_and_post(pid: int, actor, thread_id, listener) -> None:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
        deadline = time.monotonic() + 10
        while listener.listening:  # the loss is seen
            assert time.monotonic() < deadline
            time.sleep(0.01)
        message_post(actor=actor, thread_id=thread_id, body="while nobody listened")
    finally:
        connections.close_all()


def test_a_post_nobody_heard_before_the_listener_came_back_is_found_for_a_waiter_that_read_meanwhile(
        coordinator, executioner):
    """A waiter reads while its process is not yet listening (a worker starting, a database
    restart); a post commits, its NOTIFY heard by nobody; the listener comes up and makes its one
    check while the waiter is not registered yet. Registering with the ticket it took before its
    read, the waiter asks for one more check, and is woken: not left until its timeout."""
    thread = ThreadFactory(coordinator=coordinator)

    async def scenario():
        watcher = ThreadWatcher(poll_seconds=SLOW_POLL, listen=True)
        ticket = watcher.ticket()  # taken before the (empty) read: not listening
        await asyncio.to_thread(post_elsewhere, actor=executioner, thread_id=thread.pk, body="unheard")
        watcher.start_listening()
        await _until(lambda: watcher.listening, "listening")
        await asyncio.sleep(0.2)  # its check of the watched threads (none yet) is done
        started = time.monotonic()
        woken = await watcher.wait(thread_id=thread.pk, after_seq=0, timeout=30, since=ticket)
        await watcher.aclose()
        return woken, time.monotonic() - started

    woken, waited = asyncio.run(scenario())
    assert woken is True and waited < 10  # far below the wait's 30 s and the poll's 60
