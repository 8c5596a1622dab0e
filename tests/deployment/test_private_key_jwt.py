"""private_key_jwt: the client signs an RFC 7523 assertion instead of sending a secret.

LocalRealm checks the assertions as Keycloak's "Signed JWT" client authenticator does, against
a key registered with ``add_client(public_key=...)`` or published at ``add_client(jwks_url=...)``.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import parse_qsl

import httpx
import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.x509.oid import NameOID

from keycloak_m2m import ClientCredentials, TokenRequestError, TokenValidator
from keycloak_m2m.testing import LocalRealm
from keycloak_m2m.testing._keys import keycloak_kid
from keycloak_m2m.testing._server import HttpServer, Request, Response

from ..support import AUDIENCE, CLIENT, TLS
from .servers import forward_proxy

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
# Every kind Keycloak's Signed JWT authenticator verifies: one rule, in _client_auth, decides for
# ClientCredentials and for Introspection alike.
KEYS = {
    "RS256": RSA_KEY,
    "ES256": EC_KEY,
    "ES384": ec.generate_private_key(ec.SECP384R1()),
    "ES512": ec.generate_private_key(ec.SECP521R1()),
    "EdDSA": ed25519.Ed25519PrivateKey.generate(),
}
SECRET_CLIENT = "billing-api"
GENERIC_REFUSAL = "Invalid client or Invalid client credentials"
SIGNATURE_FAILED = (
    "Client authentication with signed JWT failed: Signature on JWT token failed validation"
)

Key = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey


@pytest.fixture(scope="module")
def realm() -> Iterator[LocalRealm]:
    with LocalRealm("shop") as realm:
        realm.add_client(SECRET_CLIENT, "billing-secret")
        yield realm


@pytest.fixture(params=sorted(KEYS))
def key(request: pytest.FixtureRequest, realm: LocalRealm) -> Key:
    """The client's key, registered (again: each test starts from this registration)."""
    private_key: Key = KEYS[request.param]
    realm.add_client(CLIENT, public_key=private_key.public_key(), audience=[AUDIENCE])
    return private_key


def signing(realm: LocalRealm, key: Key, **options: Any) -> ClientCredentials:
    return ClientCredentials(
        CLIENT,
        private_key=key,
        auth_method="private_key_jwt",
        token_url=realm.token_url,
        **{"backoff": 0.001, "max_backoff": 0.005, **options},
    )


def algorithm_of(key: Key) -> str:
    """The JWS algorithm Keycloak verifies a key's assertion with."""
    if isinstance(key, rsa.RSAPrivateKey):
        return "RS256"
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return "EdDSA"
    return {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}[key.curve.name]


def segment(part: str) -> dict[str, Any]:
    decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(part + "=="))
    return decoded


def sent_assertions(bodies: list[bytes]) -> list[str]:
    return [dict(parse_qsl(body.decode()))["client_assertion"] for body in bodies]


# --- ClientCredentials against the realm -------------------------------------------------


def test_the_assertion_authenticates_the_client(realm: LocalRealm, key: Key) -> None:
    token = signing(realm, key).get_token()

    assert TokenValidator(realm.issuer, AUDIENCE).validate(token).client_id == CLIENT


@pytest.mark.usefixtures("no_proxy_variables")
def test_the_assertion_is_shaped_as_keycloak_expects(realm: LocalRealm, key: Key) -> None:
    with forward_proxy() as proxy:
        assert signing(realm, key, proxy=proxy.url).get_token()

    (assertion,) = sent_assertions(proxy.bodies)
    header, claims = (segment(part) for part in assertion.split(".")[:2])
    assert header == {"alg": algorithm_of(key), "typ": "JWT", "kid": keycloak_kid(key.public_key())}
    assert claims["iss"] == claims["sub"] == CLIENT
    assert claims["aud"] == realm.token_url
    assert claims["exp"] - claims["iat"] == 60


