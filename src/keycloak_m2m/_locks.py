"""What the async drivers share: an asyncio lock per event loop, and work that outlives a caller.

An asyncio.Lock belongs to the event loop it is first used in, while a validator or a set of
credentials may outlive a loop (tests, command-line runs, restarted workers).
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Coroutine
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
