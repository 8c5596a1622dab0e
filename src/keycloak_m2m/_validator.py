"""TokenValidator: one validation flow, driven by a sync and an async driver.

The flow (``_flow``) is a generator that does no I/O. When it needs the key set it yields a
``FetchDue``; the driver fetches under its own lock unless another caller already did, records the
outcome, and resumes the flow. The two drivers are the only code with locks and network access.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from ._claims import PROFILES, ClaimPolicy, Profile, check_claims
from ._errors import InvalidSignature
from ._http import FetchFailure, FetchPolicy, fetch, fetch_async, tls_context
from ._jose import (
    ASYMMETRIC_ALGORITHMS,
    DEFAULT_ALGORITHMS,
    Header,
    VerificationKey,
    b64url_decode,
    decode_json_object,
    json_parser,
    parse_header,
    split_token,
    verifying_key,
)
from ._keyset import FetchDue, KeyCachePolicy, KeySet
from ._locks import LoopLocks, shared
from ._principal import Principal
from ._steady import steady_clock

__all__ = ["DiscoveryError", "TokenValidator"]

_CERTS_PATH = "/protocol/openid-connect/certs"
_DISCOVERY_PATH = "/.well-known/openid-configuration"
# Distinct header segments seen in practice are a handful per issuer; the bound only stops a
# flood of crafted headers from growing memory.
_HEADER_CACHE_SIZE = 64
# Hashing a whole 1.4 KB token costs more than the rest of a cache hit. The end of its signature
# is as distinctive (192 bits here), and a hit is trusted only after the whole stored token
# compares equal, so a token sharing that end with a verified one is merely a miss.
_CACHE_KEY_CHARS = 32


class DiscoveryError(Exception):
    """The discovery document could not be fetched or does not describe the expected issuer."""


@dataclass(frozen=True, slots=True)
class _Verified:
    token: str
    principal: Principal
    key: VerificationKey
    valid_until: float


class TokenValidator:
    """Validates Keycloak (or RFC 9068) access tokens against one issuer.

    Thread-safe and task-safe: share one instance per issuer across the application.
    """

    def __init__(
        self,
        issuer: str,
        audience: str | Iterable[str],
        *,
        jwks_url: str | None = None,
        keycloak_url: str | None = None,
        allowed_clients: str | Iterable[str] | None = None,
        service_accounts_only: bool = True,
        profile: Profile = "keycloak",
        leeway: float = 30.0,
        algorithms: Iterable[str] = DEFAULT_ALGORITHMS,
        clock: Callable[[], float] = time.time,
        max_token_size: int = 16 * 1024,
        accept_duplicate_members: bool = False,
        jwks_ttl: float = 300.0,
        jwks_refetch_interval: float = 30.0,
        jwks_max_stale: float = 3600.0,
        jwks_timeout: float = 5.0,
        jwks_max_bytes: int = 256 * 1024,
        token_cache_size: int = 4096,
    ) -> None:
        _require(isinstance(issuer, str) and issuer != "", "issuer must be a non-empty string")
        audiences = _names("audience", audience)
        _require(bool(audiences), "audience must name at least one audience")
        _require(profile in PROFILES, f"profile must be one of {', '.join(PROFILES)}")
        self._algorithms = _allowed_algorithms(algorithms)
        for name, value in (
            ("leeway", leeway),
            ("jwks_refetch_interval", jwks_refetch_interval),
            ("jwks_max_stale", jwks_max_stale),
        ):
            _require(_is_number(value) and value >= 0, f"{name} must be a number >= 0")
        for name, value in (("jwks_ttl", jwks_ttl), ("jwks_timeout", jwks_timeout)):
            _require(_is_number(value) and value > 0, f"{name} must be a number > 0")
        for name, count in (("max_token_size", max_token_size), ("jwks_max_bytes", jwks_max_bytes)):
            _require(_is_count(count) and count > 0, f"{name} must be an integer > 0")
        _require(
            _is_count(token_cache_size) and token_cache_size >= 0,
            "token_cache_size must be an integer >= 0",
        )
        _require(callable(clock), "clock must be a callable returning the time in seconds")

        self._jwks_url = _key_set_url(issuer, jwks_url, keycloak_url)
        self._policy = ClaimPolicy(
            issuer=issuer,
            audiences=audiences,
            leeway=float(leeway),
            profile=profile,
            allowed_clients=(
                None if allowed_clients is None else _names("allowed_clients", allowed_clients)
            ),
            service_accounts_only=bool(service_accounts_only),
        )
        self._clock = clock  # claim times: instants of the wall clock
        self._steady = steady_clock(clock)  # TTLs, intervals, staleness, the token cache
        self._max_token_size = max_token_size
        self._parse_json = json_parser(accept_duplicate_members=accept_duplicate_members)
        self._keys = KeySet(
            KeyCachePolicy(
                ttl=float(jwks_ttl),
                refetch_interval=float(jwks_refetch_interval),
                max_stale=float(jwks_max_stale),
            )
        )
        self._fetch_policy = FetchPolicy(timeout=float(jwks_timeout), max_bytes=jwks_max_bytes)
        self._headers: dict[bytes, Header] = {}
        self._verified: OrderedDict[str, _Verified] = OrderedDict()
        self._token_cache_size = token_cache_size
        self._lock = threading.Lock()
        self._async_locks = LoopLocks()
        if self._jwks_url.startswith("https:"):
            tls_context()  # load CA certificates now, not inside the event loop on first use

    # --- configuration, read-only -------------------------------------------------------------

    @property
    def issuer(self) -> str:
        return self._policy.issuer

    @property
    def audiences(self) -> frozenset[str]:
        return self._policy.audiences

    @property
    def jwks_url(self) -> str:
        return self._jwks_url

    def __repr__(self) -> str:
        return f"TokenValidator(issuer={self.issuer!r}, audience={sorted(self.audiences)!r})"

    # --- discovery ----------------------------------------------------------------------------

    @classmethod
    def from_discovery(
        cls, issuer: str, audience: str | Iterable[str], **options: Any
    ) -> TokenValidator:
        """Build a validator whose key set URL comes from the issuer's discovery document."""
        document = fetch(_discovery_url(issuer), FetchPolicy())
        return cls(issuer, audience, jwks_url=_jwks_uri_from(document, issuer, options), **options)

    @classmethod
    async def from_discovery_async(
        cls, issuer: str, audience: str | Iterable[str], **options: Any
    ) -> TokenValidator:
        """``from_discovery`` without blocking the event loop."""
        document = await fetch_async(_discovery_url(issuer), FetchPolicy())
        return cls(issuer, audience, jwks_url=_jwks_uri_from(document, issuer, options), **options)

    # --- the drivers --------------------------------------------------------------------------

    def validate(self, token: str) -> Principal:
        """Validate a token; return who called or raise an AuthError. May block to fetch keys."""
        principal = self.cached(token)
        if principal is not None:
            return principal
        flow = self._flow(token)
        try:
            due = next(flow)
            while True:
                self._fetch_keys(due)
                due = flow.send(None)
        except StopIteration as finished:
            verified: Principal = finished.value
            return verified

    async def validate_async(self, token: str) -> Principal:
        """Validate a token; return who called or raise an AuthError. Never blocks the loop."""
        principal = self.cached(token)
        if principal is not None:
            return principal
        flow = self._flow(token)
        try:
            due = next(flow)
            while True:
                # Shared: a caller cancelled while the fetch is in flight neither aborts it nor
                # leaves it to be made again.
                await shared(self._fetch_keys_async(due))
                due = flow.send(None)
        except StopIteration as finished:
            verified: Principal = finished.value
            return verified

    def _fetch_keys(self, due: FetchDue) -> None:
        with self._lock:
            if self._keys.attempts == due.attempts:
                self._record(fetch(self._jwks_url, self._fetch_policy), due)

    async def _fetch_keys_async(self, due: FetchDue) -> None:
        async with self._async_locks.current():
            if self._keys.attempts == due.attempts:
                # Cancelled itself (its event loop closing), the fetch still counts as an attempt.
                outcome: bytes | FetchFailure = FetchFailure("cancelled")
                try:
                    outcome = await fetch_async(self._jwks_url, self._fetch_policy)
                finally:
                    self._record(outcome, due)

    def _record(self, outcome: bytes | FetchFailure, due: FetchDue) -> None:
        if isinstance(outcome, FetchFailure):
            self._keys.record_failure(self._steady(), outcome.reason)
        else:
            self._keys.record_document(outcome, self._steady(), due)

    # --- the flow -----------------------------------------------------------------------------

    def _flow(self, token: str) -> Generator[FetchDue, None, Principal]:
        header_segment, payload_segment, signature_segment = split_token(
            token, self._max_token_size
        )
        header = self._headers.get(header_segment) or self._parse_header(header_segment)
        claims = decode_json_object(payload_segment, self._parse_json)
        signature = b64url_decode(signature_segment)
        keys = self._keys.select(header.kid, header.alg, self._steady())
        if isinstance(keys, FetchDue):
            yield keys
            keys = self._keys.select_settled(header.kid, header.alg, self._steady())
        signing_input = header_segment + b"." + payload_segment
        key = verifying_key(keys, header.alg, signing_input, signature)
        if key is None:
            raise InvalidSignature()
        now = self._clock()
        principal = check_claims(claims, self._policy, now)
        self._remember(token, principal, key, principal.expires_at - now)
        return principal

    def _parse_header(self, segment: bytes) -> Header:
        header = parse_header(
            segment, self._parse_json, self._algorithms, self._policy.profile == "rfc9068"
        )
        if len(self._headers) >= _HEADER_CACHE_SIZE:
            self._headers.clear()
        self._headers[segment] = header
        return header

    # --- the verified-token cache -------------------------------------------------------------

    def cached(self, token: str) -> Principal | None:
        """The principal of a token this validator verified, while that verification holds.

        No I/O and no waiting: adapters try it before ``validate_async`` to skip creating a
        coroutine. None means "not in the cache", never "invalid".
        """
        if type(token) is not str:
            return None  # input the full path will refuse
        cache_key = token[-_CACHE_KEY_CHARS:]
        entry = self._verified.get(cache_key)
        if entry is None or entry.token != token:
            return None
        if self._steady() < entry.valid_until and not entry.key.retired:
            try:
                self._verified.move_to_end(cache_key)
            except KeyError:  # evicted by another thread meanwhile
                pass
            return entry.principal
        self._verified.pop(cache_key, None)
        return None

    def _remember(
        self, token: str, principal: Principal, key: VerificationKey, lifetime: float
    ) -> None:
        if not self._token_cache_size:
            return
        # For what is left of the token's life, in elapsed time, and until the key set is due for
        # a refresh: then the full path checks both again.
        valid_until = min(self._steady() + lifetime + self._policy.leeway, self._keys.fresh_until)
        self._verified[token[-_CACHE_KEY_CHARS:]] = _Verified(token, principal, key, valid_until)
        if len(self._verified) > self._token_cache_size:
            try:
                self._verified.popitem(last=False)
            except KeyError:  # emptied by another thread meanwhile
                pass


