"""LocalRealm, tested the way its users see it: over real HTTP with httpx, no mocks.

Signatures and kids are checked with ``cryptography`` directly, from the published JWKs, so these
tests do not trust the realm's own helpers.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from keycloak_m2m.testing import LocalRealm

from .support import TLS, SharedRealm

SECRET = "s3cret-value"
KEYCLOAK_HEADER = '{{"alg":"{alg}","typ" : "JWT","kid" : "{kid}"}}'

# ---------------------------------------------------------------------------------------------
# Independent JOSE helpers


def b64decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def b64uint(part: str) -> int:
    return int.from_bytes(b64decode(part), "big")


def split(token: str) -> tuple[bytes, bytes, bytes]:
    header, payload, signature = token.split(".")
    return b64decode(header), b64decode(payload), b64decode(signature)


def payload_of(token: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(split(token)[1])
    return result


CURVES: dict[str, ec.EllipticCurve] = {
    "P-256": ec.SECP256R1(),
    "P-384": ec.SECP384R1(),
    "P-521": ec.SECP521R1(),
}
HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "256": hashes.SHA256,
    "384": hashes.SHA384,
    "512": hashes.SHA512,
}


def public_key_from_jwk(jwk: dict[str, Any]) -> Any:
    if jwk["kty"] == "RSA":
        return rsa.RSAPublicNumbers(b64uint(jwk["e"]), b64uint(jwk["n"])).public_key()
    if jwk["kty"] == "EC":
        curve = CURVES[jwk["crv"]]
        numbers = ec.EllipticCurvePublicNumbers(b64uint(jwk["x"]), b64uint(jwk["y"]), curve)
        return numbers.public_key()
    assert jwk["kty"] == "OKP"
    assert jwk["crv"] == "Ed25519"
    return ed25519.Ed25519PublicKey.from_public_bytes(b64decode(jwk["x"]))


def keycloak_kid(public_key: Any) -> str:
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.urlsafe_b64encode(hashlib.sha256(der).digest()).rstrip(b"=").decode()


def verify(token: str, public_key: Any, alg: str) -> None:
    """Raise InvalidSignature unless ``token`` is signed by ``public_key`` with ``alg``."""
    header_b64, payload_b64, _ = token.split(".")
    signing_input = f"{header_b64}.{payload_b64}".encode()
    signature = split(token)[2]
    if alg == "EdDSA":
        public_key.verify(signature, signing_input)
        return
    hash_algorithm = HASHES[alg[2:]]()
    if alg.startswith("RS"):
        public_key.verify(signature, signing_input, padding.PKCS1v15(), hash_algorithm)
    elif alg.startswith("PS"):
        pss = padding.PSS(padding.MGF1(hash_algorithm), padding.PSS.DIGEST_LENGTH)
        public_key.verify(signature, signing_input, pss, hash_algorithm)
    else:
        size = (public_key.curve.key_size + 7) // 8
        assert len(signature) == 2 * size  # JOSE raw r||s, not DER
        r = int.from_bytes(signature[:size], "big")
        s = int.from_bytes(signature[size:], "big")
        public_key.verify(encode_dss_signature(r, s), signing_input, ec.ECDSA(hash_algorithm))


# ---------------------------------------------------------------------------------------------
# Fixtures


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10, verify=TLS) as client:
        yield client


def realm_with_svc() -> LocalRealm:
    realm = LocalRealm().start()
    realm.add_client("svc", SECRET)
    return realm


@pytest.fixture(scope="module")
def shared() -> Iterator[SharedRealm]:
    with SharedRealm(realm_with_svc) as shared:
        yield shared


@pytest.fixture
def realm(shared: SharedRealm) -> Iterator[LocalRealm]:
    """A realm as the plugin's fixture makes it (its defaults) plus one client, one for the
    module (see SharedRealm); deliberately overrides conftest's fake-clock ``realm``: these tests
    check the realm as users get it, on the real clock."""
    with shared.lent() as realm:
        yield realm


def jwks(realm: LocalRealm, http: httpx.Client) -> list[dict[str, Any]]:
    response = http.get(realm.jwks_url)
    assert response.status_code == 200
    keys: list[dict[str, Any]] = response.json()["keys"]
    return keys


def jwk_by_kid(realm: LocalRealm, http: httpx.Client, kid: str) -> dict[str, Any]:
    (jwk,) = [key for key in jwks(realm, http) if key["kid"] == kid]
    return jwk


def get_token(
    realm: LocalRealm, http: httpx.Client, client_id: str = "svc", **form: str
) -> httpx.Response:
    data = {"grant_type": "client_credentials", **form}
    return http.post(realm.token_url, data=data, auth=(client_id, SECRET))


# ---------------------------------------------------------------------------------------------
# Addresses and discovery


def test_urls_follow_keycloak_layout(local_realm: LocalRealm) -> None:
    assert local_realm.base_url.startswith("http://127.0.0.1:")
    assert local_realm.issuer == local_realm.base_url + "/realms/test"
    oidc = local_realm.issuer + "/protocol/openid-connect"
    assert local_realm.jwks_url == oidc + "/certs"
    assert local_realm.token_url == oidc + "/token"
    assert local_realm.discovery_url == local_realm.issuer + "/.well-known/openid-configuration"


def test_discovery_document(realm: LocalRealm, http: httpx.Client) -> None:
    response = http.get(realm.discovery_url)

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    document = response.json()
    assert document["issuer"] == realm.issuer
    assert document["jwks_uri"] == realm.jwks_url
    assert document["token_endpoint"] == realm.token_url
    assert document["grant_types_supported"] == [
        "client_credentials",
        "urn:ietf:params:oauth:grant-type:token-exchange",
    ]
    assert document["token_endpoint_auth_methods_supported"] == [
        "client_secret_basic",
        "client_secret_post",
        "private_key_jwt",
    ]
    assert {"RS256", "PS256", "ES256", "ES512", "EdDSA"} <= set(
        document["id_token_signing_alg_values_supported"]
    )
    assert "openid" in document["scopes_supported"]


def test_legacy_auth_prefix(http: httpx.Client) -> None:
    with LocalRealm("legacy", legacy_auth_prefix=True, algorithm="ES256") as realm:
        assert realm.issuer == realm.base_url + "/auth/realms/legacy"
        assert http.get(realm.discovery_url).json()["issuer"] == realm.issuer
        assert len(jwks(realm, http)) == 2
        assert http.get(realm.base_url + "/realms/legacy/protocol/openid-connect/certs").is_error


def test_unknown_paths_are_json_404(realm: LocalRealm, http: httpx.Client) -> None:
    unserved = realm.issuer + "/protocol/openid-connect/auth"  # no browser flows here
    for url in (realm.base_url + "/", unserved, realm.base_url + "/realms/other/x"):
        response = http.get(url)
        assert response.status_code == 404
        assert response.headers["content-type"] == "application/json"
        assert "error" in response.json()


def test_wrong_methods_are_405(realm: LocalRealm, http: httpx.Client) -> None:
    assert http.post(realm.jwks_url).status_code == 405
    response = http.get(realm.token_url)
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"


def test_head_on_certs_has_no_body(realm: LocalRealm, http: httpx.Client) -> None:
    response = http.head(realm.jwks_url)
    assert response.status_code == 200
    assert response.content == b""
    assert int(response.headers["content-length"]) > 0


# ---------------------------------------------------------------------------------------------
# Certs


def test_certs_publish_enc_key_and_signing_keys(realm: LocalRealm, http: httpx.Client) -> None:
    keys = jwks(realm, http)

    (enc,) = [key for key in keys if key["use"] == "enc"]
    assert enc["alg"] == "RSA-OAEP"
    assert enc["kty"] == "RSA"
    assert enc["kid"] == realm.encryption_kid
    signing = [key for key in keys if key["use"] == "sig"]
    assert [key["kid"] for key in signing] == [realm.active_kid]
    assert signing[0]["alg"] == "RS256"
    assert {"n", "e"} <= signing[0].keys()
    assert not any("d" in key or "p" in key for key in keys)  # never private material


@pytest.mark.parametrize("alg", LocalRealm.SUPPORTED_ALGORITHMS)
def test_kid_is_sha256_of_subject_public_key_info(alg: str, http: httpx.Client) -> None:
    with LocalRealm(algorithm=alg) as realm:
        keys = jwks(realm, http)

    assert len(keys) == 2
    for jwk in keys:
        public_key = public_key_from_jwk(jwk)
        assert jwk["kid"] == keycloak_kid(public_key)
        assert jwk["kid"] == keycloak_kid(realm.private_key(jwk["kid"]).public_key())
        assert realm.public_jwk(jwk["kid"]) == jwk
    (signing,) = [key for key in keys if key["use"] == "sig"]
    assert signing["alg"] == alg


def test_ec_coordinates_are_full_length(http: httpx.Client) -> None:
    with LocalRealm(algorithm="ES512") as realm:
        jwk = jwk_by_kid(realm, http, realm.active_kid)
    assert jwk["crv"] == "P-521"
    assert len(b64decode(jwk["x"])) == len(b64decode(jwk["y"])) == 66


def test_x5c_certificate_matches_the_key(realm: LocalRealm, http: httpx.Client) -> None:
    jwk = jwk_by_kid(realm, http, realm.active_kid)
    der = base64.b64decode(jwk["x5c"][0])
    certificate = x509.load_der_x509_certificate(der)

    assert keycloak_kid(certificate.public_key()) == jwk["kid"]
    digest = base64.urlsafe_b64encode(hashlib.sha256(der).digest()).rstrip(b"=").decode()
    assert jwk["x5t#S256"] == digest


# ---------------------------------------------------------------------------------------------
# Token endpoint


def test_token_with_client_secret_basic(realm: LocalRealm, http: httpx.Client) -> None:
    response = get_token(realm, http)

    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert list(body) == [
        "access_token",
        "expires_in",
        "refresh_expires_in",
        "token_type",
        "not-before-policy",
        "scope",
    ]
    assert body["expires_in"] == 300
    assert body["refresh_expires_in"] == 0
    assert body["token_type"] == "Bearer"
    assert body["not-before-policy"] == 0
    assert body["scope"] == "profile email"


def test_token_with_client_secret_post(realm: LocalRealm, http: httpx.Client) -> None:
    form = {"grant_type": "client_credentials", "client_id": "svc", "client_secret": SECRET}
    response = http.post(realm.token_url, data=form)

    assert response.status_code == 200
    assert payload_of(response.json()["access_token"])["azp"] == "svc"


def test_basic_credentials_are_form_urlencoded(local_realm: LocalRealm) -> None:
    local_realm.add_client("odd:id", "p@ss w+rd")
    credentials = base64.b64encode(b"odd%3Aid:p%40ss+w%2Brd").decode()
    with httpx.Client(verify=TLS) as http:
        response = http.post(
            local_realm.token_url,
            data={"grant_type": "client_credentials"},
            headers={"Authorization": f"Basic {credentials}"},
        )
    assert response.status_code == 200
    assert payload_of(response.json()["access_token"])["client_id"] == "odd:id"


def test_token_header_bytes_have_keycloak_spacing(realm: LocalRealm, http: httpx.Client) -> None:
    token = get_token(realm, http).json()["access_token"]

    header = split(token)[0].decode()
    assert header == KEYCLOAK_HEADER.format(alg="RS256", kid=realm.active_kid)


def test_token_payload_is_keycloak_service_account_shape(local_realm: LocalRealm) -> None:
    local_realm.add_client(
        "orders", SECRET, realm_roles=["reporter"], client_roles={"billing": ["read", "write"]}
    )
    before = int(time.time())
    with httpx.Client(verify=TLS) as http:
        token = get_token(local_realm, http, "orders").json()["access_token"]
    after = time.time()
    claims = payload_of(token)

    assert list(claims) == [
        "exp",
        "iat",
        "jti",
        "iss",
        "aud",
        "sub",
        "typ",
        "azp",
        "acr",
        "realm_access",
        "resource_access",
        "scope",
        "email_verified",
        "clientHost",
        "preferred_username",
        "clientAddress",
        "client_id",
    ]
    assert isinstance(claims["iat"], int)
    assert claims["exp"] == claims["iat"] + 300
    assert before <= claims["iat"] <= after
    assert claims["jti"].startswith("trtcc:")
    assert claims["iss"] == local_realm.issuer
    assert claims["aud"] == ["billing", "account"]
    assert claims["sub"] != "orders"
    assert claims["sub"] == local_realm.token_claims("orders")["sub"]  # stable per client
    assert claims["typ"] == "Bearer"
    assert claims["azp"] == claims["client_id"] == "orders"
    assert claims["acr"] == "1"
    assert claims["realm_access"] == {
        "roles": ["default-roles-test", "offline_access", "uma_authorization", "reporter"]
    }
    assert claims["resource_access"] == {
        "billing": {"roles": ["read", "write"]},
        "account": {"roles": ["manage-account", "manage-account-links", "view-profile"]},
    }
    assert claims["scope"] == "profile email"
    assert claims["email_verified"] is False
    assert claims["clientHost"] == claims["clientAddress"] == "127.0.0.1"
    assert claims["preferred_username"] == "service-account-orders"


def test_token_payload_is_compact_json(realm: LocalRealm, http: httpx.Client) -> None:
    token = get_token(realm, http).json()["access_token"]
    raw = split(token)[1]
    assert raw == json.dumps(json.loads(raw), separators=(",", ":")).encode()


def test_token_signature_verifies_with_published_key(realm: LocalRealm, http: httpx.Client) -> None:
    token = get_token(realm, http).json()["access_token"]
    verify(token, public_key_from_jwk(jwk_by_kid(realm, http, realm.active_kid)), "RS256")


def test_token_claims_match_issued_token(realm: LocalRealm, http: httpx.Client) -> None:
    issued = payload_of(get_token(realm, http).json()["access_token"])
    predicted = realm.token_claims("svc")
    for volatile in ("jti", "iat", "exp"):
        issued.pop(volatile)
        predicted.pop(volatile)
    assert issued == predicted


@pytest.mark.parametrize(
    ("audience", "client_roles", "expected"),
    [
        ((), {}, "account"),
        (("api",), {}, ["api", "account"]),
        (("api", "other"), {"billing": ["r"]}, ["api", "other", "billing", "account"]),
        (("billing",), {"billing": ["r"], "api": ["w"]}, ["billing", "api", "account"]),
        (("account",), {}, "account"),
        ((), {"unused": []}, "account"),  # a client mapping without roles adds no audience
    ],
)
def test_audience_rules(
    local_realm: LocalRealm,
    audience: tuple[str, ...],
    client_roles: dict[str, list[str]],
    expected: str | list[str],
) -> None:
    local_realm.add_client("svc", SECRET, audience=audience, client_roles=client_roles)
    with httpx.Client(verify=TLS) as http:
        token = get_token(local_realm, http).json()["access_token"]
    assert payload_of(token)["aud"] == expected


def test_realm_clock_sets_iat_and_exp() -> None:
    with LocalRealm(clock=lambda: 1_700_000_000.9, token_lifetime=60) as realm:
        realm.add_client("svc", SECRET)
        with httpx.Client(verify=TLS) as http:
            body = get_token(realm, http).json()
    claims = payload_of(body["access_token"])
    assert (claims["iat"], claims["exp"], body["expires_in"]) == (1_700_000_000, 1_700_000_060, 60)


def test_realm_name_in_default_role_and_issuer() -> None:
    with LocalRealm("Acme") as realm:
        claims = payload_of(realm.mint())
        assert claims["iss"].endswith("/realms/Acme")
    assert claims["realm_access"]["roles"][0] == "default-roles-acme"


# ---------------------------------------------------------------------------------------------
# Token endpoint errors


def assert_oauth_error(response: httpx.Response, status: int, error: str) -> dict[str, Any]:
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    body: dict[str, Any] = response.json()
    assert body["error"] == error
    assert isinstance(body["error_description"], str)
    return body


@pytest.mark.parametrize(("client_id", "secret"), [("svc", "wrong"), ("nobody", SECRET)])
def test_bad_client_credentials_are_401_invalid_client(
    realm: LocalRealm, http: httpx.Client, client_id: str, secret: str
) -> None:
    form = {"grant_type": "client_credentials"}
    basic = http.post(realm.token_url, data=form, auth=(client_id, secret))
    post = http.post(
        realm.token_url, data={**form, "client_id": client_id, "client_secret": secret}
    )

    for response in (basic, post):
        body = assert_oauth_error(response, 401, "invalid_client")
        assert body["error_description"] == "Invalid client or Invalid client credentials"
        assert secret not in response.text


def test_post_auth_without_secret_is_invalid_client(realm: LocalRealm, http: httpx.Client) -> None:
    form = {"grant_type": "client_credentials", "client_id": "svc"}
    assert_oauth_error(http.post(realm.token_url, data=form), 401, "invalid_client")


def test_no_client_authentication_is_401(realm: LocalRealm, http: httpx.Client) -> None:
    response = http.post(realm.token_url, data={"grant_type": "client_credentials"})
    assert_oauth_error(response, 401, "invalid_client")


def test_malformed_basic_header_is_invalid_client(realm: LocalRealm, http: httpx.Client) -> None:
    for value in ("Basic !!!", "Basic " + base64.b64encode(b"no-colon").decode()):
        response = http.post(
            realm.token_url,
            data={"grant_type": "client_credentials"},
            headers={"Authorization": value},
        )
        assert_oauth_error(response, 401, "invalid_client")


def test_two_authentication_methods_are_invalid_request(
    realm: LocalRealm, http: httpx.Client
) -> None:
    form = {"grant_type": "client_credentials", "client_id": "svc", "client_secret": SECRET}
    response = http.post(realm.token_url, data=form, auth=("svc", SECRET))
    assert_oauth_error(response, 400, "invalid_request")


def test_form_client_id_must_match_basic(realm: LocalRealm, http: httpx.Client) -> None:
    realm.add_client("other", SECRET)
    form = {"grant_type": "client_credentials"}
    same = http.post(realm.token_url, data={**form, "client_id": "svc"}, auth=("svc", SECRET))
    other = http.post(realm.token_url, data={**form, "client_id": "other"}, auth=("svc", SECRET))
    assert same.status_code == 200
    assert_oauth_error(other, 400, "invalid_request")


@pytest.mark.parametrize("grant_type", ["password", "authorization_code", "refresh_token", "x"])
def test_unsupported_grant_type(realm: LocalRealm, http: httpx.Client, grant_type: str) -> None:
    response = http.post(realm.token_url, data={"grant_type": grant_type}, auth=("svc", SECRET))
    body = assert_oauth_error(response, 400, "unsupported_grant_type")
    assert body["error_description"] == "Unsupported grant_type"


def test_missing_grant_type(realm: LocalRealm, http: httpx.Client) -> None:
    response = http.post(realm.token_url, data={}, auth=("svc", SECRET))
    assert_oauth_error(response, 400, "invalid_request")


def test_duplicated_parameter(realm: LocalRealm, http: httpx.Client) -> None:
    response = http.post(
        realm.token_url,
        content=b"grant_type=client_credentials&grant_type=client_credentials",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        auth=("svc", SECRET),
    )
    assert_oauth_error(response, 400, "invalid_request")


def test_body_must_be_a_form(realm: LocalRealm, http: httpx.Client) -> None:
    response = http.post(
        realm.token_url, json={"grant_type": "client_credentials"}, auth=("svc", SECRET)
    )
    assert_oauth_error(response, 415, "invalid_request")


def test_invalid_scope(realm: LocalRealm, http: httpx.Client) -> None:
    response = get_token(realm, http, scope="profile admin")
    body = assert_oauth_error(response, 400, "invalid_scope")
    assert "admin" in body["error_description"]


def test_requested_scopes_are_granted(local_realm: LocalRealm, http: httpx.Client) -> None:
    local_realm.add_client("svc", SECRET, scopes=["orders:read", "orders:write", "profile"])

    narrowed = get_token(local_realm, http, scope="profile orders:read").json()
    everything = get_token(local_realm, http).json()
    blank = get_token(local_realm, http, scope=" ").json()

    assert narrowed["scope"] == "orders:read profile"  # the client's order
    assert payload_of(narrowed["access_token"])["scope"] == "orders:read profile"
    assert everything["scope"] == blank["scope"] == "orders:read orders:write profile"


# ---------------------------------------------------------------------------------------------
# Token exchange (RFC 8693, as Keycloak's standard token exchange)

TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"


@pytest.fixture
def exchange_realm(local_realm: LocalRealm) -> LocalRealm:
    """svc's tokens name the gateway "gw"; "orders" is a client with roles of its own."""
    local_realm.add_client(
        "svc",
        SECRET,
        realm_roles=["orders:place"],
        client_roles={"orders": ["create"], "billing": ["pay"]},
        audience=["gw"],
    )
    local_realm.add_client("gw", "gw-secret")
    return local_realm


