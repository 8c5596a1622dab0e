"""The one request step: what a request presented goes in; a Principal, or an AuthError, comes out.

Every adapter builds a ``Presented`` from its framework's request and runs the step through
``Gate.run`` (sync) or ``Gate.run_async``; nothing else decides whether a request may pass. The
step does no I/O: it answers with what it needs first, in the manner of h11's ``NEED_DATA``.
``ReadBody(limit)`` asks the adapter for the body, reading no further than just past ``limit``;
``CheckToken(token, ...)`` asks for the validator's verdict on a token the verified-token cache
does not hold, or on a DPoP-bound token with its proof (RFC 9449), whose every request needs
one. Neither httpx nor any framework is imported here, so the step runs with plain data.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Final, Protocol, cast
from urllib.parse import parse_qsl, urlsplit

from ._audit import audit_acceptance, audit_log, audit_refusal
from ._binding import CertificateHeader, ClientCertificate, certificate_header
from ._errors import AuthError, InvalidDPoPProof, InvalidRequest, MissingToken
from ._principal import Principal
from ._requirement import Requirement
from ._token_cache import HEADER_ENCODING, PrincipalLookup

__all__ = [
    "MAX_FORM_BODY",
    "CheckToken",
    "ErrorAnswer",
    "Gate",
    "Presented",
    "ReadBody",
    "TokenVerifier",
    "error_answer",
]

# An urlencoded form body is read before authentication, to refuse a token sent in it (RFC 6750
# section 2): an unauthenticated client must not make the server hold megabytes for that.
MAX_FORM_BODY: Final = 1024 * 1024
# RFC 6750 section 2.2 defines the form-body token for this content type only.
_FORM_CONTENT_TYPE: Final = "application/x-www-form-urlencoded"
# RFC 6750 sections 2.2 and 2.3: the parameter name of a token sent in the form or the query.
_PARAMETER_NAME: Final = "access_token"
# RFC 6750 section 2.1 and RFC 9449 section 7.1: the scheme, then one space (more are
# tolerated), then the token; schemes are compared case-insensitively. Bytes, as the header's
# value is read: a cached token is then decided without decoding it.
_BEARER: Final = b"bearer"
_DPOP: Final = b"dpop"
_SEVERAL_HEADERS: Final = "more than one Authorization header"
# The challenges of a 401 without a token, by the validator's DPoP mode.
_CHALLENGES: Final = {
    "allowed": ("Bearer", "DPoP"),
    "required": ("DPoP",),
    "off": ("Bearer",),
}


class TokenVerifier(Protocol):
    """What the step needs of a validator; a TokenValidator and a MultiIssuerValidator are."""

    @property
    def issuer(self) -> str: ...

    @property
    def dpop(self) -> str: ...

    @property
    def cached(self) -> PrincipalLookup: ...

    def validate(
        self,
        token: str,
        *,
        client_certificate: ClientCertificate | None = None,
        introspect: bool = False,
        dpop_proof: str | None = None,
        method: str | None = None,
        url: str | None = None,
    ) -> Principal: ...

    async def validate_async(
        self,
        token: str,
        *,
        client_certificate: ClientCertificate | None = None,
        introspect: bool = False,
        dpop_proof: str | None = None,
        method: str | None = None,
        url: str | None = None,
    ) -> Principal: ...


class Presented:
    """What one request carried, as its adapter read it.

    Header values are every value of that header, in order: the step, not the adapter, decides
    what several of them mean; the Authorization header's as the bytes that came (WSGI's text
    encoded back as latin-1). ``scheme``, ``host`` (the authority) and ``path`` make up the URL
    the request was sent to, without its query; ``query`` is the raw query string.
    ``client_certificate`` is the TLS client certificate (PEM or DER) where the server gives
    one, or the header of a proxy the adapter was told to trust, parsed only when a token bound
    to a certificate needs it.
    """

    # A plain slotted class, not a frozen dataclass: one is built per request, and the compiled
    # build makes this one a native class, built and read without attribute lookups. The
    # method and the URL's parts are properties: an adapter may read them only when asked (a
    # DPoP proof's ``htu``, the audit log), as a cached bearer token needs neither.
    __slots__ = (
        "_host",
        "_method",
        "_path",
        "_scheme",
        "authorization",
        "client_certificate",
        "content_type",
        "dpop",
        "query",
    )

    def __init__(
        self,
        method: str,
        scheme: str,
        host: str,
        path: str,
        authorization: Sequence[bytes],
        dpop: Sequence[str],
        query: str | bytes,
        content_type: str | None,
        client_certificate: ClientCertificate | None = None,
    ) -> None:
        self._method = method
        self._scheme = scheme
        self._host = host
        self._path = path
        self.authorization = authorization
        self.dpop = dpop
        self.query = query
        self.content_type = content_type
        self.client_certificate = client_certificate

    @property
    def method(self) -> str:
        return self._method

    @property
    def scheme(self) -> str:
        return self._scheme

    @property
    def host(self) -> str:
        return self._host

    @property
    def path(self) -> str:
        return self._path

    @property
    def url(self) -> str:
        """The request URL without query or fragment; built on demand, few steps need it."""
        return f"{self.scheme}://{self.host}{self.path}"


class Need:
    """Something the step cannot decide without: the adapter's driver gets it, then resumes."""

    __slots__ = ()