# --- configuration helpers ---------------------------------------------------------------------


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


def _is_number(value: object) -> bool:
    return type(value) in (int, float) and math.isfinite(value)  # type: ignore[arg-type]


def _is_count(value: object) -> bool:
    return type(value) is int


def _names(option: str, value: str | Iterable[str]) -> frozenset[str]:
    names = (value,) if isinstance(value, str) else tuple(value)
    _require(all(isinstance(name, str) and name for name in names), f"{option} must be strings")
    return frozenset(names)


def _allowed_algorithms(algorithms: Iterable[str]) -> frozenset[str]:
    chosen = frozenset((algorithms,) if isinstance(algorithms, str) else algorithms)
    refused = chosen - ASYMMETRIC_ALGORITHMS
    _require(
        not refused,
        f"algorithms not allowed: {', '.join(sorted(map(str, refused)))}; "
        f"choose among {', '.join(sorted(ASYMMETRIC_ALGORITHMS))}",
    )
    _require(bool(chosen), "algorithms must name at least one algorithm")
    return chosen


def _http_url(option: str, url: str) -> str:
    parts = urlsplit(url) if isinstance(url, str) else None
    _require(
        parts is not None and parts.scheme in ("http", "https") and bool(parts.netloc),
        f"{option} must be an absolute http(s) URL",
    )
    return url


