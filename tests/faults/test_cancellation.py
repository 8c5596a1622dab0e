"""Validations cancelled while their key fetch is in flight (a client disconnect on a server that
cancels the request task, an application's ``wait_for``): the fetch is made once, its outcome
serves everyone, and the lock and the key cache stay sound."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

from keycloak_m2m import KeysUnavailable, TokenValidator
from keycloak_m2m.testing import LocalRealm

from ..support import CLIENT, FakeClock

MakeValidator = Callable[..., TokenValidator]
# Every cancellation below happens while the one fetch is in flight: cancel_six_validations
# pauses up to 0.1 s per validation, 0.6 s in all; the delay is five times that, for a loaded
# machine.
KEY_DELAY = 3.0


async def until(condition: Callable[[], bool], within: float) -> None:
    """Wait for ``condition``, at most ``within`` seconds; the test's assertions judge the rest."""
    deadline = time.monotonic() + within
    while not condition() and time.monotonic() < deadline:
        await asyncio.sleep(0.005)


async def cancel_six_validations(realm: LocalRealm, validator: TokenValidator) -> None:
    for number in range(1, 7):
        task = asyncio.create_task(validator.validate_async(realm.mint(CLIENT)))
        # Until this validation's fetch reached the realm (the first one does; with the fetch
        # shared, the others queue behind it instead).
        await until(lambda n=number: realm.request_count("certs") >= n, within=0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_six_validations_cancelled_during_the_fetch_make_one_key_request(
    realm: LocalRealm, make_validator: MakeValidator
) -> None:
    realm.slow_keys(KEY_DELAY)
    validator = make_validator()
    await cancel_six_validations(realm, validator)
    # The fetch ran on, and its keys serve the next callers: no request of their own.
    principals = await asyncio.gather(
        *(validator.validate_async(realm.mint(CLIENT)) for _ in range(10))
    )
    assert {principal.client_id for principal in principals} == {CLIENT}
    assert validator.validate(realm.mint(CLIENT)).client_id == CLIENT
    assert realm.request_count("certs") == 1


async def test_cancelled_validations_during_a_failing_fetch_leave_the_rate_limit_intact(
    realm: LocalRealm, make_validator: MakeValidator, clock: FakeClock
) -> None:
    realm.fail_keys(500, delay=KEY_DELAY)
    validator = make_validator()
    await cancel_six_validations(realm, validator)
    with pytest.raises(KeysUnavailable) as caught:  # after waiting for the shared fetch to fail
        await validator.validate_async(realm.mint(CLIENT))
    assert 1 <= caught.value.retry_after <= 30
    assert realm.request_count("certs") == 1
    realm.heal_keys()
    clock.advance(30)
    assert (await validator.validate_async(realm.mint(CLIENT))).client_id == CLIENT
    assert realm.request_count("certs") == 2


def test_a_fetch_cancelled_with_its_event_loop_counts_as_an_attempt(
    realm: LocalRealm, make_validator: MakeValidator, clock: FakeClock
) -> None:
    """Each ``asyncio.run`` below ends while the fetch is in flight, cancelling it."""
    realm.slow_keys(KEY_DELAY)
    validator = make_validator()

    async def give_up_early() -> None:
        validation = asyncio.ensure_future(validator.validate_async(realm.mint(CLIENT)))
        while realm.request_count("certs") == 0:  # on a loaded machine the fetch may start late
            await asyncio.sleep(0.01)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(validation, 0.2)

    asyncio.run(give_up_early())
    assert realm.request_count("certs") == 1
    for _ in range(5):
        with pytest.raises(KeysUnavailable):  # within the interval after the cancelled fetch
            asyncio.run(validator.validate_async(realm.mint(CLIENT)))
    assert realm.request_count("certs") == 1
    realm.heal_keys()
    clock.advance(30)
    assert asyncio.run(validator.validate_async(realm.mint(CLIENT))).client_id == CLIENT
    assert realm.request_count("certs") == 2
