"""wait_for_messages without a database connection, a thread or a query per waiting client.

One `ThreadWatcher` per event loop (an ASGI worker's, the WSGI adapter's, the stdio server's). A
waiting call registers (thread, after_seq) and sleeps on a future; the watcher wakes it once the
thread moved past its seq. It learns that three ways:

- **LISTEN/NOTIFY** (PostgreSQL, `ORKIVA_MCP_LISTEN`): every stored message's insert also
  NOTIFYs channel `orkiva_thread` with '<thread id>:<seq>', delivered at commit to every process
  listening. One `PostListener` per process holds one connection in LISTEN; a post
  committed through any bridge process wakes this process's waiters at once. Lost (a database
  restart, a failover), the listener reconnects with backoff; meanwhile the watcher polls, and
  once it listens again it checks every watched thread, so a post made while it was away is
  found, never missed.
- **this process's own posts**, REST or MCP, from any thread, announced when they commit;
- **polling** otherwise (SQLite, or while the listener is away): one query for every watched
  thread per ORKIVA_MCP_WAIT_POLL_SECONDS, on the watcher's own thread and its one connection.

A post that lands between a waiter's read and its registration is not lost: the watcher keeps the
latest seq announced per thread and a registering waiter checks it first. A waiter costs a
future and a dict entry; a mass wake (one post, many waiters) is one event-loop pass, and the
reads of the waiters it woke are made together (`Together`): one trip to the database per thread,
not one per waiter.
"""
from __future__ import annotations

import asyncio
import contextlib
import contextvars
import threading
import uuid
from collections.abc import Awaitable, Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import structlog
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import close_old_connections

from messaging.signals import THREAD_CHANNEL, thread_advanced
from orkiva import observability
from orkiva.mcp.calls import database_trouble

T = TypeVar("T")
logger = structlog.get_logger("orkiva.mcp")

_LATEST_KEPT = 10_000  # threads whose latest announced seq is remembered (the read-to-register window)
_LISTEN_PING_SECONDS = 10  # how often an idle listener checks that its connection is still there


def _last_seqs(thread_ids: list[uuid.UUID]) -> dict[uuid.UUID, int]:
    from threads.models import Thread

    close_old_connections()
    try:
        return dict(Thread.objects.filter(pk__in=thread_ids).values_list("pk", "last_seq"))
    finally:
        close_old_connections()