def exchange(
    realm: LocalRealm, http: httpx.Client, subject_token: str, /, client_id: str = "gw", **form: str
) -> httpx.Response:
    """A token-exchange request by ``client_id``; ``form`` adds or overrides fields."""
    data = {
        "grant_type": TOKEN_EXCHANGE,
        "subject_token": subject_token,
        "subject_token_type": ACCESS_TOKEN_TYPE,
        **form,
    }
    return http.post(realm.token_url, data=data, auth=(client_id, f"{client_id}-secret"))


def test_token_exchange_issues_a_token_for_the_audience(
    exchange_realm: LocalRealm, http: httpx.Client
) -> None:
    subject_token = get_token(exchange_realm, http).json()["access_token"]
    subject = payload_of(subject_token)

    response = exchange(exchange_realm, http, subject_token, audience="orders")

    assert response.status_code == 200
    body = response.json()
    assert body["issued_token_type"] == ACCESS_TOKEN_TYPE
    assert body["token_type"] == "Bearer"
    claims = payload_of(body["access_token"])
    assert claims["aud"] == "orders"
    assert claims["azp"] == "gw"
    assert claims["iss"] == exchange_realm.issuer
    assert claims["sub"] == subject["sub"]
    assert claims["preferred_username"] == "service-account-svc"
    assert "orders:place" in claims["realm_access"]["roles"]
    assert claims["resource_access"] == {"orders": {"roles": ["create"]}}  # narrowed to aud
    assert "client_id" not in claims
    header = json.loads(split(body["access_token"])[0])
    public_key = public_key_from_jwk(jwk_by_kid(exchange_realm, http, header["kid"]))
    verify(body["access_token"], public_key, header["alg"])


