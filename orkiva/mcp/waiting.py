"""wait_for_messages without a database connection or a query per waiting client.

One `ThreadWatcher` per event loop (the HTTP adapter's loop, or the stdio server's). A waiting
call registers (thread, after_seq) and sleeps on a future. While anyone waits, the watcher reads
`Thread.last_seq` of every watched thread in one query per poll interval
(ORKIVA_MCP_WAIT_POLL_SECONDS), on its own single thread and its one connection, and wakes the
waiters whose thread moved past their seq. A post made through this process's MCP tools pokes
the watcher so it checks at once; posts from other processes (REST, other workers) are seen at
the next poll. The cost is one cheap query per interval per process, whatever the number of
waiters; a waiter costs a future and a dict entry.
"""
from __future__ import annotations

import asyncio
import contextvars
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import structlog
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import close_old_connections

from orkiva import observability

T = TypeVar("T")
logger = structlog.get_logger("orkiva.mcp")


def _last_seqs(thread_ids: list[uuid.UUID]) -> dict[uuid.UUID, int]:
    from threads.models import Thread

    close_old_connections()
    try:
        return dict(Thread.objects.filter(pk__in=thread_ids).values_list("pk", "last_seq"))
    finally:
        close_old_connections()


class ThreadWatcher:
    def __init__(self, *, poll_seconds: float | None = None) -> None:
        self.poll_seconds = poll_seconds
        self._waiters: dict[uuid.UUID, list[tuple[int, asyncio.Future]]] = {}
        self._task: asyncio.Task | None = None
        self._poked: asyncio.Event | None = None
        # The watcher's queries run here, never on a request's thread: one connection for all waiters.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="orkiva-mcp-watch")
        self.checks = 0  # checks started

    @property
    def waiting(self) -> int:
        return sum(len(entries) for entries in self._waiters.values())

    def poke(self) -> None:
        """Something changed in this process (a post committed): check now rather than at the next poll."""
        if self._poked is not None:
            self._poked.set()

    async def wait(self, *, thread_id: uuid.UUID, after_seq: int, timeout: float) -> bool:
        """True once the thread has a message after `after_seq`, False after `timeout` seconds."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future = loop.create_future()
        entry = (after_seq, future)
        self._waiters.setdefault(thread_id, []).append(entry)
        if self._task is None or self._task.done():
            self._poked = asyncio.Event()
            # A fresh context: the watcher outlives the call that started it and must not run
            # its queries on that call's request thread.
            self._task = loop.create_task(self._run(), context=contextvars.Context())
        observability.mcp_waiter_started()
        try:
            done, _ = await asyncio.wait({future}, timeout=timeout)
            return bool(done)
        finally:
            observability.mcp_waiter_finished()
            entries = self._waiters.get(thread_id, [])
            if entry in entries:
                entries.remove(entry)
            if not entries:
                self._waiters.pop(thread_id, None)

    async def aclose(self) -> None:
        """Close the watcher's database connection and its thread (a loop that is ending)."""
        await sync_to_async(release_connections, thread_sensitive=False, executor=self._executor)()
        self._executor.shutdown(wait=False)

    async def _run(self) -> None:
        poll = self.poll_seconds or settings.ORKIVA_MCP_WAIT_POLL_SECONDS
        assert self._poked is not None
        while self._waiters:
            watched = list(self._waiters)
            self.checks += 1
            try:
                seqs = await sync_to_async(_last_seqs, thread_sensitive=False, executor=self._executor)(watched)
            except Exception:
                # The database is unreachable (a failover, say). Wake the waiters: their own read
                # answers them (with the data, or the failure), and the watcher keeps going.
                logger.warning("mcp_watcher_check_failed", watched=len(watched), exc_info=True)
                seqs = None
            # Only the threads this query looked at: a waiter that registered meanwhile waits for the next one.
            for thread_id in watched:
                entries = self._waiters.get(thread_id, [])
                last_seq = seqs.get(thread_id) if seqs is not None else None
                for after_seq, future in entries:
                    # A vanished thread (or a failed check) wakes its waiters too: their next read reports it.
                    if (last_seq is None or last_seq > after_seq) and not future.done():
                        future.set_result(True)
            try:
                await asyncio.wait_for(self._poked.wait(), timeout=poll)
            except TimeoutError:
                pass
            self._poked.clear()


_slots_lock = threading.Lock()
_slots: threading.BoundedSemaphore | None = None


def with_db_slot(fn: Callable[..., T]) -> Callable[..., T]:
    """`fn` (a wait's read, run on its request thread) inside one of the process's
    ORKIVA_MCP_WAIT_DB_SLOTS, its connection closed before the slot is given back: however many
    waiters wake at once, their reads use at most that many connections."""
    global _slots
    if _slots is None:
        with _slots_lock:
            if _slots is None:
                _slots = threading.BoundedSemaphore(settings.ORKIVA_MCP_WAIT_DB_SLOTS)

    def run(*args, **kwargs) -> T:
        with _slots:
            try:
                return fn(*args, **kwargs)
            finally:
                release_connections()

    return run


def release_connections() -> None:
    """Close this thread's database connections (a waiting call holds none)."""
    from django.db import connections

    for conn in connections.all(initialized_only=True):
        if not conn.in_atomic_block:
            conn.close()


_watchers: dict[asyncio.AbstractEventLoop, ThreadWatcher] = {}


def watcher() -> ThreadWatcher:
    """The watcher of the running event loop."""
    loop = asyncio.get_running_loop()
    if loop not in _watchers:
        _watchers[loop] = ThreadWatcher()
    return _watchers[loop]
