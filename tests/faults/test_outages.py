"""The key endpoint gone, slow or dripping: 503 with Retry-After and recovery on its own, stale keys
within their bound, ``jwks_timeout`` honoured for the whole exchange, and an event loop that keeps
running. Every test counts the requests that reached the endpoint."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Iterator
from urllib.parse import urlsplit

import pytest

from keycloak_m2m import KeysUnavailable, TokenValidator
from keycloak_m2m.testing import LocalRealm

from ..support import (
    AUDIENCE,
    CLIENT,
    PROGRESS,
    FakeClock,
    Ticker,
    Validate,
    validate_async,
    validate_sync,
)
from .support import (
    CERTS_PATH,
    DrippingServer,
    Relay,
    ScriptedServer,
    Step,
    http_response,
    jwks_body,
    relay_to,
    threads_end,
)

MakeValidator = Callable[..., TokenValidator]
# An endpoint delay far beyond every timeout below: a fetch that waited for the answer instead of
# giving up at its timeout fails the bounds of SLOW / 2, however slow the machine.
SLOW = 10.0
# For validators that must also fetch successfully: a loaded machine may take a while for that.
TIMEOUT = 1.0


@pytest.fixture
def relay(realm: LocalRealm) -> Iterator[Relay]:
    """The realm's port as seen through a relay that refuses connections until opened."""
    port = urlsplit(realm.base_url).port
    assert port is not None
    with relay_to(port) as relay:
        yield relay


def _through(relay: Relay, realm: LocalRealm, clock: FakeClock, **options: float) -> TokenValidator:
    url = relay.url(urlsplit(realm.jwks_url).path)
    return TokenValidator(realm.issuer, AUDIENCE, jwks_url=url, clock=clock, **options)


def _seconds(call: Callable[[], object]) -> float:
    start = time.monotonic()
    call()
    return time.monotonic() - start


# --- the endpoint is gone (connection refused) ----------------------------------------------------


def test_refused_at_start_is_503_then_recovers_once_the_endpoint_is_back(
    realm: LocalRealm, relay: Relay, clock: FakeClock, validate: Validate
) -> None:
    validator = _through(relay, realm, clock)
    with pytest.raises(KeysUnavailable) as caught:
        validate(validator, realm.mint(CLIENT))
    assert caught.value.retry_after == 30
    assert caught.value.response_headers("api")["Retry-After"] == "30"
    clock.advance(10)
    with pytest.raises(KeysUnavailable) as caught:
        validate(validator, realm.mint(CLIENT))
    assert caught.value.retry_after == 20
    relay.open()  # back, but the validator only tries again when Retry-After said
    clock.advance(10)
    with pytest.raises(KeysUnavailable) as caught:
        validate(validator, realm.mint(CLIENT))
    assert caught.value.retry_after == 10
    assert realm.request_count("certs") == 0
    clock.advance(10)
    assert validate(validator, realm.mint(CLIENT)).client_id == CLIENT
    assert validate(validator, realm.mint(CLIENT)).client_id == CLIENT
    assert realm.request_count("certs") == 1


def test_refused_after_warm_up_serves_stale_keys_until_the_bound_then_503(
    realm: LocalRealm,
    relay: Relay,
    clock: FakeClock,
    validate: Validate,
    caplog: pytest.LogCaptureFixture,
) -> None:
    relay.open()
    validator = _through(relay, realm, clock, jwks_max_stale=600, token_cache_size=0)
    warmed_at = clock.now
    validate(validator, realm.mint(CLIENT))
    assert realm.request_count("certs") == 1
    relay.close()  # Keycloak is gone: connections are refused
    caplog.set_level(logging.WARNING, logger="keycloak_m2m")
    clock.advance(301)
    token = realm.mint(CLIENT)
    assert validate(validator, token).client_id == CLIENT
    clock.now = warmed_at + 300 + 600 - 1  # the last second of the staleness window
    assert validate(validator, realm.mint(CLIENT)).client_id == CLIENT
    clock.advance(2)
    with pytest.raises(KeysUnavailable) as caught:
        validate(validator, realm.mint(CLIENT))
    assert 1 <= caught.value.retry_after <= 30
    assert realm.request_count("certs") == 1  # no attempt reached the realm
    failures = [r.getMessage() for r in caplog.records if r.name.startswith("keycloak_m2m")]
    assert failures
    assert all("ConnectError" in message for message in failures)
    assert not any(token.split(".")[1] in message for message in failures)


