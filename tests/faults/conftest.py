"""One realm per module for the fault tests: starting a realm (an RSA key) per test would cost
most of their time. Each test still gets a healed realm, zeroed request counts and the clock at
START; validators are made per test, so no state is shared through them."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from keycloak_m2m.testing import LocalRealm

from ..support import START, FakeClock, add_shop_client


@pytest.fixture(scope="module")
def _module_clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(scope="module")
def _module_realm(_module_clock: FakeClock) -> Iterator[LocalRealm]:
    with LocalRealm("shop", clock=_module_clock) as realm:
        add_shop_client(realm)
        yield realm


@pytest.fixture(scope="module")
def _module_other(_module_clock: FakeClock) -> Iterator[LocalRealm]:
    with LocalRealm("elsewhere", clock=_module_clock) as other:
        yield other


def _reset(realm: LocalRealm) -> None:
    realm.heal_keys()
    realm.heal_token()
    realm.reset_counts()


@pytest.fixture
def clock(_module_clock: FakeClock) -> FakeClock:
    _module_clock.now = START
    return _module_clock


@pytest.fixture
def realm(_module_realm: LocalRealm, clock: FakeClock) -> Iterator[LocalRealm]:
    _reset(_module_realm)
    yield _module_realm
    _reset(_module_realm)


@pytest.fixture
def other(_module_other: LocalRealm, clock: FakeClock) -> Iterator[LocalRealm]:
    """A second realm: the target of redirects and the owner of foreign keys."""
    _reset(_module_other)
    yield _module_other
    _reset(_module_other)
