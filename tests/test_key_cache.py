"""The key cache against the local realm over real HTTP: rotation, storms, rate limit, outages."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

import pytest

from keycloak_m2m import KeysUnavailable, TokenValidator, UnknownKey
from keycloak_m2m.testing import LocalRealm

from .support import CLIENT, PROGRESS, FakeClock, Ticker, Validate, shared_realm

# The tests leave the realm as they found it (or rotate its keys, which gets the next test a
# new one): one realm for the module, see SharedRealm.
clock, realm = shared_realm()

MakeValidator = Callable[..., TokenValidator]


def test_rotation_is_followed_with_one_fetch(
    realm: LocalRealm, make_validator: MakeValidator, validate: Validate, clock: FakeClock
) -> None:
    validator = make_validator()
    validate(validator, realm.mint(CLIENT))
    clock.advance(31)  # past the refetch interval, well within the TTL
    realm.rotate_keys()
    assert validate(validator, realm.mint(CLIENT)).client_id == CLIENT
    assert realm.request_count("certs") == 2


@pytest.mark.parametrize("seconds_after_the_fetch", [0, 1, 29])
def test_a_key_published_just_after_the_start_up_fetch_is_followed_at_once(
    realm: LocalRealm,
    make_validator: MakeValidator,
    validate: Validate,
    clock: FakeClock,
    seconds_after_the_fetch: float,
) -> None:
    validator = make_validator()
    validate(validator, realm.mint(CLIENT))  # start-up: a routine fetch, not a refetch
    realm.rotate_keys()
    clock.advance(seconds_after_the_fetch)
    assert validate(validator, realm.mint(CLIENT)).client_id == CLIENT
    assert realm.request_count("certs") == 2


def test_a_key_published_just_after_a_ttl_refresh_is_followed_at_once(
    realm: LocalRealm, make_validator: MakeValidator, validate: Validate, clock: FakeClock
) -> None:
    validator = make_validator(token_cache_size=0)
    token = realm.mint(CLIENT, expires_in=3600)
    validate(validator, token)
    clock.advance(301)
    validate(validator, token)  # the TTL refresh: routine as well
    assert realm.request_count("certs") == 2
    realm.rotate_keys()
    clock.advance(1)
    assert validate(validator, realm.mint(CLIENT)).client_id == CLIENT
    assert realm.request_count("certs") == 3


def test_a_random_kid_storm_right_after_start_up_costs_one_request_per_interval(
    realm: LocalRealm, make_validator: MakeValidator, validate: Validate, clock: FakeClock
) -> None:
    validator = make_validator()
    validate(validator, realm.mint(CLIENT))
    for second in range(30):
        with pytest.raises(UnknownKey):
            validate(validator, realm.mint(CLIENT, header={"kid": f"random-{second}"}))
        clock.advance(1)
    assert realm.request_count("certs") == 2  # start-up, and the storm's first kid
    clock.advance(1)  # 31 s after the storm's fetch
    with pytest.raises(UnknownKey):
        validate(validator, realm.mint(CLIENT, header={"kid": "random"}))
    assert realm.request_count("certs") == 3


def test_a_kid_storm_spends_the_interval_a_rotation_then_waits_for(
    realm: LocalRealm, make_validator: MakeValidator, validate: Validate, clock: FakeClock
) -> None:
    """The price of the limit: a key published just after a storm's fetch waits for the interval."""
    validator = make_validator()
    validate(validator, realm.mint(CLIENT))
    with pytest.raises(UnknownKey):
        validate(validator, realm.mint(CLIENT, header={"kid": "random"}))
    realm.rotate_keys()
    clock.advance(29)
    with pytest.raises(UnknownKey):
        validate(validator, realm.mint(CLIENT))
    assert realm.request_count("certs") == 2
    clock.advance(1)
    assert validate(validator, realm.mint(CLIENT)).client_id == CLIENT
    assert realm.request_count("certs") == 3


def test_unknown_kid_is_refetched_at_most_once_per_interval(
    realm: LocalRealm, make_validator: MakeValidator, validate: Validate, clock: FakeClock
) -> None:
    validator = make_validator()
    validate(validator, realm.mint(CLIENT))
    clock.advance(31)
    for _ in range(20):
        with pytest.raises(UnknownKey):
            validate(validator, realm.mint(CLIENT, header={"kid": "random"}))
        clock.advance(1)
    # one refetch for the first unknown kid; the rest answered from the negative cache
    assert realm.request_count("certs") == 2
    clock.advance(10)  # 31 s after that refetch
    with pytest.raises(UnknownKey):
        validate(validator, realm.mint(CLIENT, header={"kid": "random"}))
    assert realm.request_count("certs") == 3


def test_keys_are_refreshed_after_the_ttl(
    realm: LocalRealm, make_validator: MakeValidator, validate: Validate, clock: FakeClock
) -> None:
    validator = make_validator(token_cache_size=0)
    token = realm.mint(CLIENT, expires_in=3600)
    for _ in range(50):
        validate(validator, token)
    assert realm.request_count("certs") == 1
    clock.advance(301)
    validate(validator, token)
    assert realm.request_count("certs") == 2


