"""Hardened fetching of small JSON documents (key sets, discovery): the core's only network code.

A fetch either returns the body or a FetchFailure saying why; it never raises, so the callers'
policy decides what a failure means. Redirects are refused, the body is capped while it streams,
and the whole exchange has a deadline.
"""

from __future__ import annotations

import functools
import ssl
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import anyio
import httpx

_USER_AGENT = "keycloak-m2m"
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
        "headers": {
            "Accept": "application/json",
            "Accept-Encoding": "identity",
            "User-Agent": _USER_AGENT,
        },
        **policy.connection.options(url),
    }


class _Body:
    """Collects a raw response body: status, size cap (after any decompression) and deadline.

    The body is read raw and inflated here with a bound on the output, because httpx would
    inflate a compressed chunk whole: a few kilobytes of gzip can expand to megabytes.
    """

    def __init__(self, response: httpx.Response, policy: FetchPolicy, deadline: float) -> None:
        if response.status_code != 200:
            raise _Refused(f"HTTP status {response.status_code}")
        declared = response.headers.get("Content-Length", "0")
        if not declared.isdigit() or int(declared) > policy.max_bytes:
            raise _Refused("response too large")
        encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
        if encoding not in _DECODERS:
            raise _Refused("unsupported Content-Encoding")
        self._inflate = _DECODERS[encoding]()
        self._policy = policy
        self._deadline = deadline
        self._chunks: list[bytes] = []
        self._size = 0

    def add(self, raw: bytes) -> None:
        room = self._policy.max_bytes - self._size
        chunk = raw if self._inflate is None else self._inflate.decompress(raw, room + 1)
        self._size += len(chunk)
        if self._size > self._policy.max_bytes:
            raise _Refused("response too large")
        if time.monotonic() > self._deadline:
            raise _Refused("timed out")
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
        return FetchFailure(str(error))
    if isinstance(error, (httpx.TimeoutException, TimeoutError)):
        return FetchFailure("timed out")
    return FetchFailure(f"{type(error).__name__}")


def _method(form: Form | None) -> str:
    # A form goes out as a POST (token introspection); everything else is a GET.
    return "GET" if form is None else "POST"


def fetch(
    url: str, policy: FetchPolicy, form: Form | None = None, headers: Headers | None = None
) -> bytes | FetchFailure:
    """GET a small document (POST ``form`` when given), blocking for at most ``policy.timeout``.

    httpx's timeouts bound each socket operation, not the exchange: a server dripping header
    lines could hold the caller (and the validator's lock) indefinitely. The fetch runs in a
    worker thread that the caller stops waiting for at the deadline; the worker ends on its own
    at the next per-read timeout or deadline check.
    """
    outcome: list[bytes | FetchFailure] = []
    worker = threading.Thread(
        target=lambda: outcome.append(_fetch_blocking(url, policy, form, headers)),
        name="keycloak-m2m-fetch",
        daemon=True,
    )
    worker.start()
    worker.join(policy.timeout)
    return outcome[0] if outcome else FetchFailure("timed out")


def _fetch_blocking(
    url: str, policy: FetchPolicy, form: Form | None, headers: Headers | None
) -> bytes | FetchFailure:
    deadline = time.monotonic() + policy.timeout
    try:
        with (
            httpx.Client(**_client_options(url, policy)) as client,
            client.stream(_method(form), url, data=form, headers=headers) as response,
        ):
            body = _Body(response, policy, deadline)
            for chunk in response.iter_raw():
                body.add(chunk)
            return body.result()
    except (httpx.HTTPError, _Refused, zlib.error) as error:
        return _failure(error)


async def fetch_async(
    url: str, policy: FetchPolicy, form: Form | None = None, headers: Headers | None = None
) -> bytes | FetchFailure:
    """``fetch`` without blocking the event loop, within ``policy.timeout``."""
    deadline = time.monotonic() + policy.timeout
    try:
        with anyio.fail_after(policy.timeout):
            async with (
                httpx.AsyncClient(**_client_options(url, policy)) as client,
                client.stream(_method(form), url, data=form, headers=headers) as response,
            ):
                body = _Body(response, policy, deadline)
                async for chunk in response.aiter_raw():
                    body.add(chunk)
                return body.result()
    except (httpx.HTTPError, _Refused, TimeoutError, zlib.error) as error:
        return _failure(error)
