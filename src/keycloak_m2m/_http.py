"""Hardened fetching of small JSON documents (key sets, discovery): the core's only network code.

A fetch either returns the body or a FetchFailure saying why; it never raises, so the callers'
policy decides what a failure means. Redirects are refused, the body is capped while it streams,
and the whole exchange has a deadline.

There is one implementation, async, because only there can a deadline stop an exchange whatever
the peer does: httpx's timeouts bound each socket operation, so a server that drips one header
line at a time holds a sync client indefinitely, and a blocked sync read cannot be interrupted
from outside. The sync entry points run it on a private event loop (``run_blocking``).
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import ssl
import zlib
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

import anyio
import httpx

_USER_AGENT = "keycloak-m2m"
_T = TypeVar("_T")
Form = dict[str, str]
Headers = dict[str, str]


_PROXY_SCHEMES = ("http", "https", "socks5", "socks5h")


@dataclass(frozen=True, slots=True)
class Connection:
    """Which certificate authorities to trust and which proxy to use: every outgoing request of
    the package (keys, discovery, token endpoint) takes its TLS settings from here.

    ``context`` None means httpx's default, which honours ``SSL_CERT_FILE`` and
    ``SSL_CERT_DIR``; ``proxy`` None leaves httpx's ``HTTP(S)_PROXY``/``NO_PROXY`` handling on.
    """

    context: ssl.SSLContext | None = None
    proxy: str | None = None

    @classmethod
    def create(cls, verify: bool | str | ssl.SSLContext, proxy: str | None) -> Connection:
        """Check ``verify`` (True, a CA bundle path or an SSLContext) and ``proxy`` (a URL).

        A CA bundle is loaded here, once: loading certificates blocks, and must not happen
        inside an event loop on the first request.
        """
        if proxy is not None and not _is_proxy_url(proxy):
            raise ValueError("proxy must be a URL such as http://proxy.internal:3128")
        if isinstance(verify, ssl.SSLContext):
            return cls(verify, proxy)
        if verify is True:
            return cls(None, proxy)
        if isinstance(verify, str) and verify:
            return cls(_ca_bundle_context(verify), proxy)
        # verify=False is refused on purpose: a token validator that trusts any certificate
        # trusts anyone on the path to publish its keys.
        raise ValueError("verify must be True, a CA bundle path, or an ssl.SSLContext")

    def warm(self, url: str) -> None:
        """Load the default CA certificates now if ``url`` will need them."""
        if self.context is None and url.startswith("https:"):
            tls_context()

    def options(self, url: str) -> dict[str, Any]:
        """The httpx client options for requests to ``url``."""
        if not url.startswith("https:"):
            return {"verify": False, "proxy": self.proxy}
        return {"verify": self.context or tls_context(), "proxy": self.proxy}


def _is_proxy_url(proxy: object) -> bool:
    if not isinstance(proxy, str):
        return False
    parts = urlsplit(proxy)
    return parts.scheme in _PROXY_SCHEMES and bool(parts.hostname)


def _ca_bundle_context(path: str) -> ssl.SSLContext:
    try:
        return ssl.create_default_context(cafile=path)
    except FileNotFoundError:
        raise ValueError(f"no CA bundle file at {path}") from None
    except (ssl.SSLError, OSError) as error:
        raise ValueError(f"{path} is not a readable PEM CA bundle ({error})") from None


@dataclass(frozen=True, slots=True)
class FetchPolicy:
    timeout: float = 5.0
    max_bytes: int = 256 * 1024
    connection: Connection = Connection()


@dataclass(frozen=True, slots=True)
class FetchFailure:
    reason: str
    # The HTTP status of the answer refused, when one came (for the key-fetch span).
    status: int | None = None


class _Refused(Exception):
    """The response is not one we accept; the message is the reason, safe to log."""

    def __init__(self, reason: str, status: int | None = None) -> None:
        super().__init__(reason)
        self.status = status


@functools.cache
def tls_context() -> ssl.SSLContext:
    """One TLS context for every fetch: loading CA certificates is slow and blocking."""
    return httpx.create_ssl_context()


def _client_options(url: str, policy: FetchPolicy) -> dict[str, Any]:
    return {
        "timeout": policy.timeout,
        "follow_redirects": False,
        "headers": {
            "Accept": "application/json",
            "Accept-Encoding": "identity",
            "User-Agent": _USER_AGENT,
        },
        **policy.connection.options(url),
    }


class _Body:
    """Collects a raw response body: status and size cap (after any decompression).

    The body is read raw and inflated here with a bound on the output, because httpx would
    inflate a compressed chunk whole: a few kilobytes of gzip can expand to megabytes.
    """

    def __init__(self, response: httpx.Response, policy: FetchPolicy) -> None:
        status = response.status_code
        if status != 200:
            raise _Refused(f"HTTP status {status}", status)
        declared = response.headers.get("Content-Length", "0")
        if not declared.isdigit() or int(declared) > policy.max_bytes:
            raise _Refused("response too large", status)
        encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
        if encoding not in _DECODERS:
            raise _Refused("unsupported Content-Encoding", status)
        self._inflate = _DECODERS[encoding]()
        self._policy = policy
        self._chunks: list[bytes] = []
        self._size = 0

    def add(self, raw: bytes) -> None:
        room = self._policy.max_bytes - self._size
        chunk = raw if self._inflate is None else self._inflate.decompress(raw, room + 1)
        self._size += len(chunk)
        if self._size > self._policy.max_bytes:
            raise _Refused("response too large")
        self._chunks.append(chunk)

    def result(self) -> bytes:
        return b"".join(self._chunks)


def _gzip_or_zlib() -> zlib._Decompress:
    return zlib.decompressobj(wbits=47)  # 32 + 15: gzip or zlib framing, detected


_DECODERS: dict[str, Callable[[], zlib._Decompress | None]] = {
    "identity": lambda: None,
    "": lambda: None,
    "gzip": _gzip_or_zlib,
    "x-gzip": _gzip_or_zlib,
    "deflate": _gzip_or_zlib,
}


def _failure(error: Exception) -> FetchFailure:
    if isinstance(error, _Refused):
        return FetchFailure(str(error), error.status)
    if isinstance(error, (httpx.TimeoutException, TimeoutError)):
        return FetchFailure("timed out")
    return FetchFailure(f"{type(error).__name__}")


def _method(form: Form | None) -> str:
    # A form goes out as a POST (token introspection); everything else is a GET.
    return "GET" if form is None else "POST"


def run_blocking(work: Callable[[], Coroutine[Any, Any, _T]]) -> _T:
    """Run async work on a private event loop and block until it is done; its result or error.

    In a worker thread, because the calling thread may be running an event loop of its own, and
    in the caller's context (the current trace span, say). The work's own deadlines bound the
    wait, and the thread ends with the work: when this returns, nothing of the exchange (thread,
    socket) is left running.
    """
    context = contextvars.copy_context()
    with ThreadPoolExecutor(1, thread_name_prefix="keycloak-m2m") as worker:
        return worker.submit(context.run, _run_on_private_loop, work).result()


def _run_on_private_loop(work: Callable[[], Coroutine[Any, Any, _T]]) -> _T:
    # Not asyncio.run: it waits for the loop's executor, where a DNS lookup that the deadline
    # abandoned may still be running.
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(work())
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


def fetch(
    url: str, policy: FetchPolicy, form: Form | None = None, headers: Headers | None = None
) -> bytes | FetchFailure:
    """GET a small document (POST ``form`` when given), blocking for at most ``policy.timeout``."""
    return run_blocking(lambda: fetch_async(url, policy, form, headers))


async def fetch_async(
    url: str, policy: FetchPolicy, form: Form | None = None, headers: Headers | None = None
) -> bytes | FetchFailure:
    """``fetch`` without blocking the event loop, within ``policy.timeout``."""
    try:
        with anyio.fail_after(policy.timeout):
            async with (
                httpx.AsyncClient(**_client_options(url, policy)) as client,
                client.stream(_method(form), url, data=form, headers=headers) as response,
            ):
                body = _Body(response, policy)
                async for chunk in response.aiter_raw():
                    body.add(chunk)
                return body.result()
    # OSError: anyio lets some TLS failures (an alert after the handshake) through unwrapped.
    except (httpx.HTTPError, _Refused, TimeoutError, zlib.error, OSError) as error:
        return _failure(error)
