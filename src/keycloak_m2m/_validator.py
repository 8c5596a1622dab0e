"""TokenValidator: one validation, attempted without I/O, driven by a sync and an async driver.

An attempt (``_attempt``, in ``_attempt.py``) validates with what is at hand, or names what is
missing: the key set (``FetchDue``) or an introspection answer (``Introspect``). The driver gets
it, under its own lock unless another caller already did, records the outcome, and attempts
again, saying what it got, so that nothing is asked for twice. Most validations need one
attempt, a plain call. The two drivers are the only code with locks and network access.
"""

from __future__ import annotations

import os
import ssl
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, Literal

from . import _telemetry
from ._attempt import Attempt
from ._binding import (
    CertificateBound,
    ClientCertificate,
)
from ._claims import (
    PROFILES,
    ClaimPolicy,
    Profile,
)
from ._discovery import (
    CERTS_PATH,
    discovery_policy,
    discovery_url,
    jwks_uri_from,
    key_set_url,
)
from ._dpop import ProofChecker, ProofPolicy, Verdict
from ._environment import validator_settings
from ._errors import InvalidDPoPProof, InvalidToken
from ._http import Connection, FetchFailure, FetchPolicy, fetch, fetch_async
from ._introspection import (
    Introspect,
    Introspection,
    IntrospectionClient,
    endpoint_for,
)
from ._jose import (
    ASYMMETRIC_ALGORITHMS,
    DEFAULT_ALGORITHMS,
    JsonParser,
)
from ._keyset import FetchDue, KeyCachePolicy, KeySet
from ._locks import AsyncKeyedLocks, KeyedLocks, LoopLocks, shared
from ._options import is_number, require
from ._principal import Principal
from ._replay import MemoryReplayCache, ReplayCache
from ._steady import steady_clock
from ._token_cache import (
    CachedPrincipals,
    PrincipalLookup,
    Verified,
    VerifiedTokens,
    fits,
    holds,
    raw_token,
    token_key,
)

__all__ = ["DPoPMode", "TokenValidator"]

# "allowed": bearer tokens, and DPoP-bound tokens with a valid proof; "required": bound tokens
# only; "off": bearer tokens only (a bound token's proof cannot be checked, so it is refused).
DPoPMode = Literal["allowed", "required", "off"]
_DPOP_MODES: tuple[DPoPMode, ...] = ("allowed", "required", "off")

_INTROSPECTION_MAX_BYTES = 64 * 1024


