"""``azp_as_audience``: a token issued to the service's own client counts as meant for it.

Tokens come from the realm's token endpoint and keys from its certs endpoint, over HTTP.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from keycloak_m2m import (
    ClientCredentials,
    ClientNotAllowed,
    InvalidAudience,
    InvalidClaim,
    InvalidIssuer,
    InvalidTokenType,
    NotServiceAccount,
    TokenValidator,
)
from keycloak_m2m.cli import main
from keycloak_m2m.testing import LocalRealm

WEB_ECHO = "web-echo"
SECRET = "web-echo-secret"


@pytest.fixture
def realm() -> Iterator[LocalRealm]:
    with LocalRealm("echo") as realm:
        # Keycloak's default: the token names the client in azp, and aud is only "account".
        realm.add_client(WEB_ECHO, SECRET)
        yield realm


@pytest.fixture
def issued(realm: LocalRealm) -> str:
    return ClientCredentials(WEB_ECHO, SECRET, token_url=realm.token_url).get_token()


def validator(realm: LocalRealm, **options: object) -> TokenValidator:
    return TokenValidator(realm.issuer, WEB_ECHO, **options)  # type: ignore[arg-type]


def test_a_token_whose_azp_is_the_audience_is_refused_by_default(
    realm: LocalRealm, issued: str
) -> None:
    with pytest.raises(InvalidAudience):
        validator(realm).validate(issued)


def test_azp_as_audience_accepts_the_token_keycloak_issued_to_the_service(
    realm: LocalRealm, issued: str
) -> None:
    principal = validator(realm, azp_as_audience=True).validate(issued)

    assert principal.client_id == WEB_ECHO
    assert principal.claims["aud"] == "account"
    assert principal.issuer == realm.issuer


@pytest.mark.parametrize("aud", [None, "account", ["account", "other-api"]])
def test_azp_counts_whatever_aud_says(realm: LocalRealm, aud: object) -> None:
    token = realm.mint(WEB_ECHO, claims={"aud": aud}, remove=() if aud is not None else ["aud"])

    assert validator(realm, azp_as_audience=True).validate(token).client_id == WEB_ECHO


def test_another_clients_token_still_needs_the_audience(realm: LocalRealm) -> None:
    realm.add_client("shop-api", "shop-secret")
    token = ClientCredentials("shop-api", "shop-secret", token_url=realm.token_url).get_token()

    with pytest.raises(InvalidAudience):
        validator(realm, azp_as_audience=True).validate(token)


def test_aud_naming_the_service_passes_as_before(realm: LocalRealm) -> None:
    realm.add_client("shop-api", "shop-secret", audience=[WEB_ECHO])
    token = ClientCredentials("shop-api", "shop-secret", token_url=realm.token_url).get_token()

    principal = validator(realm, azp_as_audience=True).validate(token)

    assert principal.client_id == "shop-api"


@pytest.mark.parametrize(
    ("claims", "error"),
    [
        ({"iss": "http://elsewhere/realms/echo"}, InvalidIssuer),
        ({"typ": "ID"}, InvalidTokenType),
        ({"aud": 7}, InvalidClaim),  # a malformed aud is refused even when azp would do
        ({"preferred_username": "alice", "client_id": None, "clientId": None}, NotServiceAccount),
    ],
)
def test_every_other_check_still_applies(
    realm: LocalRealm, claims: dict[str, object], error: type[Exception]
) -> None:
    remove = [name for name, value in claims.items() if value is None]
    kept = {name: value for name, value in claims.items() if value is not None}
    token = realm.mint(WEB_ECHO, claims=kept, remove=remove)

    with pytest.raises(error):
        validator(realm, azp_as_audience=True).validate(token)


def test_allowed_clients_still_applies(realm: LocalRealm, issued: str) -> None:
    strict = validator(realm, azp_as_audience=True, allowed_clients=["shop-api"])

    with pytest.raises(ClientNotAllowed):
        strict.validate(issued)


def test_verify_command_takes_azp_as_audience(
    realm: LocalRealm, issued: str, capsys: pytest.CaptureFixture[str]
) -> None:
    command = ["verify", issued, "--issuer", realm.issuer, "--audience", WEB_ECHO]

    assert main(command) == 1
    refusal = capsys.readouterr().err  # a refusal is one line on stderr
    assert "audience mismatch" in refusal
    assert "--azp-as-audience accepts" in refusal
    assert main([*command, "--azp-as-audience"]) == 0
    assert "valid token" in capsys.readouterr().out