def test_token_exchange_without_audience_uses_the_requesters(
    exchange_realm: LocalRealm, http: httpx.Client
) -> None:
    subject_token = get_token(exchange_realm, http).json()["access_token"]
    response = exchange(exchange_realm, http, subject_token, requested_token_type=ACCESS_TOKEN_TYPE)

    assert response.status_code == 200
    assert payload_of(response.json()["access_token"])["aud"] == "account"


def test_token_exchange_requires_the_requester_in_the_audience(
    exchange_realm: LocalRealm, http: httpx.Client
) -> None:
    exchange_realm.add_client("other", "other-secret")
    subject_token = get_token(exchange_realm, http).json()["access_token"]

    response = exchange(exchange_realm, http, subject_token, client_id="other")

    body = assert_oauth_error(response, 403, "access_denied")
    assert body["error_description"] == "Client is not within the token audience"


def test_token_exchange_refuses_bad_subject_tokens(
    exchange_realm: LocalRealm, http: httpx.Client
) -> None:
    foreign_key = ec.generate_private_key(ec.SECP256R1())
    claims = {"aud": "gw"}
    for subject_token in (
        "not-a-token",
        exchange_realm.mint("svc", claims=claims, signing_key=foreign_key),
        exchange_realm.mint("svc", claims=claims, expires_in=-1),
        exchange_realm.mint("svc", claims={**claims, "iss": "http://elsewhere/realms/x"}),
        exchange_realm.mint("svc", claims=claims, alg="RS512"),
    ):
        response = exchange(exchange_realm, http, subject_token)
        body = assert_oauth_error(response, 400, "invalid_token")
        assert body["error_description"] == "Invalid token"