def test_every_request_signs_a_fresh_assertion(realm: LocalRealm, key: Key) -> None:
    # The realm refuses a jti it has seen: three tokens mean three fresh assertions.
    credentials = signing(realm, key)
    first = credentials.get_token()
    second = credentials.renew_token(first)

    assert asyncio.run(credentials.renew_token_async(second))


@pytest.mark.usefixtures("no_proxy_variables")
def test_a_retry_is_not_a_replay(realm: LocalRealm, key: Key) -> None:
    with forward_proxy() as proxy:
        # The realm accepts the first two assertions, but their answers are lost on the way.
        proxy.lost_answers = 2
        assert signing(realm, key, proxy=proxy.url, max_retries=2).get_token()

    jtis = [segment(a.split(".")[1])["jti"] for a in sent_assertions(proxy.bodies)]
    assert len(set(jtis)) == 3  # a retry resending the consumed jti would have been refused


def test_a_wrong_key_is_refused_as_invalid_client(realm: LocalRealm, key: Key) -> None:
    other = ec.generate_private_key(ec.SECP256R1())

    with pytest.raises(TokenRequestError) as refused:
        signing(realm, other, max_retries=0).get_token()

    assert refused.value.error == "invalid_client"


def test_a_rotated_key_works_once_registered(realm: LocalRealm, key: Key) -> None:
    new_key = ec.generate_private_key(ec.SECP256R1())
    realm.add_client(CLIENT, public_key=new_key.public_key(), audience=[AUDIENCE])

    with pytest.raises(TokenRequestError) as refused:
        signing(realm, key, max_retries=0).get_token()
    token = signing(realm, new_key).get_token()

    assert refused.value.error == "invalid_client"
    assert TokenValidator(realm.issuer, AUDIENCE).validate(token).client_id == CLIENT


# --- how the key is registered -------------------------------------------------------------------


def public_pem(key: Key) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def certificate_pem(key: Key) -> str:
    # A self-signed certificate of the client's key, as Keycloak's "Import certificate" takes.
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, CLIENT)])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.PEM).decode("ascii")


@pytest.mark.parametrize("form", ["object", "pem bytes", "pem text", "certificate"])
def test_the_public_key_may_be_registered_in_every_form(realm: LocalRealm, form: str) -> None:
    registered: Any = {
        "object": EC_KEY.public_key(),
        "pem bytes": public_pem(RSA_KEY),
        "pem text": public_pem(EC_KEY).decode("ascii"),
        "certificate": certificate_pem(RSA_KEY),
    }[form]
    key = RSA_KEY if form in ("pem bytes", "certificate") else EC_KEY
    realm.add_client(CLIENT, public_key=registered, audience=[AUDIENCE])

    assert signing(realm, key).get_token()


class PublishedKeys:
    """The client's own JWKS endpoint, whose keys a test changes."""

    def __init__(self, *keys: Key) -> None:
        self.keys = list(keys)
        self.server = HttpServer(self._handle)
        self.url = f"http://127.0.0.1:{self.server.port}/jwks"

    def _handle(self, request: Request) -> Response:
        jwks = {"keys": [self._jwk(key) for key in self.keys]}
        return Response(200, json.dumps(jwks).encode(), "application/json")

    @staticmethod
    def _jwk(key: Key) -> dict[str, Any]:
        algorithm = jwt.algorithms.RSAAlgorithm if isinstance(key, rsa.RSAPrivateKey) else None
        jwk: dict[str, Any] = json.loads(
            (algorithm or jwt.algorithms.ECAlgorithm).to_jwk(key.public_key())
        )
        return {**jwk, "kid": keycloak_kid(key.public_key()), "use": "sig"}


@pytest.fixture
def published() -> Iterator[PublishedKeys]:
    keys = PublishedKeys(RSA_KEY)
    try:
        yield keys
    finally:
        keys.server.close()