@pytest.mark.parametrize("token_cache_size", [0, 100])
def test_removed_key_stops_being_trusted_at_the_next_refresh(
    realm: LocalRealm,
    make_validator: MakeValidator,
    validate: Validate,
    clock: FakeClock,
    token_cache_size: int,
) -> None:
    validator = make_validator(token_cache_size=token_cache_size)
    old_token = realm.mint(CLIENT, expires_in=3600)
    validate(validator, old_token)
    realm.rotate_keys(keep_old=False)
    validate(validator, old_token)  # still trusted until the key set is refreshed
    clock.advance(301)
    with pytest.raises(UnknownKey):
        validate(validator, old_token)
    assert validate(validator, realm.mint(CLIENT)).client_id == CLIENT


def test_passive_key_stays_trusted_after_rotation(
    realm: LocalRealm, make_validator: MakeValidator, validate: Validate, clock: FakeClock
) -> None:
    validator = make_validator(token_cache_size=0)
    old_token = realm.mint(CLIENT, expires_in=3600)
    validate(validator, old_token)
    realm.rotate_keys(keep_old=True)
    clock.advance(301)
    assert validate(validator, old_token).client_id == CLIENT
    assert validate(validator, realm.mint(CLIENT)).client_id == CLIENT


def test_stale_keys_serve_through_an_outage_until_the_bound(
    realm: LocalRealm, make_validator: MakeValidator, validate: Validate, clock: FakeClock
) -> None:
    validator = make_validator(token_cache_size=0)
    validate(validator, realm.mint(CLIENT))
    realm.fail_keys(500)
    clock.advance(301)  # TTL over: a fetch is tried, fails, the cached keys still serve
    assert validate(validator, realm.mint(CLIENT)).client_id == CLIENT
    assert realm.request_count("certs") == 2
    clock.advance(10)  # within the refetch interval: no new attempt
    validate(validator, realm.mint(CLIENT))
    assert realm.request_count("certs") == 2
    clock.now = clock.now - 311 + 300 + 3599  # just inside TTL + max_stale
    assert validate(validator, realm.mint(CLIENT)).client_id == CLIENT
    clock.advance(2)  # past TTL + max_stale; and the last attempt was < 30 s ago
    with pytest.raises(KeysUnavailable) as caught:
        validate(validator, realm.mint(CLIENT))
    assert caught.value.status_code == 503
    assert 1 <= caught.value.retry_after <= 30
    attempts = realm.request_count("certs")
    realm.heal_keys()
    clock.advance(30)
    assert validate(validator, realm.mint(CLIENT)).client_id == CLIENT
    assert realm.request_count("certs") == attempts + 1


def test_cold_start_outage_is_503_then_recovers_on_its_own(
    realm: LocalRealm, make_validator: MakeValidator, validate: Validate, clock: FakeClock
) -> None:
    validator = make_validator()
    realm.fail_keys(503)
    with pytest.raises(KeysUnavailable) as caught:
        validate(validator, realm.mint(CLIENT))
    assert caught.value.retry_after == 30
    assert caught.value.response_headers("api")["Retry-After"] == "30"
    clock.advance(10)
    with pytest.raises(KeysUnavailable) as caught:
        validate(validator, realm.mint(CLIENT))
    assert caught.value.retry_after == 20
    assert realm.request_count("certs") == 1  # the rate limit holds during the outage
    realm.heal_keys()
    clock.advance(20)
    assert validate(validator, realm.mint(CLIENT)).client_id == CLIENT
    assert realm.request_count("certs") == 2


@pytest.mark.parametrize(
    "break_endpoint",
    [
        pytest.param(lambda r: r.fail_keys(500), id="500"),
        pytest.param(lambda r: r.fail_keys(404), id="404"),
        pytest.param(lambda r: r.fail_keys(200, body=b"<html></html>"), id="html"),
        pytest.param(lambda r: r.serve_keys_document(b"{not json"), id="invalid json"),
        pytest.param(lambda r: r.serve_keys_document({"keys": []}), id="no keys"),
        pytest.param(lambda r: r.serve_keys_document({"keys": "x"}), id="keys not a list"),
        pytest.param(lambda r: r.serve_keys_document([1]), id="not an object"),
        pytest.param(
            lambda r: r.serve_keys_document({"keys": [{"kty": "RSA", "n": "!", "e": 3}]}),
            id="only bad keys",
        ),
        pytest.param(lambda r: r.serve_keys_document(b"{" * 100_000), id="deep nesting"),
        pytest.param(lambda r: r.serve_keys_document(b" " * 300_000), id="huge body"),
        pytest.param(lambda r: r.redirect_keys(r.jwks_url), id="redirect"),
    ],
)
def test_a_failed_fetch_never_wipes_good_keys(
    realm: LocalRealm,
    make_validator: MakeValidator,
    validate: Validate,
    clock: FakeClock,
    break_endpoint: Callable[[LocalRealm], None],
) -> None:
    validator = make_validator(token_cache_size=0)
    validate(validator, realm.mint(CLIENT))
    break_endpoint(realm)
    clock.advance(301)
    assert validate(validator, realm.mint(CLIENT)).client_id == CLIENT
    assert realm.request_count("certs") == 2  # the failed refresh was made, and only once


