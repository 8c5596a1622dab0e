"""What every adapter does the same way: find the bearer token, and answer an AuthError.

No framework imports: each adapter hands in the raw pieces of its request (Authorization header
values, query string, form body) and sends back the ``ErrorAnswer`` in its own way.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import parse_qsl

from ._errors import AuthError, InvalidRequest
from ._principal import Principal, as_names

__all__ = [
    "ErrorAnswer",
    "Requirement",
    "bearer_token",
    "error_answer",
    "is_form",
    "refuse_access_token",
    "scan_asgi_headers",
    "single_authorization",
]

# RFC 6750 section 2.2 defines the form-body token for this content type only.
_FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"
# RFC 6750 sections 2.2 and 2.3: the parameter name of a token sent in the form or the query.
_PARAMETER_NAME = "access_token"
# RFC 6750 section 2.1: the scheme, then one space (more are tolerated), then the token.
_SCHEME = "bearer"
_SEVERAL_HEADERS = "more than one Authorization header"


def bearer_token(authorization: str | None) -> str | None:
    """The token of the request's one ``Authorization`` header value, or None if it has none."""
    if authorization is None:
        return None
    # Partitioning copies the token once; the scheme is compared case-insensitively.
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != _SCHEME:
        return None
    token = token.strip()
    # No b64token (RFC 6750 section 2.1) holds a comma; WSGI servers join repeated headers
    # with one, so a comma means several credentials were sent.
    if "," in token:
        raise InvalidRequest(_SEVERAL_HEADERS)
    return token or None


def single_authorization(values: Sequence[str]) -> str | None:
    """The one Authorization header value of a request, or None; several are InvalidRequest."""
    if len(values) > 1:
        raise InvalidRequest(_SEVERAL_HEADERS)
    return values[0] if values else None


def scan_asgi_headers(headers: Iterable[tuple[bytes, bytes]]) -> tuple[str | None, bool]:
    """From raw ASGI headers: the one Authorization value, and whether the body is a form.

    Several Authorization headers are InvalidRequest.
    """
    authorization: str | None = None
    form = False
    for name, value in headers:
        if name == b"authorization":
            if authorization is not None:
                raise InvalidRequest(_SEVERAL_HEADERS)
            authorization = value.decode("latin-1")
        elif name == b"content-type":
            form = is_form(value.decode("latin-1"))
    return authorization, form


def refuse_access_token(urlencoded: str | bytes) -> None:
    """Refuse a query string or form body carrying an ``access_token``: RFC 6750 section 2 allows
    one way of sending the token per request, and here that is the Authorization header."""
    if not urlencoded:
        return
    text = urlencoded.decode("latin-1") if isinstance(urlencoded, bytes) else urlencoded
    if any(name == _PARAMETER_NAME for name, _ in parse_qsl(text, keep_blank_values=True)):
        raise InvalidRequest("access_token in the query or form; use the Authorization header")


def is_form(content_type: str | None) -> bool:
    """Whether the body is a form that RFC 6750 lets carry a token (so it must be looked at)."""
    if not content_type:
        return False
    return content_type.partition(";")[0].strip().lower() == _FORM_CONTENT_TYPE


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


@dataclass(frozen=True, slots=True)
class Requirement:
    """What a route asks of its caller: roles, client roles and scopes (all required), and
    whether a request without a token may pass as anonymous."""

    roles: tuple[str, ...] = ()
    client_roles: Mapping[str, tuple[str, ...]] | None = None
    scopes: tuple[str, ...] = ()
    optional: bool = False

    @classmethod
    def of(
        cls,
        roles: Iterable[str] = (),
        client_roles: Mapping[str, Iterable[str]] | None = None,
        scopes: Iterable[str] = (),
        optional: bool = False,
    ) -> Requirement:
        # Read the names once, at setup: a generator passed in would be empty on the next request.
        return cls(
            roles=as_names(roles),
            client_roles=(
                None
                if client_roles is None
                else {client: as_names(names) for client, names in client_roles.items()}
            ),
            scopes=as_names(scopes),
            optional=optional,
        )

    @property
    def checks_grants(self) -> bool:
        return bool(self.roles or self.client_roles or self.scopes)

    def check(self, principal: Principal, extra_scopes: Sequence[str] = ()) -> None:
        """Raise InsufficientScope naming whatever the caller lacks."""
        if self.checks_grants or extra_scopes:
            principal.require(self.roles, self.client_roles, (*self.scopes, *extra_scopes))
