"""Token exchange (RFC 8693) against the local realm: shop-api calls the gateway with its token;
the gateway exchanges it for one meant for the notification-service."""

from __future__ import annotations

import pytest

from keycloak_m2m import TokenValidator
from keycloak_m2m._client import ClientCredentials, TokenRequestError
from keycloak_m2m.testing import LocalRealm

from ..support import AUDIENCE, CLIENT, FakeClock
from .conftest import MakeCredentials

GATEWAY = "gateway"


@pytest.fixture
def caller(realm: LocalRealm, make_credentials: MakeCredentials) -> ClientCredentials:
    """shop-api, whose tokens name the gateway in their audience."""
    realm.add_client(
        CLIENT,
        "shop-api-secret",
        realm_roles=["notifications:send"],
        client_roles={AUDIENCE: ["send"]},
        audience=[GATEWAY],
    )
    return make_credentials()


@pytest.fixture
def gateway(realm: LocalRealm, make_credentials: MakeCredentials) -> ClientCredentials:
    realm.add_client(GATEWAY, "gateway-secret")
    return make_credentials(GATEWAY, "gateway-secret")


def validate_at_notification_service(
    realm: LocalRealm, clock: FakeClock, token: str
) -> tuple[str, str | None, frozenset[str]]:
    # The exchanged token speaks for shop-api's service account through the gateway.
    validator = TokenValidator(realm.issuer, AUDIENCE, clock=clock, service_accounts_only=False)
    principal = validator.validate(token)
    return principal.client_id, principal.subject, principal.realm_roles


def test_exchange_returns_a_token_for_the_audience(
    realm: LocalRealm,
    clock: FakeClock,
    caller: ClientCredentials,
    gateway: ClientCredentials,
) -> None:
    subject_token = caller.get_token()

    exchanged = gateway.exchange(subject_token, audience=AUDIENCE)

    client_id, subject, roles = validate_at_notification_service(realm, clock, exchanged)
    original = TokenValidator(realm.issuer, GATEWAY, clock=clock).validate(subject_token)
    assert client_id == GATEWAY
    assert subject == original.subject
    assert "notifications:send" in roles


async def test_exchange_async(
    realm: LocalRealm, clock: FakeClock, caller: ClientCredentials, gateway: ClientCredentials
) -> None:
    exchanged = await gateway.exchange_async(await caller.get_token_async(), audience=AUDIENCE)

    assert validate_at_notification_service(realm, clock, exchanged)[0] == GATEWAY


def test_exchange_is_not_cached_and_leaves_the_client_token_alone(
    realm: LocalRealm, caller: ClientCredentials, gateway: ClientCredentials
) -> None:
    own = gateway.get_token()
    subject_token = caller.get_token()

    first = gateway.exchange(subject_token, audience=AUDIENCE)
    second = gateway.exchange(subject_token, audience=AUDIENCE)

    assert first != second
    assert gateway.get_token() == own
    assert realm.request_count("token") == 4  # two client tokens, two exchanges


def test_exchange_by_a_client_outside_the_audience_is_refused(
    realm: LocalRealm, caller: ClientCredentials, make_credentials: MakeCredentials
) -> None:
    realm.add_client("intruder", "intruder-secret")
    intruder = make_credentials("intruder", "intruder-secret")
    subject_token = caller.get_token()

    with pytest.raises(TokenRequestError) as caught:
        intruder.exchange(subject_token, audience=AUDIENCE)

    error = caught.value
    assert (error.status_code, error.error) == (403, "access_denied")
    assert "token exchange refused" in str(error)
    assert subject_token not in str(error)


@pytest.mark.parametrize(
    ("subject_token", "audience", "status", "error"),
    [
        ("not-a-token", AUDIENCE, 400, "invalid_token"),
        (None, "no-such-client", 400, "invalid_client"),
    ],
)
def test_exchange_errors(
    caller: ClientCredentials,
    gateway: ClientCredentials,
    subject_token: str | None,
    audience: str,
    status: int,
    error: str,
) -> None:
    with pytest.raises(TokenRequestError) as caught:
        gateway.exchange(subject_token or caller.get_token(), audience=audience)

    assert (caught.value.status_code, caught.value.error) == (status, error)


def test_expired_subject_token_is_refused(
    clock: FakeClock, caller: ClientCredentials, gateway: ClientCredentials
) -> None:
    subject_token = caller.get_token()
    clock.advance(301)

    with pytest.raises(TokenRequestError) as caught:
        gateway.exchange(subject_token, audience=AUDIENCE)

    assert caught.value.error == "invalid_token"
