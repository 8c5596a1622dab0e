"""ClientCredentials: obtain, cache, renew and attach Keycloak machine-to-machine tokens.

The policy is written once, without I/O, as generators that yield what they need done:

* ``_request_flow`` builds one token-endpoint request, retries it with bounded backoff and reads
  the answer: it yields the request to send (and is resumed with the response or the transport
  error), a ``_Pause``, or a ``_ReloadSecret`` (resumed with whether the secret changed);
* ``_renewal_flow`` wraps it for the client-credentials grant and records the outcome in the
  ``_TokenCache``, which decides when a cached token may be used;
* ``_bearer_flow`` is httpx's auth flow plus one kind of step, ``_TokenWanted``.

Two drivers run them: the sync one with a threading lock and blocking I/O, the async one with an
asyncio lock. The locks make concurrent callers that find no usable token share one request.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import logging
import math
import os
import random
import re
import ssl
import threading
import time
from collections.abc import AsyncGenerator, Callable, Generator, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias, TypeGuard, TypeVar, get_args
from urllib.parse import quote, quote_plus, urlsplit

import anyio
import httpx

from . import _telemetry
from ._assertion import ASSERTION_TYPE, SigningKey, client_assertion, signing_key
from ._client_dpop import DPoPKey, DPoPSession, PrivateKey
from ._environment import client_settings
from ._http import Connection, run_blocking
from ._locks import LoopLocks, shared
from ._steady import steady_clock

__all__ = ["AuthMethod", "ClientCredentials", "TokenRequestError"]

AuthMethod: TypeAlias = Literal["client_secret_basic", "client_secret_post", "private_key_jwt"]
_AUTH_METHODS: tuple[AuthMethod, ...] = get_args(AuthMethod)

_log = logging.getLogger(__name__)

_CLIENT_CREDENTIALS = "client_credentials"
_TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"  # noqa: S105 - a URN
_ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"  # noqa: S105 - a URN
_TOKEN_PATH = "/protocol/openid-connect/token"  # noqa: S105 - a path
# RFC 6750 b64token characters: anything else would not survive an Authorization header.
_BEARER_TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
# Descriptions come from the server; a proxy's error page must not flood a log line.
_MAX_DESCRIPTION = 300


class TokenRequestError(Exception):
    """The token endpoint did not issue a token.

    ``status_code`` is the HTTP status of the last answer (None when none came: connection
    refused, timeout); ``error`` and ``error_description`` are the OAuth error the server gave,
    if any. Deliberately not an ``AuthError``: a service that fails to get a token for an outgoing
    call must not answer its own caller 401, as an adapter would for an ``AuthError``.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        error: str | None = None,
        error_description: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.error = error
        self.error_description = error_description


# --- configuration -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Retry:
    max_retries: int
    backoff: float
    max_backoff: float

    def delay(self, retry: int) -> float:
        """Exponential, capped, with jitter so a fleet restarted together does not retry in step."""
        ceiling = min(self.max_backoff, self.backoff * 2 ** (retry - 1))
        return random.uniform(ceiling / 2, ceiling)  # noqa: S311 - timing jitter, not a secret


@dataclass(frozen=True, slots=True)
class _Settings:
    token_url: str
    client_id: str
    client_secret: str | None = field(repr=False)  # None: tls_client_auth, the certificate
    scopes: tuple[str, ...]
    audience: str | None
    auth_method: AuthMethod
    renewal_margin: float
    timeout: float
    retry: _Retry


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


def _is_number(value: object) -> TypeGuard[float]:
    return type(value) in (int, float) and math.isfinite(value)  # type: ignore[arg-type]


def _text(option: str, value: object) -> str:
    _require(isinstance(value, str) and value != "", f"{option} must be a non-empty string")
    assert isinstance(value, str)
    return value


def _http_url(option: str, url: str) -> str:
    parts = urlsplit(url)
    _require(
        parts.scheme in ("http", "https") and bool(parts.netloc),
        f"{option} must be an absolute http(s) URL",
    )
    return url


