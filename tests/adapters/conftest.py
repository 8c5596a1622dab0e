"""Fixtures for the adapter tests: one validator on the shared realm, and a valid token."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from keycloak_m2m import TokenValidator
from keycloak_m2m.testing import LocalRealm

from ..support import CLIENT


@pytest.fixture
def validator(make_validator: Callable[..., TokenValidator]) -> TokenValidator:
    return make_validator()


@pytest.fixture
def token(realm: LocalRealm) -> str:
    return realm.mint(CLIENT)
