"""A tiny threaded HTTP/1.1 server that hands every request to one function.

The realm logic lives in ``_realm``; this module only moves bytes. It exists so the realm can be
tested end to end over real sockets (keep-alive, concurrency, slow answers) with nothing but the
standard library.
"""

from __future__ import annotations

import contextlib
import socket
import socketserver
import ssl
import sys
import threading
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["HttpServer", "Request", "Response"]

# Generous for a token request, small enough that a runaway client cannot eat the test's memory.
_MAX_BODY = 1 << 20
# How often serve_forever() looks at the shutdown flag: bounds how long stop() takes, which
# adds up over a test suite with a realm per test. The idle wake-ups cost next to nothing.
_POLL_INTERVAL = 0.01
_JOIN_TIMEOUT = 5.0


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: str
    # Lower-cased names; the first occurrence wins.
    headers: Mapping[str, str]
    body: bytes
    # The DER of the TLS client certificate the connection was made with, verified.
    client_certificate: bytes | None = None


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes = b""
    content_type: str | None = "application/json"
    headers: tuple[tuple[str, str], ...] = field(default=())


Handler = Callable[[Request], Response]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # Load tests open hundreds of connections at once; the default backlog (5) would refuse them.
    request_queue_size = 512
    # We join connection threads ourselves in close(), after waking them up.
    block_on_close = False

    def __init__(self, handler: Handler, tls: ssl.SSLContext | None) -> None:
        self.app = handler
        self.tls = tls
        self._connections: dict[socket.socket, threading.Thread] = {}
        self._connections_lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _RequestHandler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind() calls socket.getfqdn(), a reverse DNS lookup that can take
        # seconds on some machines; the name is never used here.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def process_request(self, request: Any, client_address: Any) -> None:
        thread = threading.Thread(
            target=self._serve_connection,
            args=(request, client_address),
            name="keycloak-m2m-realm-connection",
            daemon=True,
        )
        with self._connections_lock:
            self._connections[request] = thread
        thread.start()

    def _serve_connection(self, request: Any, client_address: Any) -> None:
        try:
            if self.tls is not None:
                # The handshake here, in the connection's thread: a slow client holds only it,
                # and close() can cut it.
                wrapped = self.tls.wrap_socket(
                    request, server_side=True, do_handshake_on_connect=False
                )
                with self._connections_lock:
                    self._connections.pop(request, None)
                    self._connections[wrapped] = threading.current_thread()
                request = wrapped
                wrapped.do_handshake()
            self.finish_request(request, client_address)
        except Exception:
            self.handle_error(request, client_address)
        finally:
            self.shutdown_request(request)
            with self._connections_lock:
                self._connections.pop(request, None)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up mid-answer (or stop() cutting a keep-alive connection) is normal
        # here; anything else is a bug in the realm and deserves a traceback.
        if isinstance(sys.exc_info()[1], OSError):
            return
        traceback.print_exc()

    def close_connections(self) -> list[threading.Thread]:
        """Wake every connection thread blocked on a read; return them for joining."""
        with self._connections_lock:
            connections = list(self._connections.items())
        for sock, _ in connections:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        return [thread for _, thread in connections]


class _RequestHandler(BaseHTTPRequestHandler):
    # HTTP/1.1 with Content-Length on every answer, so clients can keep connections alive.
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes; with Nagle on, the second waits for the
    # client's delayed ACK and every keep-alive request takes ~40 ms.
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        # Silence per-request logging; tests run with captured (and sometimes asserted) stderr.
        return

    def do_GET(self) -> None:
        self._dispatch()

    def do_HEAD(self) -> None:
        self._dispatch(send_body=False)

    def do_POST(self) -> None:
        self._dispatch()

    do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_POST

    def _dispatch(self, *, send_body: bool = True) -> None:
        body = self._read_body()
        if body is None:
            self.close_connection = True
            self._send(Response(400, b'{"error":"invalid_request"}'), send_body=send_body)
            return
        path, _, query = self.path.partition("?")
        headers = {name.lower(): value for name, value in reversed(self.headers.items())}
        connection = self.connection
        certificate = (
            connection.getpeercert(binary_form=True)
            if isinstance(connection, ssl.SSLSocket)
            else None
        )
        request = Request(self.command, path, query, headers, body, certificate)
        try:
            response = self.server.app(request)
        except Exception:
            traceback.print_exc()
            response = Response(500, b'{"error":"server_error"}')
        self._send(response, send_body=send_body)

    def _read_body(self) -> bytes | None:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return None  # not needed by any client we test; refuse rather than misparse
        raw_length = self.headers.get("Content-Length", "0")
        try:
            length = int(raw_length)
        except ValueError:
            return None
        if length < 0 or length > _MAX_BODY:
            return None
        return self.rfile.read(length) if length else b""

    def _send(self, response: Response, *, send_body: bool) -> None:
        self.send_response(response.status)
        if response.content_type is not None:
            self.send_header("Content-Type", response.content_type)
        for name, value in response.headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        if send_body:
            self.wfile.write(response.body)


class HttpServer:
    """Serve ``handler`` on 127.0.0.1 at a free port from a background thread; over TLS when
    given a server-side ``tls`` context."""

    def __init__(self, handler: Handler, tls: ssl.SSLContext | None = None) -> None:
        self._server = _Server(handler, tls)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": _POLL_INTERVAL},
            name="keycloak-m2m-realm-server",
            daemon=True,
        )
        self._thread.start()

    @property
    def port(self) -> int:
        return self._server.server_port

    def close(self) -> None:
        """Stop accepting, cut open connections, and wait for every thread to finish."""
        self._server.shutdown()
        self._thread.join(_JOIN_TIMEOUT)
        connection_threads = self._server.close_connections()
        self._server.server_close()
        for thread in connection_threads:
            thread.join(_JOIN_TIMEOUT)
