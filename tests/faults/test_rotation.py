"""Key rotation in the middle of traffic: hundreds of concurrent validations of tokens signed by the
old and the new key, the refetch in flight while they arrive, and not one valid token refused.
Keycloak keeps the old key published (passive) after a rotation, as the realm does here."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

from keycloak_m2m import AuthError, TokenValidator
from keycloak_m2m.testing import LocalRealm

from ..support import CLIENT, PROGRESS, FakeClock, Ticker

MakeValidator = Callable[..., TokenValidator]
DEADLINE = 20.0  # seconds; a hung test fails instead of hanging the suite


class Traffic:
    """The tokens callers present: the old key's, and the current key's once it is published."""

    def __init__(self, realm: LocalRealm) -> None:
        self.tokens = [realm.mint(CLIENT)]
        self.generation = 0
        self.validated_per_generation: list[int] = [0]
        self.failures: list[BaseException] = []
        self.done = False
        self._lock = threading.Lock()

    def publish(self, token: str) -> None:
        with self._lock:
            self.tokens.append(token)
            self.validated_per_generation.append(0)
            self.generation += 1

    def pick(self, turn: int) -> tuple[int, str]:
        with self._lock:
            generation = self.generation if turn % 3 else turn % (self.generation + 1)
            return generation, self.tokens[generation]

    def record(self, generation: int, error: BaseException | None) -> None:
        with self._lock:
            if error is None:
                self.validated_per_generation[generation] += 1
            else:
                self.failures.append(error)


async def _caller_task(validator: TokenValidator, traffic: Traffic) -> None:
    turn = 0
    while not traffic.done:
        generation, token = traffic.pick(turn)
        try:
            await validator.validate_async(token)
        except AuthError as error:
            traffic.record(generation, error)
        else:
            traffic.record(generation, None)
        turn += 1
        await asyncio.sleep(0.001)


async def _rotate_under_traffic(
    realm: LocalRealm, clock: FakeClock, traffic: Traffic, rotations: int
) -> None:
    start = time.monotonic()
    await asyncio.sleep(0.05)  # the traffic is flowing
    for rotation in range(1, rotations + 1):
        clock.advance(31)  # past the refetch interval since the last fetch
        await asyncio.to_thread(realm.rotate_keys)
        traffic.publish(realm.mint(CLIENT))
        # Each key is fetched before the clock moves on, as it would be in real traffic.
        while (
            realm.request_count("certs") < 1 + rotation
            or min(traffic.validated_per_generation) < 50
        ):
            assert time.monotonic() - start < DEADLINE
            if traffic.failures:  # the test reports them
                traffic.done = True
                return
            await asyncio.sleep(0.01)
    traffic.done = True


async def test_rotation_under_200_concurrent_tasks_refuses_no_valid_token(
    realm: LocalRealm, make_validator: MakeValidator, clock: FakeClock
) -> None:
    # A deadline far beyond the ticks the release waits for, so only a blocked loop reaches it.
    validator = make_validator(token_cache_size=0, jwks_timeout=DEADLINE / 2)
    traffic = Traffic(realm)
    await validator.validate_async(traffic.tokens[0])
    # The refetch for the new key is held until the event loop has run PROGRESS ticks while it
    # was in flight (asked, and no new-key token passed). If the fetch blocked the loop, nothing
    # could tick: the fetch would end at its deadline and the new key's tokens be refused, which
    # traffic.failures records.
    release = realm.hold_keys()
    ticker = Ticker(
        during=lambda: (
            realm.request_count("certs") == 2 and traffic.validated_per_generation[-1] == 0
        )
    )

    async def release_once_the_loop_ran() -> None:
        while ticker.ticks < PROGRESS:
            await asyncio.sleep(0.01)
        release.set()

    ticking = asyncio.create_task(ticker.run())
    releasing = asyncio.create_task(release_once_the_loop_ran())
    await asyncio.gather(
        _rotate_under_traffic(realm, clock, traffic, rotations=1),
        *(_caller_task(validator, traffic) for _ in range(200)),
    )
    ticking.cancel()
    releasing.cancel()
    assert traffic.failures == []
    assert min(traffic.validated_per_generation) >= 50
    assert realm.request_count("certs") == 2  # the warm-up, and one fetch for the new key


async def test_three_rotations_under_200_concurrent_tasks_cost_one_fetch_each(
    realm: LocalRealm, make_validator: MakeValidator, clock: FakeClock
) -> None:
    validator = make_validator()  # with the verified-token cache this time
    traffic = Traffic(realm)
    await validator.validate_async(traffic.tokens[0])
    realm.slow_keys(0.2)  # each refetch is in flight while callers pile up behind it
    await asyncio.gather(
        _rotate_under_traffic(realm, clock, traffic, rotations=3),
        *(_caller_task(validator, traffic) for _ in range(200)),
    )
    assert traffic.failures == []
    assert len(traffic.validated_per_generation) == 4
    assert min(traffic.validated_per_generation) >= 50
    assert realm.request_count("certs") == 4


def test_rotation_under_50_threads_refuses_no_valid_token(
    realm: LocalRealm, make_validator: MakeValidator, clock: FakeClock
) -> None:
    validator = make_validator(token_cache_size=0)
    traffic = Traffic(realm)
    validator.validate(traffic.tokens[0])
    started = threading.Barrier(51)

    def caller() -> None:
        started.wait()
        turn = 0
        while not traffic.done:
            generation, token = traffic.pick(turn)
            try:
                validator.validate(token)
            except AuthError as error:
                traffic.record(generation, error)
            else:
                traffic.record(generation, None)
            turn += 1
            time.sleep(0.001)

    threads = [threading.Thread(target=caller) for _ in range(50)]
    for thread in threads:
        thread.start()
    started.wait()
    try:
        asyncio.run(_rotate_under_traffic(realm, clock, traffic, rotations=1))
    finally:
        traffic.done = True
        for thread in threads:
            thread.join(DEADLINE)
    assert traffic.failures == []
    assert min(traffic.validated_per_generation) >= 50
    assert realm.request_count("certs") == 2