def _token_url(
    token_url: str | None, keycloak_url: str | None, realm: str | None, legacy_auth_prefix: bool
) -> str:
    if token_url is not None:
        _require(
            keycloak_url is None and realm is None,
            "give token_url or keycloak_url and realm, not both",
        )
        return _http_url("token_url", _text("token_url", token_url))
    _require(
        keycloak_url is not None and realm is not None,
        "give token_url, or keycloak_url and realm",
    )
    base = _http_url("keycloak_url", _text("keycloak_url", keycloak_url)).rstrip("/")
    prefix = "/auth" if legacy_auth_prefix else ""
    return f"{base}{prefix}/realms/{quote(_text('realm', realm), safe='')}{_TOKEN_PATH}"


def _scope_names(scopes: str | Iterable[str]) -> tuple[str, ...]:
    # A lone string is the OAuth scope parameter itself: space-separated names.
    names = tuple(scopes.split() if isinstance(scopes, str) else scopes)
    _require(
        all(isinstance(name, str) and name and not re.search(r"\s", name) for name in names),
        "scopes must be names without whitespace",
    )
    return names


# --- the sans-I/O pieces -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Pause:
    seconds: float


@dataclass(frozen=True, slots=True)
class _Issued:
    access_token: str = field(repr=False)
    # When the cache stops handing the token out; unused for exchanged tokens, never cached.
    renew_at: float


@dataclass(frozen=True, slots=True)
class _TokenWanted:
    # The token a resource server refused, so a renewal replaces it only once for all callers.
    rejected: str | None


@dataclass(frozen=True, slots=True)
class _ReloadSecret:
    """Read the secret file again: the server refused the client, maybe the secret rotated."""


_Step: TypeAlias = httpx.Request | _Pause | _ReloadSecret
# A bool answers a _ReloadSecret: whether the secret changed.
_Outcome: TypeAlias = httpx.Response | httpx.RequestError | bool | None
_T = TypeVar("_T")
_Flow: TypeAlias = Generator[_Step, _Outcome, _T]
# The driver sends back a str for a _TokenWanted and a Response for a Request.
_BearerFlow: TypeAlias = Generator[httpx.Request | _TokenWanted, Any, None]


class _TokenCache:
    """The cached token and the count of token requests made; no I/O, no locks."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._issued: _Issued | None = None
        self._last_failure: TokenRequestError | None = None
        self.fetches = 0

    def usable(self, rejected: str | None) -> str | None:
        issued = self._issued
        if issued is None or issued.access_token == rejected or self._clock() >= issued.renew_at:
            return None
        return issued.access_token

    def after_waiting(self, rejected: str | None, seen_fetches: int) -> str | None:
        """What a caller that waited for the lock gets from the request made meanwhile, if any.

        A failure is shared too: a hundred callers queued behind an unreachable realm must not
        each go through the whole retry schedule in turn.
        """
        token = self.usable(rejected)
        failure = self._last_failure
        if token is None and self.fetches != seen_fetches and failure is not None:
            raise TokenRequestError(
                str(failure),
                status_code=failure.status_code,
                error=failure.error,
                error_description=failure.error_description,
            ) from failure
        return token

    def record(self, issued: _Issued) -> str:
        self._issued = issued
        self._last_failure = None
        self.fetches += 1
        return issued.access_token

    def record_failure(self, failure: TokenRequestError) -> None:
        # The cached token, if any, stays: it may still be good until it expires.
        self._last_failure = failure
        self.fetches += 1


def _oauth_error(response: httpx.Response, redact: _Redactor) -> tuple[str | None, str | None]:
    """Keycloak's ``error`` and ``error_description``, when the body is an OAuth error."""
    try:
        body = response.json()
    except ValueError:
        return None, None
    if not isinstance(body, dict):
        return None, None
    error, description = body.get("error"), body.get("error_description")
    return (
        redact(error)[:_MAX_DESCRIPTION] if isinstance(error, str) else None,
        redact(description)[:_MAX_DESCRIPTION] if isinstance(description, str) else None,
    )


def _sent_forms(secret: str) -> tuple[str, str, str]:
    """A value as it travels in a form: raw, and form-encoded with a space as + or as %20."""
    return secret, quote_plus(secret), quote(secret, safe="")


def _basic_credentials(client_id: str, secret: str) -> str:
    # RFC 6749 2.3.1: each half is form-urlencoded before the two are joined.
    pair = f"{quote_plus(client_id)}:{quote_plus(secret)}"
    return base64.b64encode(pair.encode()).decode("ascii")


