"""The verified-token cache: what a validation concluded, kept for the token's next request.

No I/O and no locks: lookups are safe from any thread as they are; the validator serialises the
changes (``keep``, ``drop``) with a lock of its own, which keeps the byte count exact.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Final, NamedTuple, Protocol

from ._binding import ClientCertificate, matches
from ._jose import VerificationKey
from ._principal import Principal

# Hashing a whole 1.4 KB token costs more than the rest of a cache hit. The end of its signature
# is as distinctive (192 bits here), and a hit is trusted only after the whole stored token
# compares equal, so a token sharing that end with a verified one is merely a miss.
_KEY_CHARS = 32
# HTTP header values are bytes, read as latin-1 wherever a framework hands them over as text
# (RFC 9110 section 5.5); the cache holds each token in that form, so a request's header is
# looked up as it came.
HEADER_ENCODING: Final = "latin-1"
# What an entry costs beyond its token, measured with tracemalloc on Keycloak
# service-account tokens (benchmarks/validate.py): about 0.8 KB, and about 1.3 times the token's
# length more once the application has read ``principal.claims``. Counted from above.
_ENTRY_BYTES = 2048
_CLAIMS_BYTES_PER_TOKEN_BYTE = 2


class Verified(NamedTuple):
    """A verdict: a tuple, as it is made on every first sight of a token."""

    token: bytes  # as a header carries it (raw_token)
    principal: Principal
    key: VerificationKey | None  # None: an opaque token, vouched for by introspection alone
    valid_until: float  # on the validator's steady clock
    certificate: str | None  # the thumbprint of the certificate the token is bound to
    introspected: bool
    # The thumbprint of the DPoP key the token is bound to (None: not DPoP-bound), and whether
    # the token passes without a proof, which is all a cache hit of a bearer token reads.
    jkt: str | None
    bearer: bool
    # What a proof's ath must be: the token's hash, computed once per token, not per request.
    ath: str | None


def holds(entry: Verified, now: float) -> bool:
    """Whether the verification ``entry`` records still holds at ``now`` (steady clock): the
    token's time is not up and its key was not removed from the key set."""
    return now < entry.valid_until and (entry.key is None or not entry.key.retired)


def fits(entry: Verified, certificate: ClientCertificate | None, introspect: bool) -> bool:
    """Whether ``entry`` answers for its token as a request presented it: with the certificate
    it is bound to, and introspected when the request asks for that."""
    if entry.certificate is not None and not matches(entry.certificate, certificate):
        return False
    return entry.introspected or not introspect


def token_key(token: str) -> str:
    """What a token is cached (and its per-token locks are held) under: its signature's end.
    Every per-token cache and lock of the package keys by this, or by ``raw_key``."""
    return token[-_KEY_CHARS:]


def raw_key(token: bytes, start: int = 0) -> bytes:
    """``token_key`` of a token held as the bytes of its header: the verified-token cache's.
    ``start``: the token is ``token[start:]`` (see ``VerifiedTokens.get``)."""
    return token[max(start, len(token) - _KEY_CHARS) :]


def raw_token(token: object) -> bytes | None:
    """``token`` as the bytes a header carries it in, or None for what cannot be a token: a str
    with a character no header byte stands for, or neither a str nor bytes."""
    if type(token) is bytes:
        return token
    if type(token) is str:
        try:
            return token.encode(HEADER_ENCODING)
        except UnicodeEncodeError:
            return None
    return None


def entry_bytes(token: bytes) -> int:
    """What one entry is counted as against the cache's byte bound, its token included."""
    return (1 + _CLAIMS_BYTES_PER_TOKEN_BYTE) * len(token) + _ENTRY_BYTES


class VerifiedTokens:
    """Verdicts by token, least recently used evicted first once either bound is reached: at most
    ``max_entries`` entries and ``max_bytes`` bytes as ``entry_bytes`` counts them."""

    __slots__ = ("_entries", "bytes", "max_bytes", "max_entries")

    def __init__(self, max_entries: int, max_bytes: int) -> None:
        self._entries: OrderedDict[bytes, Verified] = OrderedDict()
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, token: bytes, start: int = 0) -> Verified | None:
        """The entry of exactly ``token[start:]``, now the most recently used, or None. The
        token is compared where it is: a header's value with its scheme before the token
        costs no copy of it."""
        key = raw_key(token, start)
        entry = self._entries.get(key)
        if entry is None:
            return None
        stored = entry.token
        if len(stored) != len(token) - start or not token.endswith(stored):
            return None
        try:
            self._entries.move_to_end(key)
        except KeyError:  # dropped by another thread meanwhile
            pass
        return entry

    def keep(self, entry: Verified) -> None:
        """Store ``entry``, evicting the least recently used ones beyond either bound. An entry
        too large for the byte bound on its own is not kept."""
        cost = entry_bytes(entry.token)
        if not self.max_entries or cost > self.max_bytes:
            return
        self.drop(entry.token)
        self._entries[raw_key(entry.token)] = entry
        self.bytes += cost
        entries = self._entries
        while len(entries) > self.max_entries or self.bytes > self.max_bytes:
            _, evicted = entries.popitem(last=False)
            self.bytes -= entry_bytes(evicted.token)

    def drop(self, token: bytes) -> None:
        """Forget the entry stored under ``token``'s key, if any."""
        evicted = self._entries.pop(raw_key(token), None)
        if evicted is not None:
            self.bytes -= entry_bytes(evicted.token)


class PrincipalLookup(Protocol):
    """``TokenValidator.cached``, and what telemetry puts in front of it: ``token`` as a str or
    as the bytes of a request's header (``raw_token``), the token being ``token[start:]``."""

    def __call__(
        self,
        token: str | bytes,
        client_certificate: ClientCertificate | None = None,
        introspect: bool = False,
        start: int = 0,
    ) -> Principal | None: ...


class CachedPrincipals:
    """``TokenValidator.cached``: the principal of a bearer token whose verdict the cache holds,
    while the verdict holds and fits how the token came (``holds``, ``fits``); else None. It
    drops nothing: a stale entry goes when the validation that follows the miss finds it.
    Compiled in the compiled build, as it runs on every request of a cached token."""

    __slots__ = ("_steady", "_tokens")

    def __init__(self, tokens: VerifiedTokens, steady: Callable[[], float]) -> None:
        self._tokens = tokens
        self._steady = steady

    def __call__(
        self,
        token: object,
        client_certificate: ClientCertificate | None = None,
        introspect: bool = False,
        start: object = 0,
    ) -> Principal | None:
        # ``object``: compiled, a typed parameter would raise TypeError for what any caller may
        # pass; anything else is merely not in the cache. Bytes, as the request step passes a
        # header's value, are looked up as they are, the token from ``start`` on.
        raw = raw_token(token)
        if raw is None or type(start) is not int or not 0 <= start < len(raw):
            return None  # input the full path will refuse
        entry = self._tokens.get(raw, start)
        if entry is None or not entry.bearer or not holds(entry, self._steady()):
            return None
        return entry.principal if fits(entry, client_certificate, introspect) else None