def test_a_jwks_url_is_followed_as_the_client_rotates(
    realm: LocalRealm, published: PublishedKeys
) -> None:
    realm.add_client(CLIENT, jwks_url=published.url, audience=[AUDIENCE])
    assert signing(realm, RSA_KEY).get_token()

    published.keys = [EC_KEY]  # rotated: the old key is no longer published

    with pytest.raises(TokenRequestError) as refused:
        signing(realm, RSA_KEY, max_retries=0).get_token()
    assert signing(realm, EC_KEY).get_token()
    assert refused.value.error_description == "Unable to load public key"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({}, "a client needs a secret, a public_key or jwks_url"),
        ({"secret": "s", "public_key": EC_KEY.public_key()}, "has no secret"),
        ({"certificate_bound": True, "jwks_url": "https://c.example/jwks"}, "has no secret"),
        (
            {"public_key": EC_KEY.public_key(), "jwks_url": "https://c.example/jwks"},
            "public_key or jwks_url, not both",
        ),
        ({"public_key": EC_KEY}, "must be an RSA, P-256/384/521 or Ed25519 public key"),
        ({"public_key": "not a pem"}, "not a PEM public key or certificate"),
        ({"jwks_url": "c.example/jwks"}, "must be an http:// or https:// URL"),
    ],
)
def test_registration_is_checked(options: dict[str, Any], message: str) -> None:
    realm = LocalRealm("checks")
    with pytest.raises(ValueError, match=message):
        realm.add_client(CLIENT, **options)


# --- hostile assertions, posted as they are ------------------------------------------------------


def now() -> int:
    return int(time.time())


def assertion(
    realm: LocalRealm,
    key: Key,
    *,
    claims: dict[str, Any] | None = None,
    remove: tuple[str, ...] = (),
    header: dict[str, Any] | None = None,
    algorithm: str | None = None,
) -> str:
    payload: dict[str, Any] = {
        "iss": CLIENT,
        "sub": CLIENT,
        "aud": realm.token_url,
        "jti": str(uuid.uuid4()),
        "iat": now(),
        "exp": now() + 60,
        **(claims or {}),
    }
    for name in remove:
        payload.pop(name)
    if algorithm is None:
        algorithm = algorithm_of(key)
    kid = {"kid": keycloak_kid(key.public_key())}
    return jwt.encode(payload, key, algorithm, headers={**kid, **(header or {})})


def post(
    realm: LocalRealm, client_assertion: str, url: str | None = None, **form: str
) -> httpx.Response:
    data = {
        "grant_type": "client_credentials",
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": client_assertion,
        **form,
    }
    return httpx.post(url or realm.token_url, data=data, verify=TLS)


def refusal(response: httpx.Response) -> tuple[int, str, str]:
    body = response.json()
    return response.status_code, body["error"], body["error_description"]


def encoded(part: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(part).encode()).rstrip(b"=").decode()


def unsigned(realm: LocalRealm, key: Key) -> str:
    _, payload, _ = assertion(realm, key).split(".")
    return f"{encoded({'alg': 'none', 'typ': 'JWT'})}.{payload}."


def hmac_signed(realm: LocalRealm, key: Key) -> str:
    # HS256 keyed with the registered public key's PEM: the classic confusion attack.
    header, payload, _ = assertion(realm, key).split(".")
    header = encoded({**segment(header), "alg": "HS256"})
    signing_input = f"{header}.{payload}".encode()
    mac = hmac.new(public_pem(key), signing_input, hashlib.sha256).digest()
    return f"{header}.{payload}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"


def tampered(realm: LocalRealm, key: Key) -> str:
    header, payload, signature = assertion(realm, key).split(".")
    return f"{header}.{encoded({**segment(payload), 'jti': 'changed'})}.{signature}"


def test_a_reused_jti_is_refused(realm: LocalRealm, key: Key) -> None:
    once = assertion(realm, key)

    assert post(realm, once).status_code == 200
    assert refusal(post(realm, once)) == (400, "invalid_client", "Token reuse detected")