class _Redactor:
    """Replaces each given text (a secret in every form this package sends it) by [redacted].

    A token endpoint or a proxy that echoes the request (in ``error_description``, say) must not
    put the secret into our messages, attributes or logs, whether raw, percent-encoded or inside
    the Basic credentials. Redacting comes before any truncation, which could leave a prefix.
    """

    def __init__(self, texts: tuple[str, ...]) -> None:
        # Longest first, so a text containing another is replaced whole; case-insensitive for the
        # hex digits of percent-encoding (redacting too much is harmless).
        alternatives = sorted({re.escape(text) for text in texts if text}, key=len, reverse=True)
        self._pattern = re.compile("|".join(alternatives), re.IGNORECASE) if alternatives else None

    def __call__(self, text: str) -> str:
        return text if self._pattern is None else self._pattern.sub("[redacted]", text)


def _unusable_reason(body: object, expected_type: str) -> str | None:
    """Why a 200 answer holds no usable token of ``expected_type`` (``bearer``, or ``dpop``
    for a request with a proof), or None when it does."""
    if not isinstance(body, dict):
        return "the body is not a JSON object"
    token, expires_in = body.get("access_token"), body.get("expires_in")
    if not isinstance(token, str) or not _BEARER_TOKEN.fullmatch(token):
        return "no valid access_token"
    if not _is_number(expires_in) or expires_in <= 0:
        return "no valid expires_in"
    token_type = body.get("token_type")
    if not isinstance(token_type, str) or token_type.lower() != expected_type:
        # A server that ignored the proof issued a bearer token: sending it would not be
        # sender-constrained, against what the caller asked for.
        return "token_type is not Bearer" if expected_type == "bearer" else "token_type is not DPoP"
    return None


def _with_bearer(request: httpx.Request, token: str) -> httpx.Request:
    request.headers["Authorization"] = f"Bearer {token}"
    _telemetry.inject_trace_context(request.headers)  # the service's spans join the caller's
    return request


# --- the client --------------------------------------------------------------------------------