# --- slow ---------------------------------------------------------------------------------------


def test_jwks_timeout_bounds_a_slow_endpoint_then_it_recovers(
    realm: LocalRealm, make_validator: MakeValidator, clock: FakeClock, validate: Validate
) -> None:
    realm.slow_keys(SLOW)
    validator = make_validator(jwks_timeout=TIMEOUT)
    token = realm.mint(CLIENT)
    start = time.monotonic()
    with pytest.raises(KeysUnavailable):
        validate(validator, token)
    assert time.monotonic() - start < SLOW / 2
    assert realm.request_count("certs") == 1
    realm.heal_keys()
    clock.advance(30)
    assert validate(validator, realm.mint(CLIENT)).client_id == CLIENT
    assert realm.request_count("certs") == 2


def test_a_slow_endpoint_after_warm_up_costs_one_caller_one_timeout_per_interval(
    realm: LocalRealm, make_validator: MakeValidator, clock: FakeClock
) -> None:
    timeout = TIMEOUT
    validator = make_validator(jwks_timeout=timeout, token_cache_size=0)
    validator.validate(realm.mint(CLIENT))
    realm.slow_keys(SLOW)
    clock.advance(301)
    tokens = [realm.mint(CLIENT) for _ in range(21)]
    # The first caller waits for the fetch to time out; the next twenty are answered from the
    # stale keys at once (each waiting for a timeout would take twenty of them).
    assert timeout <= _seconds(lambda: validator.validate(tokens[0])) < SLOW / 2
    assert _seconds(lambda: [validator.validate(token) for token in tokens[1:]]) < 20 * timeout / 2
    assert realm.request_count("certs") == 2
    clock.advance(30)
    assert timeout <= _seconds(lambda: validator.validate(realm.mint(CLIENT))) < SLOW / 2
    assert realm.request_count("certs") == 3


async def test_concurrent_tasks_on_a_slow_endpoint_share_one_timeout(
    realm: LocalRealm, make_validator: MakeValidator, clock: FakeClock
) -> None:
    validator = make_validator(jwks_timeout=TIMEOUT, token_cache_size=0)
    await validator.validate_async(realm.mint(CLIENT))
    realm.slow_keys(SLOW)
    clock.advance(301)
    tokens = [realm.mint(CLIENT) for _ in range(50)]
    start = time.monotonic()
    principals = await asyncio.gather(*(validator.validate_async(token) for token in tokens))
    # One shared timeout: fifty in turn would take fifty.
    assert time.monotonic() - start < SLOW / 2
    assert {principal.client_id for principal in principals} == {CLIENT}
    assert realm.request_count("certs") == 2


async def test_the_event_loop_runs_while_a_fetch_times_out(
    realm: LocalRealm, make_validator: MakeValidator
) -> None:
    realm.slow_keys(SLOW)
    validator = make_validator(jwks_timeout=0.6)
    ticker = Ticker(during=lambda: realm.request_count("certs") == 1)  # the fetch in flight
    ticking = asyncio.create_task(ticker.run())
    token = realm.mint(CLIENT)
    start = time.monotonic()
    results = await asyncio.gather(
        *(validator.validate_async(token) for _ in range(100)), return_exceptions=True
    )
    elapsed = time.monotonic() - start
    ticking.cancel()
    assert all(isinstance(result, KeysUnavailable) for result in results)
    assert elapsed < SLOW / 2
    assert ticker.ticks >= PROGRESS
    assert realm.request_count("certs") == 1


# --- dripping -------------------------------------------------------------------------------------


