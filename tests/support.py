"""Helpers shared by the test modules."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from keycloak_m2m import Principal, TokenValidator
from keycloak_m2m.testing import LocalRealm

START = 1_750_000_000.0
AUDIENCE = "notification-service"
CLIENT = "shop-api"


class FakeClock:
    """A clock the test moves by hand; the realm and the validator both read it."""

    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


Validate = Callable[[TokenValidator, Any], Principal]


def validate_sync(validator: TokenValidator, token: Any) -> Principal:
    return validator.validate(token)


def validate_async(validator: TokenValidator, token: Any) -> Principal:
    return asyncio.run(validator.validate_async(token))


def add_shop_client(realm: LocalRealm) -> None:
    """The caller most tests use: shop-api, allowed to send notifications."""
    realm.add_client(
        CLIENT,
        "shop-api-secret",
        realm_roles=["notifications:send"],
        client_roles={AUDIENCE: ["send"]},
        audience=[AUDIENCE],
    )


# The promise of every deadline (jwks_timeout, ClientCredentials' timeout): the exchange, its
# thread and its socket end within it plus this.
GRACE = 0.5
# Ticks of a Ticker that prove an event loop ran: it ticks about every 10 ms while it runs and
# not at all while blocked, so a few suffice on a machine of any speed.
PROGRESS = 3


class Ticker:
    """Counts the 10 ms sleeps a concurrent task completes while ``during()`` holds (a fetch is
    in flight, say). Run it with ``asyncio.create_task(ticker.run())``; cancel it the moment the
    awaited work returns."""

    def __init__(self, during: Callable[[], bool] = lambda: True) -> None:
        self.ticks = 0
        self._during = during

    async def run(self) -> None:
        while True:
            await asyncio.sleep(0.01)
            if self._during():
                self.ticks += 1
