"""Key endpoints that misbehave below HTTP: scripted raw answers, and a port that comes and goes.

LocalRealm answers every request with well-formed HTTP. A ``ScriptedServer`` writes whatever bytes
a test scripts, with pauses between them (slow drips, lying headers, gzip). A ``DrippingServer``
answers with a status line and then one header line at a time, for as long as the client stays,
and records whether the client hung up before the server gave up. A ``Relay`` is a port on
127.0.0.1 that refuses connections until it is opened, then relays them to a realm, and refuses
again once closed: the key endpoint going away and coming back at the same address. Each counts
what reached it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gzip
import json
import select
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from types import TracebackType
from typing import Any

Step = tuple[float, bytes]  # (seconds to wait first, bytes to write)
Script = Callable[[], Iterable[Step]]

CERTS_PATH = "/realms/shop/protocol/openid-connect/certs"


def http_response(
    body: bytes,
    *,
    status: str = "200 OK",
    headers: Iterable[tuple[str, str]] = (("Content-Type", "application/json"),),
    content_length: str | None = None,
) -> bytes:
    """One raw HTTP/1.1 answer; ``content_length`` overrides the true length (lies welcome)."""
    lines = [f"HTTP/1.1 {status}", *(f"{name}: {value}" for name, value in headers)]
    lines.append(f"Content-Length: {len(body) if content_length is None else content_length}")
    lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def jwks_body(*jwks: dict[str, Any]) -> bytes:
    return json.dumps({"keys": list(jwks)}).encode()


def gzipped(body: bytes) -> bytes:
    return gzip.compress(body, mtime=0)


class _Listener:
    """Accepts connections on a thread and hands each to ``serve`` on its own thread."""

    def __init__(self, serve: Callable[[socket.socket], None]) -> None:
        self._serve = serve
        self._stopping = threading.Event()
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.bind(("127.0.0.1", 0))
        self.port: int = self._socket.getsockname()[1]
        self._threads: list[threading.Thread] = []
        self._connections: list[socket.socket] = []
        self._lock = threading.Lock()
        self._acceptor: threading.Thread | None = None

    def listen(self) -> None:
        self._socket.listen(256)
        self._socket.settimeout(0.01)
        self._acceptor = threading.Thread(target=self._accept, daemon=True)
        self._acceptor.start()

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                connection, _ = self._socket.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            connection.settimeout(None)
            thread = threading.Thread(target=self._run, args=(connection,), daemon=True)
            with self._lock:
                self._connections.append(connection)
                self._threads.append(thread)
            thread.start()

    def _run(self, connection: socket.socket) -> None:
        with connection, contextlib.suppress(OSError):
            self._serve(connection)

    def wait(self, seconds: float) -> bool:
        """Sleep unless stopping; True when the listener is being stopped."""
        return self._stopping.wait(seconds)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self._stopping.set()
        if self._acceptor is not None:
            self._acceptor.join(5)
        self._socket.close()
        with self._lock:
            connections, threads = list(self._connections), list(self._threads)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        for thread in threads:
            thread.join(5)


def _read_request(connection: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = connection.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


class ScriptedServer:
    """Answers every request on 127.0.0.1 by playing ``script()``: waits and raw writes."""

    def __init__(self, script: Script) -> None:
        self.script = script  # replace at any time: the next request plays the new one
        self._count = 0
        self._count_lock = threading.Lock()
        self.request_lines: list[bytes] = []
        self._listener = _Listener(self._serve)

    def __enter__(self) -> ScriptedServer:
        self._listener.listen()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._listener.close()

    @property
    def jwks_url(self) -> str:
        return f"http://127.0.0.1:{self._listener.port}{CERTS_PATH}"

    @property
    def request_count(self) -> int:
        with self._count_lock:
            return self._count

    def _serve(self, connection: socket.socket) -> None:
        request = _read_request(connection)
        if not request:
            return
        with self._count_lock:
            self._count += 1
            self.request_lines.append(request.split(b"\r\n", 1)[0])
        for delay, data in self.script():
            if delay and self._listener.wait(delay):
                return
            connection.sendall(data)


@dataclasses.dataclass
class Exchange:
    """One request to a ``DrippingServer``: when it arrived, and whether the client ended it."""

    arrived: float
    ended: bool = False
    by_client: bool = False  # False once ended: the server's limit ended it


class DrippingServer:
    """Answers every request with ``HTTP/1.1 200 OK`` and then one header line every ``interval``
    seconds, never ending the headers, until the client hangs up or ``limit`` seconds pass.

    The limit is what a client that never gives up meets: an exchange the client ended came to
    its end before the server's, which is the order a deadline test asserts (no wall-clock
    threshold of its own), and the limit keeps such a client from hanging the suite.
    """

    def __init__(self, interval: float = 0.2, limit: float = 20.0) -> None:
        self._interval = interval
        self.limit = limit
        self._lock = threading.Lock()
        self.exchanges: list[Exchange] = []
        self._listener = _Listener(self._serve)

    def __enter__(self) -> DrippingServer:
        self._listener.listen()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._listener.close()

    def url(self, path: str) -> str:
        return self._listener.url + path

    @property
    def open_exchanges(self) -> int:
        with self._lock:
            return sum(not exchange.ended for exchange in self.exchanges)

    def wait_for_ends(self) -> None:
        """Wait for every exchange to end, which the server's limit bounds."""
        until = time.monotonic() + self.limit + 1.0
        while self.open_exchanges and time.monotonic() < until:
            time.sleep(0.01)

    def _serve(self, connection: socket.socket) -> None:
        if not _read_request(connection):
            return
        exchange = Exchange(arrived=time.monotonic())
        with self._lock:
            self.exchanges.append(exchange)
        by_client = False
        try:
            connection.sendall(b"HTTP/1.1 200 OK\r\n")
            while time.monotonic() < exchange.arrived + self.limit and not self._listener.wait(0):
                readable, _, _ = select.select([connection], [], [], self._interval)
                if readable and not connection.recv(65536):
                    by_client = True  # the client closed the connection
                    break
                connection.sendall(b"X-Drip: .\r\n")
        except OSError:
            by_client = True  # reset by the client
        finally:
            with self._lock:
                exchange.by_client = by_client
                exchange.ended = True