class ReadBody(Need):
    """The step needs the body: hand it the body, or a prefix longer than ``limit`` (reading no
    further), and keep what was read for the app."""

    __slots__ = ("limit",)

    def __init__(self, limit: int) -> None:
        self.limit = limit


class CheckToken(Need):
    """The step needs the validator's verdict on ``token`` (the cache did not hold it); for
    a token sent with the DPoP scheme, with the request's ``proof``, ``method`` and ``url``."""

    __slots__ = ("method", "proof", "token", "url")

    def __init__(
        self,
        token: str,
        proof: str | None = None,
        method: str | None = None,
        url: str | None = None,
    ) -> None:
        self.token = token
        self.proof = proof
        self.method = method
        self.url = url


Outcome = Principal | None | Need
_READ_FORM: Final = ReadBody(MAX_FORM_BODY)


@dataclass(frozen=True, slots=True)
class ErrorAnswer:
    """An HTTP answer to an AuthError, ready for any framework to send."""

    status_code: int
    headers: dict[str, str]
    body: bytes


def error_answer(error: AuthError, realm: str) -> ErrorAnswer:
    """Status, RFC 6750 headers and the JSON body for ``error``; nothing else leaks out."""
    headers = {**error.response_headers(realm), "Content-Type": "application/json"}
    body = json.dumps(error.response_body(), separators=(",", ":")).encode("utf-8")
    return ErrorAnswer(error.status_code, headers, body)


