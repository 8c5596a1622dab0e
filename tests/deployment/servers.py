"""Relays for the deployment tests: one base URL in front of several realms, and a forward proxy.

Both pass requests on to LocalRealms over plain HTTP and record what they passed.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

from ..support import TLS

_HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "transfer-encoding",
    "content-length",
    "proxy-connection",
}


@dataclass
class Relay:
    """What the relay saw, and how it behaves."""

    url: str = ""
    targets: list[str] = field(default_factory=list)
    # The body of each request relayed, for tests that read what a client sent.
    bodies: list[bytes] = field(default_factory=list)
    # Relay this many requests, then answer 502 instead of the upstream's answer: a proxy whose
    # upstream connection broke after the request had gone through.
    lost_answers: int = 0


def _handler(upstreams: dict[str, str] | None, relay: Relay) -> type:
    """Relay to the upstream of the longest matching path prefix; None: a forward proxy."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def _relay(self) -> None:
            # A forward proxy gets the absolute URL; a front gets a path under an upstream.
            upstream = None
            if upstreams is not None:
                prefix = max((p for p in upstreams if self.path.startswith(p)), key=len)
                upstream = upstreams[prefix]
            target = self.path if upstream is None else upstream + self.path
            relay.targets.append(target)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            relay.bodies.append(body or b"")
            headers = {
                name: value
                for name, value in self.headers.items()
                if name.lower() not in _HOP_BY_HOP and name.lower() != "host"
            }
            answer = httpx.request(self.command, target, headers=headers, content=body, verify=TLS)
            if relay.lost_answers > 0:
                relay.lost_answers -= 1
                self._send_lost()
                return
            content = answer.content
            if upstream is not None:
                # The front is the public address: documents name it, as Keycloak's frontend
                # URL makes them do.
                content = content.replace(upstream.encode(), relay.url.encode())
            self.send_response(answer.status_code)
            for name, value in answer.headers.items():
                if name.lower() not in _HOP_BY_HOP and name.lower() != "content-encoding":
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(content)))
            self.end_headers()
            self.wfile.write(content)

        def _send_lost(self) -> None:
            self.send_response(502)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_GET = do_POST = _relay

    return Handler


@contextmanager
def _serving(server: ThreadingHTTPServer) -> Iterator[None]:
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@contextmanager
def one_keycloak(upstreams: dict[str, str]) -> Iterator[Relay]:
    """One HTTP base URL for several realms: path prefix (``/realms/a``) -> that realm's server."""
    relay = Relay()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(upstreams, relay))
    relay.url = f"http://127.0.0.1:{server.server_address[1]}"
    with _serving(server):
        yield relay


@contextmanager
def forward_proxy() -> Iterator[Relay]:
    """A plain HTTP forward proxy on 127.0.0.1 that records every URL it was asked for."""
    relay = Relay()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(None, relay))
    relay.url = f"http://127.0.0.1:{server.server_address[1]}"
    with _serving(server):
        yield relay
