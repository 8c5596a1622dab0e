"""ASGI middleware: every HTTP request and websocket needs a valid bearer token.

Plain ASGI, so it works in Starlette, FastAPI, Litestar, Quart or a bare ASGI callable::

    app.add_middleware(TokenAuthMiddleware, validator=validator, exclude_paths=["/health"])

On success ``scope["auth"]`` is the Principal and ``scope["user"]`` a ServiceUser, the shapes
Starlette's ``request.auth``, ``request.user`` and ``requires(...)`` expect. Anonymous requests (on
an excluded path, or with ``optional=True`` and no token) get ``ANONYMOUS`` in both.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any, Final

from ._bearer import (
    ErrorAnswer,
    Requirement,
    bearer_token,
    error_answer,
    refuse_access_token,
    scan_asgi_headers,
)
from ._errors import AuthError, InvalidRequest, KeysUnavailable, MissingToken
from ._principal import Principal
from ._validator import TokenValidator

__all__ = ["ANONYMOUS", "Anonymous", "ServiceUser", "TokenAuthMiddleware"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
# Starlette, Litestar and Quart each type ASGI callables their own, mutually incompatible way
# (plain mappings, TypedDicts); the loose type lets every one of them type-check the wrapping.
ASGIApp = Callable[..., Awaitable[None]]

# An urlencoded form body is read before authentication, to refuse a token sent in it (RFC 6750
# section 2): an unauthenticated client must not make the server hold megabytes for that.
MAX_FORM_BODY: Final = 1024 * 1024
# RFC 6455 section 7.4.1: 1008 "policy violation"; 1013 "try again later" suits a key outage.
_CLOSE_REFUSED: Final = 1008
_CLOSE_TRY_AGAIN: Final = 1013
# RFC 6455 section 5.5: a close frame's reason fits in 123 bytes.
_MAX_CLOSE_REASON: Final = 123
_DENIAL_EXTENSION: Final = "websocket.http.response"


class ServiceUser:
    """``scope["user"]`` of an authenticated request, shaped like Starlette's ``BaseUser``."""

    # A plain slotted class, not a frozen dataclass: one is made per request, and a frozen
    # dataclass's __init__ costs several times more.
    __slots__ = ("principal",)

    def __init__(self, principal: Principal) -> None:
        self.principal = principal

    def __repr__(self) -> str:
        return f"ServiceUser({self.principal.client_id!r})"

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def display_name(self) -> str:
        return self.principal.client_id

    @property
    def identity(self) -> str:
        return self.principal.subject or self.principal.client_id


@dataclass(frozen=True, slots=True)
class Anonymous:
    """``scope["auth"]`` and ``scope["user"]`` of a request that presented no token.

    Shaped like Starlette's empty ``AuthCredentials`` and ``UnauthenticatedUser``: no scopes, so
    ``requires(...)`` refuses it instead of failing on a missing attribute.
    """

    scopes: frozenset[str] = frozenset()
    is_authenticated: bool = False
    display_name: str = ""
    identity: str = ""


ANONYMOUS: Final = Anonymous()


@dataclass(frozen=True, slots=True)
class _Policy:
    validator: TokenValidator
    realm: str
    open_paths: frozenset[str]
    requirement: Requirement