def threads_end(before: set[threading.Thread], waiting_at_most: float) -> bool:
    """Whether the threads started since ``before`` end; the wait only keeps a failing test from
    hanging, so it is as long as a ``DrippingServer``'s limit, not a threshold."""
    until = time.monotonic() + waiting_at_most
    while set(threading.enumerate()) - before and time.monotonic() < until:
        time.sleep(0.01)
    return set(threading.enumerate()) <= before


class Relay:
    """A port on 127.0.0.1 that refuses connections until ``open()``, relays them to
    ``target_port`` until ``close()``, and refuses them again afterwards."""

    def __init__(self, target_port: int) -> None:
        self._target_port = target_port
        self._listener = _Listener(self._serve)
        self.port = self._listener.port
        self._opened = False

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def open(self) -> None:
        self._listener.listen()
        self._opened = True

    def close(self) -> None:
        self._listener.close()

    def _serve(self, connection: socket.socket) -> None:
        with socket.create_connection(("127.0.0.1", self._target_port)) as upstream:
            back = threading.Thread(target=_pump, args=(upstream, connection), daemon=True)
            back.start()
            _pump(connection, upstream)
            back.join(5)


def _pump(source: socket.socket, target: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while chunk := source.recv(65536):
            target.sendall(chunk)
    with contextlib.suppress(OSError):
        target.shutdown(socket.SHUT_WR)


@contextlib.contextmanager
def relay_to(target_port: int) -> Iterator[Relay]:
    relay = Relay(target_port)
    try:
        yield relay
    finally:
        relay.close()