class ThreadWatcher:
    def __init__(self, *, poll_seconds: float | None = None, listen: bool | None = None) -> None:
        self.poll_seconds = poll_seconds
        self._listen = listen
        self._waiters: dict[uuid.UUID, dict[asyncio.Future, int]] = {}  # thread -> {future: after_seq}
        self._latest: dict[uuid.UUID, int] = {}  # the newest seq announced per thread, oldest first
        self._task: asyncio.Task | None = None
        self._poked: asyncio.Event | None = None
        self.listener: PostListener | None = None
        # The watcher's queries run here, never on a request's thread: one connection for all waiters.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="orkiva-mcp-watch")
        self.checks = 0  # full checks started
        self.draining = False  # the worker is stopping: waits end now (drain)

    @property
    def waiting(self) -> int:
        return sum(map(len, self._waiters.values()))

    @property
    def listening(self) -> bool:
        return self.listener is not None and self.listener.listening

    def ticket(self) -> tuple[bool, int]:
        """Taken before a waiter's read, handed to `wait`: whether notifications were being heard
        then, and since which (re)connection. A post committed while nobody listened is found by
        the check the listener makes once it listens again, but only for threads watched by then."""
        return self.listening, self.listener.connects if self.listener is not None else 0

    def poke(self) -> None:
        """Check every watched thread now rather than at the next poll."""
        if self._poked is not None:
            self._poked.set()

    def advanced(self, thread_id: uuid.UUID, seq: int) -> None:
        """The thread has messages up to `seq` (a NOTIFY, or a post of this process): wake its waiters."""
        if seq <= self._latest.get(thread_id, 0):
            return
        self._latest.pop(thread_id, None)
        self._latest[thread_id] = seq
        if len(self._latest) > _LATEST_KEPT:
            del self._latest[next(iter(self._latest))]
        for future, after_seq in self._waiters.get(thread_id, {}).items():
            if after_seq < seq and not future.done():
                future.set_result(True)

    async def wait(self, *, thread_id: uuid.UUID, after_seq: int, timeout: float,
                   since: tuple[bool, int] | None = None) -> bool:
        """True once the thread has (or may have) a message after `after_seq`, False after
        `timeout` seconds. A True can be early: read to know. `since`: the `ticket()` taken before
        the read that gave `after_seq`; if listening began or resumed since, one check is made for
        what committed unheard between that read and this registration."""
        if self._latest.get(thread_id, 0) > after_seq:
            return True
        if self.draining:
            return False
        loop = asyncio.get_running_loop()
        future: asyncio.Future = loop.create_future()
        self._waiters.setdefault(thread_id, {})[future] = after_seq
        self._start(loop)
        if since is not None and since != self.ticket() and self.listening:
            self.poke()
        observability.mcp_waiter_started()
        expiry = loop.call_later(max(timeout, 0), _expire, future)
        try:
            return await future
        finally:
            expiry.cancel()
            observability.mcp_waiter_finished()
            entries = self._waiters.get(thread_id, {})
            entries.pop(future, None)
            if not entries:
                self._waiters.pop(thread_id, None)

    def drain(self) -> None:
        """The worker is stopping: every wait ends now, and any that starts ends at once. Each reads
        once more and answers with what is there (maybe nothing, as at a timeout), rather than be
        cut off when the graceful timeout runs out; the agent's next wait goes to a live worker."""
        self.draining = True
        for entries in self._waiters.values():
            for future in entries:
                if not future.done():
                    future.set_result(False)

    def start_listening(self) -> None:
        """Open the listener now (the ASGI lifespan's startup) rather than at the first wait."""
        self._start(asyncio.get_running_loop())

    def _start(self, loop: asyncio.AbstractEventLoop) -> None:
        # Fresh contexts: the watcher and the listener outlive the call that started them.
        if self.listener is None and self._wants_listener():
            self.listener = PostListener(self)
            self.listener.task = loop.create_task(self.listener.run(), context=contextvars.Context())
        if self._task is None or self._task.done():
            self._poked = asyncio.Event()
            self._task = loop.create_task(self._run(), context=contextvars.Context())

    def _wants_listener(self) -> bool:
        from django.db import connections

        listen = settings.ORKIVA_MCP_LISTEN if self._listen is None else self._listen
        return listen and connections["default"].vendor == "postgresql"

    async def aclose(self) -> None:
        """Stop listening and close the watcher's database connection and thread (a loop that ends)."""
        if self.listener is not None:
            await self.listener.aclose()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await sync_to_async(release_connections, thread_sensitive=False, executor=self._executor)()
        self._executor.shutdown(wait=False)

    async def _run(self) -> None:
        poll = self.poll_seconds or settings.ORKIVA_MCP_WAIT_POLL_SECONDS
        assert self._poked is not None
        due = not self.listening
        while self._waiters:
            if due:
                await self._check()
            try:
                await asyncio.wait_for(self._poked.wait(), timeout=poll)
                due = True
            except TimeoutError:
                due = not self.listening  # listening, nothing needs a query
            self._poked.clear()

    async def _check(self) -> None:
        watched = list(self._waiters)
        self.checks += 1
        try:
            seqs = await sync_to_async(_last_seqs, thread_sensitive=False, executor=self._executor)(watched)
        except Exception:
            # The database is unreachable (a restart, a failover): the waiters keep waiting, and the
            # next check (or the listener, once back) finds what was posted. Told "nothing new" only
            # at their timeout, they read then, and learn the data or the failure.
            database_trouble()
            logger.warning("mcp_watcher_check_failed", watched=len(watched), exc_info=True)
            return
        # Only the threads this query looked at: a waiter that registered meanwhile waits for the next one.
        for thread_id in watched:
            last_seq = seqs.get(thread_id)
            for future, after_seq in list(self._waiters.get(thread_id, {}).items()):
                # A vanished thread wakes its waiters too: their next read reports it.
                if (last_seq is None or last_seq > after_seq) and not future.done():
                    future.set_result(True)


def _expire(future: asyncio.Future) -> None:
    if not future.done():
        future.set_result(False)


class PostListener:
    """The process's one LISTEN connection (PostgreSQL), feeding its watcher (module docstring)."""

    def __init__(self, watcher: ThreadWatcher) -> None:
        self.watcher = watcher
        self.listening = False
        self.connects = 0  # connections made (1 + reconnections)
        self.task: asyncio.Task | None = None
        self._connection: Any = None

    async def run(self) -> None:
        import psycopg

        backoff = 0.1
        while True:
            try:
                connection = await psycopg.AsyncConnection.connect(**_listen_params(), autocommit=True)
            except Exception:
                logger.warning("mcp_listener_connect_failed", retry_in_seconds=backoff, exc_info=True)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            self._connection = connection
            try:
                await connection.execute(f"LISTEN {THREAD_CHANNEL}")
                self.connects += 1
                self.listening, backoff = True, 0.1
                logger.info("mcp_listener_listening", connects=self.connects)
                self.watcher.poke()  # whatever committed while nobody listened: one full check
                while True:
                    async for notify in connection.notifies(timeout=_LISTEN_PING_SECONDS):
                        self._deliver(notify.payload)
                    # Idle: is the connection still there? A half-open one (a network drop, no reset)
                    # would block for the kernel's retransmissions: bounded here, and by TCP keepalives.
                    await asyncio.wait_for(connection.execute("SELECT 1"), _LISTEN_PING_SECONDS / 2)
            except asyncio.CancelledError:
                raise
            except Exception:
                database_trouble()
                logger.warning("mcp_listener_lost", exc_info=True)
            finally:
                was_listening, self.listening, self._connection = self.listening, False, None
                if was_listening:
                    self.watcher.poke()  # poll until listening again
                try:
                    await connection.close()
                except Exception:
                    pass
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)

    def _deliver(self, payload: str) -> None:
        thread_id, _, seq = payload.partition(":")
        try:
            self.watcher.advanced(uuid.UUID(thread_id), int(seq))
        except ValueError:
            logger.warning("mcp_listener_bad_payload", payload=payload[:100])

    def backend_pid(self) -> int | None:
        """The listening connection's server process (tests end it to show the reconnection)."""
        return self._connection.info.backend_pid if self._connection is not None else None

    async def aclose(self) -> None:
        if self.task is not None:
            self.task.cancel()
            try:
                await self.task
            except asyncio.CancelledError:
                pass