@pytest.mark.parametrize(
    ("form", "status", "error"),
    [
        ({"subject_token": ""}, 400, "invalid_request"),
        (
            {"subject_token_type": "urn:ietf:params:oauth:token-type:id_token"},
            400,
            "invalid_request",
        ),
        (
            {"requested_token_type": "urn:ietf:params:oauth:token-type:refresh_token"},
            400,
            "invalid_request",
        ),
        ({"audience": "nobody"}, 400, "invalid_client"),
        ({"scope": "admin"}, 400, "invalid_scope"),
    ],
)
def test_token_exchange_request_errors(
    exchange_realm: LocalRealm, http: httpx.Client, form: dict[str, str], status: int, error: str
) -> None:
    subject_token = get_token(exchange_realm, http).json()["access_token"]
    assert_oauth_error(exchange(exchange_realm, http, subject_token, **form), status, error)


def test_token_exchange_needs_client_authentication(
    exchange_realm: LocalRealm, http: httpx.Client
) -> None:
    subject_token = get_token(exchange_realm, http).json()["access_token"]
    form = {"grant_type": TOKEN_EXCHANGE, "subject_token": subject_token}
    assert_oauth_error(http.post(exchange_realm.token_url, data=form), 401, "invalid_client")


# ---------------------------------------------------------------------------------------------
# Key rotation


