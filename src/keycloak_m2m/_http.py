"""Hardened fetching of small JSON documents (key sets, discovery): the core's only network code.

A fetch either returns the body or a FetchFailure saying why; it never raises, so the callers'
policy decides what a failure means. Redirects are refused, the body is capped while it streams,
and the whole exchange has a deadline.
"""

from __future__ import annotations

import functools
import ssl
import time
from dataclasses import dataclass
from typing import Any

import anyio
import httpx

_USER_AGENT = "keycloak-m2m"


@dataclass(frozen=True, slots=True)
class FetchPolicy:
    timeout: float = 5.0
    max_bytes: int = 256 * 1024


@dataclass(frozen=True, slots=True)
class FetchFailure:
    reason: str


class _Refused(Exception):
    """The response is not one we accept; the message is the reason, safe to log."""


@functools.cache
def tls_context() -> ssl.SSLContext:
    """One TLS context for every fetch: loading CA certificates is slow and blocking."""
    return httpx.create_ssl_context()


def _client_options(url: str, policy: FetchPolicy) -> dict[str, Any]:
    return {
        "timeout": policy.timeout,
        "follow_redirects": False,
        # identity: a compressed body could expand far past the cap inside a single chunk.
        "headers": {
            "Accept": "application/json",
            "Accept-Encoding": "identity",
            "User-Agent": _USER_AGENT,
        },
        "verify": tls_context() if url.startswith("https:") else False,
    }


class _Body:
    """Collects a response body while enforcing status, size cap and deadline."""

    def __init__(self, response: httpx.Response, policy: FetchPolicy, deadline: float) -> None:
        if response.status_code != 200:
            raise _Refused(f"HTTP status {response.status_code}")
        declared = response.headers.get("Content-Length", "0")
        if not declared.isdigit() or int(declared) > policy.max_bytes:
            raise _Refused("response too large")
        self._policy = policy
        self._deadline = deadline
        self._chunks: list[bytes] = []
        self._size = 0

    def add(self, chunk: bytes) -> None:
        self._size += len(chunk)
        if self._size > self._policy.max_bytes:
            raise _Refused("response too large")
        if time.monotonic() > self._deadline:
            raise _Refused("timed out")
        self._chunks.append(chunk)

    def result(self) -> bytes:
        return b"".join(self._chunks)


def _failure(error: Exception) -> FetchFailure:
    if isinstance(error, _Refused):
        return FetchFailure(str(error))
    if isinstance(error, (httpx.TimeoutException, TimeoutError)):
        return FetchFailure("timed out")
    return FetchFailure(f"{type(error).__name__}")


def fetch(url: str, policy: FetchPolicy) -> bytes | FetchFailure:
    """GET a small document, blocking."""
    deadline = time.monotonic() + policy.timeout
    try:
        with (
            httpx.Client(**_client_options(url, policy)) as client,
            client.stream("GET", url) as response,
        ):
            body = _Body(response, policy, deadline)
            for chunk in response.iter_bytes():
                body.add(chunk)
            return body.result()
    except (httpx.HTTPError, _Refused) as error:
        return _failure(error)


async def fetch_async(url: str, policy: FetchPolicy) -> bytes | FetchFailure:
    """GET a small document without blocking the event loop."""
    deadline = time.monotonic() + policy.timeout
    try:
        with anyio.fail_after(policy.timeout):
            async with (
                httpx.AsyncClient(**_client_options(url, policy)) as client,
                client.stream("GET", url) as response,
            ):
                body = _Body(response, policy, deadline)
                async for chunk in response.aiter_bytes():
                    body.add(chunk)
                return body.result()
    except (httpx.HTTPError, _Refused, TimeoutError) as error:
        return _failure(error)
