"""The HTTP side of OAuth as Keycloak speaks it: error answers, form bodies, client credentials,
and CORS for a client's Web Origins.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any, Final
from urllib.parse import parse_qs, unquote_plus

from ._claims import Client
from ._keys import compact_json
from ._server import Request, Response

_FORM_CONTENT_TYPE: Final = "application/x-www-form-urlencoded"
NO_STORE: Final = (("Cache-Control", "no-store"), ("Pragma", "no-cache"))
# Keycloak's Cors.DEFAULT_ALLOW_HEADERS plus Authorization, which its OAuth endpoints allow.
_ALLOW_HEADERS: Final = (
    "Origin, Accept, X-Requested-With, Content-Type, Access-Control-Request-Method, "
    "Access-Control-Request-Headers, Authorization"
)
_PREFLIGHT_MAX_AGE: Final = "3600"


class OAuthError(Exception):
    """An error answer: RFC 6749 5.2's JSON body, and for bearer-token endpoints (userinfo)
    RFC 6750's ``WWW-Authenticate`` challenge as well."""

    def __init__(
        self, status: int, error: str, description: str, *, challenge_realm: str | None = None
    ) -> None:
        super().__init__(error)
        self.status = status
        self.error = error
        self.description = description
        self.challenge_realm = challenge_realm

    def response(self) -> Response:
        headers: tuple[tuple[str, str], ...] = ()
        if self.challenge_realm is not None:
            challenge = (
                f'Bearer realm="{self.challenge_realm}", error="{self.error}", '
                f'error_description="{self.description}"'
            )
            headers = (("WWW-Authenticate", challenge),)
        body = {"error": self.error, "error_description": self.description}
        return json_response(self.status, body, headers=headers)


class ClientAuthenticationFailed(OAuthError):
    """Keycloak answers these for any origin, so a browser can read why it was refused."""


def invalid_client() -> ClientAuthenticationFailed:
    # One answer for an unknown client, a wrong secret and a disabled client, as Keycloak 19+
    # gives, so the endpoint does not reveal which.
    return ClientAuthenticationFailed(
        401, "invalid_client", "Invalid client or Invalid client credentials"
    )


def json_response(
    status: int, body: Mapping[str, Any], *, headers: tuple[tuple[str, str], ...] = ()
) -> Response:
    return Response(status, compact_json(body).encode("utf-8"), "application/json", headers)


def reason_body(status: int) -> bytes:
    try:
        return f"{status} {HTTPStatus(status).phrase}".encode()
    except ValueError:
        return str(status).encode()


NOT_FOUND: Final = json_response(
    404,
    {
        "error": "Unable to find matching target resource method",
        "error_description": "For more on this error consult the server log.",
    },
)


def method_not_allowed(*allowed: str) -> Response:
    return json_response(
        405,
        {
            "error": "HTTP 405 Method Not Allowed",
            "error_description": "For more on this error consult the server log.",
        },
        headers=(("Allow", ", ".join(allowed)),),
    )


# ---------------------------------------------------------------------------------------------
# Requests


def parse_form(request: Request) -> dict[str, str]:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    # An empty body is an empty form whatever it is labelled (httpx sends none for data={}).
    if request.body and content_type != _FORM_CONTENT_TYPE:
        raise OAuthError(415, "invalid_request", f"Content-Type must be {_FORM_CONTENT_TYPE}")
    try:
        text = request.body.decode("utf-8")
    except UnicodeDecodeError:
        raise OAuthError(400, "invalid_request", "Request body is not UTF-8") from None
    fields = parse_qs(text, keep_blank_values=True)
    if any(len(values) > 1 for values in fields.values()):
        raise OAuthError(400, "invalid_request", "duplicated parameter")
    return {name: values[0] for name, values in fields.items()}


def _basic_credentials(authorization: str | None) -> tuple[str, str] | None:
    if authorization is None:
        return None
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() != "basic":
        return None  # e.g. a Bearer token: not client authentication
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise invalid_client() from None
    client_id, colon, secret = decoded.partition(":")
    if not colon:
        raise invalid_client()
    # RFC 6749 2.3.1: both halves are form-urlencoded before being joined; Keycloak decodes them.
    return unquote_plus(client_id), unquote_plus(secret)


def presented_credentials(request: Request, form: Mapping[str, str]) -> tuple[str, str | None]:
    """The client id and secret of client_secret_basic or client_secret_post.

    Basic credentials *and* a ``client_secret`` field are 400 ``invalid_request``: RFC 6749 2.3
    forbids two methods, and Keycloak silently letting the form win would hide client bugs. A
    ``client_id`` field next to Basic credentials must name the same client.
    """
    basic = _basic_credentials(request.headers.get("authorization"))
    if basic is not None:
        if "client_secret" in form:
            raise OAuthError(400, "invalid_request", "Multiple client authentication methods")
        if form.get("client_id", basic[0]) != basic[0]:
            raise OAuthError(400, "invalid_request", "client_id does not match Authorization")
        return basic
    if not form.get("client_id"):
        raise ClientAuthenticationFailed(401, "invalid_client", "Missing client_id parameter")
    return form["client_id"], form.get("client_secret")


def bearer_token(request: Request, form: Mapping[str, str]) -> str | None:
    """The access token of a userinfo request: the Bearer header, else the form field."""
    scheme, _, value = request.headers.get("authorization", "").strip().partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return form.get("access_token") or None


# ---------------------------------------------------------------------------------------------
# CORS, as Keycloak's DefaultCors does it


def preflight(request: Request, methods: str) -> Response:
    """Keycloak answers every preflight, for any origin: the client is not known yet. Which
    origins may read the answer is decided on the actual request."""
    origin = request.headers.get("origin")
    if origin is None:
        return Response(200, b"", None)
    headers = (
        ("Access-Control-Allow-Origin", origin),
        ("Access-Control-Allow-Methods", methods),
        ("Access-Control-Allow-Credentials", "true"),
        ("Access-Control-Allow-Headers", _ALLOW_HEADERS),
        ("Access-Control-Max-Age", _PREFLIGHT_MAX_AGE),
    )
    return Response(200, b"", None, headers)


def with_cors(
    response: Response, request: Request, client: Client | None, *, any_origin: bool = False
) -> Response:
    """``response`` readable by the request's origin if the client's Web Origins allow it (or
    ``any_origin``); otherwise unchanged, and the browser keeps it from the page."""
    origin = request.headers.get("origin")
    if origin is None or not (any_origin or (client is not None and client.allows_origin(origin))):
        return response
    headers = (
        *response.headers,
        ("Access-Control-Allow-Origin", origin),
        ("Access-Control-Allow-Credentials", "true"),
    )
    return Response(response.status, response.body, response.content_type, headers)