def test_rotation_keeps_old_keys_published(realm: LocalRealm, http: httpx.Client) -> None:
    old = realm.active_kid
    new = realm.rotate_keys(algorithm="ES256")

    assert new != old
    assert realm.active_kid == new
    assert realm.signing_kids == (new, old)
    signing = [key for key in jwks(realm, http) if key["use"] == "sig"]
    assert [(key["kid"], key["alg"]) for key in signing] == [(new, "ES256"), (old, "RS256")]
    token = get_token(realm, http).json()["access_token"]
    assert split(token)[0].decode() == KEYCLOAK_HEADER.format(alg="ES256", kid=new)
    verify(token, public_key_from_jwk(jwk_by_kid(realm, http, new)), "ES256")


def test_rotation_can_remove_old_keys(realm: LocalRealm, http: httpx.Client) -> None:
    old = realm.active_kid
    new = realm.rotate_keys(keep_old=False)

    kids = {key["kid"] for key in jwks(realm, http)}
    assert kids == {new, realm.encryption_kid}
    assert jwk_by_kid(realm, http, new)["alg"] == "RS256"  # the active key's algorithm
    with pytest.raises(KeyError):
        realm.private_key(old)


def test_rotation_rejects_unknown_algorithm(realm: LocalRealm) -> None:
    with pytest.raises(ValueError, match="unsupported algorithm"):
        realm.rotate_keys(algorithm="HS256")


# The RSA keys of stopped realms are recycled (docs/testing.md, "Keys"): these tests pin what
# that may never break.


def stop_realms(count: int) -> None:
    """Start and stop ``count`` realms: their keys wait for the realms started next."""
    for _ in range(count):
        LocalRealm().start().stop()


def test_a_stopped_realms_key_goes_to_the_next_realm() -> None:
    with LocalRealm() as first:
        kid = first.active_kid
    with LocalRealm(algorithm="PS256") as second:
        assert second.active_kid == kid  # the same RSA key, so the same kid
        assert second.public_jwk(kid)["alg"] == "PS256"


