"""Both async adapters under load, through uvicorn, while the realm's key endpoint is slow.

200 valid and 200 garbage tokens at once against a validator with no keys yet: every valid one
gets 200, every garbage one 401, and ``/health`` keeps answering while the realm holds the key
fetch, which it could not if fetching keys blocked the event loop. Asserted as order and
progress, not speed: health answers that came after the key set was asked for and before any
valid request was answered.
"""

# No ``from __future__ import annotations``: FastAPI must see the route's real annotations.

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Annotated, Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi import Depends, FastAPI
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from keycloak_m2m import Principal, TokenValidator
from keycloak_m2m.asgi import TokenAuthMiddleware
from keycloak_m2m.fastapi import TokenAuth
from keycloak_m2m.testing import LocalRealm

from ..support import CLIENT, PROGRESS
from .servers import serve_asgi

REQUESTS = 200
# Long enough for PROGRESS health answers (one per HEALTH_INTERVAL) while the fetch is held, with
# a wide margin for a loaded machine: 1 s let a loaded 2-core machine answer only 2.
KEY_DELAY = 3.0
HEALTH_INTERVAL = 0.05


async def ok(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


def middleware_app(validator: TokenValidator) -> Any:
    middleware = Middleware(TokenAuthMiddleware, validator=validator, exclude_paths=["/health"])
    return Starlette(routes=[Route("/work", ok), Route("/health", ok)], middleware=[middleware])


def dependency_app(validator: TokenValidator) -> Any:
    auth = TokenAuth(validator)
    app = FastAPI()
    auth.install(app)

    async def work(caller: Annotated[Principal, Depends(auth)]) -> str:
        return "ok"

    async def health() -> str:
        return "ok"

    app.add_api_route("/work", work)
    app.add_api_route("/health", health)
    return app


def garbage_tokens(realm: LocalRealm, count: int) -> list[str]:
    """Half random text, half well-formed tokens from a stranger's key (unknown kid)."""
    stranger = ec.generate_private_key(ec.SECP256R1())
    forged = [
        realm.mint(CLIENT, kid=f"stranger-{i}", signing_key=stranger) for i in range(count // 2)
    ]
    return forged + [f"garbage-{i}" for i in range(count - len(forged))]


class Progress:
    """What the load has reached, read by the health prober's thread."""

    def __init__(self, realm: LocalRealm) -> None:
        self.realm = realm
        self.valid_answered = 0
        self.health_while_keys_held = 0
        self.health_answered = 0

    def keys_held(self) -> bool:
        """The key set was asked for, and no valid request has had its answer yet."""
        return self.realm.request_count("certs") >= 1 and self.valid_answered == 0


async def status_of(port: int, token: str) -> int:
    """GET /work over a fresh HTTP/1.1 connection; the status code.

    A bare asyncio client, because httpx's connection pool, not the server, becomes the
    bottleneck with hundreds of concurrent connections in one event loop.
    """
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        b"GET /work HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
        b"Authorization: Bearer " + token.encode() + b"\r\n\r\n"
    )
    await writer.drain()
    answer = await reader.read()
    writer.close()
    await writer.wait_closed()
    return int(answer.split(b" ", 2)[1])


async def valid_status_of(port: int, token: str, progress: Progress) -> int:
    status = await status_of(port, token)
    progress.valid_answered += 1
    return status


def probe_health(base_url: str, done: threading.Event, progress: Progress) -> None:
    """Ask /health from another thread until the load is over, counting answers."""
    with httpx.Client(base_url=base_url) as client:
        while not done.is_set():
            response = client.get("/health")
            assert response.status_code == 200
            progress.health_answered += 1
            progress.health_while_keys_held += progress.keys_held()
            time.sleep(HEALTH_INTERVAL)


@pytest.mark.parametrize(
    "make_app", [middleware_app, dependency_app], ids=["middleware", "dependency"]
)
async def test_slow_keys_block_nothing(
    realm: LocalRealm,
    make_validator: Callable[..., TokenValidator],
    make_app: Callable[[TokenValidator], Any],
) -> None:
    valid = [realm.mint(CLIENT) for _ in range(REQUESTS)]
    garbage = garbage_tokens(realm, REQUESTS)
    realm.slow_keys(KEY_DELAY)
    progress = Progress(realm)
    done = threading.Event()
    with serve_asgi(make_app(make_validator())) as base_url:
        port = int(base_url.rsplit(":", 1)[1])
        prober = threading.Thread(target=probe_health, args=(base_url, done, progress))
        prober.start()
        try:
            started = time.monotonic()
            statuses = await asyncio.gather(
                *(valid_status_of(port, token, progress) for token in valid),
                *(status_of(port, token) for token in garbage),
            )
            elapsed = time.monotonic() - started
        finally:
            done.set()
            prober.join()

    assert statuses[:REQUESTS] == [200] * REQUESTS
    assert statuses[REQUESTS:] == [401] * REQUESTS
    assert elapsed >= KEY_DELAY  # the valid ones really waited for the slow key set
    # Health was answered while the realm held the key fetch: the event loop was not blocked.
    assert progress.health_while_keys_held >= PROGRESS, vars(progress)
    # The fetches were shared: one for the key set, at most one more for the unknown kids.
    assert realm.request_count("certs") <= 2