class TokenAuthMiddleware:
    """Refuses HTTP requests and websockets without a valid token, answering per RFC 6750.

    ``exclude_paths`` are exact request paths (``scope["path"]``) left open, e.g. health checks
    and API docs. ``roles``, ``client_roles`` and ``scopes`` must all be held by the caller; wrap
    a single route or mount with another instance for per-route requirements. With ``optional``
    a request without a token passes as ``ANONYMOUS``; a bad token is still refused. ``realm``
    names the protection space in ``WWW-Authenticate`` (default: the validator's issuer).
    ``lifespan`` and any other scope type pass through untouched.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        validator: TokenValidator,
        exclude_paths: Iterable[str] = (),
        roles: Iterable[str] = (),
        client_roles: Mapping[str, Iterable[str]] | None = None,
        scopes: Iterable[str] = (),
        optional: bool = False,
        realm: str | None = None,
    ) -> None:
        open_paths = frozenset(exclude_paths)
        if not all(isinstance(path, str) and path.startswith("/") for path in open_paths):
            raise ValueError("exclude_paths must be request paths starting with '/'")
        self.app = app
        self._policy = _Policy(
            validator=validator,
            realm=validator.issuer if realm is None else realm,
            open_paths=open_paths,
            requirement=Requirement.of(roles, client_roles, scopes, optional),
        )

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        """Handle one connection; ``Any`` for the same reason as ``ASGIApp``."""
        kind = scope["type"]
        if kind != "http" and kind != "websocket":
            await self.app(scope, receive, send)
            return
        policy = self._policy
        if scope["path"] in policy.open_paths:
            scope["auth"] = scope["user"] = ANONYMOUS
            await self.app(scope, receive, send)
            return
        # Inline rather than split into helper coroutines: this runs on every request, and an
        # extra coroutine costs more than the checks themselves (so does validate_async on a
        # cache hit, hence cached() first).
        try:
            authorization, form = scan_asgi_headers(scope["headers"])
            refuse_access_token(scope.get("query_string", b""))
            if form and kind == "http":
                receive, body = await _buffer_body(receive)
                refuse_access_token(body)
            token = bearer_token(authorization)
            if token is None:
                if not policy.requirement.optional:
                    raise MissingToken()
                principal = None
            else:
                validator = policy.validator
                principal = validator.cached(token) or await validator.validate_async(token)
                policy.requirement.check(principal)
        except AuthError as error:
            answer = error_answer(error, policy.realm)
            if kind == "http":
                await _send_http(answer, send)
            else:
                await _refuse_websocket(scope, error, answer, send)
            return
        if principal is None:
            scope["auth"] = scope["user"] = ANONYMOUS
        else:
            scope["auth"] = principal
            scope["user"] = ServiceUser(principal)
        await self.app(scope, receive, send)


async def _buffer_body(receive: Receive) -> tuple[Receive, bytes]:
    """Read the whole request body, and a receive channel that hands it on unchanged.

    This happens before the caller is authenticated, so the body is bounded: past
    ``MAX_FORM_BODY`` the request is refused rather than held in memory.
    """
    messages: deque[Message] = deque()
    size = 0
    while True:
        message = await receive()
        messages.append(message)
        size += len(message.get("body", b""))
        if size > MAX_FORM_BODY:
            raise InvalidRequest("form body too large to check for an access_token")
        if message["type"] != "http.request" or not message.get("more_body", False):
            break
    body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.request")

    async def replay() -> Message:
        return messages.popleft() if messages else await receive()

    return replay, body


def _raw_headers(answer: ErrorAnswer) -> list[tuple[bytes, bytes]]:
    headers = [
        (name.lower().encode("latin-1"), value.encode("latin-1"))
        for name, value in answer.headers.items()
    ]
    headers.append((b"content-length", str(len(answer.body)).encode("latin-1")))
    return headers


async def _send_http(answer: ErrorAnswer, send: Send) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": answer.status_code,
            "headers": _raw_headers(answer),
        }
    )
    await send({"type": "http.response.body", "body": answer.body})


async def _refuse_websocket(
    scope: Scope, error: AuthError, answer: ErrorAnswer, send: Send
) -> None:
    """Refuse the handshake: an HTTP denial response where the server can send one, else close."""
    if _DENIAL_EXTENSION in (scope.get("extensions") or {}):
        await send(
            {
                "type": "websocket.http.response.start",
                "status": answer.status_code,
                "headers": _raw_headers(answer),
            }
        )
        await send({"type": "websocket.http.response.body", "body": answer.body})
        return
    code = _CLOSE_TRY_AGAIN if isinstance(error, KeysUnavailable) else _CLOSE_REFUSED
    reason = error.description.encode("utf-8")[:_MAX_CLOSE_REASON].decode("utf-8", "ignore")
    await send({"type": "websocket.close", "code": code, "reason": reason})
