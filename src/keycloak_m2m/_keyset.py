"""The key-cache policy: which keys to trust now, and when a fetch is due. No I/O, no locks.

A driver asks ``select``; a ``FetchDue`` means "fetch the key set first". The driver fetches under
its own lock, hands the outcome to ``record_document`` or ``record_failure``, then asks
``select_settled``.

The refetch limit exists to stop storms of unknown ``kid``s, so only the fetches that an unknown
``kid`` set off, and failed fetches, count towards it. A routine fetch that succeeds (the first one,
a refresh after the TTL) does not: the first token signed with a key published just after it is
answered with one fetch, not refused until the interval has passed.
State lives in one immutable snapshot that is swapped whole, so readers never see half an update
and need no lock.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

from ._errors import KeysUnavailable, UnknownKey
from ._jose import UnusableKey, VerificationKey, load_jwk

logger = logging.getLogger("keycloak_m2m")

_NEVER = float("-inf")


@dataclass(frozen=True, slots=True)
class KeyCachePolicy:
    """How long keys are trusted and how often the key endpoint may be asked."""

    ttl: float = 300.0
    refetch_interval: float = 30.0
    max_stale: float = 3600.0


@dataclass(frozen=True, slots=True)
class _Snapshot:
    keys: tuple[VerificationKey, ...] = ()
    # (kid, alg) -> keys to try; kid None lists every key fitting alg, for tokens without a kid.
    index: Mapping[tuple[str | None, str], tuple[VerificationKey, ...]] = field(
        default_factory=dict
    )
    fetched_at: float = _NEVER
    # The last fetch that counts towards the refetch limit: set off by an unknown kid, or failed.
    limited_at: float = _NEVER
    attempts: int = 0


@dataclass(frozen=True, slots=True)
class FetchDue:
    """The key set must be fetched before this token can be checked."""

    # The fetch count seen, so a driver that waited for its lock skips a fetch made meanwhile.
    attempts: int
    # Set off by a kid (and alg) that the key set, once fetched, lacks: the fetch counts towards
    # the refetch limit.
    for_unknown_kid: bool


class KeySet:
    """The cached key set of one issuer and the policy that governs it."""

    def __init__(self, policy: KeyCachePolicy) -> None:
        self.policy = policy
        self._state = _Snapshot()

    @property
    def attempts(self) -> int:
        """How many fetches were recorded; a driver compares it to skip a fetch another made."""
        return self._state.attempts

    @property
    def fresh_until(self) -> float:
        return self._state.fetched_at + self.policy.ttl

    @property
    def keys(self) -> tuple[VerificationKey, ...]:
        return self._state.keys

    def select(
        self, kid: str | None, alg: str, now: float
    ) -> tuple[VerificationKey, ...] | FetchDue:
        """The keys to try for a token, or FetchDue when the key set should be fetched first."""
        state = self._state
        keys = state.index.get((kid, alg))
        if keys is not None and now < state.fetched_at + self.policy.ttl:
            return keys  # the common case: a known key in a fresh key set
        if now >= state.limited_at + self.policy.refetch_interval:
            # Stale, cold, or an unknown kid: and a fetch is allowed now. At a cold start every
            # kid is unknown, and that first fetch is routine.
            return FetchDue(state.attempts, for_unknown_kid=keys is None and bool(state.keys))
        return self.select_settled(kid, alg, now)

    def select_settled(self, kid: str | None, alg: str, now: float) -> tuple[VerificationKey, ...]:
        """The keys to try when no fetch may be made now (one was just made, or rate limited)."""
        state = self._state
        policy = self.policy
        if now >= state.fetched_at + policy.ttl + policy.max_stale:
            raise KeysUnavailable(
                retry_after=max(1.0, state.limited_at + policy.refetch_interval - now)
            )
        keys = state.index.get((kid, alg))
        if keys is None:
            # Until the next allowed fetch an unknown kid is answered from here, so a storm of
            # random kids costs the issuer nothing.
            raise UnknownKey()
        return keys

    def record_failure(self, now: float, reason: str) -> None:
        """A failed fetch: it counts towards the refetch limit, whatever set it off."""
        logger.warning("key set fetch failed (%s); keeping %d cached keys", reason, len(self.keys))
        state = self._state
        self._state = _Snapshot(state.keys, state.index, state.fetched_at, now, state.attempts + 1)

    def record_document(self, document: bytes, now: float, due: FetchDue) -> bool:
        """Adopt a fetched key set (True); one that yields no usable signing key counts as a
        failure (False)."""
        try:
            jwks = json.loads(document)
        except (ValueError, RecursionError):
            self.record_failure(now, "not JSON")
            return False
        entries = jwks.get("keys") if isinstance(jwks, dict) else None
        if not isinstance(entries, list):
            self.record_failure(now, "no keys member")
            return False
        keys = self._load(entries)
        if not keys:
            self.record_failure(now, "no usable signing key")
            return False
        state = self._state
        limited_at = now if due.for_unknown_kid else state.limited_at
        self._state = _Snapshot(keys, _index(keys), now, limited_at, state.attempts + 1)
        previous = state.keys
        for key in previous:
            if key not in keys:
                key.retired = True
        logger.debug("key set refreshed: %d signing keys", len(keys))
        return True

    def _load(self, entries: list[object]) -> tuple[VerificationKey, ...]:
        # Keeping the object of a key that stays lets verified tokens survive the refresh.
        known = {key.fingerprint: key for key in self._state.keys}
        keys: dict[tuple[object, ...], VerificationKey] = {}
        for entry in entries:
            try:
                key = load_jwk(entry)
            except UnusableKey as error:
                logger.debug("skipping a key of the key set: %s", error)
                continue
            keys.setdefault(key.fingerprint, known.get(key.fingerprint, key))
        return tuple(keys.values())


def _index(
    keys: tuple[VerificationKey, ...],
) -> dict[tuple[str | None, str], tuple[VerificationKey, ...]]:
    index: dict[tuple[str | None, str], tuple[VerificationKey, ...]] = {}
    for key in keys:
        for alg in key.algorithms:
            for kid in {key.kid, None}:
                index[(kid, alg)] = (*index.get((kid, alg), ()), key)
    return index
