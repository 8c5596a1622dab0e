"""Instructions per request through a Starlette app, counted by callgrind: the middleware's own
cost on a cached token, without the noise that moves middleware.py's requests per second.

    python benchmarks/middleware_instructions.py [--caches]   # valgrind; 5 (11) minutes

The apps are middleware.py's (no authentication, the dict-lookup floor, TokenAuthMiddleware),
with one valid token. First in one process, called as ASGI apps (``await app(scope, receive,
send)``) as uvicorn would call them: each runs in a child under callgrind twice, over 500 and
over 2,000 requests, and the difference over 1,500 is its cost per request. Then served: each
app, and FastAPI with and without the middleware, in middleware.py's uvicorn server under
callgrind, sent 200 and then 1,200 requests over one keep-alive connection by this process; the
difference over 1,000 is what the server spends per request, HTTP parsing and the event loop
included, and its inverse ratio to no authentication in the same framework is the throughput
ratio middleware.py's target is about, on a machine with the server's core to itself. For the
package as installed: pure Python or the compiled build, which the first line names.

With ``--caches``, each served app is then loaded by wrk as middleware.py loads it, under
cachegrind's simulated caches (500 and 2,500 requests, the difference over 2,000): per request,
the instructions and the reads that missed the first-level instruction and data caches, and
how many more than without authentication. A request that costs few more instructions can
still cost more time when its code and data push the app's out of those caches.

A measurement, not a test: it always exits 0 once the numbers are printed.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

import middleware
from instructions import collected, counted, under_callgrind
from validate import build_name

from keycloak_m2m.testing import LocalRealm

FEW, MANY = 500, 2000
SERVED_FEW, SERVED_MANY = 200, 1200
CONTENT_LENGTH = re.compile(rb"content-length: (\d+)", re.IGNORECASE)
VARIANTS = ("starlette-none", "starlette-floor", "starlette-middleware")
# Served, FastAPI too: each app against no authentication in the same framework.
SERVED_VARIANTS = (*VARIANTS, "fastapi-none", "fastapi-middleware")
SECRET = "benchmark-client-secret"
# --caches: wrk's requests to each server under cachegrind, the difference over 2,000.
LOADED_FEW, LOADED_MANY = 500, 2500
EVENT_NAMES = ("I refs", "I1 misses", "D1 misses")
CACHE_EVENTS = re.compile(rb"==\d+== (I\s+refs|I1\s+misses|D1\s+misses):\s+([\d,]+)")


class Events(NamedTuple):
    """cachegrind's counts: instructions, and reads that missed its first-level caches."""

    instructions: int
    instruction_misses: int
    data_misses: int


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


def send_requests(port: int, token: str, count: int) -> None:
    """``count`` requests over one keep-alive connection, each answered 200 before the next."""
    request = (
        f"GET /hello HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {token}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", port)) as connection:
        for _ in range(count):
            connection.sendall(request)
            received = b""
            while b"\r\n\r\n" not in received:
                received += connection.recv(65536)
            head, _, body = received.partition(b"\r\n\r\n")
            length = CONTENT_LENGTH.search(head)
            if not head.startswith(b"HTTP/1.1 200") or length is None:
                raise RuntimeError(f"the server answered {head[:40]!r}")
            while len(body) < int(length.group(1)):
                body += connection.recv(65536)


def served_instructions(variant: str, issuer: str, token: str, count: int) -> int:
    """What middleware.py's server for ``variant`` runs, under callgrind, to answer ``count``
    requests after a first one (the key fetch and the verification, in both counts alike)."""
    arguments = [middleware.__file__, "--serve", variant, "--issuer", issuer]
    with serving(under_callgrind(arguments), token) as (port, server):
        send_requests(port, token, count)
    return collected(server.stderr_text, arguments)


