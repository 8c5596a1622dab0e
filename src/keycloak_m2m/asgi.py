"""ASGI middleware: every HTTP request and websocket needs a valid bearer token.

Plain ASGI, so it works in Starlette, FastAPI, Litestar, Quart or a bare ASGI callable::

    app.add_middleware(TokenAuthMiddleware, validator=validator, exclude_paths=["/health"])

On success ``scope["auth"]`` is the Principal and ``scope["user"]`` a ServiceUser, the shapes
Starlette's ``request.auth``, ``request.user`` and ``requires(...)`` expect. Anonymous requests (on
an excluded path, or with ``optional=True`` and no token) get ``ANONYMOUS`` in both.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from ._asgi_scope import presented
from ._errors import AuthError, Unavailable
from ._principal import Principal
from ._request import ErrorAnswer, Gate, Need, TokenVerifier
from ._requirement import Requirement, RequirementOptions

if TYPE_CHECKING:  # typing.Unpack for keyword arguments needs Python 3.12
    from typing_extensions import Unpack

__all__ = ["ANONYMOUS", "Anonymous", "ServiceUser", "TokenAuthMiddleware"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
# Starlette, Litestar and Quart each type ASGI callables their own, mutually incompatible way
# (plain mappings, TypedDicts); the loose type lets every one of them type-check the wrapping.
ASGIApp = Callable[..., Awaitable[None]]

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


class TokenAuthMiddleware:
    """Refuses HTTP requests and websockets without a valid token, answering per RFC 6750.

    ``exclude_paths`` are request paths (``scope["path"]``) left open, e.g. health checks; an
    entry ending in ``*`` opens every path starting with what precedes it (``"/docs*"``), the
    others match exactly. The requirement keywords are those of ``Principal.require``:
    ``roles``, ``client_roles`` and ``scopes`` (all held), ``any_roles`` and ``any_scopes`` (one
    of each held), ``allow`` (the application's check on the Principal); wrap a single route or
    mount with another instance for per-route requirements. With ``optional`` a request without
    a token passes as ``ANONYMOUS``; a bad token is still refused. ``realm`` names the
    protection space in ``WWW-Authenticate`` (default: the validator's issuer). ``public_url``
    (``"https://api.example.com"``) is the address clients call, for a service behind a proxy:
    DPoP proofs name it. ``lifespan`` and any other scope type pass through untouched.
    ``client_cert_header`` (``"ssl-client-cert"`` or ``"x-forwarded-client-cert"``) names
    the header in which the TLS-terminating proxy in front passes the client certificate, for
    certificate-bound tokens; set it only behind such a proxy, which must overwrite the header.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        validator: TokenVerifier,
        exclude_paths: Iterable[str] = (),
        realm: str | None = None,
        client_cert_header: str | None = None,
        public_url: str | None = None,
        **requirement: Unpack[RequirementOptions],
    ) -> None:
        paths = tuple(exclude_paths)
        if not all(isinstance(path, str) and path.startswith("/") for path in paths):
            raise ValueError("exclude_paths must be request paths starting with '/'")
        self.app = app
        self._open_paths = frozenset(path for path in paths if not path.endswith("*"))
        self._open_prefixes = tuple(path[:-1] for path in paths if path.endswith("*"))
        self._gate = Gate(validator, realm, client_cert_header, public_url)
        self._requirement = Requirement.of(**requirement)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        """Handle one connection; ``Any`` for the same reason as ``ASGIApp``."""
        kind = scope["type"]
        if kind != "http" and kind != "websocket":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        paths = self._open_paths
        prefixes = self._open_prefixes
        # Empty ones spare hashing the path and a method call, a share of a cached request.
        if (paths and path in paths) or (prefixes and path.startswith(prefixes)):
            scope["auth"] = scope["user"] = ANONYMOUS
            await self.app(scope, receive, send)
            return
        # The first step here rather than through Gate.run_async: this runs on every request,
        # and a coroutine costs more than deciding on a cached token.
        gate = self._gate
        requirement = self._requirement
        request = presented(scope, gate.certificate_header)
        try:
            principal = gate.admit(request, requirement)
            if isinstance(principal, Need):
                body = _BufferedBody(receive)
                principal = await gate.settle_async(request, requirement, principal, body.read)
                receive = body.replay
        except AuthError as error:
            answer = gate.answer(error, request)
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


class _BufferedBody:
    """Reads the request body for the request step, then hands it on to the app unchanged.

    This happens before the caller is authenticated, so reading stops as soon as the body is
    past the step's limit.
    """

    def __init__(self, receive: Receive) -> None:
        self._receive = receive
        self._messages: deque[Message] = deque()

    async def read(self, limit: int) -> bytes:
        size = 0
        while size <= limit:
            message = await self._receive()
            self._messages.append(message)
            size += len(message.get("body", b""))
            if message["type"] != "http.request" or not message.get("more_body", False):
                break
        return b"".join(m.get("body", b"") for m in self._messages if m["type"] == "http.request")

    async def replay(self) -> Message:
        return self._messages.popleft() if self._messages else await self._receive()


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
    code = _CLOSE_TRY_AGAIN if isinstance(error, Unavailable) else _CLOSE_REFUSED
    reason = error.description.encode("utf-8")[:_MAX_CLOSE_REASON].decode("utf-8", "ignore")
    await send({"type": "websocket.close", "code": code, "reason": reason})
