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
    "has_access_token",
    "is_form",
    "scan_asgi_headers",
]

# RFC 6750 section 2.2 defines the form-body token for this content type only.
_FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"
# RFC 6750 sections 2.2 and 2.3: the parameter name of a token sent in the form or the query.
_PARAMETER_NAME = "access_token"
# RFC 6750 section 2.1: the scheme, then one space (more are tolerated), then the token.
_SCHEME = "bearer "
_SCHEME_LENGTH = len(_SCHEME)


def bearer_token(authorization: Sequence[str], *, token_elsewhere: bool) -> str | None:
    """The token of the request's one ``Authorization: Bearer`` header, or None if it has none.

    ``authorization`` holds every Authorization header value of the request; ``token_elsewhere``
    says whether an ``access_token`` was also sent in the query string or the form body.
    Raises InvalidRequest when the token is presented in more than one way (RFC 6750 section 2).
    """
    if len(authorization) > 1:
        raise InvalidRequest("more than one Authorization header")
    if token_elsewhere:
        raise InvalidRequest("access_token in the query or form; use the Authorization header")
    if not authorization:
        return None
    value = authorization[0].strip()
    # Slicing copies the token once; splitting the header would copy it twice more.
    if value[:_SCHEME_LENGTH].lower() != _SCHEME:
        return None
    token = value[_SCHEME_LENGTH:].strip()
    # No b64token (RFC 6750 section 2.1) holds a comma; WSGI servers join repeated headers
    # with one, so a comma means several credentials were sent.
    if "," in token:
        raise InvalidRequest("more than one Authorization header")
    return token or None


def scan_asgi_headers(headers: Iterable[tuple[bytes, bytes]]) -> tuple[list[str], bool]:
    """From raw ASGI headers: every Authorization value, and whether the body is a form."""
    authorization: list[str] = []
    form = False
    for name, value in headers:
        if name == b"authorization":
            authorization.append(value.decode("latin-1"))
        elif name == b"content-type":
            form = is_form(value.decode("latin-1"))
    return authorization, form


def has_access_token(urlencoded: str | bytes) -> bool:
    """Whether a query string or form body carries an ``access_token`` parameter."""
    if not urlencoded:
        return False
    text = urlencoded.decode("latin-1") if isinstance(urlencoded, bytes) else urlencoded
    return any(name == _PARAMETER_NAME for name, _ in parse_qsl(text, keep_blank_values=True))


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
