"""Validator settings: clear errors for bad ones, key set URLs, and discovery."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from keycloak_m2m import DiscoveryError, TokenValidator
from keycloak_m2m.testing import LocalRealm

from .support import AUDIENCE, CLIENT, FakeClock

ISSUER = "https://sso.example.com/realms/shop"


@pytest.mark.parametrize(
    ("arguments", "options", "message"),
    [
        (("", AUDIENCE), {}, "issuer"),
        ((ISSUER, []), {}, "audience"),
        ((ISSUER, [""]), {}, "audience"),
        ((ISSUER, AUDIENCE), {"algorithms": ["HS256"]}, "HS256"),
        ((ISSUER, AUDIENCE), {"algorithms": ["none", "RS256"]}, "none"),
        ((ISSUER, AUDIENCE), {"algorithms": []}, "algorithms"),
        ((ISSUER, AUDIENCE), {"profile": "okta"}, "profile"),
        ((ISSUER, AUDIENCE), {"leeway": -1}, "leeway"),
        ((ISSUER, AUDIENCE), {"leeway": float("nan")}, "leeway"),
        ((ISSUER, AUDIENCE), {"jwks_ttl": 0}, "jwks_ttl"),
        ((ISSUER, AUDIENCE), {"jwks_url": "ftp://x/certs"}, "jwks_url"),
        ((ISSUER, AUDIENCE), {"jwks_url": "http://a/c", "keycloak_url": "http://b"}, "not both"),
        ((ISSUER, AUDIENCE), {"keycloak_url": "keycloak:8080"}, "keycloak_url"),
        (("sso.example.com/realms/shop", AUDIENCE), {}, "issuer"),
        ((ISSUER, AUDIENCE), {"clock": 5}, "clock"),
        ((ISSUER, AUDIENCE), {"token_cache_size": -1}, "token_cache_size"),
        ((ISSUER, AUDIENCE), {"max_token_size": 1.5}, "max_token_size"),
        ((ISSUER, AUDIENCE), {"allowed_clients": [1]}, "allowed_clients"),
    ],
)
def test_bad_settings_get_a_clear_error(
    arguments: tuple[Any, ...], options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        TokenValidator(*arguments, **options)


@pytest.mark.parametrize(
    ("issuer", "options", "expected"),
    [
        (ISSUER, {}, ISSUER + "/protocol/openid-connect/certs"),
        (
            ISSUER,
            {"keycloak_url": "http://keycloak:8080"},
            "http://keycloak:8080/realms/shop/protocol/openid-connect/certs",
        ),
        (
            "https://sso.example.com/auth/realms/shop",
            {"keycloak_url": "http://keycloak:8080/"},
            "http://keycloak:8080/auth/realms/shop/protocol/openid-connect/certs",
        ),
        (ISSUER, {"jwks_url": "http://keys.internal/jwks"}, "http://keys.internal/jwks"),
    ],
)
def test_key_set_url(issuer: str, options: dict[str, Any], expected: str) -> None:
    assert TokenValidator(issuer, AUDIENCE, **options).jwks_url == expected


def test_keycloak_url_fetches_internally_while_expecting_the_public_issuer(
    clock: FakeClock,
) -> None:
    public_issuer = "https://sso.example.com/auth/realms/shop"
    with LocalRealm("shop", legacy_auth_prefix=True, clock=clock) as realm:
        realm.add_client(CLIENT, "secret", audience=[AUDIENCE])
        validator = TokenValidator(
            public_issuer, AUDIENCE, keycloak_url=realm.base_url, clock=clock
        )
        token = realm.mint(CLIENT, claims={"iss": public_issuer})
        assert validator.validate(token).client_id == CLIENT
        assert realm.request_count("certs") == 1


def test_audience_and_allowed_clients_accept_one_string(
    realm: LocalRealm, clock: FakeClock
) -> None:
    validator = TokenValidator(realm.issuer, AUDIENCE, allowed_clients=CLIENT, clock=clock)
    assert validator.audiences == frozenset({AUDIENCE})
    assert validator.validate(realm.mint(CLIENT)).client_id == CLIENT


def test_from_discovery(realm: LocalRealm, clock: FakeClock) -> None:
    validator = TokenValidator.from_discovery(realm.issuer, AUDIENCE, clock=clock)
    assert validator.jwks_url == realm.jwks_url
    assert validator.validate(realm.mint(CLIENT)).client_id == CLIENT
    assert realm.request_count("discovery") == 1


def test_from_discovery_async(realm: LocalRealm, clock: FakeClock) -> None:
    async def build() -> TokenValidator:
        return await TokenValidator.from_discovery_async(realm.issuer, AUDIENCE, clock=clock)

    validator = asyncio.run(build())
    assert validator.validate(realm.mint(CLIENT)).client_id == CLIENT


def test_discovery_must_name_the_expected_issuer(realm: LocalRealm) -> None:
    with pytest.raises(DiscoveryError, match="another issuer"):
        TokenValidator.from_discovery(realm.issuer + "/", AUDIENCE)


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        (lambda realm: realm.stop(), "unavailable"),
        (lambda realm: None, "unavailable"),  # a path with no discovery document: 404
    ],
)
def test_discovery_failures(realm: LocalRealm, fault: Any, message: str) -> None:
    issuer = realm.issuer
    fault(realm)
    with pytest.raises(DiscoveryError, match=message):
        TokenValidator.from_discovery(issuer + "x", AUDIENCE)


def test_discovery_leaves_the_key_set_url_to_the_document(realm: LocalRealm) -> None:
    with pytest.raises(ValueError, match="discovery"):
        TokenValidator.from_discovery(realm.issuer, AUDIENCE, jwks_url=realm.jwks_url)
