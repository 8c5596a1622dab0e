"""Revocation and lightweight tokens through introspection (RFC 7662), over real HTTP against
LocalRealm: every case runs under both drivers."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from keycloak_m2m import (
    AuthError,
    Introspection,
    IntrospectionUnavailable,
    InvalidAudience,
    InvalidToken,
    MalformedToken,
    TokenRevoked,
    TokenValidator,
)
from keycloak_m2m.testing import LocalRealm

from .support import (
    AUDIENCE,
    CLIENT,
    REFUSED_KEYS,
    TLS,
    FakeClock,
    Validate,
    private_keys,
    refusal,
)

MakeValidator = Callable[..., TokenValidator]
SECRET = "notification-service-secret"
TTL = 30.0


@pytest.fixture
def realm(realm: LocalRealm) -> LocalRealm:
    # The resource server introspects as its own client.
    realm.add_client(AUDIENCE, SECRET)
    return realm


def introspecting(make_validator: MakeValidator, **options: Any) -> TokenValidator:
    options.setdefault("cache_ttl", TTL)
    return make_validator(introspection=Introspection(AUDIENCE, SECRET, **options))


def test_a_revoked_token_is_refused_once_the_answer_is_older_than_cache_ttl(
    realm: LocalRealm, make_validator: MakeValidator, validate: Validate, clock: FakeClock
) -> None:
    validator = introspecting(make_validator)
    token = realm.mint(CLIENT)
    assert validate(validator, token).client_id == CLIENT
    realm.revoke(token)
    clock.advance(TTL - 1)
    assert validate(validator, token).client_id == CLIENT  # the answer still stands
    clock.advance(1)
    with pytest.raises(TokenRevoked) as refused:
        validate(validator, token)
    assert refused.value.status_code == 401
    assert refused.value.error == "invalid_token"
    assert refused.value.description == "token revoked or inactive"
    assert isinstance(refused.value, InvalidToken)
    assert realm.request_count("introspect") == 2


def test_a_token_revoked_at_the_revocation_endpoint_is_refused(
    realm: LocalRealm, make_validator: MakeValidator, validate: Validate
) -> None:
    import httpx

    validator = introspecting(make_validator)
    token = realm.mint(CLIENT)
    response = httpx.post(
        realm.revocation_url, data={"token": token}, auth=(CLIENT, "shop-api-secret"), verify=TLS
    )
    assert response.status_code == 200
    with pytest.raises(TokenRevoked):
        validate(validator, token)


def test_a_disabled_clients_token_is_refused(
    realm: LocalRealm, make_validator: MakeValidator, validate: Validate
) -> None:
    validator = introspecting(make_validator)
    token = realm.mint(CLIENT)
    realm.disable_client(CLIENT)
    with pytest.raises(TokenRevoked):
        validate(validator, token)


def test_without_introspection_a_revoked_token_passes_until_it_expires(
    realm: LocalRealm, make_validator: MakeValidator, validate: Validate
) -> None:
    validator = make_validator()
    token = realm.mint(CLIENT)
    realm.revoke(token)
    assert validate(validator, token).client_id == CLIENT
    assert realm.request_count("introspect") == 0


def test_the_answer_is_not_cached_past_the_tokens_expiry(
    realm: LocalRealm, make_validator: MakeValidator, validate: Validate, clock: FakeClock
) -> None:
    validator = introspecting(make_validator, cache_ttl=3600)
    token = realm.mint(CLIENT, expires_in=60)
    validate(validator, token)
    clock.advance(59)
    validate(validator, token)
    assert realm.request_count("introspect") == 1
    clock.advance(2)  # past exp, within the leeway: the token may still pass, but is asked about
    with pytest.raises(TokenRevoked):  # the realm says an expired token is inactive
        validate(validator, token)
    assert realm.request_count("introspect") == 2


# --- lightweight and opaque tokens ------------------------------------------------------------


@pytest.fixture
def lightweight_client(realm: LocalRealm) -> str:
    realm.add_client(
        "billing",
        "billing-secret",
        realm_roles=["invoices:read"],
        client_roles={AUDIENCE: ["send"]},
        audience=[AUDIENCE],
        lightweight_tokens=True,
    )
    return "billing"


def test_a_lightweight_token_gets_audience_and_roles_from_the_answer(
    realm: LocalRealm,
    make_validator: MakeValidator,
    validate: Validate,
    lightweight_client: str,
) -> None:
    token = realm.mint(lightweight_client)
    with pytest.raises(InvalidAudience):  # the JWT alone names no audience
        validate(make_validator(), token)
    principal = validate(introspecting(make_validator), token)
    assert principal.client_id == lightweight_client
    assert "invoices:read" in principal.realm_roles
    assert principal.client_roles[AUDIENCE] == frozenset({"send"})
    assert principal.is_service_account


def test_a_lightweight_token_is_introspected_even_when_routes_do_not_ask(
    realm: LocalRealm,
    make_validator: MakeValidator,
    validate: Validate,
    lightweight_client: str,
) -> None:
    validator = introspecting(make_validator, when="on_request")
    token = realm.mint(lightweight_client)
    assert "invoices:read" in validate(validator, token).realm_roles
    assert realm.request_count("introspect") == 1


def test_the_answers_audience_is_checked(
    realm: LocalRealm, make_validator: MakeValidator, validate: Validate, lightweight_client: str
) -> None:
    other = make_validator(
        audience="another-service", introspection=Introspection(AUDIENCE, SECRET)
    )
    with pytest.raises(InvalidAudience):
        validate(other, realm.mint(lightweight_client))


def test_an_opaque_token_is_accepted_only_with_introspection(
    realm: LocalRealm, make_validator: MakeValidator, validate: Validate
) -> None:
    token = realm.opaque_token(CLIENT)
    with pytest.raises(MalformedToken):
        validate(make_validator(), token)
    principal = validate(introspecting(make_validator), token)
    assert principal.client_id == CLIENT
    assert "notifications:send" in principal.realm_roles


def test_an_opaque_token_goes_through_the_claim_checks(
    realm: LocalRealm, make_validator: MakeValidator, validate: Validate
) -> None:
    validator = make_validator(
        audience="another-service", introspection=Introspection(AUDIENCE, SECRET)
    )
    with pytest.raises(InvalidAudience):
        validate(validator, realm.opaque_token(CLIENT))


def test_an_unknown_opaque_token_is_inactive(
    realm: LocalRealm, make_validator: MakeValidator, validate: Validate
) -> None:
    with pytest.raises(TokenRevoked):
        validate(introspecting(make_validator), "not-a-token-this-realm-issued")


# --- the endpoint down ------------------------------------------------------------------------


def test_the_endpoint_down_refuses_with_503_and_retry_after(
    realm: LocalRealm, make_validator: MakeValidator, validate: Validate, clock: FakeClock
) -> None:
    validator = introspecting(make_validator)
    token = realm.mint(CLIENT)
    realm.fail_introspection(500)
    with pytest.raises(IntrospectionUnavailable) as refused:
        validate(validator, token)
    assert refused.value.status_code == 503
    assert refused.value.response_headers("shop")["Retry-After"] == "1"
    assert refused.value.response_body()["error"] == "temporarily_unavailable"
    realm.heal_introspection()
    clock.advance(1)  # the failure stands for a second, then the endpoint is asked again
    assert validate(validator, token).client_id == CLIENT


def test_a_refused_client_authentication_is_a_failure_not_a_verdict(
    realm: LocalRealm, make_validator: MakeValidator, validate: Validate
) -> None:
    validator = make_validator(introspection=Introspection(AUDIENCE, "wrong-secret"))
    with pytest.raises(IntrospectionUnavailable):
        validate(validator, realm.mint(CLIENT))


def test_the_endpoint_down_accepts_and_logs_with_on_failure_accept(
    realm: LocalRealm,
    make_validator: MakeValidator,
    validate: Validate,
    caplog: pytest.LogCaptureFixture,
) -> None:
    validator = introspecting(make_validator, on_failure="accept")
    token = realm.mint(CLIENT)
    realm.fail_introspection(503)
    with caplog.at_level(logging.WARNING, "keycloak_m2m.introspection"):
        assert validate(validator, token).client_id == CLIENT
    assert "accepting a locally verified token" in caplog.text
    assert token not in caplog.text


def test_accepting_on_failure_asks_again_after_the_failure_stands(
    realm: LocalRealm, make_validator: MakeValidator, validate: Validate, clock: FakeClock
) -> None:
    validator = introspecting(make_validator, on_failure="accept")
    token = realm.mint(CLIENT)
    realm.fail_introspection(503)
    validate(validator, token)
    validate(validator, token)
    assert realm.request_count("introspect") == 1
    realm.heal_introspection()
    realm.revoke(token)
    clock.advance(1)
    with pytest.raises(TokenRevoked):
        validate(validator, token)


def test_tokens_that_need_the_answer_are_not_accepted_without_one(
    realm: LocalRealm, make_validator: MakeValidator, validate: Validate, lightweight_client: str
) -> None:
    validator = introspecting(make_validator, on_failure="accept")
    realm.fail_introspection(500)
    for token in (realm.mint(lightweight_client), realm.opaque_token(CLIENT)):
        with pytest.raises(IntrospectionUnavailable):
            validate(validator, token)


def test_a_garbage_answer_is_a_failure(
    realm: LocalRealm, make_validator: MakeValidator, validate: Validate
) -> None:
    validator = introspecting(make_validator)
    realm.fail_introspection(200, body=b'{"active": "yes"}', content_type="application/json")
    with pytest.raises(IntrospectionUnavailable):
        validate(validator, realm.mint(CLIENT))


# --- when="on_request" ------------------------------------------------------------------------


def test_on_request_introspects_only_when_asked(
    realm: LocalRealm, make_validator: MakeValidator
) -> None:
    validator = introspecting(make_validator, when="on_request")
    token = realm.mint(CLIENT)
    realm.revoke(token)
    assert validator.validate(token).client_id == CLIENT
    assert realm.request_count("introspect") == 0
    with pytest.raises(TokenRevoked):
        validator.validate(token, introspect=True)
    with pytest.raises(TokenRevoked):
        asyncio.run(validator.validate_async(token, introspect=True))
    assert realm.request_count("introspect") == 1  # the answer is cached


def test_introspect_without_introspection_is_a_configuration_error(
    realm: LocalRealm, make_validator: MakeValidator
) -> None:
    with pytest.raises(ValueError, match="introspection"):
        make_validator().validate(realm.mint(CLIENT), introspect=True)


# --- one request for many checks --------------------------------------------------------------


def test_concurrent_async_checks_of_one_token_share_one_request_per_cache_ttl(
    realm: LocalRealm, make_validator: MakeValidator, clock: FakeClock
) -> None:
    validator = introspecting(make_validator)
    token = realm.mint(CLIENT)
    realm.slow_introspection(0.2)  # so that all 200 checks are waiting at once

    async def check_many() -> None:
        principals = await asyncio.gather(*(validator.validate_async(token) for _ in range(200)))
        assert {p.client_id for p in principals} == {CLIENT}

    asyncio.run(check_many())
    assert realm.request_count("introspect") == 1
    clock.advance(TTL)
    asyncio.run(check_many())
    assert realm.request_count("introspect") == 2


def test_concurrent_sync_checks_of_one_token_share_one_request_per_cache_ttl(
    realm: LocalRealm, make_validator: MakeValidator, clock: FakeClock
) -> None:
    validator = introspecting(make_validator)
    token = realm.mint(CLIENT)
    realm.slow_introspection(0.2)
    with ThreadPoolExecutor(max_workers=50) as pool:
        for round_ in (1, 2):
            principals = list(pool.map(lambda _: validator.validate(token), range(200)))
            assert {p.client_id for p in principals} == {CLIENT}
            assert realm.request_count("introspect") == round_
            clock.advance(TTL)


def test_concurrent_checks_share_a_failure_too(
    realm: LocalRealm, make_validator: MakeValidator
) -> None:
    validator = introspecting(make_validator)
    token = realm.mint(CLIENT)
    realm.fail_introspection(500, delay=0.2)

    async def check_many() -> list[object]:
        return await asyncio.gather(
            *(validator.validate_async(token) for _ in range(50)), return_exceptions=True
        )

    outcomes = asyncio.run(check_many())
    assert all(isinstance(outcome, IntrospectionUnavailable) for outcome in outcomes)
    assert realm.request_count("introspect") == 1


# --- configuration ----------------------------------------------------------------------------


def test_the_endpoint_defaults_to_keycloaks_under_the_key_set_base(realm: LocalRealm) -> None:
    validator = TokenValidator(
        realm.issuer,
        AUDIENCE,
        keycloak_url=realm.base_url,
        introspection=Introspection(AUDIENCE, SECRET),
    )
    assert validator._introspection is not None
    assert validator._introspection.endpoint == realm.introspection_url


def test_the_secret_can_come_from_a_file(
    realm: LocalRealm, make_validator: MakeValidator, tmp_path: Any
) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_text(SECRET + "\n")
    config = Introspection(AUDIENCE, client_secret_file=secret_file)
    assert SECRET not in repr(config)
    validator = make_validator(introspection=config)
    assert validator.validate(realm.mint(CLIENT)).client_id == CLIENT


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({}, "one of client_secret"),
        ({"client_secret": "s", "client_secret_file": "f"}, "one of client_secret"),
        ({"client_secret": "s", "cache_ttl": 0}, "cache_ttl"),
        ({"client_secret": "s", "timeout": float("nan")}, "timeout"),
        ({"client_secret": "s", "on_failure": "ignore"}, "on_failure"),
        ({"client_secret": "s", "when": "sometimes"}, "when"),
        ({"client_secret": "s", "endpoint": "ftp://x"}, "endpoint"),
        ({"private_key": "not a key"}, "private_key"),
        ({"private_key": object()}, "private_key"),
    ],
)
def test_bad_configuration_is_refused(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Introspection(AUDIENCE, **options)


def _pem(key: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization

    pem: bytes = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return pem


def _keys() -> dict[str, Any]:
    keys = private_keys()
    return {
        **keys,
        "P-384 as PEM text": _pem(keys["P-384"]).decode(),
        "Ed25519 as PEM bytes": _pem(keys["Ed25519"]),
        "an encrypted PEM": b"-----BEGIN ENCRYPTED PRIVATE KEY-----\n",
    }


KEYS = _keys()


@pytest.mark.parametrize("kind", sorted(KEYS))
def test_introspection_and_the_client_take_the_same_keys(kind: str) -> None:
    # Both authenticate as a client with private_key_jwt: one rule decides for both (the two
    # had drifted apart: RSA-1024 passed here and P-384 was refused there).
    from keycloak_m2m import ClientCredentials

    key = KEYS[kind]
    introspection = refusal(lambda: Introspection(AUDIENCE, private_key=key), "private_key")
    client = refusal(
        lambda: ClientCredentials(
            AUDIENCE,
            private_key=key,
            auth_method="private_key_jwt",
            token_url="https://sso.example.com/token",
        ),
        "private_key",
    )

    assert introspection == client
    assert (introspection == "accepted") == (kind not in REFUSED_KEYS | {"an encrypted PEM"})


def _secret_readers(secret_file: Any) -> list[Callable[[], object]]:
    from keycloak_m2m import ClientCredentials

    def by_introspection() -> object:
        return Introspection(AUDIENCE, client_secret_file=secret_file).client_secret

    def by_client() -> object:
        credentials = ClientCredentials(
            AUDIENCE, client_secret_file=secret_file, token_url="https://sso.example.com/token"
        )
        return credentials._settings.client_secret

    return [by_introspection, by_client]


@pytest.mark.parametrize("content", [b"s3cret\r\n", b"s3cret\n", b"s3cret"])
def test_introspection_and_the_client_read_a_secret_file_alike(
    tmp_path: Any, content: bytes
) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_bytes(content)

    assert [read() for read in _secret_readers(secret_file)] == ["s3cret", "s3cret"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\n", "is empty"),
        (b"\xff\xfe", "cannot be read (UnicodeDecodeError)"),
        (None, "cannot be read (FileNotFoundError)"),
    ],
)
def test_introspection_and_the_client_refuse_a_bad_secret_file_alike(
    tmp_path: Any, content: bytes | None, message: str
) -> None:
    secret_file = tmp_path / "secret"
    if content is not None:
        secret_file.write_bytes(content)

    for read in _secret_readers(secret_file):
        with pytest.raises(
            ValueError, match=re.escape(f"client_secret_file {secret_file} {message}")
        ):
            read()


def test_errors_are_auth_errors() -> None:
    assert issubclass(TokenRevoked, InvalidToken)
    assert issubclass(IntrospectionUnavailable, AuthError)


@pytest.mark.parametrize("key_kind", ["rsa", "ec", "ed25519"])
def test_private_key_jwt_signs_a_client_assertion(key_kind: str) -> None:
    # The request is built without I/O: its assertion is checked here with the public key.
    import jwt
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    from keycloak_m2m._introspection import IntrospectionClient

    key: Any = {
        "rsa": lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048),
        "ec": lambda: ec.generate_private_key(ec.SECP384R1()),
        "ed25519": ed25519.Ed25519PrivateKey.generate,
    }[key_kind]()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    config = Introspection(AUDIENCE, private_key=pem)
    assert "PRIVATE" not in repr(config)
    issuer = "https://sso.example.com/realms/shop"
    form, headers = IntrospectionClient(config, issuer + "/x", issuer).request("a.b.c")
    assert "Authorization" not in headers
    assert form["token"] == "a.b.c"
    assert form["client_assertion_type"] == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
    claims = jwt.decode(
        form["client_assertion"],
        key.public_key(),
        algorithms=["RS256", "ES384", "EdDSA"],
        audience=issuer,
    )
    assert claims["iss"] == claims["sub"] == AUDIENCE
    assert claims["exp"] - claims["iat"] == 60


@pytest.mark.parametrize("curve", ["P-256", "P-384"])
def test_private_key_jwt_authenticates_at_the_realm(curve: str, validate: Validate) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec

    from .support import add_shop_client

    key = ec.generate_private_key(ec.SECP256R1() if curve == "P-256" else ec.SECP384R1())
    # The realm checks assertions against the wall clock, as the assertion is made.
    with LocalRealm("shop") as realm:
        add_shop_client(realm)
        realm.add_client(AUDIENCE, public_key=key.public_key())
        validator = TokenValidator(
            realm.issuer, AUDIENCE, introspection=Introspection(AUDIENCE, private_key=key)
        )
        token = realm.mint(CLIENT)
        assert validate(validator, token).client_id == CLIENT
        realm.revoke(token)
        fresh = TokenValidator(
            realm.issuer, AUDIENCE, introspection=Introspection(AUDIENCE, private_key=key)
        )
        with pytest.raises(TokenRevoked):
            validate(fresh, token)
        assert realm.request_count("introspect") == 2
