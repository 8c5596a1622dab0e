"""A streamed request body goes out once, as it is produced, and its 401 comes back as is;
a body already in memory is still sent again after a renewal (test_outgoing_requests)."""

from __future__ import annotations

import socket
import threading
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from keycloak_m2m._client import ClientCredentials

CHUNK = 64 * 1024
CHUNKS = 192  # 12 MiB


class RefusingServer:
    """Reads each request to its end, counting body bytes as they arrive, then answers 401."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}/upload"
        self.received = 0
        self.requests = 0
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self._listener.accept()
            except OSError:
                return
            with connection:
                self._answer(connection)

    def _answer(self, connection: socket.socket) -> None:
        data = b""
        while b"\r\n\r\n" not in data:
            data += connection.recv(CHUNK)
        self.requests += 1
        # Chunked upload: the body ends with the zero-length chunk.
        while not data.endswith(b"0\r\n\r\n"):
            chunk = connection.recv(CHUNK)
            if not chunk:
                return
            self.received += len(chunk)
            data = data[-16:] + chunk
        connection.sendall(
            b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )

    def close(self) -> None:
        self._listener.close()


@pytest.fixture
def server() -> Iterator[RefusingServer]:
    refusing = RefusingServer()
    yield refusing
    refusing.close()


def test_a_streamed_body_is_sent_once_unbuffered(
    credentials: ClientCredentials, server: RefusingServer
) -> None:
    received_before_the_last_chunk: list[int] = []

    def body() -> Iterator[bytes]:
        for index in range(CHUNKS):
            if index == CHUNKS - 1:
                received_before_the_last_chunk.append(server.received)
            yield b"x" * CHUNK

    with httpx.Client(auth=credentials) as client:
        response = client.post(server.url, content=body())

    assert response.status_code == 401
    assert server.requests == 1
    # Buffered whole, nothing would have reached the server before the generator ended.
    assert received_before_the_last_chunk[0] > 0


async def test_a_streamed_body_is_sent_once_unbuffered_async(
    credentials: ClientCredentials, server: RefusingServer
) -> None:
    received_before_the_last_chunk: list[int] = []

    async def body() -> AsyncIterator[bytes]:
        for index in range(CHUNKS):
            if index == CHUNKS - 1:
                received_before_the_last_chunk.append(server.received)
            yield b"x" * CHUNK

    async with httpx.AsyncClient(auth=credentials) as client:
        response = await client.post(server.url, content=body())

    assert response.status_code == 401
    assert server.requests == 1
    assert received_before_the_last_chunk[0] > 0