class Gate:
    """The request step of one adapter: its validator, the realm its challenges name, the
    proxy header (``client_cert_header``) its adapter takes client certificates from, and the
    public URL clients call (``public_url``, for a service behind a proxy: the ``htu`` of DPoP
    proofs is checked against it and the request path, not the address the proxy used).

    ``admit`` decides on a request, or says what it needs first (a ``Need``); the driver gets
    that and hands it to ``resume``, until the outcome is a Principal (None: an anonymous
    caller on an optional route) or an AuthError was raised. Plain calls rather than a
    generator: a cached token is decided in one call, and this runs on every request.
    Every decision goes to the audit log: an admission here, a refusal in ``answer``.
    """

    __slots__ = (
        "_challenges",
        "_public_url",
        "_schemes",
        "certificate_header",
        "realm",
        "validator",
    )

    def __init__(
        self,
        validator: TokenVerifier,
        realm: str | None = None,
        client_cert_header: str | None = None,
        public_url: str | None = None,
    ) -> None:
        self.validator = validator
        self.realm = validator.issuer if realm is None else realm
        # The trusted proxy header its adapter reads the client certificate from, if any.
        self.certificate_header: CertificateHeader | None = certificate_header(client_cert_header)
        self._public_url = None if public_url is None else _public_url(public_url)
        self._challenges = _CHALLENGES[validator.dpop]
        # Bearer always: where DPoP is required, a bearer token is refused as one (invalid_token)
        # rather than met with a bare challenge.
        schemes = (*self._challenges, "Bearer")
        self._schemes = frozenset(scheme.lower().encode() for scheme in schemes)

    def admit(
        self, request: Presented, requirement: Requirement, extra_scopes: Sequence[str] = ()
    ) -> Outcome:
        """The first step. The order is fixed: RFC 6750's rules on how the token travels (one
        header, not in the query or the form) come before the scheme, so a request breaking them
        is refused alike whether or not its header also holds a token."""
        values = request.authorization
        authorization = values[0] if len(values) == 1 else _single(values)
        if request.query:
            _refuse_access_token(request.query)
        if request.content_type is not None and _is_form(request.content_type):
            return _READ_FORM
        return self._token_step(request, authorization, requirement, extra_scopes)

    def resume(
        self,
        request: Presented,
        requirement: Requirement,
        need: Need,
        answer: bytes | Principal,
        extra_scopes: Sequence[str] = (),
    ) -> Outcome:
        """The next step, given the ``answer`` to ``need``."""
        if isinstance(need, ReadBody):
            body = cast(bytes, answer)
            if len(body) > need.limit:
                raise InvalidRequest("form body too large to check for an access_token")
            _refuse_access_token(body)
            return self._token_step(
                request, _single(request.authorization), requirement, extra_scopes
            )
        principal = cast(Principal, answer)
        requirement.check(principal, extra_scopes)
        self._audit_admission(principal, request)
        return principal

    def _token_step(
        self,
        request: Presented,
        authorization: bytes | None,
        requirement: Requirement,
        extra_scopes: Sequence[str],
    ) -> Outcome:
        scheme, value, start = _credentials(authorization, self._schemes)
        if len(value) == start:
            if requirement.optional:
                self._audit_admission(None, request)
                return None
            raise MissingToken(schemes=self._challenges)
        if scheme == _DPOP:
            return CheckToken(
                _token_text(value, start),
                self._proof(request),
                request.method,
                self._url(request),
            )
        # Positional: keyword arguments cost a measurable share of a cache hit.
        principal = self.validator.cached(
            value, request.client_certificate, requirement.introspect, start
        )
        if principal is None:
            return CheckToken(_token_text(value, start))
        if requirement.grants or extra_scopes:
            requirement.check(principal, extra_scopes)
        self._audit_admission(principal, request)
        return principal

    def _audit_admission(self, principal: Principal | None, request: Presented) -> None:
        if _admissions_audited():
            audit_acceptance(principal, request, self.validator.issuer)

    def run(
        self, request: Presented, requirement: Requirement, read_body: Callable[[int], bytes]
    ) -> Principal | None:
        """Drive the step for a sync adapter; ``read_body(limit)`` answers a ReadBody."""
        outcome = self.admit(request, requirement)
        while isinstance(outcome, Need):
            if isinstance(outcome, ReadBody):
                answer: bytes | Principal = read_body(outcome.limit)
            else:
                check = cast(CheckToken, outcome)
                answer = self.validator.validate(
                    check.token,
                    client_certificate=request.client_certificate,
                    introspect=requirement.introspect,
                    dpop_proof=check.proof,
                    method=check.method,
                    url=check.url,
                )
            outcome = self.resume(request, requirement, outcome, answer)
        return outcome

    async def run_async(
        self,
        request: Presented,
        requirement: Requirement,
        read_body: Callable[[int], Awaitable[bytes]],
        extra_scopes: Sequence[str] = (),
    ) -> Principal | None:
        """Drive the step for an async adapter, without blocking the event loop."""
        outcome = self.admit(request, requirement, extra_scopes)
        if isinstance(outcome, Need):
            return await self.settle_async(request, requirement, outcome, read_body, extra_scopes)
        return outcome

    async def settle_async(
        self,
        request: Presented,
        requirement: Requirement,
        need: Need,
        read_body: Callable[[int], Awaitable[bytes]],
        extra_scopes: Sequence[str] = (),
    ) -> Principal | None:
        """The rest of ``run_async`` after ``admit`` answered ``need``: for an adapter that calls
        ``admit`` itself, so that a cached token costs it no coroutine."""
        outcome: Outcome = need
        while isinstance(outcome, Need):
            if isinstance(outcome, ReadBody):
                answer: bytes | Principal = await read_body(outcome.limit)
            else:
                check = cast(CheckToken, outcome)
                answer = await self.validator.validate_async(
                    check.token,
                    client_certificate=request.client_certificate,
                    introspect=requirement.introspect,
                    dpop_proof=check.proof,
                    method=check.method,
                    url=check.url,
                )
            outcome = self.resume(request, requirement, outcome, answer, extra_scopes)
        return outcome

    def _proof(self, request: Presented) -> str:
        # RFC 9449 section 4.3: exactly one DPoP header.
        proofs = request.dpop
        if len(proofs) > 1:
            raise InvalidRequest("more than one DPoP header")
        if not proofs:
            raise InvalidDPoPProof("DPoP proof required")
        # A compact JWS holds no comma: WSGI servers join repeated headers with one.
        if "," in proofs[0]:
            raise InvalidRequest("more than one DPoP header")
        return proofs[0]

    def _url(self, request: Presented) -> str:
        return request.url if self._public_url is None else self._public_url + request.path

    def answer(self, error: AuthError, request: Presented) -> ErrorAnswer:
        """The HTTP answer to a refusal of ``request``, which goes to the audit log."""
        audit_refusal(error, request, self.validator.issuer)
        return error_answer(error, self.realm)