def served_under_load(variant: str, issuer: str, token: str, count: int, script: Path) -> Events:
    """cachegrind's simulated caches while middleware.py's server for ``variant`` answers
    ``count`` requests from wrk, as middleware.py loads it (32 connections)."""
    arguments = [middleware.__file__, "--serve", variant, "--issuer", issuer]
    command = [
        "valgrind", "--tool=cachegrind", "--cache-sim=yes", "--cachegrind-out-file=/dev/null",
        sys.executable, *arguments,
    ]  # fmt: skip
    with serving(command, token) as (port, server):
        middleware.run_wrk(f"http://127.0.0.1:{port}", token, count, script)
    found = {
        " ".join(name.decode().split()): int(value.replace(b",", b""))
        for name, value in CACHE_EVENTS.findall(server.stderr_text)
    }
    if set(found) != set(EVENT_NAMES):
        raise RuntimeError(f"cachegrind printed no cache counts for {arguments}")
    return Events(*(found[name] for name in EVENT_NAMES))


class Served:
    """What a server under valgrind printed on stderr (its counts), once it has ended."""

    def __init__(self) -> None:
        self.stderr_text = b""


@contextmanager
def serving(command: list[str], token: str) -> Iterator[tuple[int, Served]]:
    """Start ``command`` (middleware.py's server under valgrind), answer a first request (the
    key fetch and the verification, in every count alike), yield its port; then end it."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # noqa: S603
    server = Served()
    assert process.stdout is not None
    port = int(process.stdout.readline())
    while True:
        try:
            send_requests(port, token, 1)
            break
        except OSError:  # not listening yet: uvicorn under valgrind starts slowly
            time.sleep(0.5)
    try:
        yield port, server
    finally:
        process.terminate()  # uvicorn shuts down cleanly on SIGTERM, and valgrind prints
        _, server.stderr_text = process.communicate(timeout=300)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    parser.add_argument(
        "--caches",
        action="store_true",
        help="also count first-level cache misses under wrk's load (cachegrind; about 6 minutes)",
    )
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
        print(f"\n{'served by uvicorn':44} {'per request':>12}   throughput vs none")
        baselines: dict[str, int] = {}
        for variant in SERVED_VARIANTS:
            few, many = (
                served_instructions(variant, realm.issuer, token, n)
                for n in (SERVED_FEW, SERVED_MANY)
            )
            per_request = (many - few) // (SERVED_MANY - SERVED_FEW)
            server = middleware.SERVERS[variant]
            baseline = baselines.setdefault(server.framework, per_request)
            label = f"{server.framework}: {server.name}"
            print(f"{label:44} {per_request:>12,}   {baseline / per_request:6.3f}x")
        if options.caches:
            print_cache_misses(realm.issuer, token)
    return 0


def print_cache_misses(issuer: str, token: str) -> None:
    """Per request under wrk's load, and more than without authentication in the framework:
    what the throughput pays beyond the instructions."""
    print(
        f"\n{'under wrk, cachegrind, per request':44} {'instructions':>14} {'I1 misses':>14}",
        end="",
    )
    print(f" {'D1 misses':>14}")
    baselines: dict[str, Events] = {}
    with tempfile.TemporaryDirectory() as directory:
        script = Path(directory) / "fixed.lua"
        script.write_text(middleware.WRK_SCRIPT)
        for variant in SERVED_VARIANTS:
            few, many = (
                served_under_load(variant, issuer, token, n, script)
                for n in (LOADED_FEW, LOADED_MANY)
            )
            per = Events(
                *((b - a) // (LOADED_MANY - LOADED_FEW) for a, b in zip(few, many, strict=True))
            )
            server = middleware.SERVERS[variant]
            baseline = baselines.setdefault(server.framework, per)
            cells = [f"{n:>7,} {n - base:>+6,}" for n, base in zip(per, baseline, strict=True)]
            print(f"{server.framework + ': ' + server.name:44} {' '.join(cells)}")


if __name__ == "__main__":
    raise SystemExit(main())