@pytest.mark.parametrize(
    "break_endpoint",
    [
        pytest.param(lambda r: r.fail_keys(500), id="500"),
        pytest.param(lambda r: r.serve_keys_document(b" " * 300_000), id="huge body"),
        pytest.param(lambda r: r.redirect_keys("http://127.0.0.1:9/elsewhere"), id="redirect"),
        pytest.param(lambda r: r.slow_keys(3), id="timeout"),
    ],
)
def test_cold_cache_failures_are_keys_unavailable(
    realm: LocalRealm,
    make_validator: MakeValidator,
    validate: Validate,
    break_endpoint: Callable[[LocalRealm], None],
) -> None:
    break_endpoint(realm)
    with pytest.raises(KeysUnavailable):
        validate(make_validator(jwks_timeout=0.5), realm.mint(CLIENT))
    assert realm.request_count("certs") == 1


def test_redirect_is_not_followed(
    realm: LocalRealm, make_validator: MakeValidator, validate: Validate, clock: FakeClock
) -> None:
    with LocalRealm("elsewhere", clock=clock) as other:
        realm.redirect_keys(other.jwks_url)
        with pytest.raises(KeysUnavailable):
            validate(make_validator(), realm.mint(CLIENT))
        assert other.request_count("certs") == 0


def test_one_malformed_key_does_not_spoil_the_set(
    realm: LocalRealm, make_validator: MakeValidator, validate: Validate
) -> None:
    good = realm.public_jwk(realm.active_kid)
    realm.serve_keys_document(
        {
            "keys": [
                {"kty": "RSA", "kid": "bad", "n": 5, "e": "AQAB"},
                {"kty": "EC", "kid": "off-curve", "crv": "P-256", "x": "AQ", "y": "AQ"},
                {"kty": "oct", "kid": "secret", "k": "c2VjcmV0"},
                "not an object",
                good,
            ]
        }
    )
    assert validate(make_validator(), realm.mint(CLIENT)).client_id == CLIENT


def test_key_set_size_cap_is_configurable(
    realm: LocalRealm, make_validator: MakeValidator, validate: Validate
) -> None:
    with pytest.raises(KeysUnavailable):
        validate(make_validator(jwks_max_bytes=100), realm.mint(CLIENT))


# --- one fetch shared by every waiter -------------------------------------------------------


def _warm_then_rotate(
    realm: LocalRealm, make_validator: MakeValidator, clock: FakeClock
) -> tuple[TokenValidator, str]:
    validator = make_validator()
    validator.validate(realm.mint(CLIENT))
    clock.advance(31)
    realm.rotate_keys()
    realm.slow_keys(0.3)  # every caller arrives while the one fetch is in flight
    return validator, realm.mint(CLIENT, header={"kid": "unknown-kid"})


def test_unknown_kid_storm_from_100_threads_makes_one_request(
    realm: LocalRealm, make_validator: MakeValidator, clock: FakeClock
) -> None:
    validator, token = _warm_then_rotate(realm, make_validator, clock)
    start = threading.Barrier(100)
    errors: list[BaseException] = []

    def call() -> None:
        start.wait()
        try:
            validator.validate(token)
        except UnknownKey as error:
            errors.append(error)

    threads = [threading.Thread(target=call) for _ in range(100)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(errors) == 100
    assert realm.request_count("certs") == 2  # the warm-up and one shared refetch


async def test_unknown_kid_storm_from_100_tasks_makes_one_request(
    realm: LocalRealm, make_validator: MakeValidator, clock: FakeClock
) -> None:
    validator, token = _warm_then_rotate(realm, make_validator, clock)
    results = await asyncio.gather(
        *(validator.validate_async(token) for _ in range(100)), return_exceptions=True
    )
    assert all(isinstance(result, UnknownKey) for result in results)
    assert realm.request_count("certs") == 2


async def test_cold_start_from_100_tasks_makes_one_request(
    realm: LocalRealm, make_validator: MakeValidator
) -> None:
    realm.slow_keys(0.3)
    validator = make_validator()
    token = realm.mint(CLIENT)
    principals = await asyncio.gather(*(validator.validate_async(token) for _ in range(100)))
    assert {principal.client_id for principal in principals} == {CLIENT}
    assert realm.request_count("certs") == 1


async def test_a_slow_key_endpoint_does_not_block_the_event_loop(
    realm: LocalRealm, make_validator: MakeValidator
) -> None:
    realm.slow_keys(0.5)
    validator = make_validator()
    ticker = Ticker(during=lambda: realm.request_count("certs") == 1)  # the fetch in flight
    ticking = asyncio.create_task(ticker.run())
    await validator.validate_async(realm.mint(CLIENT))
    ticking.cancel()
    assert ticker.ticks >= PROGRESS