BYTE_DRIP = 0.05  # seconds per byte of a dripping body: hundreds of bytes take tens of seconds


def _body_drip(body: bytes) -> Callable[[], list[Step]]:
    def script() -> list[Step]:
        head = http_response(b"", content_length=str(len(body)))
        return [(0.0, head), *((BYTE_DRIP, body[i : i + 1]) for i in range(len(body)))]

    return script


def _header_drip(body: bytes) -> Callable[[], list[Step]]:
    """A header line every 0.2 s for 2 s, then a good answer."""

    def script() -> list[Step]:
        return [
            (0.0, b"HTTP/1.1 200 OK\r\n"),
            *((0.2, b"X-Drip: .\r\n") for _ in range(10)),
            (0.0, http_response(body).split(b"\r\n", 1)[1]),
        ]

    return script


@pytest.fixture
def good_body(realm: LocalRealm) -> bytes:
    return jwks_body(realm.public_jwk(realm.active_kid))


def test_a_dripping_body_is_cut_at_the_deadline(
    realm: LocalRealm, clock: FakeClock, validate: Validate, good_body: bytes
) -> None:
    with ScriptedServer(_body_drip(good_body)) as server:
        validator = TokenValidator(
            realm.issuer, AUDIENCE, jwks_url=server.jwks_url, clock=clock, jwks_timeout=0.5
        )
        start = time.monotonic()
        with pytest.raises(KeysUnavailable):  # the whole body would have come in the end
            validate(validator, realm.mint(CLIENT))
        assert time.monotonic() - start < len(good_body) * BYTE_DRIP / 2
        assert server.request_count == 1


@pytest.mark.parametrize(
    "driver",
    [
        pytest.param(validate_sync, id="sync"),
        pytest.param(validate_async, id="async"),
    ],
)
def test_dripping_headers_are_cut_at_the_deadline(
    realm: LocalRealm, clock: FakeClock, good_body: bytes, driver: Validate
) -> None:
    with ScriptedServer(_header_drip(good_body)) as server:
        validator = TokenValidator(
            realm.issuer, AUDIENCE, jwks_url=server.jwks_url, clock=clock, jwks_timeout=0.5
        )
        with pytest.raises(KeysUnavailable):  # a good answer would have followed the drip
            driver(validator, realm.mint(CLIENT))
        assert server.request_count == 1


async def test_the_event_loop_runs_while_a_body_drips(
    realm: LocalRealm, clock: FakeClock, good_body: bytes
) -> None:
    with ScriptedServer(_body_drip(good_body)) as server:
        validator = TokenValidator(
            realm.issuer, AUDIENCE, jwks_url=server.jwks_url, clock=clock, jwks_timeout=0.6
        )
        ticker = Ticker(during=lambda: server.request_count == 1)  # the body dripping
        ticking = asyncio.create_task(ticker.run())
        with pytest.raises(KeysUnavailable):
            await validator.validate_async(realm.mint(CLIENT))
        ticking.cancel()
        assert ticker.ticks >= PROGRESS
        assert server.request_count == 1


@pytest.mark.parametrize(
    "driver",
    [
        pytest.param(validate_sync, id="sync"),
        pytest.param(validate_async, id="async"),
    ],
)
def test_headers_dripping_for_ever_end_with_their_thread_and_socket_at_the_deadline(
    realm: LocalRealm, clock: FakeClock, driver: Validate
) -> None:
    timeout = 0.5
    with DrippingServer() as server:
        validator = TokenValidator(
            realm.issuer,
            AUDIENCE,
            jwks_url=server.url(CERTS_PATH),
            clock=clock,
            jwks_timeout=timeout,
        )
        threads = set(threading.enumerate())
        with pytest.raises(KeysUnavailable):
            driver(validator, realm.mint(CLIENT))
        server.wait_for_ends()
        [exchange] = server.exchanges
        assert exchange.by_client, "the client never gave up: the server's limit ended it"
        assert threads_end(threads, waiting_at_most=server.limit), "a thread outlived the exchange"
