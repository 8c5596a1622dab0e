"""The soak test's server: a Starlette app behind TokenAuthMiddleware, run by uvicorn.

``tests/soak/test_soak.py`` starts it as a separate process (``python tests/soak/app.py``), so its
memory can be read from ``/proc/<pid>/status`` and it does not share the load generator's GIL.
Everything comes from the environment:

* ``KEYCLOAK_M2M_SOAK_ISSUER``, ``KEYCLOAK_M2M_SOAK_AUDIENCE``: the validator's issuer and audience;
* ``KEYCLOAK_M2M_SOAK_ROLE``: the realm role every request to ``/work`` needs;
* ``KEYCLOAK_M2M_SOAK_SETTINGS``: JSON object of further ``TokenValidator`` keyword arguments
  (the test gives short key-cache timings and a small verified-token cache);
* ``KEYCLOAK_M2M_SOAK_FD``: a listening socket on 127.0.0.1 inherited from the test, so the port is
  free and bound before the server starts (no race for it);
* ``KEYCLOAK_M2M_SOAK_HTTP`` (optional): uvicorn's HTTP implementation, ``auto`` (the default:
  httptools when installed, else h11), ``h11`` or ``httptools``.

``/work`` answers the caller's client id; ``/health`` is excluded from authentication.
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import sys
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from keycloak_m2m import TokenValidator
from keycloak_m2m.asgi import TokenAuthMiddleware


async def work(request: Request) -> PlainTextResponse:
    return PlainTextResponse(request.auth.client_id)


async def health(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


def create_app(issuer: str, audience: str, role: str, settings: dict[str, Any]) -> Starlette:
    validator = TokenValidator(issuer, audience, **settings)
    auth = Middleware(
        TokenAuthMiddleware, validator=validator, roles=[role], exclude_paths=["/health"]
    )
    return Starlette(routes=[Route("/work", work), Route("/health", health)], middleware=[auth])


def _implementation(setting: str, fast: str, fallback: str) -> str:
    # uvicorn's "auto": the fast implementation when it is installed.
    if setting != "auto":
        return setting
    return fast if importlib.util.find_spec(fast) is not None else fallback


def main() -> None:
    env = os.environ
    app = create_app(
        env["KEYCLOAK_M2M_SOAK_ISSUER"],
        env["KEYCLOAK_M2M_SOAK_AUDIENCE"],
        env["KEYCLOAK_M2M_SOAK_ROLE"],
        json.loads(env["KEYCLOAK_M2M_SOAK_SETTINGS"]),
    )
    http = _implementation(env.get("KEYCLOAK_M2M_SOAK_HTTP", "auto"), "httptools", "h11")
    loop = _implementation("auto", "uvloop", "asyncio")
    sock = socket.socket(fileno=int(env["KEYCLOAK_M2M_SOAK_FD"]))
    config = uvicorn.Config(
        app,
        http=http,
        loop=loop,
        ws="none",
        lifespan="off",
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=2,
        # The control client's connection idles from start-up to the new-key probe, which on a
        # loaded machine can take longer than uvicorn's default 5 s: the server would close it
        # as the probe reuses it (a keep-alive race, not a failure of the middleware).
        timeout_keep_alive=3600,
    )
    # The test reads this first line for its report.
    print(f"soak server: pid {os.getpid()}, http {http}, loop {loop}", flush=True)
    uvicorn.Server(config).run(sockets=[sock])
    sys.stdout.flush()


if __name__ == "__main__":
    main()
