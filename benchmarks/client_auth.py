"""What ClientCredentials costs each outgoing request, as ``httpx.Auth`` with a cached token.

Each auth flow is driven directly, as httpx drives it for one request (start the flow, take the
request it hands back, send it the response, see it finish), so that the difference is the auth
alone: through a whole client it drowns in the client's own noise. The baseline is an
``httpx.Auth`` that sets one fixed header. Both flows run interleaved, round by round, on the
same request; the token was fetched from a local Keycloak-compatible realm before timing.

    python benchmarks/client_auth.py [--rounds N]

A measurement, not a test: it always exits 0 once the numbers are printed.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Generator, Sequence
from importlib import metadata

import httpx

from keycloak_m2m import ClientCredentials
from keycloak_m2m.testing import LocalRealm

CLIENT_ID = "shop-api"
SECRET = "shop-api-secret"
TARGET_MICROSECONDS = 5.0
CALLS_PER_ROUND = 20_000


class FixedHeader(httpx.Auth):
    """The least an auth can do: one header, no state."""

    def __init__(self, value: str) -> None:
        self._value = value

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = self._value
        yield request


def one_request_sync(auth: httpx.Auth, request: httpx.Request, response: httpx.Response) -> None:
    """httpx.Client._send_handling_auth for a request answered at once, without the send."""
    flow = auth.sync_auth_flow(request)
    next(flow)
    try:
        flow.send(response)
    except StopIteration:
        return
    raise AssertionError("the flow asked to send the request again")


async def one_request_async(
    auth: httpx.Auth, request: httpx.Request, response: httpx.Response
) -> None:
    flow = auth.async_auth_flow(request)
    await flow.__anext__()
    try:
        await flow.asend(response)
    except StopAsyncIteration:
        return
    raise AssertionError("the flow asked to send the request again")


def timed(call: Callable[[], object], count: int) -> float:
    """Microseconds per call over ``count`` calls, the collector off."""
    gc.collect()
    gc.disable()
    try:
        start = time.perf_counter_ns()
        for _ in range(count):
            call()
        return (time.perf_counter_ns() - start) / count / 1000
    finally:
        gc.enable()


def timed_async(call: Callable[[], object], count: int) -> float:
    async def batch() -> float:
        gc.collect()
        gc.disable()
        try:
            start = time.perf_counter_ns()
            for _ in range(count):
                await call()  # type: ignore[misc]
            return (time.perf_counter_ns() - start) / count / 1000
        finally:
            gc.enable()

    return asyncio.run(batch())


def version_of(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "not installed"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=9, help="rounds to take the median over")
    rounds = parser.parse_args(argv).rounds
    print(
        f"Python {platform.python_version()}; {os.cpu_count()} logical cores; {platform.platform()}"
    )
    print(f"keycloak-m2m {version_of('keycloak-m2m')}, httpx {version_of('httpx')}")
    print(f"{rounds} rounds of {CALLS_PER_ROUND} auth flows each, median per request\n")
    with LocalRealm("shop") as realm:
        realm.add_client(CLIENT_ID, SECRET)
        credentials = ClientCredentials(CLIENT_ID, SECRET, token_url=realm.token_url)
        token = credentials.get_token()  # cached from here on: no request is timed
        fixed = FixedHeader(f"Bearer {token}")
        request = httpx.Request("GET", "http://127.0.0.1/notifications")
        response = httpx.Response(200, request=request)
        flows: dict[str, tuple[Callable[[], object], Callable[[Callable[[], object], int], float]]]
        flows = {
            "fixed header, sync": (lambda: one_request_sync(fixed, request, response), timed),
            "ClientCredentials, sync": (
                lambda: one_request_sync(credentials, request, response),
                timed,
            ),
            "fixed header, async": (
                lambda: one_request_async(fixed, request, response),
                timed_async,
            ),
            "ClientCredentials, async": (
                lambda: one_request_async(credentials, request, response),
                timed_async,
            ),
        }
        samples: dict[str, list[float]] = {name: [] for name in flows}
        for _ in range(rounds):
            for name, (call, timer) in flows.items():
                samples[name].append(timer(call, CALLS_PER_ROUND))
        if realm.request_count("token") != 1:
            raise AssertionError("a token request was made while timing")
    medians = {name: statistics.median(values) for name, values in samples.items()}
    print(f"{'auth flow':<28} {'median µs':>10}")
    for name, median in medians.items():
        print(f"{name:<28} {median:>10.2f}")
    print()
    for mode in ("sync", "async"):
        extra = medians[f"ClientCredentials, {mode}"] - medians[f"fixed header, {mode}"]
        mark = "PASS" if extra <= TARGET_MICROSECONDS else "MISS"
        print(
            f"ClientCredentials over a fixed header ({mode}): {extra:+.2f} µs per request  "
            f"target <= {TARGET_MICROSECONDS:g} µs  {mark}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
