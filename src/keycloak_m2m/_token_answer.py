"""What the token endpoint answered: a usable token, an OAuth error, or a reason to retry.

No I/O: the client's flows hand these functions the response they got. Everything that comes
back from the server is redacted before it reaches a message, since a server or a proxy may echo
the request and its credentials.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from urllib.parse import quote, quote_plus

import httpx

from ._b64token import is_b64token
from ._client_auth import basic_credentials
from ._options import is_number

_log = logging.getLogger(__name__)

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


@dataclass(frozen=True, slots=True)
class Issued:
    access_token: str = field(repr=False)
    # When the cache stops handing the token out; unused for exchanged tokens, never cached.
    renew_at: float


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One client's token endpoint, as every failure it reports names them."""

    token_url: str
    client_id: str

    def failure(
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

    def issued(
        self,
        response: httpx.Response,
        redact: Redactor,
        *,
        grant: str,
        expected_type: str,
        requested_at: float,
        renewal_margin: float,
    ) -> Issued:
        """The token a final answer (not a 5xx) holds, or the failure it is; ``grant`` names
        the request in that failure, ``expected_type`` is ``bearer`` or ``dpop``."""
        if response.status_code != 200:
            error, description = oauth_error(response, redact)
            detail = " ".join(filter(None, (error, description and f"({description})")))
            raise self.failure(
                f"{grant} refused: HTTP {response.status_code}" + (f" {detail}" if detail else ""),
                status_code=response.status_code,
                error=error,
                error_description=description,
            )
        try:
            body = response.json()
        except ValueError:
            body = None
        reason = unusable_reason(body, expected_type)
        if reason is not None:
            raise self.failure(f"HTTP 200 without a usable token: {reason}", status_code=200)
        lifetime = float(body["expires_in"])
        # Renew ahead of expiry, but never so early that a short-lived token is renewed on every
        # call: at most half its lifetime ahead.
        margin = min(renewal_margin, lifetime / 2)
        _log.debug("token for client %r obtained, valid for %s s", self.client_id, lifetime)
        return Issued(body["access_token"], requested_at + lifetime - margin)

    def unavailable(
        self,
        outcome: httpx.Response | httpx.TransportError,
        reason: str,
        attempts: int,
        redact: Redactor,
    ) -> TokenRequestError:
        detail = f"unavailable after {attempts} attempt{'s' if attempts > 1 else ''}: {reason}"
        if isinstance(outcome, httpx.TransportError):
            return self.failure(detail)
        error, description = oauth_error(outcome, redact)
        return self.failure(
            detail,
            status_code=outcome.status_code,
            error=error,
            error_description=description,
        )


class Redactor:
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


def request_redactor(client_id: str, secret: str, sent: tuple[str, ...]) -> Redactor:
    """For the secret in every form it is sent in (Basic credentials included) and each other
    credential ``sent`` with the request: a client assertion (replayable until it expires where
    the server keeps no jti), an exchange's subject token."""
    basic = (basic_credentials(client_id, secret),) if secret else ()
    forms = (form for text in (secret, *sent) for form in _sent_forms(text))
    return Redactor((*forms, *basic))


def _sent_forms(text: str) -> tuple[str, str, str]:
    """A value as it travels in a form: raw, and form-encoded with a space as + or as %20."""
    return text, quote_plus(text), quote(text, safe="")


def oauth_error(response: httpx.Response, redact: Redactor) -> tuple[str | None, str | None]:
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


def client_refused(response: httpx.Response) -> bool:
    """Whether the token endpoint refused the client's credentials: ``invalid_client``
    (RFC 6749), or ``unauthorized_client``, which Keycloak answers for a wrong secret."""
    if response.status_code != 401:
        return False
    error, _ = oauth_error(response, Redactor(()))
    return error in ("invalid_client", "unauthorized_client")


def unusable_reason(body: object, expected_type: str) -> str | None:
    """Why a 200 answer holds no usable token of ``expected_type`` (``bearer``, or ``dpop``
    for a request with a proof), or None when it does."""
    if not isinstance(body, dict):
        return "the body is not a JSON object"
    token, expires_in = body.get("access_token"), body.get("expires_in")
    if not isinstance(token, str) or not is_b64token(token):
        return "no valid access_token"
    if not is_number(expires_in) or expires_in <= 0:
        return "no valid expires_in"
    token_type = body.get("token_type")
    if not isinstance(token_type, str) or token_type.lower() != expected_type:
        # A server that ignored the proof issued a bearer token: sending it would not be
        # sender-constrained, against what the caller asked for.
        return "token_type is not Bearer" if expected_type == "bearer" else "token_type is not DPoP"
    return None


def transient_reason(outcome: httpx.Response | httpx.TransportError) -> str:
    if isinstance(outcome, httpx.Response):
        return f"HTTP {outcome.status_code}"
    # Some httpx errors (read timeouts) have an empty message; the class name always says enough.
    message = str(outcome)
    return f"{type(outcome).__name__}: {message}" if message else type(outcome).__name__
