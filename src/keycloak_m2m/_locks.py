"""What the async drivers share: an asyncio lock per event loop, and work that outlives a caller.

An asyncio.Lock belongs to the event loop it is first used in, while a validator or a set of
credentials may outlive a loop (tests, command-line runs, restarted workers).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import weakref
from collections.abc import AsyncIterator, Coroutine, Iterator
from typing import Any, TypeVar

_T = TypeVar("_T")
# The event loop keeps only weak references to tasks: these must not vanish mid-exchange.
_shared_tasks: set[asyncio.Task[Any]] = set()


class LoopLocks:
    def __init__(self) -> None:
        self._locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
            weakref.WeakKeyDictionary()
        )

    def current(self) -> asyncio.Lock:
        """The lock of the running event loop."""
        loop = asyncio.get_running_loop()
        lock = self._locks.get(loop)
        if lock is None:
            lock = self._locks[loop] = asyncio.Lock()
        return lock


class KeyedLocks:
    """A lock per key (a token) for the sync driver, forgotten once nobody holds or awaits it:
    concurrent checks of one token share one request, checks of different tokens do not wait
    for each other."""

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._locks: dict[str, tuple[threading.Lock, int]] = {}

    @contextlib.contextmanager
    def hold(self, key: str) -> Iterator[None]:
        with self._mutex:
            lock, users = self._locks.get(key) or (threading.Lock(), 0)
            self._locks[key] = (lock, users + 1)
        try:
            with lock:
                yield
        finally:
            with self._mutex:
                lock, users = self._locks[key]
                if users == 1:
                    del self._locks[key]
                else:
                    self._locks[key] = (lock, users - 1)


class AsyncKeyedLocks:
    """``KeyedLocks`` for the async driver: an asyncio lock per key and event loop."""

    def __init__(self) -> None:
        self._loops: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, dict[str, tuple[asyncio.Lock, int]]
        ] = weakref.WeakKeyDictionary()

    @contextlib.asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        # One loop's tasks run one at a time: no other lock is needed around the dictionary.
        loop = asyncio.get_running_loop()
        locks = self._loops.get(loop)
        if locks is None:
            locks = self._loops[loop] = {}
        lock, users = locks.get(key) or (asyncio.Lock(), 0)
        locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = locks[key]
            if users == 1:
                del locks[key]
            else:
                locks[key] = (lock, users - 1)


async def shared(work: Coroutine[Any, Any, _T]) -> _T:
    """Await work that other callers share (a key fetch, a token request) as a task of its own.

    A caller cancelled meanwhile (a client disconnect, an application's ``wait_for``) stops
    waiting, but the work runs on under its lock, bounded by its own deadline, and records its
    outcome: the callers queued behind it, and the next ones, use that outcome instead of making
    the request again.
    """
    task = asyncio.ensure_future(work)
    _shared_tasks.add(task)
    task.add_done_callback(_shared_tasks.discard)
    return await asyncio.shield(task)
