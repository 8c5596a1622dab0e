"""A clock that steps back (an NTP correction, a restored VM) freezes nothing and stretches nothing.

After the step, the key cache, the refetch limit, staleness, the verified-token cache, the
introspection cache and ClientCredentials' renewal behave as if the clock had been steady from the
moment it stepped: every TTL and interval is measured in elapsed time. Claim times are still read
on the clock, which the realm shares, so tokens are minted after the step. Each test makes a call
right after the step, as traffic would: the time between the last reading before a step and the
first after it is unknown and counts as none.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from keycloak_m2m import (
    ClientCredentials,
    Introspection,
    KeysUnavailable,
    TokenRevoked,
    TokenValidator,
    UnknownKey,
)
from keycloak_m2m._steady import SteadyClock, steady_clock
from keycloak_m2m.testing import LocalRealm

from .support import AUDIENCE, CLIENT, FakeClock, Validate

MakeValidator = Callable[..., TokenValidator]
HOUR = 3600.0


def test_the_steady_clock_counts_a_backward_step_as_no_time() -> None:
    clock = FakeClock(1000.0)
    steady = SteadyClock(clock)
    assert steady() == 1000.0
    clock.advance(5)
    assert steady() == 1005.0
    clock.now = 0.0  # an hour's worth and more, backwards
    assert steady() == 1005.0
    clock.advance(2)
    assert steady() == 1007.0
    clock.advance(-1)
    assert steady() == 1007.0
    clock.advance(10)  # forward steps count in full
    assert steady() == 1017.0


# --- the key cache ------------------------------------------------------------------------------


def test_keys_are_refreshed_one_ttl_after_the_fetch_although_the_clock_stepped_back(
    realm: LocalRealm, make_validator: MakeValidator, validate: Validate, clock: FakeClock
) -> None:
    validator = make_validator(token_cache_size=0)
    validate(validator, realm.mint(CLIENT))
    clock.advance(-HOUR)
    validate(validator, realm.mint(CLIENT))
    clock.advance(299)
    validate(validator, realm.mint(CLIENT))
    assert realm.request_count("certs") == 1
    clock.advance(2)  # 301 s of elapsed time since the fetch
    validate(validator, realm.mint(CLIENT))
    assert realm.request_count("certs") == 2


def test_a_withdrawn_key_is_not_trusted_past_its_ttl_after_a_backward_step(
    realm: LocalRealm, make_validator: MakeValidator, validate: Validate, clock: FakeClock
) -> None:
    validator = make_validator()  # with the verified-token cache: it must not answer either
    old_token = realm.mint(CLIENT, expires_in=int(2 * HOUR))
    validate(validator, old_token)
    realm.rotate_keys(keep_old=False)
    clock.advance(-HOUR)
    assert validator.cached(old_token) is not None  # within the TTL: still trusted
    clock.advance(301)
    assert validator.cached(old_token) is None
    with pytest.raises(UnknownKey):
        validate(validator, old_token)


def test_a_cold_start_outage_recovers_one_interval_after_a_backward_step(
    realm: LocalRealm, make_validator: MakeValidator, validate: Validate, clock: FakeClock
) -> None:
    validator = make_validator()
    realm.fail_keys(503)
    with pytest.raises(KeysUnavailable):
        validate(validator, realm.mint(CLIENT))
    clock.advance(-HOUR)
    with pytest.raises(KeysUnavailable) as caught:
        validate(validator, realm.mint(CLIENT))
    assert caught.value.retry_after == 30  # not an hour and a half
    realm.heal_keys()
    clock.advance(30)
    assert validate(validator, realm.mint(CLIENT)).client_id == CLIENT
    assert realm.request_count("certs") == 2


def test_a_rotated_key_is_learnt_one_interval_after_a_kid_refetch_and_a_backward_step(
    realm: LocalRealm, make_validator: MakeValidator, validate: Validate, clock: FakeClock
) -> None:
    validator = make_validator()
    validate(validator, realm.mint(CLIENT))
    with pytest.raises(UnknownKey):  # spends the refetch interval
        validate(validator, realm.mint(CLIENT, header={"kid": "random"}))
    clock.advance(-HOUR)
    realm.rotate_keys()
    with pytest.raises(UnknownKey):
        validate(validator, realm.mint(CLIENT))
    clock.advance(31)
    assert validate(validator, realm.mint(CLIENT)).client_id == CLIENT
    assert realm.request_count("certs") == 3


def test_stale_keys_serve_no_longer_than_ttl_plus_max_stale_after_a_backward_step(
    realm: LocalRealm, make_validator: MakeValidator, validate: Validate, clock: FakeClock
) -> None:
    validator = make_validator(token_cache_size=0, jwks_max_stale=600)
    validate(validator, realm.mint(CLIENT))
    realm.fail_keys(500)
    clock.advance(-HOUR)
    validate(validator, realm.mint(CLIENT))
    clock.advance(300 + 599)
    assert validate(validator, realm.mint(CLIENT)).client_id == CLIENT
    clock.advance(2)
    with pytest.raises(KeysUnavailable):
        validate(validator, realm.mint(CLIENT))


# --- the verified-token cache -------------------------------------------------------------------


def test_a_cached_verdict_lasts_the_token_s_lifetime_in_elapsed_time(
    realm: LocalRealm, make_validator: MakeValidator, validate: Validate, clock: FakeClock
) -> None:
    validator = make_validator(leeway=0)
    token = realm.mint(CLIENT, expires_in=60)
    validate(validator, token)
    clock.advance(-HOUR)
    assert validator.cached(token) is not None
    clock.advance(59)
    assert validator.cached(token) is not None
    clock.advance(1)
    # 60 s have passed: the cache stops answering. (The full path reads exp on the clock, which
    # now lags an hour behind, and Keycloak's clock is the one that stepped here.)
    assert validator.cached(token) is None


def test_an_introspection_answer_stands_no_longer_than_cache_ttl_of_elapsed_time(
    realm: LocalRealm, make_validator: MakeValidator, validate: Validate, clock: FakeClock
) -> None:
    realm.add_client(AUDIENCE, "introspector-secret")
    validator = make_validator(
        introspection=Introspection(AUDIENCE, "introspector-secret", cache_ttl=30)
    )
    token = realm.mint(CLIENT)
    validate(validator, token)
    realm.revoke(token)
    clock.advance(-20)  # within the leeway, so the token's iat still passes after the step
    validate(validator, token)  # the answer still stands: no time has passed
    clock.advance(30)
    with pytest.raises(TokenRevoked):  # 30 s of elapsed time: asked again
        validate(validator, token)
    assert realm.request_count("introspect") == 2


# --- ClientCredentials ----------------------------------------------------------------------------


def test_a_token_is_renewed_on_time_although_the_clock_stepped_back(
    realm: LocalRealm, clock: FakeClock
) -> None:
    credentials = ClientCredentials(
        CLIENT, "shop-api-secret", token_url=realm.token_url, clock=clock
    )
    first = credentials.get_token()  # 300 s, renewed 30 s ahead
    clock.advance(-HOUR)
    assert credentials.get_token() == first
    clock.advance(269)
    assert credentials.get_token() == first
    clock.advance(1)
    assert credentials.get_token() != first
    assert realm.request_count("token") == 2


def test_the_system_clocks_are_measured_on_the_monotonic_clock() -> None:
    """time.monotonic never steps and counts the real time across a step of time.time; the
    validator's and ClientCredentials' defaults use it, and pay nothing for a wrapper."""
    assert steady_clock(time.time) is time.monotonic
    assert steady_clock(time.monotonic) is time.monotonic
    assert isinstance(steady_clock(FakeClock()), SteadyClock)
