"""An asyncio lock per event loop, for the async drivers.

An asyncio.Lock belongs to the event loop it is first used in, while a validator or a set of
credentials may outlive a loop (tests, command-line runs, restarted workers).
"""

from __future__ import annotations

import asyncio
import weakref


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