class ClientCredentials(httpx.Auth):
    """Tokens of one Keycloak client (client-credentials grant), cached and renewed in time.

    Use ``get_token()`` / ``await get_token_async()``, or pass it as ``auth=`` to
    ``httpx.Client`` / ``httpx.AsyncClient``. Thread-safe and task-safe: share one instance.

    ``cert=(cert_file, key_file)`` presents that TLS client certificate to the token endpoint:
    without ``client_secret`` it authenticates the client (Keycloak's X.509 authenticator,
    RFC 8705 ``tls_client_auth``), and Keycloak can bind the tokens to it; then the service
    called must see the same certificate (give httpx the same pair).
    """

    def __init__(
        self,
        client_id: str,
        client_secret: str | None = None,
        *,
        client_secret_file: str | os.PathLike[str] | None = None,
        cert: tuple[str | os.PathLike[str], str | os.PathLike[str]] | None = None,
        token_url: str | None = None,
        keycloak_url: str | None = None,
        realm: str | None = None,
        legacy_auth_prefix: bool = False,
        scopes: str | Iterable[str] = (),
        audience: str | None = None,
        auth_method: AuthMethod = "client_secret_basic",
        renewal_margin: float = 30.0,
        timeout: float = 10.0,
        max_retries: int = 3,
        backoff: float = 0.5,
        max_backoff: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        verify: bool | str | ssl.SSLContext = True,
        proxy: str | None = None,
        private_key: SigningKey | None = None,
        dpop_key: PrivateKey | bool = False,
    ) -> None:
        _require(auth_method in _AUTH_METHODS, "auth_method must be " + " or ".join(_AUTH_METHODS))
        _require(
            audience is None or (isinstance(audience, str) and audience != ""),
            "audience must be a non-empty string",
        )
        for name, value in (("renewal_margin", renewal_margin), ("backoff", backoff)):
            _require(_is_number(value) and value >= 0, f"{name} must be a number >= 0")
        _require(_is_number(timeout) and timeout > 0, "timeout must be a number > 0")
        _require(
            _is_number(max_backoff) and max_backoff >= backoff, "max_backoff must be >= backoff"
        )
        _require(type(max_retries) is int and max_retries >= 0, "max_retries must be an int >= 0")
        _require(callable(clock), "clock must be a callable returning seconds")
        # private_key_jwt signs an assertion with the key; with cert and no secret the TLS
        # certificate authenticates (tls_client_auth); the others send a secret.
        signs = auth_method == "private_key_jwt"
        _require(
            (private_key is not None) == signs,
            "private_key goes with auth_method='private_key_jwt', and that method needs it",
        )
        self._signer = None if private_key is None else signing_key(private_key)
        secrets = (client_secret is not None) + (client_secret_file is not None)
        _require(secrets <= 1, "give client_secret or client_secret_file, not both")
        _require(
            not signs or secrets == 0,
            "private_key_jwt sends no secret: give no client_secret or client_secret_file",
        )
        _require(
            signs or secrets == 1 or cert is not None,
            "give client_secret or client_secret_file (or cert, for TLS client authentication)",
        )
        # With a file, the secret is read again when the server refuses it (a rotation).
        self._secret_file = None if client_secret_file is None else os.fspath(client_secret_file)
        secret: str | None = None
        if self._secret_file is not None:
            secret = _read_secret(self._secret_file)
        elif client_secret is not None:
            secret = _text("client_secret", client_secret)
        self._settings = _Settings(
            token_url=_token_url(token_url, keycloak_url, realm, legacy_auth_prefix),
            client_id=_text("client_id", client_id),
            client_secret=secret,
            scopes=_scope_names(scopes),
            audience=audience,
            auth_method=auth_method,
            renewal_margin=float(renewal_margin),
            timeout=float(timeout),
            retry=_Retry(max_retries, float(backoff), float(max_backoff)),
        )
        self._connection = Connection.create(verify, proxy)
        # Renewal is a matter of elapsed time, which a clock stepping back must not stretch.
        self._clock = steady_clock(clock)
        self._dpop = _dpop_session(dpop_key)
        self._cache = _TokenCache(self._clock)
        self._lock = threading.Lock()
        self._async_locks = LoopLocks()
        # Load CA certificates now, not inside the event loop on first use.
        self._connection.warm(self._settings.token_url)
        self._client_tls = (
            None if cert is None else _certificate_context(cert, self.token_url, verify)
        )

    def _reload_secret(self) -> bool:
        """Read the secret file again; whether the secret changed (a rotated secret)."""
        assert self._secret_file is not None  # only asked for with a secret file
        try:
            secret = _read_secret(self._secret_file)
        except ValueError as error:
            # Mid-rotation the file may be briefly absent: keep the secret we have.
            _log.warning("client %r: %s; keeping the current secret", self.client_id, error)
            return False
        if secret == self._settings.client_secret:
            return False
        self._settings = dataclasses.replace(self._settings, client_secret=secret)
        _log.info("client %r: the secret file changed; using the new secret", self.client_id)
        return True

    @classmethod
    def from_env(cls, **overrides: Any) -> ClientCredentials:
        """Build from ``KEYCLOAK_URL``, ``KEYCLOAK_REALM``, ``KEYCLOAK_CLIENT_ID``,
        ``KEYCLOAK_CLIENT_SECRET``, and the optional ``KEYCLOAK_AUTH_PATH`` (``/auth`` before
        Keycloak 17), ``KEYCLOAK_SCOPES`` (commas or spaces) and ``KEYCLOAK_CA_BUNDLE``;
        ``overrides`` go to the constructor and win."""
        return cls(**client_settings(os.environ, overrides))

    @property
    def client_id(self) -> str:
        return self._settings.client_id

    @property
    def token_url(self) -> str:
        return self._settings.token_url

    def __repr__(self) -> str:
        return f"ClientCredentials(client_id={self.client_id!r}, token_url={self.token_url!r})"

    # --- public API -----------------------------------------------------------------------------

    def get_token(self) -> str:
        """The access token: the cached one until its renewal point, else a fresh one. Blocks."""
        return self._token(rejected=None)

    async def get_token_async(self) -> str:
        """``get_token`` without blocking the event loop."""
        return await self._token_async(rejected=None)

    def renew_token(self, rejected: str) -> str:
        """A fresh token in place of ``rejected``, which a resource server refused.

        Callers that saw the same token refused share one renewal. For HTTP libraries other than
        httpx and requests, whose adapters do this themselves.
        """
        return self._token(rejected=rejected)

    async def renew_token_async(self, rejected: str) -> str:
        """``renew_token`` without blocking the event loop."""
        return await self._token_async(rejected=rejected)

    def exchange(
        self, subject_token: str, *, audience: str | None = None, scopes: str | Iterable[str] = ()
    ) -> str:
        """Exchange ``subject_token`` for an access token meant for ``audience`` (RFC 8693).

        The new token is not cached: it speaks for the subject, not for this client.
        """
        form = self._exchange_form(subject_token, audience, scopes)
        return self._run(self._request_flow(form), _TOKEN_EXCHANGE).access_token

    async def exchange_async(
        self, subject_token: str, *, audience: str | None = None, scopes: str | Iterable[str] = ()
    ) -> str:
        """``exchange`` without blocking the event loop."""
        form = self._exchange_form(subject_token, audience, scopes)
        issued = await self._run_async(self._request_flow(form), _TOKEN_EXCHANGE)
        return issued.access_token

    # --- DPoP ---------------------------------------------------------------------------------

    @property
    def dpop_jkt(self) -> str | None:
        """The RFC 7638 thumbprint of the DPoP key (the tokens' ``cnf.jkt``); None without one."""
        return None if self._dpop is None else self._dpop.key.thumbprint

    def dpop_proof(
        self,
        method: str,
        url: str,
        *,
        access_token: str | None = None,
        nonce: str | None = None,
    ) -> str:
        """A DPoP proof for one request, for HTTP clients other than httpx (whose requests this
        class signs itself): send it as the ``DPoP`` header with ``Authorization: DPoP
        <token>``. It hashes ``access_token`` (default: the current token, which may block to
        obtain). ``nonce`` is a server's ``DPoP-Nonce``; it is kept for that server's later
        proofs."""
        if self._dpop is None:
            raise RuntimeError("dpop_proof() needs ClientCredentials(..., dpop_key=...)")
        token = self.get_token() if access_token is None else access_token
        return self._dpop.proof(method, url, token, nonce)

    def _signed(self, flow: _Flow[_T]) -> _Flow[_T]:
        """``flow`` with a fresh proof on every token request it sends (a retry included)."""
        assert self._dpop is not None
        outcome: _Outcome = None
        while True:
            try:
                step = flow.send(outcome)
            except StopIteration as finished:
                result: _T = finished.value
                return result
            if isinstance(step, httpx.Request):
                outcome = yield from self._dpop.send(step, None)
            else:
                outcome = yield step

    def _dpop_flow(self, request: httpx.Request, dpop: DPoPSession) -> _BearerFlow:
        """``_bearer_flow`` for DPoP: a fresh proof on every send, one more send on
        ``use_dpop_nonce``, then on a 401 one renewal as for bearer tokens."""
        token = yield _TokenWanted(rejected=None)
        response = yield from dpop.send(request, token)
        if response.status_code == 401 and isinstance(request.stream, httpx.ByteStream):
            fresh = yield _TokenWanted(rejected=token)
            yield from dpop.send(request, fresh)

    # --- httpx.Auth ---------------------------------------------------------------------------

    def _bearer_flow(self, request: httpx.Request) -> _BearerFlow:
        """Attach the token; on a 401, renew it once and send the request once more.

        Only a body already in memory can go out twice: a streamed one (a generator, a file)
        is sent once, unbuffered, and its 401 returned as is.
        """
        if self._dpop is not None:
            yield from self._dpop_flow(request, self._dpop)
            return
        token = yield _TokenWanted(rejected=None)
        response = yield _with_bearer(request, token)
        if response.status_code == 401 and isinstance(request.stream, httpx.ByteStream):
            fresh = yield _TokenWanted(rejected=token)
            yield _with_bearer(request, fresh)

    def sync_auth_flow(
        self, request: httpx.Request
    ) -> Generator[httpx.Request, httpx.Response, None]:
        flow = self._bearer_flow(request)
        reply: object = None
        try:
            while True:
                step = flow.send(reply)
                if isinstance(step, _TokenWanted):
                    reply = self._token(step.rejected)
                else:
                    reply = yield step
        except StopIteration:
            return

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        flow = self._bearer_flow(request)
        reply: object = None
        try:
            while True:
                step = flow.send(reply)
                if isinstance(step, _TokenWanted):
                    # A usable token without a coroutine: this runs on every request.
                    usable = self._cache.usable(step.rejected)
                    reply = usable or await self._token_async(step.rejected)
                else:
                    reply = yield step
        except StopIteration:
            return

    # --- the drivers --------------------------------------------------------------------------

    def _token(self, rejected: str | None) -> str:
        seen_fetches = self._cache.fetches
        token = self._cache.usable(rejected)
        if token is not None:
            return token
        with self._lock:
            token = self._cache.after_waiting(rejected, seen_fetches)
            if token is None:
                token = self._run(self._renewal_flow(), _CLIENT_CREDENTIALS)
        return token

    async def _token_async(self, rejected: str | None) -> str:
        seen_fetches = self._cache.fetches
        token = self._cache.usable(rejected)
        if token is not None:
            return token
        # Shared: a caller cancelled while the request is in flight neither aborts it for the
        # callers queued behind it nor leaves it to be made again.
        return await shared(self._renewed_async(rejected, seen_fetches))

    async def _renewed_async(self, rejected: str | None, seen_fetches: int) -> str:
        async with self._async_locks.current():
            token = self._cache.after_waiting(rejected, seen_fetches)
            if token is None:
                token = await self._run_async(self._renewal_flow(), _CLIENT_CREDENTIALS)
        return token

    def _http_options(self) -> dict[str, Any]:
        return {
            "timeout": self._settings.timeout,
            # A redirected POST could carry the secret elsewhere; the token URL must be exact.
            "follow_redirects": False,
            **self._connection.options(self._settings.token_url),
            **({} if self._client_tls is None else {"verify": self._client_tls}),
        }

    def _run(self, flow: _Flow[_T], grant: str) -> _T:
        return run_blocking(lambda: self._run_async(flow, grant))

    async def _run_async(self, flow: _Flow[_T], grant: str) -> _T:
        async with httpx.AsyncClient(**self._http_options()) as client:
            with _telemetry.token_request(self.token_url, self.client_id, grant) as probe:
                outcome: _Outcome = None
                try:
                    while True:
                        step = flow.send(outcome)
                        if isinstance(step, _Pause):
                            await asyncio.sleep(step.seconds)
                            outcome = None
                        elif isinstance(step, _ReloadSecret):
                            outcome = await asyncio.to_thread(self._reload_secret)
                        else:
                            probe.sending(step.headers)
                            outcome = await self._send(client, step)
                            probe.answered(outcome)
                except StopIteration as finished:
                    result: _T = finished.value
                    return result

    async def _send(self, client: httpx.AsyncClient, request: httpx.Request) -> _Outcome:
        """One token request within ``timeout``, from connecting to the last byte of the answer.

        httpx's timeouts bound each socket operation: a server dripping a header line at a time
        would hold the request (and the credentials' lock) indefinitely.
        """
        try:
            with anyio.fail_after(self._settings.timeout):
                return await client.send(request)
        except httpx.RequestError as error:
            return error
        except TimeoutError:
            return httpx.TimeoutException("no answer within the timeout", request=request)
        except OSError as error:
            # anyio lets some TLS failures (an alert after the handshake) through unwrapped.
            return httpx.ConnectError(str(error) or type(error).__name__, request=request)

    # --- the flows ----------------------------------------------------------------------------

    def _renewal_flow(self) -> _Flow[str]:
        form = {"grant_type": _CLIENT_CREDENTIALS}
        if self._settings.scopes:
            form["scope"] = " ".join(self._settings.scopes)
        if self._settings.audience is not None:
            form["audience"] = self._settings.audience
        flow = self._request_flow(form)
        try:
            issued = yield from (flow if self._dpop is None else self._signed(flow))
        except TokenRequestError as failure:
            self._cache.record_failure(failure)
            raise
        return self._cache.record(issued)

    def _exchange_form(
        self, subject_token: str, audience: str | None, scopes: str | Iterable[str]
    ) -> dict[str, str]:
        form = {
            "grant_type": _TOKEN_EXCHANGE,
            "subject_token": _text("subject_token", subject_token),
            "subject_token_type": _ACCESS_TOKEN_TYPE,
            "requested_token_type": _ACCESS_TOKEN_TYPE,
        }
        if audience is not None:
            form["audience"] = _text("audience", audience)
        scope_names = _scope_names(scopes)
        if scope_names:
            form["scope"] = " ".join(scope_names)
        return form

    def _request_flow(self, form: dict[str, str]) -> _Flow[_Issued]:
        """One grant: send, retry connection errors and 5xx with backoff, read the answer."""
        retry = self._settings.retry
        attempt = 0
        reload_secret = self._secret_file is not None
        while True:
            attempt += 1
            requested_at = self._clock()
            # Made for each send: a client assertion must not be sent twice (its jti).
            assertion = self._client_assertion()
            redact = self._redactor(form, assertion)
            outcome = yield self._token_request(form, assertion)
            if isinstance(outcome, httpx.Response) and outcome.status_code < 500:
                if reload_secret and _client_refused(outcome):
                    reload_secret = False  # once per request: a wrong file must not loop
                    if (yield _ReloadSecret()) is True:
                        attempt -= 1  # the same attempt, with the rotated secret
                        continue
                return self._issued(outcome, requested_at, form, redact)
            if not isinstance(outcome, (httpx.Response, httpx.TransportError)):
                raise self._failure(f"the answer could not be read ({type(outcome).__name__})")
            reason = redact(_transient_reason(outcome))
            if attempt > retry.max_retries:
                raise self._unavailable(outcome, reason, attempt, redact)
            delay = retry.delay(attempt)
            _log.warning(
                "token request for client %r to %s failed (%s); retrying in %.2f s",
                self.client_id,
                self.token_url,
                reason,
                delay,
            )
            yield _Pause(delay)

    def _client_assertion(self) -> str | None:
        """A fresh RFC 7523 assertion for private_key_jwt; None for the other methods."""
        if self._signer is None:
            return None
        # The assertion reads the wall clock, not the renewal clock.
        settings = self._settings
        return client_assertion(self._signer, settings.client_id, settings.token_url, time.time())

    def _token_request(self, form: dict[str, str], assertion: str | None) -> httpx.Request:
        settings = self._settings
        headers = {"Accept": "application/json", "User-Agent": "keycloak-m2m"}
        if assertion is not None:
            # RFC 7523 section 2.2.
            form = {**form, "client_assertion_type": ASSERTION_TYPE, "client_assertion": assertion}
        elif settings.client_secret is None:
            # RFC 8705 section 2: the TLS certificate authenticates; client_id names the client.
            form = {**form, "client_id": settings.client_id}
        elif settings.auth_method == "client_secret_basic":
            credentials = _basic_credentials(settings.client_id, settings.client_secret)
            headers["Authorization"] = f"Basic {credentials}"
        else:
            form = {
                **form,
                "client_id": settings.client_id,
                "client_secret": settings.client_secret,
            }
        return httpx.Request("POST", settings.token_url, data=form, headers=headers)

    def _issued(
        self,
        response: httpx.Response,
        requested_at: float,
        form: dict[str, str],
        redact: _Redactor,
    ) -> _Issued:
        if response.status_code != 200:
            error, description = _oauth_error(response, redact)
            detail = " ".join(filter(None, (error, description and f"({description})")))
            raise self._failure(
                f"{_grant_name(form)} refused: HTTP {response.status_code}"
                + (f" {detail}" if detail else ""),
                status_code=response.status_code,
                error=error,
                error_description=description,
            )
        try:
            body = response.json()
        except ValueError:
            body = None
        bound = self._dpop is not None and form["grant_type"] == _CLIENT_CREDENTIALS
        reason = _unusable_reason(body, "dpop" if bound else "bearer")
        if reason is not None:
            raise self._failure(f"HTTP 200 without a usable token: {reason}", status_code=200)
        lifetime = float(body["expires_in"])
        # Renew ahead of expiry, but never so early that a short-lived token is renewed on every
        # call: at most half its lifetime ahead.
        margin = min(self._settings.renewal_margin, lifetime / 2)
        _log.debug("token for client %r obtained, valid for %s s", self.client_id, lifetime)
        return _Issued(body["access_token"], requested_at + lifetime - margin)

    def _redactor(self, form: dict[str, str], assertion: str | None) -> _Redactor:
        """For the secret in every form it is sent in, the client assertion (a credential too,
        replayable until it expires where the server keeps no jti) and an exchange's subject
        token."""
        settings = self._settings
        secret = settings.client_secret or ""  # none with private_key_jwt or a certificate
        basic = (_basic_credentials(settings.client_id, secret),) if secret else ()
        return _Redactor(
            (
                *_sent_forms(secret),
                *basic,
                *_sent_forms(assertion or ""),
                *_sent_forms(form.get("subject_token", "")),
            )
        )

    def _failure(
        self,
        detail: str,
        *,
        status_code: int | None = None,
        error: str | None = None,
        error_description: str | None = None,
    ) -> TokenRequestError:
        return TokenRequestError(
            f"token endpoint {self.token_url} (client {self.client_id!r}): {detail}",
            status_code=status_code,
            error=error,
            error_description=error_description,
        )

    def _unavailable(
        self,
        outcome: httpx.Response | httpx.TransportError,
        reason: str,
        attempts: int,
        redact: _Redactor,
    ) -> TokenRequestError:
        detail = f"unavailable after {attempts} attempt{'s' if attempts > 1 else ''}: {reason}"
        if isinstance(outcome, httpx.TransportError):
            return self._failure(detail)
        error, description = _oauth_error(outcome, redact)
        return self._failure(
            detail,
            status_code=outcome.status_code,
            error=error,
            error_description=description,
        )


