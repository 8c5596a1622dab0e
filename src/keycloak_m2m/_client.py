"""ClientCredentials: obtain, cache, renew and attach Keycloak machine-to-machine tokens.

The policy is written once, without I/O, as generators that yield what they need done:

* ``_request_flow`` builds one token-endpoint request, retries it with bounded backoff and reads
  the answer: it yields the request to send (and is resumed with the response or the transport
  error), a ``_Pause``, or a ``_ReloadSecret`` (resumed with whether the secret changed);
* ``_renewal_flow`` wraps it for the client-credentials grant and records the outcome in the
  ``TokenCache``, which decides when a cached token may be used;
* ``_bearer_flow`` is httpx's auth flow plus one kind of step, ``_TokenWanted``.

Two drivers run them: the sync one with a threading lock and blocking I/O, the async one with an
asyncio lock. The locks make concurrent callers that find no usable token share one request.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import ssl
import threading
import time
from collections.abc import AsyncGenerator, Callable, Generator, Iterable
from dataclasses import dataclass
from typing import Any, TypeAlias, TypeVar

import anyio
import httpx

from . import _telemetry
from ._client_auth import (
    ASSERTION_TYPE,
    basic_credentials,
    client_assertion,
    read_secret,
    signing_key,
)
from ._client_cache import TokenCache
from ._client_config import (
    AuthMethod,
    CertificatePair,
    certificate_context,
    scope_names,
    settings,
)
from ._client_dpop import DPoPKey, DPoPSession
from ._environment import client_settings
from ._http import Connection, run_blocking
from ._locks import LoopLocks, shared
from ._options import require, text
from ._signing import SigningKey
from ._steady import steady_clock
from ._token_answer import (
    Endpoint,
    Issued,
    Redactor,
    TokenRequestError,
    client_refused,
    request_redactor,
    transient_reason,
)

__all__ = ["AuthMethod", "ClientCredentials", "TokenRequestError"]

_log = logging.getLogger(__name__)

_CLIENT_CREDENTIALS = "client_credentials"
_TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"  # noqa: S105 - a URN
_ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"  # noqa: S105 - a URN


# --- the sans-I/O pieces -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Pause:
    seconds: float


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
        cert: CertificatePair | None = None,
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
        private_key: SigningKey | str | bytes | None = None,
        dpop_key: SigningKey | bool = False,
    ) -> None:
        require(callable(clock), "clock must be a callable returning seconds")
        self._settings = settings(
            client_id=client_id,
            client_secret=client_secret,
            client_secret_file=client_secret_file,
            cert=cert,
            signs=private_key is not None,
            token_url=token_url,
            keycloak_url=keycloak_url,
            realm=realm,
            legacy_auth_prefix=legacy_auth_prefix,
            scopes=scopes,
            audience=audience,
            auth_method=auth_method,
            renewal_margin=renewal_margin,
            timeout=timeout,
            max_retries=max_retries,
            backoff=backoff,
            max_backoff=max_backoff,
        )
        self._signer = None if private_key is None else signing_key(private_key)
        self._connection = Connection.create(verify, proxy)
        # Renewal is a matter of elapsed time, which a clock stepping back must not stretch.
        self._clock = steady_clock(clock)
        self._dpop = _dpop_session(dpop_key)
        self._cache = TokenCache(self._clock)
        self._lock = threading.Lock()
        self._async_locks = LoopLocks()
        # Load CA certificates now, not inside the event loop on first use.
        self._connection.warm(self._settings.token_url)
        self._client_tls = (
            None if cert is None else certificate_context(cert, self.token_url, verify)
        )

    def _reload_secret(self) -> bool:
        """Read the secret file again; whether the secret changed (a rotated secret)."""
        secret_file = self._settings.secret_file
        assert secret_file is not None  # only asked for with a secret file
        try:
            secret = read_secret(secret_file)
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

    @property
    def _endpoint(self) -> Endpoint:
        return Endpoint(self.token_url, self.client_id)

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
            "subject_token": text("subject_token", subject_token),
            "subject_token_type": _ACCESS_TOKEN_TYPE,
            "requested_token_type": _ACCESS_TOKEN_TYPE,
        }
        if audience is not None:
            form["audience"] = text("audience", audience)
        names = scope_names(scopes)
        if names:
            form["scope"] = " ".join(names)
        return form

    def _request_flow(self, form: dict[str, str]) -> _Flow[Issued]:
        """One grant: send, retry connection errors and 5xx with backoff, read the answer."""
        retry = self._settings.retry
        attempt = 0
        reload_secret = self._settings.secret_file is not None
        while True:
            attempt += 1
            requested_at = self._clock()
            # Made for each send: a client assertion must not be sent twice (its jti).
            assertion = self._client_assertion()
            redact = self._redactor(form, assertion)
            outcome = yield self._token_request(form, assertion)
            if isinstance(outcome, httpx.Response) and outcome.status_code < 500:
                if reload_secret and client_refused(outcome):
                    reload_secret = False  # once per request: a wrong file must not loop
                    if (yield _ReloadSecret()) is True:
                        attempt -= 1  # the same attempt, with the rotated secret
                        continue
                bound = self._dpop is not None and form["grant_type"] == _CLIENT_CREDENTIALS
                return self._endpoint.issued(
                    outcome,
                    redact,
                    grant=_grant_name(form),
                    expected_type="dpop" if bound else "bearer",
                    requested_at=requested_at,
                    renewal_margin=self._settings.renewal_margin,
                )
            if not isinstance(outcome, (httpx.Response, httpx.TransportError)):
                detail = f"the answer could not be read ({type(outcome).__name__})"
                raise self._endpoint.failure(detail)
            reason = redact(transient_reason(outcome))
            if attempt > retry.max_retries:
                raise self._endpoint.unavailable(outcome, reason, attempt, redact)
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
            credentials = basic_credentials(settings.client_id, settings.client_secret)
            headers["Authorization"] = f"Basic {credentials}"
        else:
            form = {
                **form,
                "client_id": settings.client_id,
                "client_secret": settings.client_secret,
            }
        return httpx.Request("POST", settings.token_url, data=form, headers=headers)

    def _redactor(self, form: dict[str, str], assertion: str | None) -> Redactor:
        settings = self._settings
        # No secret with private_key_jwt or a certificate.
        sent = (assertion or "", form.get("subject_token", ""))
        return request_redactor(settings.client_id, settings.client_secret or "", sent)


def _dpop_session(dpop_key: SigningKey | bool) -> DPoPSession | None:
    if dpop_key is False:
        return None
    return DPoPSession(DPoPKey.generate() if dpop_key is True else DPoPKey(dpop_key))


def _grant_name(form: dict[str, str]) -> str:
    return "token request" if form["grant_type"] == _CLIENT_CREDENTIALS else "token exchange"