def _listen_params() -> dict[str, Any]:
    """psycopg.connect()'s arguments for the default database, as Django would connect."""
    from django.db import connections

    params = connections["default"].get_connection_params()
    for django_only in ("cursor_factory", "context", "prepare_threshold"):
        params.pop(django_only, None)
    # TCP keepalives (libpq's): a listener whose server vanished without a reset learns it in
    # about 25 s while idle, rather than after the kernel's retransmissions (minutes).
    for name, value in (("keepalives", 1), ("keepalives_idle", 10), ("keepalives_interval", 5),
                        ("keepalives_count", 3)):
        params.setdefault(name, value)
    return params


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


class Together:
    """Calls for one key made in the same turn of the event loop, run as one: `run(key, item)`
    queues `item` and returns its result; once every call of that turn has queued (the waiters one
    post woke resume in the same turn), `batch(key, items)` runs once and returns a result per item.
    If the batch raises, every call of it raises that."""

    def __init__(self, batch: Callable[[Hashable, list], Awaitable[list]]) -> None:
        self._batch = batch
        self._pending: dict[Hashable, list[tuple[Any, asyncio.Future]]] = {}
        self._running: set[asyncio.Task] = set()

    async def run(self, key: Hashable, item: Any) -> Any:
        loop = asyncio.get_running_loop()
        future: asyncio.Future = loop.create_future()
        queue = self._pending.get(key)
        if queue is None:
            queue = self._pending[key] = []
            # Scheduled behind the calls already due this turn; in a context of its own (the batch
            # serves many requests: none of their request ids or call records is its own).
            loop.call_soon(self._flush, key, loop, context=contextvars.Context())
        queue.append((item, future))
        return await future

    def _flush(self, key: Hashable, loop: asyncio.AbstractEventLoop) -> None:
        task = loop.create_task(self._finish(key, self._pending.pop(key)))
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _finish(self, key: Hashable, queue: list[tuple[Any, asyncio.Future]]) -> None:
        try:
            results = await self._batch(key, [item for item, _ in queue])
        except Exception as exc:  # handed to every caller
            for _, future in queue:
                if not future.done():
                    future.set_exception(exc)
            return
        except BaseException:  # the loop is closing: so are the calls
            for _, future in queue:
                future.cancel()
            raise
        for (_, future), result in zip(queue, results, strict=True):
            if not future.done():  # a caller that went away (cancelled) is skipped
                future.set_result(result)


_watchers: dict[asyncio.AbstractEventLoop, ThreadWatcher] = {}


def watcher() -> ThreadWatcher:
    """The watcher of the running event loop."""
    loop = asyncio.get_running_loop()
    if loop not in _watchers:
        _watchers[loop] = ThreadWatcher()
    return _watchers[loop]


def drain_waiters() -> None:
    """End the running loop's waits now (a worker that begins to stop, orkiva.worker)."""
    found = _watchers.get(asyncio.get_running_loop())
    if found is not None:
        found.drain()


async def close_watcher() -> None:
    """End the running loop's watcher (the ASGI lifespan's shutdown)."""
    found = _watchers.pop(asyncio.get_running_loop(), None)
    if found is not None:
        await found.aclose()


def _announce(sender, *, thread_id: uuid.UUID, seq: int, **kwargs) -> None:
    """A post of this process committed (on any thread): tell every loop's watcher."""
    for loop, found in list(_watchers.items()):
        if not loop.is_closed():
            try:
                loop.call_soon_threadsafe(found.advanced, thread_id, seq)
            except RuntimeError:  # the loop closed meanwhile
                pass


thread_advanced.connect(_announce, weak=False, dispatch_uid="orkiva.mcp.waiting")
