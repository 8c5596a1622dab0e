"""RedisReplayCache: the DPoP replay cache that several replicas share.

Needs the ``redis`` extra (``pip install "keycloak-m2m[redis]"``)::

    validator = TokenValidator(issuer, audience, replay_cache=RedisReplayCache("redis://cache:6379/0"))

A proof is accepted once across every replica that shares the Redis: its first use is one
``SET key 1 NX EX ttl``, atomic on the server. What happens while Redis cannot be reached is
this cache's setting: ``on_error="refuse"`` (the default) answers 503, since a proof whose first
use cannot be established could be a replay; ``"allow"`` accepts it, trading replay protection
for availability during the outage.
"""

from __future__ import annotations

import asyncio
import logging
import math
import weakref
from typing import Final, Literal

try:
    import redis
    import redis.asyncio
except ImportError as missing:  # pragma: no cover - depends on the environment
    raise ImportError(
        'keycloak_m2m.redis needs redis-py: pip install "keycloak-m2m[redis]"'
    ) from missing

from ._errors import ReplayCacheUnavailable
from ._options import is_number, require

__all__ = ["RedisReplayCache"]

OnError = Literal["refuse", "allow"]

_log = logging.getLogger(__name__)
_DEFAULT_PREFIX: Final = "keycloak-m2m:dpop:"


class RedisReplayCache:
    """A ``ReplayCache`` in Redis, for ``TokenValidator(..., replay_cache=...)``.

    ``source`` is a ``redis://`` (or ``rediss://``, ``unix://``) URL, from which a sync client
    and, per event loop, an asyncio client are made with ``timeout`` seconds for connecting and
    for each command; or a redis-py client you configured: a ``redis.Redis`` (the async driver
    then runs its commands in a worker thread) or a ``redis.asyncio.Redis`` (for
    ``validate_async`` only). Keys are ``prefix`` followed by the proof key's thumbprint and the
    proof's ``jti``.
    """

    def __init__(
        self,
        source: str | redis.Redis | redis.asyncio.Redis,
        *,
        on_error: OnError = "refuse",
        prefix: str = _DEFAULT_PREFIX,
        timeout: float = 1.0,
    ) -> None:
        if on_error not in ("refuse", "allow"):
            raise ValueError("on_error must be 'refuse' or 'allow'")
        require(is_number(timeout) and timeout > 0, "timeout must be a number > 0")
        self._on_error: OnError = on_error
        self._prefix = prefix
        self._url: str | None = None
        self._sync: redis.Redis | None = None
        self._async: redis.asyncio.Redis | None = None
        self._timeout = float(timeout)
        # One asyncio client per event loop: redis-py's connections belong to the loop that
        # opened them.
        self._per_loop: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, redis.asyncio.Redis
        ] = weakref.WeakKeyDictionary()
        if isinstance(source, str):
            self._url = source
            self._sync = redis.Redis.from_url(
                source, socket_timeout=self._timeout, socket_connect_timeout=self._timeout
            )
        elif isinstance(source, redis.asyncio.Redis):
            self._async = source
        elif isinstance(source, redis.Redis):
            self._sync = source
        else:
            raise TypeError("source must be a redis:// URL, a redis.Redis or a redis.asyncio.Redis")

    def __repr__(self) -> str:
        return f"RedisReplayCache(prefix={self._prefix!r}, on_error={self._on_error!r})"

    def first_use(self, key: str, ttl: float) -> bool:
        if self._sync is None:
            raise TypeError("this RedisReplayCache has an asyncio client: use validate_async")
        try:
            return bool(self._sync.set(self._prefix + key, b"1", nx=True, ex=_seconds(ttl)))
        except redis.RedisError as error:
            return self._unavailable(error)

    async def first_use_async(self, key: str, ttl: float) -> bool:
        client = self._async_client()
        if client is None:
            # A sync client the caller gave: its blocking round trip goes to a worker thread.
            return await asyncio.to_thread(self.first_use, key, ttl)
        try:
            stored = await client.set(self._prefix + key, b"1", nx=True, ex=_seconds(ttl))
        except redis.RedisError as error:
            return self._unavailable(error)
        return bool(stored)

    def _async_client(self) -> redis.asyncio.Redis | None:
        if self._async is not None or self._url is None:
            return self._async
        loop = asyncio.get_running_loop()
        client = self._per_loop.get(loop)
        if client is None:
            client = self._per_loop[loop] = redis.asyncio.Redis.from_url(
                self._url, socket_timeout=self._timeout, socket_connect_timeout=self._timeout
            )
        return client

    def close(self) -> None:
        """Close the sync client made from the URL (a client you gave stays yours)."""
        if self._url is not None and self._sync is not None:
            self._sync.close()

    async def aclose(self) -> None:
        """Close the asyncio client made from the URL for the running event loop, e.g. in the
        app's shutdown (a client you gave stays yours)."""
        if self._url is None:
            return
        client = self._per_loop.pop(asyncio.get_running_loop(), None)
        if client is not None:
            await client.aclose()

    def _unavailable(self, error: redis.RedisError) -> bool:
        if self._on_error == "allow":
            _log.warning("DPoP replay cache unreachable (%s); accepting the proof", type(error))
            return True
        _log.warning("DPoP replay cache unreachable (%s); refusing the proof", type(error))
        # Redis outages are usually short: a client may try again in a second.
        raise ReplayCacheUnavailable(retry_after=1.0) from error


def _seconds(ttl: float) -> int:
    # EX takes whole seconds; rounding up never forgets a proof early.
    return max(1, math.ceil(ttl))