def _client_refused(response: httpx.Response) -> bool:
    """Whether the token endpoint refused the client's credentials: ``invalid_client``
    (RFC 6749), or ``unauthorized_client``, which Keycloak answers for a wrong secret."""
    if response.status_code != 401:
        return False
    error, _ = _oauth_error(response, _Redactor(()))
    return error in ("invalid_client", "unauthorized_client")


def _read_secret(path: str) -> str:
    """The secret in ``path``, without the line end an editor or ``kubectl`` may leave."""
    try:
        with open(path, encoding="utf-8") as file:
            secret = file.read().rstrip("\r\n")
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(
            f"client_secret_file {path} cannot be read ({type(error).__name__})"
        ) from None
    _require(secret != "", f"client_secret_file {path} is empty")
    return secret


def _certificate_context(
    cert: tuple[str | os.PathLike[str], str | os.PathLike[str]],
    token_url: str,
    verify: bool | str | ssl.SSLContext,
) -> ssl.SSLContext:
    """The TLS context that presents the client certificate (mutual TLS, RFC 8705), trusting
    the certificate authorities ``verify`` names."""
    _require(
        isinstance(cert, tuple) and len(cert) == 2,
        "cert must be a (certificate file, private key file) pair",
    )
    _require(token_url.startswith("https:"), "cert needs an https token URL")
    _require(
        not isinstance(verify, ssl.SSLContext),
        "with cert, give verify as True or a CA bundle path (or load the certificate into "
        "your own SSLContext and pass that as verify, without cert)",
    )
    context = (
        httpx.create_ssl_context()
        if verify is True
        else ssl.create_default_context(
            cafile=os.fspath(verify)  # type: ignore[arg-type]
        )
    )
    context.load_cert_chain(*cert)
    return context


def _dpop_session(dpop_key: PrivateKey | bool) -> DPoPSession | None:
    if dpop_key is False:
        return None
    return DPoPSession(DPoPKey.generate() if dpop_key is True else DPoPKey(dpop_key))


def _transient_reason(outcome: httpx.Response | httpx.TransportError) -> str:
    if isinstance(outcome, httpx.Response):
        return f"HTTP {outcome.status_code}"
    # Some httpx errors (read timeouts) have an empty message; the class name always says enough.
    message = str(outcome)
    return f"{type(outcome).__name__}: {message}" if message else type(outcome).__name__


def _grant_name(form: dict[str, str]) -> str:
    return "token request" if form["grant_type"] == _CLIENT_CREDENTIALS else "token exchange"
