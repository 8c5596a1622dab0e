"""private_key_jwt: the client signs an RFC 7523 assertion instead of sending a secret.

LocalRealm does not verify assertions yet, so a small token endpoint here does, as Keycloak's
"Signed JWT" authenticator would, and then gets the token from the LocalRealm over HTTP.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from keycloak_m2m import ClientCredentials, TokenRequestError, TokenValidator
from keycloak_m2m.testing import LocalRealm

from ..support import AUDIENCE, CLIENT
from .servers import AssertionCheck, assertion_endpoint

SECRET = "shop-api-secret"
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())


def keycloak_kid(key: Any) -> str:
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.urlsafe_b64encode(hashlib.sha256(der).digest()).rstrip(b"=").decode()


@pytest.fixture(scope="module")
def realm() -> Iterator[LocalRealm]:
    with LocalRealm("shop") as realm:
        realm.add_client(CLIENT, SECRET, audience=[AUDIENCE])
        yield realm


@pytest.fixture(params=["RS256", "ES256"])
def endpoint(request: pytest.FixtureRequest, realm: LocalRealm) -> Iterator[AssertionCheck]:
    key = RSA_KEY if request.param == "RS256" else EC_KEY
    check = AssertionCheck(CLIENT, key.public_key(), keycloak_kid(key), SECRET, realm.token_url)
    with assertion_endpoint(check) as running:
        yield running


def signing(endpoint: AssertionCheck, **options: Any) -> ClientCredentials:
    key = RSA_KEY if isinstance(endpoint.public_key, rsa.RSAPublicKey) else EC_KEY
    return ClientCredentials(
        CLIENT,
        private_key=key,
        auth_method="private_key_jwt",
        token_url=endpoint.token_url,
        **{"backoff": 0.001, "max_backoff": 0.005, **options},
    )


def test_the_assertion_authenticates_the_client(
    realm: LocalRealm, endpoint: AssertionCheck
) -> None:
    token = signing(endpoint).get_token()

    assert TokenValidator(realm.issuer, AUDIENCE).validate(token).client_id == CLIENT
    assert endpoint.refused == []
    (header,) = endpoint.headers
    (claims,) = endpoint.claims
    expected_alg = "RS256" if isinstance(endpoint.public_key, rsa.RSAPublicKey) else "ES256"
    assert header == {"alg": expected_alg, "typ": "JWT", "kid": endpoint.key_id}
    assert claims["iss"] == claims["sub"] == CLIENT
    assert claims["aud"] == endpoint.token_url
    assert claims["exp"] - claims["iat"] == 60


def test_every_request_signs_a_fresh_assertion(endpoint: AssertionCheck) -> None:
    credentials = signing(endpoint)
    first = credentials.get_token()
    second = credentials.renew_token(first)
    asyncio.run(credentials.renew_token_async(second))

    assert endpoint.refused == []
    assert len({claims["jti"] for claims in endpoint.claims}) == 3


def test_a_retry_is_not_a_replay(endpoint: AssertionCheck) -> None:
    endpoint.unavailable = 2  # two 503s, then the token

    assert signing(endpoint, max_retries=2).get_token()
    assert endpoint.refused == []  # a reused jti would have been refused
    assert len(endpoint.claims) == 3


def test_a_wrong_key_is_refused_as_invalid_client(endpoint: AssertionCheck) -> None:
    other = ec.generate_private_key(ec.SECP256R1())
    credentials = ClientCredentials(
        CLIENT, private_key=other, auth_method="private_key_jwt", token_url=endpoint.token_url
    )

    with pytest.raises(TokenRequestError) as refused:
        credentials.get_token()

    assert refused.value.error == "invalid_client"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"private_key": EC_KEY}, "private_key goes with auth_method='private_key_jwt'"),
        ({"auth_method": "private_key_jwt"}, "private_key goes with"),
        (
            {"auth_method": "private_key_jwt", "private_key": EC_KEY, "client_secret": "s"},
            "private_key_jwt sends no secret",
        ),
        (
            {
                "auth_method": "private_key_jwt",
                "private_key": rsa.generate_private_key(public_exponent=65537, key_size=1024),  # noqa: S505 - refused
            },
            "at least 2048 bits",
        ),
        (
            {
                "auth_method": "private_key_jwt",
                "private_key": ec.generate_private_key(ec.SECP384R1()),
            },
            "RSA or a P-256",
        ),
        ({"auth_method": "client_secret_jwt", "client_secret": "s"}, "auth_method must be"),
    ],
)
def test_key_settings_are_checked(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ClientCredentials(CLIENT, token_url="https://sso.example.com/t", **options)
