"""Python clients nobody on this project wrote, against LocalRealm over real HTTP: python-keycloak
and Authlib's OAuth 2 client, used the way their documentation shows. Each test is something a
user's test suite does, and would do against Keycloak.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator

import pytest
from authlib.integrations.httpx_client import OAuth2Client
from cryptography.hazmat.primitives import serialization
from jwcrypto.common import JWException
from keycloak import KeycloakOpenID
from keycloak.exceptions import KeycloakAuthenticationError

from keycloak_m2m import TokenValidator
from keycloak_m2m.testing import LocalRealm

SECRET = "compat-secret"


@pytest.fixture
def realm(local_realm: LocalRealm) -> LocalRealm:
    local_realm.add_client(
        "orders",
        SECRET,
        realm_roles=["orders:place"],
        client_roles={"billing": ["pay"]},
    )
    return local_realm


@pytest.fixture
def openid(realm: LocalRealm) -> KeycloakOpenID:
    return KeycloakOpenID(
        server_url=realm.base_url,
        realm_name=realm.name,
        client_id="orders",
        client_secret_key=SECRET,
    )


# ---------------------------------------------------------------------------------------------
# python-keycloak


def test_python_keycloak_token_with_its_defaults(realm: LocalRealm, openid: KeycloakOpenID) -> None:
    # python-keycloak sends scope=openid (and empty username, password, code fields) by default.
    tokens = openid.token(grant_type="client_credentials")

    assert tokens["token_type"] == "Bearer"
    assert tokens["scope"] == "openid profile email"
    assert "refresh_token" not in tokens
    claims = openid.decode_token(tokens["id_token"], validate=True)
    assert claims["typ"] == "ID"
    assert claims["aud"] == "orders"


def test_python_keycloak_decodes_with_validation(realm: LocalRealm, openid: KeycloakOpenID) -> None:
    token = openid.token(grant_type="client_credentials")["access_token"]

    assert {key["kid"] for key in openid.certs()["keys"]} == {
        realm.active_kid,
        realm.encryption_kid,
    }
    claims = openid.decode_token(token, validate=True)

    assert claims["azp"] == claims["client_id"] == "orders"
    assert claims["iss"] == realm.issuer
    assert "orders:place" in claims["realm_access"]["roles"]
    with pytest.raises(JWException):
        openid.decode_token(realm.mint("orders", signature=b"\x01" * 256), validate=True)


def test_python_keycloak_public_key(realm: LocalRealm, openid: KeycloakOpenID) -> None:
    public_key = realm.private_key(realm.active_kid).public_key()
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert base64.b64decode(openid.public_key()) == der


def test_python_keycloak_introspect(realm: LocalRealm, openid: KeycloakOpenID) -> None:
    token = openid.token(grant_type="client_credentials")["access_token"]

    answer = openid.introspect(token)
    assert answer["active"] is True
    assert answer["client_id"] == "orders"
    assert answer["token_type"] == "Bearer"

    realm.revoke(token)
    assert openid.introspect(token) == {"active": False}


def test_python_keycloak_userinfo(realm: LocalRealm, openid: KeycloakOpenID) -> None:
    token = openid.token(grant_type="client_credentials")["access_token"]
    info = openid.userinfo(token)
    assert info == {
        "sub": realm.token_claims("orders")["sub"],
        "email_verified": False,
        "preferred_username": "service-account-orders",
    }


def test_python_keycloak_well_known(realm: LocalRealm, openid: KeycloakOpenID) -> None:
    document = openid.well_known()
    assert document["issuer"] == realm.issuer
    assert document["introspection_endpoint"] == realm.introspection_url


def test_python_keycloak_sees_keycloak_errors(realm: LocalRealm) -> None:
    wrong = KeycloakOpenID(
        server_url=realm.base_url, realm_name=realm.name, client_id="orders", client_secret_key="x"
    )
    with pytest.raises(KeycloakAuthenticationError) as caught:
        wrong.token(grant_type="client_credentials")
    assert caught.value.response_code == 401
    assert b"invalid_client" in caught.value.response_body


def test_python_keycloak_against_keycloak_16() -> None:
    # Before Keycloak 17 every URL had the /auth prefix; python-keycloak takes it in server_url.
    with LocalRealm("legacy", keycloak_version=16) as realm:
        realm.add_client("orders", SECRET)
        openid = KeycloakOpenID(
            server_url=realm.base_url + "/auth/",  # the trailing slash, as its docs say
            realm_name="legacy",
            client_id="orders",
            client_secret_key=SECRET,
        )
        claims = openid.decode_token(openid.token(grant_type="client_credentials")["access_token"])
    assert claims["clientId"] == "orders"
    assert claims["iss"].endswith("/auth/realms/legacy")


# ---------------------------------------------------------------------------------------------
# Authlib's OAuth 2 client


@pytest.fixture(params=["client_secret_basic", "client_secret_post"])
def authlib_client(request: pytest.FixtureRequest) -> Iterator[OAuth2Client]:
    with OAuth2Client("orders", SECRET, token_endpoint_auth_method=request.param) as client:
        yield client


def test_authlib_fetches_a_token(realm: LocalRealm, authlib_client: OAuth2Client) -> None:
    token = authlib_client.fetch_token(realm.token_url, grant_type="client_credentials")

    assert token["token_type"] == "Bearer"
    assert token["scope"] == "profile email"
    validator = TokenValidator(realm.issuer, "account")
    assert validator.validate(token["access_token"]).client_id == "orders"


def test_authlib_asks_for_openid(realm: LocalRealm, authlib_client: OAuth2Client) -> None:
    token = authlib_client.fetch_token(
        realm.token_url, grant_type="client_credentials", scope="openid"
    )
    assert token["scope"] == "openid profile email"
    assert "id_token" in token


def test_authlib_introspects_and_revokes(realm: LocalRealm, authlib_client: OAuth2Client) -> None:
    token = authlib_client.fetch_token(realm.token_url, grant_type="client_credentials")
    access_token = token["access_token"]

    active = authlib_client.introspect_token(realm.introspection_url, token=access_token)
    assert active.json()["active"] is True
    revoked = authlib_client.revoke_token(realm.revocation_url, token=access_token)
    assert revoked.status_code == 200
    inactive = authlib_client.introspect_token(realm.introspection_url, token=access_token)
    assert inactive.json() == {"active": False}


def test_authlib_sees_invalid_scope(realm: LocalRealm, authlib_client: OAuth2Client) -> None:
    with pytest.raises(Exception, match="invalid_scope"):
        authlib_client.fetch_token(realm.token_url, grant_type="client_credentials", scope="admin")
