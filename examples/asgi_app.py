"""A Starlette notification service behind TokenAuthMiddleware, over HTTP and websockets.

Run it: ``python examples/asgi_app.py``. It starts a local Keycloak-compatible realm, serves
the app with uvicorn on 127.0.0.1, calls it as the ``shop-api`` service and prints the answers.
The middleware is plain ASGI: the same lines work in FastAPI, Litestar or Quart.
"""

from __future__ import annotations

import secrets
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.authentication import requires
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from keycloak_m2m import TokenValidator
from keycloak_m2m.asgi import TokenAuthMiddleware
from keycloak_m2m.testing import LocalRealm


async def list_notifications(request: Request) -> JSONResponse:
    # request.auth is the Principal, request.user a ServiceUser.
    return JSONResponse({"caller": request.auth.client_id, "user": request.user.display_name})


@requires("profile")  # Starlette's own check, against the token's scopes
async def caller_profile(request: Request) -> JSONResponse:
    return JSONResponse(
        {"client_id": request.auth.client_id, "scopes": sorted(request.auth.scopes)}
    )


async def purge_notifications(request: Request) -> JSONResponse:
    return JSONResponse({"purged_by": request.auth.client_id})


async def live_feed(websocket: WebSocket) -> None:
    # Only reached with a valid token: a bad one is refused before the handshake completes.
    await websocket.accept()
    await websocket.send_text(f"hello {websocket.auth.client_id}")
    await websocket.close()


async def health(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


def create_app(validator: TokenValidator) -> Starlette:
    # A route with its own requirements gets its own instance: refusals stay RFC 6750 answers.
    admins_only = Middleware(
        TokenAuthMiddleware, validator=validator, roles=["notifications:admin"]
    )
    routes = [
        Route("/notifications", list_notifications),
        Route("/notifications", purge_notifications, methods=["DELETE"], middleware=[admins_only]),
        Route("/profile", caller_profile),
        WebSocketRoute("/feed", live_feed),
        Route("/health", health),
    ]
    auth = Middleware(TokenAuthMiddleware, validator=validator, exclude_paths=["/health"])
    return Starlette(routes=routes, middleware=[auth])


@contextmanager
def serving(app: Starlette) -> Iterator[str]:
    """Serve the app with uvicorn on a free port of 127.0.0.1 until the block ends."""
    sock = socket.create_server(("127.0.0.1", 0))
    # wsproto: of uvicorn's websocket implementations, the one that sends the middleware's
    # HTTP denial responses without logging a spurious error.
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", ws="wsproto"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]})
    thread.start()
    while not server.started and thread.is_alive():
        time.sleep(0.01)
    try:
        yield f"127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join()
        sock.close()


def main() -> None:
    with LocalRealm("shop") as realm:
        secret = secrets.token_urlsafe(16)  # a throwaway local realm's made-up secret
        realm.add_client("shop-api", secret, audience=["notification-service"])
        validator = TokenValidator(realm.issuer, "notification-service")
        grant = {"grant_type": "client_credentials"}
        token = httpx.post(realm.token_url, data=grant, auth=("shop-api", secret)).json()
        bearer = {"Authorization": f"Bearer {token['access_token']}"}

        with serving(create_app(validator)) as address:
            with httpx.Client(base_url=f"http://{address}") as http:
                for method, path, who, headers in [
                    ("GET", "/health", "anonymous", {}),
                    ("GET", "/notifications", "anonymous", {}),
                    ("GET", "/notifications", "shop-api", bearer),
                    ("GET", "/profile", "shop-api", bearer),
                    ("DELETE", "/notifications", "shop-api", bearer),
                ]:
                    response = http.request(method, path, headers=headers)
                    print(f"{method} {path} as {who} -> {response.status_code} {response.text}")
            with connect(f"ws://{address}/feed", additional_headers=bearer) as feed:
                greeting = feed.recv(timeout=5, decode=True)
                print(f"websocket /feed as shop-api -> {greeting!s}")
            try:
                connect(f"ws://{address}/feed")
            except InvalidStatus as refused:
                print(f"websocket /feed as anonymous -> {refused.response.status_code}")


if __name__ == "__main__":
    main()
