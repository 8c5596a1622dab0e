"""Shared fixtures: a controllable clock, a realm with a service-account client, both drivers."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import settings

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

# No wall-clock limit on an example: Hypothesis's default deadline failed a first run on a busy
# machine (a cold import inside the first example), and speed belongs in benchmarks/.
settings.register_profile("no-deadline", deadline=None)
settings.load_profile("no-deadline")


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int | None:
    """``-n auto``: two workers per core. A worker spends about half its time waiting (on the
    servers and subprocesses its tests start, on the timeouts they test), which a second worker
    per core fills; on a busy machine the workers' share of the cores grows with their number.
    PYTEST_XDIST_AUTO_NUM_WORKERS still decides when set."""
    if os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS"):
        return None
    usable = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    return 2 * (len(usable) if usable else os.cpu_count() or 1)


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
