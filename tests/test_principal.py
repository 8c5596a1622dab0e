"""Principal.require: every listed role and scope is required, and all missing ones are named."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest

from keycloak_m2m import InsufficientScope, MalformedToken, Principal, TokenValidator
from keycloak_m2m._inspect import explain
from keycloak_m2m.testing import LocalRealm

from .support import AUDIENCE, CLIENT, FakeClock


@pytest.fixture
def principal(realm: LocalRealm, clock: FakeClock) -> Principal:
    token = realm.mint(CLIENT, claims={"scope": "profile email notifications.write"})
    return TokenValidator(realm.issuer, AUDIENCE, clock=clock).validate(token)


def test_require_passes_when_everything_is_there(principal: Principal) -> None:
    principal.require(
        roles=["notifications:send", "offline_access"],
        client_roles={AUDIENCE: ["send"]},
        scopes=["notifications.write"],
    )
    principal.require()  # nothing required


def test_require_names_everything_missing(principal: Principal) -> None:
    with pytest.raises(InsufficientScope) as caught:
        principal.require(
            roles=["notifications:send", "admin"],
            client_roles={AUDIENCE: ["send", "cancel"], "billing": ["pay"]},
            scopes=["notifications.write", "notifications.read"],
        )
    error = caught.value
    assert error.status_code == 403
    assert error.missing_roles == ("admin",)
    assert error.missing_client_roles == ((AUDIENCE, "cancel"), ("billing", "pay"))
    assert error.missing_scopes == ("notifications.read",)
    assert 'scope="notifications.read"' in error.www_authenticate("api")


def test_a_lone_string_is_one_name(principal: Principal) -> None:
    principal.require(roles="notifications:send", scopes="email")
    with pytest.raises(InsufficientScope) as caught:
        principal.require(roles="admin")
    assert caught.value.missing_roles == ("admin",)


def test_principal_is_frozen(principal: Principal) -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        principal.client_id = "other"  # type: ignore[misc]
    assert dataclasses.replace(principal, client_id="x").client_id == "x"


def test_inspect_and_the_validator_agree_on_a_service_account(
    realm: LocalRealm, make_validator: Callable[..., TokenValidator], clock: FakeClock
) -> None:
    # Keycloak 22+ names the client twice (azp and client_id); preferred_username is optional.
    token = realm.mint(CLIENT, remove=["preferred_username"])
    principal = make_validator().validate(token)
    report = explain(token, now=clock())

    assert principal.is_service_account
    assert dict(report.facts)["Caller"].startswith(f"service account of client {CLIENT}")
    assert not any("not a service-account token" in warning for warning in report.warnings)


@pytest.mark.parametrize("character", ["+", "/", "=", "*"])
def test_inspect_refuses_a_signature_that_is_not_base64url(
    realm: LocalRealm, clock: FakeClock, character: str
) -> None:
    # inspect verifies nothing, but it reads only what a validator would read.
    token = realm.mint(CLIENT)
    with pytest.raises(MalformedToken):
        explain(token[:-4] + character * 4, now=clock())
    assert explain(token, now=clock()).claims["azp"] == CLIENT
