"""Instructions per request through a Starlette app in one process, counted by callgrind: the
middleware's own cost on a cached token, without the server, the client and the noise.

    python benchmarks/middleware_instructions.py    # needs valgrind; about 2 minutes

The apps are middleware.py's (no authentication, the dict-lookup floor, TokenAuthMiddleware),
called as ASGI apps (``await app(scope, receive, send)``) with one valid token, as uvicorn would
call them. Each runs in a child under callgrind twice, over 500 and over 2,000 requests; the
difference over 1,500 is its cost per request. For the package as installed: pure Python or the
compiled build, which the first line names.

A measurement, not a test: it always exits 0 once the numbers are printed.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

import middleware
from instructions import counted
from validate import build_name

from keycloak_m2m.testing import LocalRealm

FEW, MANY = 500, 2000
VARIANTS = ("starlette-none", "starlette-floor", "starlette-middleware")
SECRET = "benchmark-client-secret"


def child(variant: str, issuer: str, token: str, count: int) -> None:
    """Serve ``count`` requests to ``variant`` in this process (run under callgrind)."""
    app = middleware.starlette_app(variant, issuer)
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/hello",
        "raw_path": b"/hello",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1"), (b"authorization", f"Bearer {token}".encode())],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }
    statuses: list[int] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    async def serve(requests: int) -> None:
        for _ in range(requests):
            await app(dict(scope, state={}), receive, send)

    asyncio.run(serve(1))  # the key fetch and the token's verification, in both counts alike
    asyncio.run(serve(count))
    if set(statuses) != {200}:
        raise RuntimeError(f"{variant} answered {sorted(set(statuses))}")


def instructions(variant: str, issuer: str, token: str, count: int) -> int:
    return counted([__file__, "--child", variant, issuer, token, str(count)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    if options.child:
        variant, issuer, token, count = options.child
        child(variant, issuer, token, int(count))
        return 0
    with LocalRealm(middleware.REALM, token_lifetime=middleware.TOKEN_LIFETIME) as realm:
        realm.add_client(middleware.CLIENT_ID, SECRET, audience=[middleware.AUDIENCE])
        token = middleware.obtain_token(realm, middleware.CLIENT_ID, SECRET)
        print(f"keycloak-m2m build: {build_name()}")
        print(f"{'starlette app':44} {'per request':>12}   vs none")
        baseline = 0
        for variant in VARIANTS:
            few, many = (instructions(variant, realm.issuer, token, n) for n in (FEW, MANY))
            per_request = (many - few) // (MANY - FEW)
            baseline = baseline or per_request
            label = middleware.SERVERS[variant].name
            print(f"{label:44} {per_request:>12,}   {per_request / baseline:6.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