def test_live_realms_never_share_a_key() -> None:
    stop_realms(6)
    realms = [LocalRealm().start() for _ in range(3)]
    published = [{realm.active_kid} for realm in realms]

    def rotate(index: int, rotations: tuple[bool, ...]) -> None:
        for keep_old in rotations:
            published[index].add(realms[index].rotate_keys(keep_old=keep_old))

    try:
        with ThreadPoolExecutor(len(realms)) as pool:
            list(pool.map(rotate, range(3), [(False, True, False)] * 3))
        assert [len(kids) for kids in published] == [4, 4, 4]  # each rotation a new key
        assert not published[0] & published[1]
        assert not published[0] & published[2]
        assert not published[1] & published[2]
        realms[0].stop()  # its keys may now go to the others, but each to one of them
        rotate(1, (True, False))
        rotate(2, (True, False))
        assert [len(kids) for kids in published[1:]] == [6, 6]
        assert not published[1] & published[2]
    finally:
        for realm in realms:
            realm.stop()


def test_rotation_never_brings_back_a_key_the_realm_published() -> None:
    stop_realms(2)
    with LocalRealm() as realm:
        published = {realm.active_kid}
        for keep_old in (False, True, False, False):
            kid = realm.rotate_keys(keep_old=keep_old)
            assert kid not in published
            published.add(kid)
    # Stopped, its keys went to the realms started next; it still rotates, to keys of its own.
    kid = realm.rotate_keys(keep_old=False)
    assert kid not in published
    with LocalRealm() as later:
        assert later.active_kid in published
        assert later.active_kid != kid


# ---------------------------------------------------------------------------------------------
# Fault injection


def test_fail_keys_then_heal(realm: LocalRealm, http: httpx.Client) -> None:
    realm.fail_keys(503, body=b"down for maintenance", content_type="text/html")
    failed = http.get(realm.jwks_url)
    assert failed.status_code == 503
    assert failed.content == b"down for maintenance"
    assert failed.headers["content-type"] == "text/html"
    assert http.get(realm.discovery_url).status_code == 200  # only certs is affected

    realm.heal_keys()
    assert len(jwks(realm, http)) == 2


def test_fail_keys_default_body(realm: LocalRealm, http: httpx.Client) -> None:
    realm.fail_keys()
    response = http.get(realm.jwks_url)
    assert response.status_code == 500
    assert response.text == "500 Internal Server Error"
    assert response.headers["content-type"] == "text/plain"


def test_delay_blocks_only_the_delayed_request(realm: LocalRealm, http: httpx.Client) -> None:
    # Ordering, not timing: the quick answer arrives while the delayed one is still pending.
    realm.fail_keys(500, delay=2.0)
    with ThreadPoolExecutor(1) as pool:
        started = time.monotonic()
        slow = pool.submit(http.get, realm.jwks_url)
        while realm.request_count("certs") == 0:
            time.sleep(0.01)
        quick = http.get(realm.discovery_url)
        pending_after_quick = not slow.done()
        slow_status = slow.result().status_code
        slow_elapsed = time.monotonic() - started

    assert quick.status_code == 200
    assert pending_after_quick
    assert slow_status == 500
    assert slow_elapsed >= 2.0


def test_slow_keys_serves_real_keys_late(realm: LocalRealm, http: httpx.Client) -> None:
    realm.slow_keys(0.3)
    started = time.monotonic()
    keys = jwks(realm, http)
    assert time.monotonic() - started >= 0.3
    assert realm.active_kid in {key["kid"] for key in keys}


def test_heal_keys_ends_the_delay_for_new_requests(realm: LocalRealm, http: httpx.Client) -> None:
    realm.slow_keys(2.0)
    with ThreadPoolExecutor(1) as pool:
        delayed = pool.submit(jwks, realm, http)
        while realm.request_count("certs") == 0:
            time.sleep(0.01)
        realm.heal_keys()
        prompt = jwks(realm, http)
        pending_after_prompt = not delayed.done()
        assert delayed.result() == prompt
    assert pending_after_prompt


def arrived_keys_request(
    pool: ThreadPoolExecutor, realm: LocalRealm, http: httpx.Client
) -> Future[list[dict[str, Any]]]:
    """A key-set request made from ``pool``, once the realm has received it."""
    request = pool.submit(jwks, realm, http)
    while realm.request_count("certs") == 0:
        time.sleep(0.01)
    return request


def test_hold_keys_answers_once_released(realm: LocalRealm, http: httpx.Client) -> None:
    release = realm.hold_keys()
    with ThreadPoolExecutor(1) as pool:
        held = arrived_keys_request(pool, realm, http)
        answered_before_release = held.done()
        release.set()
        keys = held.result()
    assert not answered_before_release
    assert realm.active_kid in {key["kid"] for key in keys}


def test_heal_keys_lets_a_held_request_go(realm: LocalRealm, http: httpx.Client) -> None:
    release = realm.hold_keys()
    with ThreadPoolExecutor(1) as pool:
        held = arrived_keys_request(pool, realm, http)
        realm.heal_keys()
        keys = held.result()
    assert release.is_set()
    assert realm.active_kid in {key["kid"] for key in keys}


def test_slow_keys_times_out_a_client(realm: LocalRealm) -> None:
    realm.slow_keys(2)
    with httpx.Client(timeout=0.2, verify=TLS) as http, pytest.raises(httpx.ReadTimeout):
        http.get(realm.jwks_url)


def test_redirect_keys(realm: LocalRealm, http: httpx.Client) -> None:
    realm.redirect_keys("https://elsewhere.example/certs")
    response = http.get(realm.jwks_url)
    assert response.status_code == 302
    assert response.headers["location"] == "https://elsewhere.example/certs"


def test_serve_keys_document(realm: LocalRealm, http: httpx.Client) -> None:
    document = {"keys": [{"kid": "x", "kty": "RSA", "n": 5, "e": None}]}
    realm.serve_keys_document(document)
    assert http.get(realm.jwks_url).json() == document

    realm.serve_keys_document(b"not json at all")
    response = http.get(realm.jwks_url)
    assert (response.status_code, response.content) == (200, b"not json at all")

    realm.heal_keys()
    assert len(jwks(realm, http)) == 2