def _key_set_url(issuer: str, jwks_url: str | None, keycloak_url: str | None) -> str:
    _require(jwks_url is None or keycloak_url is None, "give jwks_url or keycloak_url, not both")
    if jwks_url is not None:
        return _http_url("jwks_url", jwks_url)
    if keycloak_url is not None:
        # Keycloak reached on an internal address: same realm path (with any legacy /auth),
        # another base. The issuer stays the public one.
        base = _http_url("keycloak_url", keycloak_url).rstrip("/")
        return base + urlsplit(issuer).path.rstrip("/") + _CERTS_PATH
    return _http_url("issuer", issuer).rstrip("/") + _CERTS_PATH


def _discovery_url(issuer: str) -> str:
    return _http_url("issuer", issuer).rstrip("/") + _DISCOVERY_PATH


def _jwks_uri_from(document: bytes | FetchFailure, issuer: str, options: dict[str, Any]) -> str:
    _require(
        "jwks_url" not in options and "keycloak_url" not in options,
        "from_discovery takes the key set URL from the discovery document",
    )
    if isinstance(document, FetchFailure):
        raise DiscoveryError(f"discovery document unavailable: {document.reason}")
    try:
        metadata = json.loads(document)
    except (ValueError, RecursionError):
        raise DiscoveryError("discovery document is not JSON") from None
    if not isinstance(metadata, dict):
        raise DiscoveryError("discovery document is not a JSON object")
    if metadata.get("issuer") != issuer:
        raise DiscoveryError("discovery document names another issuer")
    jwks_uri = metadata.get("jwks_uri")
    if not isinstance(jwks_uri, str):
        raise DiscoveryError("discovery document has no jwks_uri")
    try:
        return _http_url("jwks_uri", jwks_uri)
    except ValueError as error:
        raise DiscoveryError(str(error)) from None