# The memo of ``audit_log.isEnabledFor`` by level, which ``logging`` clears in place on every
# change of level; None where a logging module keeps none (then the method is asked).
_AUDIT_MEMO: Final[dict[int, bool] | None] = vars(audit_log).get("_cache")


def _admissions_audited() -> bool:
    """Whether ``audit_log.isEnabledFor(logging.DEBUG)``, from its memo when that holds the
    answer: the method call costs a tenth of a cached request's step in the compiled build, and
    this runs on every admitted request. (A logger disabled by ``logging.config`` still drops
    the record: ``audit_log.debug`` asks the method.)"""
    known = None if _AUDIT_MEMO is None else _AUDIT_MEMO.get(logging.DEBUG)
    return audit_log.isEnabledFor(logging.DEBUG) if known is None else known


# --- RFC 6750 section 2: how the token travels ---------------------------------------------------


def _single(values: Sequence[bytes]) -> bytes | None:
    if len(values) > 1:
        raise InvalidRequest(_SEVERAL_HEADERS)
    return values[0] if values else None


_NO_CREDENTIALS: Final = (b"", b"", 0)
# bytes' strip, partition and lower are Python calls even in the compiled build (startswith
# is not): the usual header, ``Bearer <token>`` as RFC 6750 spells it with nothing to strip,
# passes without one.
_AS_SPECIFIED: Final = b"Bearer "
_SPACE: Final = 0x20  # every byte that bytes.strip removes is at most this
# An int: ``b"," in token`` tries the operand as an int first and raises, costing as much as
# the rest of the header rules.
_COMMA: Final = ord(",")


def _credentials(
    authorization: bytes | None, schemes: frozenset[bytes]
) -> tuple[bytes, bytes, int]:
    """The lowercased scheme, and the token as ``value[start:]`` of the ``value`` returned
    (nothing there: no token, or a scheme not in ``schemes``). The usual header comes back
    as it came, the token after its scheme: the cache compares it there, without a copy."""
    if authorization is None:
        return _NO_CREDENTIALS
    start = len(_AS_SPECIFIED)
    # What stripping and partitioning would find for the usual header, without their calls.
    if (
        len(authorization) > start
        and authorization[start] > _SPACE
        and authorization[-1] > _SPACE
        and authorization.startswith(_AS_SPECIFIED)
    ):
        scheme, value = _BEARER, authorization
    else:
        name, _, token = _stripped(authorization).partition(b" ")
        scheme = name.lower()
        if scheme not in schemes:
            return _NO_CREDENTIALS
        value, start = _stripped(token), 0
    return scheme, value, start


def _token_text(value: bytes, start: int) -> str:
    """The token ``value[start:]`` for the validator. No b64token (RFC 6750 section 2.1) holds
    a comma, and WSGI servers join repeated headers with one, so a comma means several
    credentials were sent; checked here rather than on every request, as no token the cache
    holds has one (the validator accepts b64tokens only)."""
    if _COMMA in value:
        raise InvalidRequest(_SEVERAL_HEADERS)
    return value[start:].decode(HEADER_ENCODING)


def _stripped(value: bytes) -> bytes:
    """``value.strip()``, without the call when neither end can be whitespace."""
    if value and value[0] > _SPACE and value[-1] > _SPACE:
        return value
    return value.strip()


def _public_url(url: str) -> str:
    parts = urlsplit(url) if isinstance(url, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("public_url must be an absolute http(s) URL, e.g. https://api.example.com")
    if parts.query or parts.fragment:
        raise ValueError("public_url must have no query or fragment")
    return url.rstrip("/")


def _refuse_access_token(urlencoded: str | bytes) -> None:
    # RFC 6750 section 2 allows one way of sending the token per request: the header, here.
    if not urlencoded:
        return
    text = urlencoded.decode("latin-1") if isinstance(urlencoded, bytes) else urlencoded
    if any(name == _PARAMETER_NAME for name, _ in parse_qsl(text, keep_blank_values=True)):
        raise InvalidRequest("access_token in the query or form; use the Authorization header")


def _is_form(content_type: str | None) -> bool:
    if not content_type:
        return False
    return content_type.partition(";")[0].strip().lower() == _FORM_CONTENT_TYPE