def test_a_jti_stays_used_when_the_client_is_registered_again(realm: LocalRealm, key: Key) -> None:
    once = assertion(realm, key)
    assert post(realm, once).status_code == 200
    realm.add_client(CLIENT, public_key=key.public_key(), audience=[AUDIENCE])

    assert refusal(post(realm, once))[2] == "Token reuse detected"


Make = Callable[[LocalRealm, Key], str]
# Each case: the assertion, and Keycloak's status and error_description for it.
HOSTILE: dict[str, tuple[Make, tuple[int, str]]] = {
    "wrong aud": (
        lambda realm, key: assertion(realm, key, claims={"aud": "https://sso.example.com/t"}),
        (400, "Invalid token audience"),
    ),
    "aud another endpoint": (
        lambda realm, key: assertion(realm, key, claims={"aud": realm.userinfo_url}),
        (400, "Invalid token audience"),
    ),
    "two audiences": (
        lambda realm, key: assertion(realm, key, claims={"aud": [realm.token_url, realm.issuer]}),
        (400, "Multiple audiences not allowed"),
    ),
    "no aud": (
        lambda realm, key: assertion(realm, key, remove=("aud",)),
        (400, "Invalid token audience"),
    ),
    "expired": (
        lambda realm, key: assertion(realm, key, claims={"exp": now() - 120, "iat": now() - 180}),
        (400, "Token is not active"),
    ),
    "no exp": (
        lambda realm, key: assertion(realm, key, remove=("exp",)),
        (400, "Token exp claim is required"),
    ),
    "issued in the future": (
        lambda realm, key: assertion(realm, key, claims={"iat": now() + 120, "exp": now() + 180}),
        (400, "Token was issued in the future"),
    ),
    "issued too long ago": (
        lambda realm, key: assertion(realm, key, claims={"iat": now() - 600, "exp": now() + 30}),
        (400, "Token was issued too far in the past to be used now"),
    ),
    "not yet valid": (
        lambda realm, key: assertion(realm, key, claims={"nbf": now() + 120}),
        (400, "Token is not active"),
    ),
    "no jti": (
        lambda realm, key: assertion(realm, key, remove=("jti",)),
        (400, "Token jti claim is required"),
    ),
    "iss is not sub": (
        lambda realm, key: assertion(realm, key, claims={"iss": "someone-else"}),
        (401, GENERIC_REFUSAL),
    ),
    "no iss or sub": (
        lambda realm, key: assertion(realm, key, remove=("iss", "sub")),
        (400, "Token sub claim is required"),
    ),
    "sub an unknown client": (
        lambda realm, key: assertion(realm, key, claims={"iss": "nobody", "sub": "nobody"}),
        (401, GENERIC_REFUSAL),
    ),
    "sub a client with a secret": (
        lambda realm, key: assertion(
            realm, key, claims={"iss": SECRET_CLIENT, "sub": SECRET_CLIENT}
        ),
        (401, GENERIC_REFUSAL),
    ),
    "another kid": (
        lambda realm, key: assertion(realm, key, header={"kid": "another-key"}),
        (400, "Unable to load public key"),
    ),
    "a string exp": (
        lambda realm, key: assertion(realm, key, claims={"exp": str(now() + 60)}),
        (400, "Client authentication with signed JWT failed: Failed to read the JWT"),
    ),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_a_hostile_assertion_is_refused_as_keycloak_does(
    realm: LocalRealm, key: Key, case: str
) -> None:
    make, (status, description) = HOSTILE[case]

    assert refusal(post(realm, make(realm, key))) == (status, "invalid_client", description)


def under_registered_kid(realm: LocalRealm, key: Key, other: Key) -> str:
    return assertion(realm, other, header={"kid": keycloak_kid(key.public_key())})


def another_key(realm: LocalRealm, key: Key) -> str:
    return under_registered_kid(realm, key, ec.generate_private_key(ec.SECP256R1()))


def another_key_type(realm: LocalRealm, key: Key) -> str:
    # RS256 for an EC or Ed25519 key and ES256 for an RSA key: the alg must fit the registered
    # key.
    return under_registered_kid(realm, key, EC_KEY if key is RSA_KEY else RSA_KEY)


@pytest.mark.parametrize("make", [tampered, another_key, another_key_type])
def test_a_bad_signature_is_refused(realm: LocalRealm, key: Key, make: Make) -> None:
    assert refusal(post(realm, make(realm, key))) == (400, "invalid_client", SIGNATURE_FAILED)


@pytest.mark.parametrize("make", [unsigned, hmac_signed])
def test_a_symmetric_or_missing_algorithm_is_refused(
    realm: LocalRealm, key: Key, make: Make
) -> None:
    assert refusal(post(realm, make(realm, key))) == (
        400,
        "invalid_client",
        "Invalid signature algorithm",
    )


@pytest.mark.parametrize("aud", ["ISSUER", "TOKEN", "INTROSPECTION"])
def test_keycloaks_audiences_are_accepted(realm: LocalRealm, key: Key, aud: str) -> None:
    url = {
        "ISSUER": realm.issuer,
        "TOKEN": realm.token_url,
        "INTROSPECTION": realm.introspection_url,
    }[aud]

    assert post(realm, assertion(realm, key, claims={"aud": url})).status_code == 200


def test_the_client_id_parameter_must_name_the_subject(realm: LocalRealm, key: Key) -> None:
    answer = post(realm, assertion(realm, key), client_id=SECRET_CLIENT)

    assert refusal(answer) == (
        400,
        "invalid_client",
        "client_id parameter does not match sub claim",
    )


def test_an_assertion_and_a_secret_are_two_methods(realm: LocalRealm, key: Key) -> None:
    answer = post(realm, assertion(realm, key), client_secret="billing-secret")

    assert refusal(answer)[:2] == (400, "invalid_request")


def test_the_assertion_type_is_required(realm: LocalRealm, key: Key) -> None:
    answer = httpx.post(
        realm.token_url,
        data={"grant_type": "client_credentials", "client_assertion": assertion(realm, key)},
        verify=TLS,
    )

    assert refusal(answer) == (400, "invalid_client", "Parameter client_assertion_type is missing")


def test_a_signing_client_has_no_secret(realm: LocalRealm, key: Key) -> None:
    answer = httpx.post(
        realm.token_url,
        data={"grant_type": "client_credentials"},
        auth=(CLIENT, "guess"),
        verify=TLS,
    )

    assert refusal(answer) == (401, "invalid_client", GENERIC_REFUSAL)


def test_introspection_takes_assertions_too(realm: LocalRealm, key: Key) -> None:
    token = signing(realm, key).get_token()
    client_assertion = assertion(realm, key, claims={"aud": realm.introspection_url})

    answer = post(realm, client_assertion, url=realm.introspection_url, token=token)

    assert answer.status_code == 200
    assert answer.json()["active"] is True


# --- the client's own settings -------------------------------------------------------------------


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
                "private_key": ec.generate_private_key(ec.SECP256K1()),
            },
            r"RSA \(2048 bits or more\), EC \(P-256, P-384, P-521\) or Ed25519",
        ),
        (
            {"auth_method": "private_key_jwt", "private_key": ed448.Ed448PrivateKey.generate()},
            "or Ed25519 private key",
        ),
        (
            {"auth_method": "private_key_jwt", "private_key": "-----BEGIN PRIVATE KEY-----"},
            "not an unencrypted PEM private key",
        ),
        ({"auth_method": "client_secret_jwt", "client_secret": "s"}, "auth_method must be"),
    ],
)
def test_key_settings_are_checked(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ClientCredentials(CLIENT, token_url="https://sso.example.com/t", **options)
