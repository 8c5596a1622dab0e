"""Key-endpoint answers that are broken (or merely unusual) below JSON: lying Content-Length,
chunked and close-delimited bodies past the cap, gzip (small, invalid, a bomb), no HTTP at all.
A scripted server writes the raw bytes and counts the requests; both drivers."""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from keycloak_m2m import KeysUnavailable, TokenValidator
from keycloak_m2m.testing import LocalRealm

from ..support import AUDIENCE, CLIENT, FakeClock, Validate
from .support import ScriptedServer, gzipped, http_response, jwks_body

Answer = Callable[[bytes], bytes]  # the good JWKS body -> the raw answer
CAP = 256 * 1024


def _raw(status_and_headers: str, body: bytes) -> bytes:
    return status_and_headers.replace("\n", "\r\n").encode() + b"\r\n\r\n" + body


def _chunked(body: bytes, size: int = 4096) -> bytes:
    chunks = [body[i : i + size] for i in range(0, len(body), size)]
    encoded = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for chunk in chunks)
    return encoded + b"0\r\n\r\n"


GZIP = [("Content-Type", "application/json"), ("Content-Encoding", "gzip")]
BOMB = gzipped(b" " * 50_000_000)  # 50 MB of JSON whitespace in about 50 KB

FAILURES: list[Any] = [
    pytest.param(lambda g: http_response(g, content_length=str(len(g) + 100)), id="length-longer"),
    pytest.param(lambda g: http_response(g, content_length=str(len(g) - 10)), id="length-shorter"),
    pytest.param(lambda g: http_response(g, content_length="abc"), id="length-junk"),
    pytest.param(lambda g: http_response(g, content_length="-1"), id="length-negative"),
    pytest.param(lambda g: http_response(g, content_length=str(10**9)), id="length-over-cap"),
    pytest.param(
        lambda g: _raw(f"HTTP/1.1 200 OK\nContent-Length: {len(g)}\nContent-Length: 5", g),
        id="two-lengths",
    ),
    pytest.param(
        lambda g: _raw("HTTP/1.1 200 OK\nTransfer-Encoding: chunked", _chunked(b" " * 2 * CAP + g)),
        id="chunked-over-cap",
    ),
    pytest.param(
        lambda g: _raw("HTTP/1.1 200 OK\nConnection: close", b" " * 2 * CAP + g),
        id="close-delimited-over-cap",
    ),
    pytest.param(lambda g: http_response(BOMB, headers=GZIP), id="gzip-bomb"),
    pytest.param(lambda g: http_response(g, headers=GZIP), id="gzip-header-plain-body"),
    pytest.param(lambda g: http_response(gzipped(g)[:40], headers=GZIP), id="gzip-truncated"),
    pytest.param(lambda g: b"HELLO\r\n\r\n", id="garbage-status-line"),
    pytest.param(lambda g: g, id="body-without-http"),
    pytest.param(lambda g: b"", id="closed-without-answer"),
    pytest.param(lambda g: _raw("HTTP/1.1 200 OK\nX-Big: " + "a" * 300_000, g), id="huge-header"),
    pytest.param(lambda g: http_response(g, status="299 Odd"), id="status-299"),
    pytest.param(
        lambda g: _raw("HTTP/1.1 200 OK\nContent-Length: 10", b""), id="headers-then-close"
    ),
]

SUCCESSES: list[Any] = [
    pytest.param(lambda g: http_response(gzipped(g), headers=GZIP), id="gzip"),
    pytest.param(
        lambda g: _raw("HTTP/1.1 200 OK\nTransfer-Encoding: chunked", _chunked(g, 7)), id="chunked"
    ),
    pytest.param(lambda g: _raw("HTTP/1.1 200 OK\nConnection: close", g), id="close-delimited"),
    pytest.param(lambda g: _raw(f"HTTP/1.0 200 OK\nContent-Length: {len(g)}", g), id="http-1.0"),
    pytest.param(
        lambda g: http_response(
            g, headers=[("Content-Type", "application/jwk-set+json; charset=utf-8")]
        ),
        id="jwk-set-media-type",
    ),
    pytest.param(lambda g: http_response(b" \n" * 1000 + g + b"\n"), id="padded-json"),
]


@pytest.fixture
def server(realm: LocalRealm) -> Iterator[ScriptedServer]:
    good = jwks_body(realm.public_jwk(realm.active_kid))
    with ScriptedServer(lambda: [(0.0, http_response(good))]) as server:
        yield server


def _serve(server: ScriptedServer, answer: Answer, realm: LocalRealm) -> None:
    raw = answer(jwks_body(realm.public_jwk(realm.active_kid)))
    server.script = lambda: [(0.0, raw)]


def _validator(
    realm: LocalRealm, server: ScriptedServer, clock: FakeClock, **options: Any
) -> TokenValidator:
    return TokenValidator(realm.issuer, AUDIENCE, jwks_url=server.jwks_url, clock=clock, **options)


@pytest.mark.parametrize("answer", FAILURES)
def test_a_broken_answer_at_cold_start_is_503_and_rate_limited(
    realm: LocalRealm,
    server: ScriptedServer,
    clock: FakeClock,
    validate: Validate,
    answer: Answer,
) -> None:
    _serve(server, answer, realm)
    validator = _validator(realm, server, clock)
    for _ in range(3):
        with pytest.raises(KeysUnavailable):
            validate(validator, realm.mint(CLIENT))
    assert server.request_count == 1
    assert server.request_lines == [b"GET /realms/shop/protocol/openid-connect/certs HTTP/1.1"]
    assert realm.request_count("certs") == 0


@pytest.mark.parametrize("answer", FAILURES)
def test_a_broken_answer_after_warm_up_keeps_the_good_keys(
    realm: LocalRealm,
    server: ScriptedServer,
    clock: FakeClock,
    validate: Validate,
    answer: Answer,
) -> None:
    validator = _validator(realm, server, clock, token_cache_size=0)
    validate(validator, realm.mint(CLIENT))
    _serve(server, answer, realm)
    clock.advance(301)
    for _ in range(3):
        assert validate(validator, realm.mint(CLIENT)).client_id == CLIENT
    assert server.request_count == 2
    assert realm.request_count("certs") == 0


@pytest.mark.parametrize("answer", SUCCESSES)
def test_an_unusual_but_sound_answer_is_read(
    realm: LocalRealm,
    server: ScriptedServer,
    clock: FakeClock,
    validate: Validate,
    answer: Answer,
) -> None:
    _serve(server, answer, realm)
    validator = _validator(realm, server, clock)
    assert validate(validator, realm.mint(CLIENT)).client_id == CLIENT
    assert validate(validator, realm.mint(CLIENT)).client_id == CLIENT
    assert server.request_count == 1
    assert realm.request_count("certs") == 0


def test_a_gzip_bomb_is_refused_without_inflating_it(
    realm: LocalRealm, server: ScriptedServer, clock: FakeClock
) -> None:
    _serve(server, lambda g: http_response(BOMB, headers=GZIP), realm)
    validator = _validator(realm, server, clock)
    tracemalloc.start()
    try:
        with pytest.raises(KeysUnavailable):
            validator.validate(realm.mint(CLIENT))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert server.request_count == 1
    assert peak < 16 * CAP, f"{peak / 1e6:.0f} MB allocated for a refused 50 KB answer"