def test_fail_token_then_heal(realm: LocalRealm, http: httpx.Client) -> None:
    realm.fail_token(502, body=b"<html>bad gateway</html>", content_type="text/html")
    response = get_token(realm, http)
    assert (response.status_code, response.text) == (502, "<html>bad gateway</html>")

    realm.slow_token(0.2)
    started = time.monotonic()
    assert get_token(realm, http).status_code == 200
    assert time.monotonic() - started >= 0.2

    realm.heal_token()
    assert get_token(realm, http).status_code == 200


def test_fault_arguments_are_checked(realm: LocalRealm) -> None:
    with pytest.raises(ValueError, match="status"):
        realm.fail_keys(99)
    with pytest.raises(ValueError, match="delay"):
        realm.slow_keys(-1)
    with pytest.raises(ValueError, match="redirect"):
        realm.redirect_keys("/x", status=200)


# ---------------------------------------------------------------------------------------------
# Request counting


def test_request_counts(realm: LocalRealm, http: httpx.Client) -> None:
    http.get(realm.discovery_url)
    jwks(realm, http)
    realm.fail_keys()
    http.get(realm.jwks_url)
    get_token(realm, http)
    http.post(realm.token_url, data={"grant_type": "password"})
    http.get(realm.base_url + "/nowhere")

    assert realm.request_count("discovery") == 1
    assert realm.request_count("certs") == 2
    assert realm.request_count("token") == 2

    realm.reset_counts()
    assert [realm.request_count(e) for e in ("certs", "token", "discovery")] == [0, 0, 0]
    with pytest.raises(ValueError, match="unknown endpoint"):
        realm.request_count("jwks")  # type: ignore[arg-type]


def test_concurrent_requests_are_all_counted(realm: LocalRealm, http: httpx.Client) -> None:
    with ThreadPoolExecutor(16) as pool:
        statuses = list(pool.map(lambda _: get_token(realm, http).status_code, range(64)))
    assert statuses == [200] * 64
    assert realm.request_count("token") == 64


async def test_async_client_gets_a_token(realm: LocalRealm) -> None:
    async with httpx.AsyncClient(verify=TLS) as http:
        response = await http.post(
            realm.token_url, data={"grant_type": "client_credentials"}, auth=("svc", SECRET)
        )
    assert response.status_code == 200


# ---------------------------------------------------------------------------------------------
# mint()


def test_mint_defaults_to_a_made_up_service_account(realm: LocalRealm, http: httpx.Client) -> None:
    token = realm.mint()
    claims = payload_of(token)

    assert split(token)[0].decode() == KEYCLOAK_HEADER.format(alg="RS256", kid=realm.active_kid)
    assert claims["aud"] == "account"
    assert claims["azp"] == claims["client_id"] == "test-client"
    assert claims["preferred_username"] == "service-account-test-client"
    assert claims["iss"] == realm.issuer
    assert claims["sub"] == payload_of(realm.mint())["sub"]
    verify(token, public_key_from_jwk(jwk_by_kid(realm, http, realm.active_kid)), "RS256")


def test_mint_for_client_matches_token_claims(realm: LocalRealm) -> None:
    claims = payload_of(realm.mint("svc"))
    assert claims["sub"] == realm.token_claims("svc")["sub"]
    with pytest.raises(KeyError):
        realm.mint("nobody")


def test_mint_claim_overrides(realm: LocalRealm) -> None:
    claims = payload_of(
        realm.mint("svc", claims={"aud": "other", "custom": [1]}, remove=["azp", "jti"])
    )
    assert claims["aud"] == "other"
    assert claims["custom"] == [1]
    assert "azp" not in claims
    assert "jti" not in claims


def test_mint_expires_in(realm: LocalRealm) -> None:
    expired = payload_of(realm.mint(expires_in=-30))
    assert expired["exp"] == expired["iat"] - 30
    later = payload_of(realm.mint(claims={"iat": 1000}, expires_in=5))
    assert later["exp"] == 1005


def test_mint_without_kid(realm: LocalRealm, http: httpx.Client) -> None:
    token = realm.mint(remove_header=["kid"])
    assert split(token)[0] == b'{"alg":"RS256","typ" : "JWT"}'
    verify(token, public_key_from_jwk(jwk_by_kid(realm, http, realm.active_kid)), "RS256")


def test_mint_header_overrides(realm: LocalRealm) -> None:
    token = realm.mint(header={"kid": "unknown", "typ": "at+jwt", "crit": ["exp"]})
    assert split(token)[0].decode() == (
        '{"alg":"RS256","typ" : "at+jwt","kid" : "unknown","crit" : ["exp"]}'
    )


def test_mint_raw_parts_are_signed(realm: LocalRealm, http: httpx.Client) -> None:
    raw_payload = b'{"sub":"a","sub":"b","bad":"\xff"}'
    raw_header = b'["not", "an", "object"]'
    token = realm.mint(raw_header=raw_header, raw_payload=raw_payload)

    header, payload, _ = split(token)
    assert (header, payload) == (raw_header, raw_payload)
    verify(token, public_key_from_jwk(jwk_by_kid(realm, http, realm.active_kid)), "RS256")


def test_mint_with_a_foreign_key(realm: LocalRealm, http: httpx.Client) -> None:
    foreign = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    token = realm.mint(signing_key=foreign)

    assert json.loads(split(token)[0])["kid"] == realm.active_kid  # claims the realm's key
    verify(token, foreign.public_key(), "RS256")
    with pytest.raises(InvalidSignature):
        verify(token, public_key_from_jwk(jwk_by_kid(realm, http, realm.active_kid)), "RS256")