class TokenValidator:
    """Validates Keycloak (or RFC 9068) access tokens against one issuer.

    Thread-safe and task-safe: share one instance per issuer across the application.
    """

    cached: PrincipalLookup
    """``cached(token, client_certificate=None, introspect=False, start=0)``: the principal of
    a token this validator verified, while that verification holds. ``token`` is a str, or the
    bytes of a request's header (read as latin-1), as the request step passes it without
    decoding; with ``start``, the token is ``token[start:]`` (the header's value after its
    scheme, looked up where it is rather than copied).

    No I/O and no waiting: adapters try it before ``validate_async`` to skip creating a
    coroutine. None means "not in the cache", never "invalid". A certificate-bound token is a
    hit only with its certificate; with ``introspect``, only if it was introspected; a
    DPoP-bound token never, as every request needs its proof checked."""

    def __init__(
        self,
        issuer: str,
        audience: str | Iterable[str],
        *,
        jwks_url: str | None = None,
        keycloak_url: str | None = None,
        allowed_clients: str | Iterable[str] | None = None,
        azp_as_audience: bool = False,
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
        token_cache_bytes: int = 32 * 1024 * 1024,
        verify: bool | str | ssl.SSLContext = True,
        proxy: str | None = None,
        certificate_bound: CertificateBound = "allowed",
        introspection: Introspection | None = None,
        dpop: DPoPMode = "allowed",
        dpop_max_age: float = 60.0,
        replay_cache: ReplayCache | None = None,
        dpop_nonce: bool = False,
        dpop_nonce_secret: bytes | None = None,
    ) -> None:
        require(isinstance(issuer, str) and issuer != "", "issuer must be a non-empty string")
        audiences = _names("audience", audience)
        require(bool(audiences), "audience must name at least one audience")
        require(profile in PROFILES, f"profile must be one of {', '.join(PROFILES)}")
        allowed_algorithms = _allowed_algorithms(algorithms)
        for name, value in (
            ("leeway", leeway),
            ("jwks_refetch_interval", jwks_refetch_interval),
            ("jwks_max_stale", jwks_max_stale),
        ):
            require(is_number(value) and value >= 0, f"{name} must be a number >= 0")
        for name, value in (("jwks_ttl", jwks_ttl), ("jwks_timeout", jwks_timeout)):
            require(is_number(value) and value > 0, f"{name} must be a number > 0")
        for name, count in (("max_token_size", max_token_size), ("jwks_max_bytes", jwks_max_bytes)):
            require(_is_count(count) and count > 0, f"{name} must be an integer > 0")
        for name, count in (
            ("token_cache_size", token_cache_size),
            ("token_cache_bytes", token_cache_bytes),
        ):
            require(_is_count(count) and count >= 0, f"{name} must be an integer >= 0")
        require(callable(clock), "clock must be a callable returning the time in seconds")
        require(
            certificate_bound in ("allowed", "required"),
            "certificate_bound must be allowed or required",
        )
        require(
            introspection is None or isinstance(introspection, Introspection),
            "introspection must be an Introspection",
        )
        require(dpop in _DPOP_MODES, f"dpop must be one of {', '.join(_DPOP_MODES)}")
        require(is_number(dpop_max_age) and dpop_max_age > 0, "dpop_max_age must be a number > 0")
        require(
            replay_cache is None or isinstance(replay_cache, ReplayCache),
            "replay_cache must have first_use and first_use_async (a ReplayCache)",
        )
        require(
            dpop_nonce_secret is None
            or (isinstance(dpop_nonce_secret, bytes) and len(dpop_nonce_secret) >= 16),
            "dpop_nonce_secret must be at least 16 bytes",
        )
        require(dpop_nonce or dpop_nonce_secret is None, "dpop_nonce_secret needs dpop_nonce")

        self._jwks_url = key_set_url(issuer, jwks_url, keycloak_url)
        self._policy = ClaimPolicy(
            issuer=issuer,
            audiences=audiences,
            leeway=float(leeway),
            profile=profile,
            allowed_clients=(
                None if allowed_clients is None else _names("allowed_clients", allowed_clients)
            ),
            service_accounts_only=bool(service_accounts_only),
            azp_as_audience=bool(azp_as_audience),
        )
        self._clock = clock  # claim times: instants of the wall clock
        self._steady = steady_clock(clock)  # TTLs, intervals, staleness, the caches
        self._max_token_size = max_token_size
        self._parse_json = JsonParser(accept_duplicate_members=accept_duplicate_members)
        self._keys = KeySet(
            KeyCachePolicy(
                ttl=float(jwks_ttl),
                refetch_interval=float(jwks_refetch_interval),
                max_stale=float(jwks_max_stale),
            )
        )
        self._fetch_policy = FetchPolicy(
            timeout=float(jwks_timeout),
            max_bytes=jwks_max_bytes,
            connection=Connection.create(verify, proxy),
        )
        self._verified = VerifiedTokens(token_cache_size, token_cache_bytes)
        self._verified_lock = threading.Lock()  # for changes to the cache: its byte count
        self.cached = CachedPrincipals(self._verified, self._steady)
        self._dpop: DPoPMode = dpop
        # Without a shared secret each replica has its own: fine for one replica only.
        nonce_secret = (dpop_nonce_secret or os.urandom(32)) if dpop_nonce else None
        self._proofs = ProofChecker(
            ProofPolicy(float(dpop_max_age), float(leeway), nonce_secret), self._parse_json
        )
        self._replay: ReplayCache = replay_cache or MemoryReplayCache()
        self._lock = threading.Lock()
        self._async_locks = LoopLocks()
        # Load CA certificates now, not inside the event loop on first use.
        self._fetch_policy.connection.warm(self._jwks_url)
        self._introspection = (
            None
            if introspection is None
            else IntrospectionClient(
                introspection, endpoint_for(introspection, self._jwks_url, CERTS_PATH), issuer
            )
        )
        self._attempt = Attempt(
            self._policy,
            self._parse_json,
            allowed_algorithms,
            max_token_size,
            self._keys,
            clock,
            self._steady,
            certificate_bound,
            self._introspection,
            bearer_allowed=dpop != "required",
        )
        self._introspection_locks = KeyedLocks()
        self._async_introspection_locks = AsyncKeyedLocks()
        self._telemetry = _telemetry.ValidatorTelemetry(self)

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

    @property
    def dpop(self) -> DPoPMode:
        return self._dpop

    @property
    def max_token_size(self) -> int:
        return self._max_token_size

    def __repr__(self) -> str:
        return f"TokenValidator(issuer={self.issuer!r}, audience={sorted(self.audiences)!r})"

    @classmethod
    def from_env(cls, **overrides: Any) -> TokenValidator:
        """Build from the environment (the Web Echo seed's names); ``overrides`` win.

        ``KEYCLOAK_URL`` (where keys are fetched), ``KEYCLOAK_REALM`` and ``KEYCLOAK_AUDIENCE``
        (commas or spaces) are required; ``KEYCLOAK_PUBLIC_URL`` (the base ``iss`` names,
        default ``KEYCLOAK_URL``), ``KEYCLOAK_AUTH_PATH`` (``/auth`` before Keycloak 17),
        ``KEYCLOAK_ALLOWED_CLIENTS``, ``KEYCLOAK_AZP_AS_AUDIENCE`` (true/false/1/0) and
        ``KEYCLOAK_CA_BUNDLE`` are optional. The issuer is ``KEYCLOAK_PUBLIC_URL +
        KEYCLOAK_AUTH_PATH + "/realms/" + KEYCLOAK_REALM``.
        """
        return cls(**validator_settings(os.environ, overrides))

    # --- discovery ----------------------------------------------------------------------------

    @classmethod
    def from_discovery(
        cls, issuer: str, audience: str | Iterable[str], **options: Any
    ) -> TokenValidator:
        """Build a validator whose key set URL comes from the issuer's discovery document."""
        document = fetch(discovery_url(issuer), discovery_policy(options))
        return cls(issuer, audience, jwks_url=jwks_uri_from(document, issuer, options), **options)

    @classmethod
    async def from_discovery_async(
        cls, issuer: str, audience: str | Iterable[str], **options: Any
    ) -> TokenValidator:
        """``from_discovery`` without blocking the event loop."""
        document = await fetch_async(discovery_url(issuer), discovery_policy(options))
        return cls(issuer, audience, jwks_url=jwks_uri_from(document, issuer, options), **options)

    # --- the drivers --------------------------------------------------------------------------

    def validate(
        self,
        token: str,
        *,
        client_certificate: ClientCertificate | None = None,
        introspect: bool = False,
        dpop_proof: str | None = None,
        method: str | None = None,
        url: str | None = None,
    ) -> Principal:
        """Validate a token; return who called or raise an AuthError. May block to fetch keys
        or to introspect.

        ``client_certificate`` (PEM or DER) is the TLS client certificate the request was made
        with: a certificate-bound token (RFC 8705) is accepted only with it. ``introspect``
        asks the issuer whether the token is still active when ``Introspection(when=
        "on_request")`` is configured (``"always"`` always does). ``dpop_proof`` is the
        request's ``DPoP`` header for a token sent with the DPoP scheme (then ``method`` and
        ``url``, without query, are the request's); None means it came as a bearer token.
        """
        entry = self._entry(token, client_certificate, introspect)
        if entry is None:
            fetched = introspected = False
            outcome = self._attempt(token, client_certificate, introspect)
            while not isinstance(outcome, Verified):
                if isinstance(outcome, Introspect):
                    self._introspect(outcome)
                    introspected = True
                else:
                    self._fetch_keys(outcome)
                    fetched = True
                outcome = self._attempt(
                    token, client_certificate, introspect, fetched, introspected
                )
            entry = self._keep(outcome)
        verdict = self._sender_check(entry, dpop_proof, method, url)
        if verdict is not None and not self._replay.first_use(
            verdict.replay_key, verdict.replay_ttl
        ):
            raise InvalidDPoPProof("DPoP proof replayed")
        return entry.principal

    async def validate_async(
        self,
        token: str,
        *,
        client_certificate: ClientCertificate | None = None,
        introspect: bool = False,
        dpop_proof: str | None = None,
        method: str | None = None,
        url: str | None = None,
    ) -> Principal:
        """``validate`` without blocking the event loop."""
        entry = self._entry(token, client_certificate, introspect)
        if entry is None:
            fetched = introspected = False
            outcome = self._attempt(token, client_certificate, introspect)
            while not isinstance(outcome, Verified):
                # Shared: a caller cancelled while the request is in flight neither aborts it
                # nor leaves it to be made again.
                if isinstance(outcome, Introspect):
                    await shared(self._introspect_async(outcome))
                    introspected = True
                else:
                    await shared(self._fetch_keys_async(outcome))
                    fetched = True
                outcome = self._attempt(
                    token, client_certificate, introspect, fetched, introspected
                )
            entry = self._keep(outcome)
        verdict = self._sender_check(entry, dpop_proof, method, url)
        if verdict is not None and not await self._replay.first_use_async(
            verdict.replay_key, verdict.replay_ttl
        ):
            raise InvalidDPoPProof("DPoP proof replayed")
        return entry.principal

    def _sender_check(
        self,
        entry: Verified,
        proof: str | None,
        method: str | None,
        url: str | None,
    ) -> Verdict | None:
        """RFC 9449 section 7: how the token was sent must fit how it is bound. Returns the
        proof's replay entry, for the driver to record, when a proof was checked."""
        if proof is None:
            if entry.bearer:
                return None
            if entry.jkt is not None:
                raise InvalidToken("DPoP-bound token sent as a bearer token")
            raise InvalidToken("DPoP-bound token required")
        if self._dpop == "off":
            raise InvalidToken("DPoP-bound tokens are not accepted")
        if entry.jkt is None:
            raise InvalidToken("token is not DPoP-bound")
        if method is None or url is None:
            raise TypeError("a dpop_proof needs the request's method and url")
        verdict = self._proofs.check(
            proof, ath=entry.ath, method=method, url=url, now=self._clock()
        )
        if verdict.jkt != entry.jkt:
            raise InvalidDPoPProof("proof key does not match the token's binding")
        return verdict

    def dpop_nonce(self) -> str | None:
        """The server nonce clients should sign into their proofs now (None: none required),
        e.g. for a ``DPoP-Nonce`` header on successful answers."""
        return self._proofs.nonce(self._clock()) if self._proofs.policy.nonce_secret else None

    def _fetch_keys(self, due: FetchDue) -> None:
        with self._lock:
            if self._keys.attempts == due.attempts:
                with self._telemetry.key_fetch(self._jwks_url) as fetching:
                    self._record(fetch(self._jwks_url, self._fetch_policy), due, fetching)

    async def _fetch_keys_async(self, due: FetchDue) -> None:
        async with self._async_locks.current():
            if self._keys.attempts == due.attempts:
                with self._telemetry.key_fetch(self._jwks_url) as fetching:
                    # Cancelled itself (its event loop closing), the fetch still counts as an
                    # attempt.
                    outcome: bytes | FetchFailure = FetchFailure("cancelled")
                    try:
                        outcome = await fetch_async(self._jwks_url, self._fetch_policy)
                    finally:
                        self._record(outcome, due, fetching)

    def _record(
        self, outcome: bytes | FetchFailure, due: FetchDue, fetching: _telemetry.FetchProbe
    ) -> None:
        adopted = False
        if isinstance(outcome, FetchFailure):
            self._keys.record_failure(self._steady(), outcome.reason)
        else:
            adopted = self._keys.record_document(outcome, self._steady(), due)
        fetching.done(outcome, adopted, len(self._keys.keys))

    @property
    def key_fetches(self) -> int:
        """How many key-set fetches were made (or waited for), for telemetry."""
        return self._keys.attempts

    def key_set_age(self) -> float | None:
        """Seconds since the key set in use was fetched; None before the first fetch."""
        fetched_at = self._keys.fresh_until - self._keys.policy.ttl
        return None if fetched_at == float("-inf") else self._steady() - fetched_at

    def _introspect(self, step: Introspect) -> None:
        client = self._introspection
        assert client is not None
        # Concurrent checks of one token wait here for the first one's request.
        with self._introspection_locks.hold(token_key(step.token)):
            if client.entry(step.token) is step.seen:
                with self._telemetry.introspection(
                    client.endpoint, client.config.client_id
                ) as probe:
                    form, headers = client.request(step.token)
                    outcome = fetch(client.endpoint, self._introspection_policy, form, headers)
                    self._record_answer(step, outcome, probe)

    async def _introspect_async(self, step: Introspect) -> None:
        client = self._introspection
        assert client is not None
        async with self._async_introspection_locks.hold(token_key(step.token)):
            if client.entry(step.token) is step.seen:
                with self._telemetry.introspection(
                    client.endpoint, client.config.client_id
                ) as probe:
                    form, headers = client.request(step.token)
                    outcome = await fetch_async(
                        client.endpoint, self._introspection_policy, form, headers
                    )
                    self._record_answer(step, outcome, probe)

    @property
    def _introspection_policy(self) -> FetchPolicy:
        assert self._introspection is not None
        return FetchPolicy(
            self._introspection.config.timeout,
            _INTROSPECTION_MAX_BYTES,
            self._fetch_policy.connection,  # the key endpoint's TLS and proxy settings
        )

    def _record_answer(
        self,
        step: Introspect,
        outcome: bytes | FetchFailure,
        probe: _telemetry.IntrospectionProbe,
    ) -> None:
        assert self._introspection is not None
        entry = self._introspection.record(
            step.token,
            outcome.reason if isinstance(outcome, FetchFailure) else outcome,
            self._steady(),
            self._clock(),
            step.expires_at,
        )
        probe.done(outcome, entry)

    # --- the verified-token cache -------------------------------------------------------------

    def _entry(
        self, token: str, client_certificate: ClientCertificate | None, introspect: bool
    ) -> Verified | None:
        if not self._verified:  # spares encoding the token where the cache is off or empty
            return None
        raw = raw_token(token)
        if raw is None:
            return None  # input the full path will refuse
        entry = self._verified.get(raw)
        if entry is None:
            return None
        if holds(entry, self._steady()):
            return entry if fits(entry, client_certificate, introspect) else None  # else: why
        with self._verified_lock:
            self._verified.drop(raw)
        return None

    def _keep(self, entry: Verified) -> Verified:
        with self._verified_lock:
            self._verified.keep(entry)
        return entry


# --- configuration helpers ---------------------------------------------------------------------


def _is_count(value: object) -> bool:
    return type(value) is int


def _names(option: str, value: str | Iterable[str]) -> frozenset[str]:
    names = (value,) if isinstance(value, str) else tuple(value)
    require(all(isinstance(name, str) and name for name in names), f"{option} must be strings")
    return frozenset(names)


def _allowed_algorithms(algorithms: Iterable[str]) -> frozenset[str]:
    chosen = frozenset((algorithms,) if isinstance(algorithms, str) else algorithms)
    refused = chosen - ASYMMETRIC_ALGORITHMS
    require(
        not refused,
        f"algorithms not allowed: {', '.join(sorted(map(str, refused)))}; "
        f"choose among {', '.join(sorted(ASYMMETRIC_ALGORITHMS))}",
    )
    require(bool(chosen), "algorithms must name at least one algorithm")
    return chosen
