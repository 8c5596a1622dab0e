"""Where DPoP proofs are remembered so that each is accepted once (RFC 9449 section 11.1).

A ``ReplayCache`` answers one question: is this the first use of ``key`` within ``ttl``
seconds, and if so remember it. The default keeps entries in this process's memory; a service
with several replicas needs one store they all see (``keycloak_m2m.redis.RedisReplayCache``).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Protocol, runtime_checkable

__all__ = ["MemoryReplayCache", "ReplayCache"]


@runtime_checkable
class ReplayCache(Protocol):
    def first_use(self, key: str, ttl: float) -> bool:
        """Remember ``key`` for ``ttl`` seconds; False if it was remembered already."""
        ...

    async def first_use_async(self, key: str, ttl: float) -> bool:
        """``first_use`` without blocking the event loop."""
        ...


class MemoryReplayCache:
    """This process's proofs, bounded and expiring: the default, right for one replica.

    Entries expire in the order they were added (every entry of one validator has about the
    same lifetime), so dropping expired ones is a look at the oldest. When ``max_entries`` live
    proofs are held the oldest is forgotten: size it above the proofs one replica accepts per
    ``dpop_max_age``.
    """

    def __init__(
        self, max_entries: int = 100_000, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if type(max_entries) is not int or max_entries <= 0:
            raise ValueError("max_entries must be an integer > 0")
        self._max_entries = max_entries
        self._clock = clock
        self._expiry: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    def first_use(self, key: str, ttl: float) -> bool:
        now = self._clock()
        with self._lock:
            expiry = self._expiry
            while expiry:
                oldest = next(iter(expiry.values()))
                if oldest > now:
                    break
                expiry.popitem(last=False)
            seen = expiry.get(key)
            if seen is not None and seen > now:
                return False
            expiry[key] = now + ttl
            if len(expiry) > self._max_entries:
                expiry.popitem(last=False)
            return True

    async def first_use_async(self, key: str, ttl: float) -> bool:
        # A dictionary update under a lock no one holds for long: nothing to wait for.
        return self.first_use(key, ttl)