def test_mint_foreign_key_picks_its_algorithm(realm: LocalRealm) -> None:
    foreign = ec.generate_private_key(ec.SECP384R1())
    token = realm.mint(signing_key=foreign)
    assert json.loads(split(token)[0])["alg"] == "ES384"
    verify(token, foreign.public_key(), "ES384")


def test_mint_signature_override(realm: LocalRealm) -> None:
    token = realm.mint(signature=b"\x00" * 256)
    assert split(token)[2] == b"\x00" * 256
    assert realm.mint(signature=b"").endswith(".")


def test_mint_alg_none_and_hmac(realm: LocalRealm, http: httpx.Client) -> None:
    unsigned = realm.mint(alg="none")
    assert json.loads(split(unsigned)[0])["alg"] == "none"
    assert unsigned.endswith(".")

    # The classic alg confusion: HS256 keyed with the realm's public key.
    public_pem = (
        realm.private_key(realm.active_kid)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    confused = realm.mint(alg="HS256", signing_key=public_pem)
    assert json.loads(split(confused)[0]) == {
        "alg": "HS256",
        "typ": "JWT",
        "kid": realm.active_kid,
    }


def test_mint_header_alg_can_disagree_with_signature(realm: LocalRealm, http: httpx.Client) -> None:
    token = realm.mint(header={"alg": "RS512"})
    assert json.loads(split(token)[0])["alg"] == "RS512"
    verify(token, public_key_from_jwk(jwk_by_kid(realm, http, realm.active_kid)), "RS256")


def test_mint_with_old_or_enc_key(realm: LocalRealm, http: httpx.Client) -> None:
    old = realm.active_kid
    realm.rotate_keys()
    by_old = realm.mint(kid=old)
    verify(by_old, public_key_from_jwk(jwk_by_kid(realm, http, old)), "RS256")

    by_enc = realm.mint(kid=realm.encryption_kid)
    verify(by_enc, public_key_from_jwk(jwk_by_kid(realm, http, realm.encryption_kid)), "RS256")

    with pytest.raises(ValueError, match="signing_key"):
        realm.mint(kid="unknown")


@pytest.mark.parametrize(
    ("alg", "signature_length"),
    [
        ("RS256", 256),
        ("PS256", 256),
        ("PS512", 256),
        ("ES256", 64),
        ("ES384", 96),
        ("ES512", 132),
        ("EdDSA", 64),
    ],
)
def test_minted_signatures_verify(alg: str, signature_length: int, http: httpx.Client) -> None:
    with LocalRealm(algorithm=alg) as realm:
        token = realm.mint()
        jwk = jwk_by_kid(realm, http, realm.active_kid)

    assert json.loads(split(token)[0])["alg"] == alg
    assert len(split(token)[2]) == signature_length
    verify(token, public_key_from_jwk(jwk), alg)


# ---------------------------------------------------------------------------------------------
# Lifecycle, plugin, housekeeping


def test_start_stop_without_context_manager(http: httpx.Client) -> None:
    realm = LocalRealm(algorithm="EdDSA")
    with pytest.raises(RuntimeError):
        _ = realm.base_url
    realm.start()
    try:
        assert http.get(realm.discovery_url).status_code == 200
        with pytest.raises(RuntimeError):
            realm.start()
    finally:
        realm.stop()
    realm.stop()  # idempotent
    with pytest.raises(httpx.ConnectError):
        http.get(realm.discovery_url)


def realm_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("keycloak-m2m-realm")]


def test_stop_joins_threads_despite_open_and_delayed_connections() -> None:
    others = set(realm_threads())  # of the module's shared realm, if it is running
    realm = LocalRealm(algorithm="ES256").start()
    outcome: list[object] = []
    with httpx.Client(verify=TLS) as http:
        assert http.get(realm.discovery_url).status_code == 200  # a kept-alive connection

        def delayed() -> None:
            with httpx.Client(verify=TLS) as other:
                try:
                    outcome.append(other.get(realm.jwks_url).status_code)
                except httpx.HTTPError as error:
                    outcome.append(error)

        realm.slow_keys(30)
        waiter = threading.Thread(target=delayed)
        waiter.start()
        while realm.request_count("certs") == 0:
            time.sleep(0.01)
        started = time.monotonic()
        realm.stop()
        waiter.join()

    assert time.monotonic() - started < 30 / 2  # the delay was cut short
    assert [thread for thread in realm_threads() if thread not in others] == []
    assert len(outcome) == 1


def test_local_realm_fixture_is_started(local_realm: LocalRealm, http: httpx.Client) -> None:
    assert http.get(local_realm.discovery_url).status_code == 200


@pytest.mark.local_realm(name="marked", algorithm="ES256")
def test_local_realm_marker_configures_the_fixture(local_realm: LocalRealm) -> None:
    assert local_realm.issuer.endswith("/realms/marked")
    assert json.loads(split(local_realm.mint())[0])["alg"] == "ES256"


def test_secrets_stay_out_of_reprs(realm: LocalRealm) -> None:
    assert SECRET not in repr(realm)
    assert SECRET not in repr(realm._clients)


def test_add_client_rejects_a_bare_string(local_realm: LocalRealm) -> None:
    with pytest.raises(TypeError, match="realm_roles"):
        local_realm.add_client("svc", SECRET, realm_roles="admin")
    with pytest.raises(ValueError, match="scope"):
        local_realm.add_client("svc", SECRET, scopes=["two words"])


def test_realms_share_one_enc_key() -> None:
    # What keeps creating a realm to one RSA key generation: the enc key, only ever published,
    # is made once per process.
    assert LocalRealm().encryption_kid == LocalRealm(algorithm="ES256").encryption_kid
