"""Shared fixtures: a controllable clock, a realm with a service-account client, both drivers."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from keycloak_m2m import TokenValidator
from keycloak_m2m.testing import LocalRealm

from .otel_sdk import telemetry  # noqa: F401 - a fixture for every test directory
from .support import (
    AUDIENCE,
    FakeClock,
    SharedRealm,
    Validate,
    add_shop_client,
    shop_realm,
    validate_async,
    validate_sync,
)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def realm(clock: FakeClock) -> Iterator[LocalRealm]:
    with LocalRealm("shop", clock=clock) as realm:
        add_shop_client(realm)
        yield realm


@pytest.fixture(scope="module")
def module_clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(scope="module")
def module_realm(module_clock: FakeClock) -> Iterator[SharedRealm]:
    """The realm of a module that opts in with ``clock, realm = shared_realm()``."""
    with SharedRealm(lambda: shop_realm(module_clock)) as shared:
        yield shared


@pytest.fixture
def make_validator(realm: LocalRealm, clock: FakeClock) -> Callable[..., TokenValidator]:
    def make(**options: Any) -> TokenValidator:
        options.setdefault("clock", clock)
        return TokenValidator(realm.issuer, options.pop("audience", AUDIENCE), **options)

    return make


@pytest.fixture(params=["sync", "async"])
def validate(request: pytest.FixtureRequest) -> Validate:
    """Run one validation through the sync or the async driver: every case runs under both."""
    return validate_sync if request.param == "sync" else validate_async
