"""Bad answers of the key endpoint, over real HTTP from the local realm, on both drivers.

Beyond tests/test_key_cache.py: cold starts on every kind of bad answer (503, rate limited, then
recovery on its own), warm validators riding out bad answers over several refetch intervals and
picking up a rotated key set once the endpoint heals, bad keys beside good ones, redirects of
every status (warm and cold) to an endpoint that would have answered, and a key whose certificate
disagrees with its n. Every test asserts the exact number of requests each realm saw.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from keycloak_m2m import InvalidSignature, KeysUnavailable, TokenValidator, UnknownKey
from keycloak_m2m.testing import LocalRealm

from ..support import CLIENT, FakeClock, Validate

MakeValidator = Callable[..., TokenValidator]
Break = Callable[[LocalRealm], None]
Jwk = Callable[[LocalRealm], dict[str, Any]]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def good(realm: LocalRealm) -> dict[str, Any]:
    return realm.public_jwk(realm.active_kid)


def changed(**changes: Any) -> Jwk:
    """The realm's active JWK with members changed (None removes one), under kid "bad"."""

    def jwk(realm: LocalRealm) -> dict[str, Any]:
        doctored = {**good(realm), "kid": "bad", **changes}
        return {name: value for name, value in doctored.items() if value is not None}

    return jwk


def ec_jwk(declared_curve: str, size: int = 32, **extra: Any) -> Jwk:
    """A fresh P-256 public key published as ``declared_curve`` (kid "bad")."""
    numbers = ec.generate_private_key(ec.SECP256R1()).public_key().public_numbers()

    def jwk(realm: LocalRealm) -> dict[str, Any]:
        return {
            "kid": "bad",
            "kty": "EC",
            "crv": declared_curve,
            "x": _b64(numbers.x.to_bytes(size, "big")),
            "y": _b64(numbers.y.to_bytes(size, "big")),
            **extra,
        }

    return jwk


def _public_jwk(key: ec.EllipticCurvePrivateKey, kid: str) -> dict[str, Any]:
    numbers = key.public_key().public_numbers()
    return {
        "kid": kid,
        "kty": "EC",
        "crv": "P-256",
        "x": _b64(numbers.x.to_bytes(32, "big")),
        "y": _b64(numbers.y.to_bytes(32, "big")),
    }


BAD_KEYS: list[Any] = [
    pytest.param(lambda r: r.public_jwk(r.encryption_kid), id="enc-key"),
    pytest.param(changed(use="enc"), id="signing-key-marked-enc"),
    pytest.param(changed(key_ops=["sign"]), id="key-ops-sign-only"),
    pytest.param(changed(key_ops="verify"), id="key-ops-not-a-list"),
    pytest.param(changed(n="!!!"), id="n-not-base64"),
    pytest.param(changed(n=12345), id="n-int"),
    pytest.param(changed(n=None), id="n-missing"),
    pytest.param(changed(e=None), id="e-missing"),
    pytest.param(changed(e="AQ"), id="e-one"),
    pytest.param(changed(n="ü" * 342), id="n-not-ascii"),
    pytest.param(changed(n=_b64(((1 << 511) | 1).to_bytes(64, "big"))), id="rsa-512-bits"),
    pytest.param(changed(n=None, e=None), id="x5c-only"),
    pytest.param(changed(kty=None), id="kty-missing"),
    pytest.param(changed(kty="rsa"), id="kty-lowercase"),
    pytest.param(changed(alg="ES256"), id="alg-of-another-key-type"),
    pytest.param(changed(alg="HS256"), id="alg-hs256"),
    pytest.param(changed(kid=7), id="kid-int"),
    pytest.param(ec_jwk("P-384"), id="ec-wrong-curve"),
    pytest.param(ec_jwk("P-384", size=48), id="ec-wrong-curve-padded"),
    pytest.param(ec_jwk("secp256k1"), id="ec-unknown-curve"),
    pytest.param(ec_jwk("P-256", alg="ES384"), id="ec-alg-of-another-curve"),
    pytest.param(
        lambda r: {"kid": "bad", "kty": "EC", "crv": "P-256", "x": "AQ", "y": "AQ"},
        id="ec-off-curve",
    ),
    pytest.param(
        lambda r: {"kid": "bad", "kty": "OKP", "crv": "X25519", "x": _b64(b"\x09" * 32)},
        id="okp-x25519",
    ),
    pytest.param(lambda r: {"kid": "bad", "kty": "oct", "k": "c2VjcmV0"}, id="oct"),
]


# --- cold start on a bad answer -------------------------------------------------------------------


def _serve(document: Any) -> Break:
    return lambda realm: realm.serve_keys_document(document)


def _keys(*jwks: Jwk) -> Break:
    return lambda realm: realm.serve_keys_document({"keys": [jwk(realm) for jwk in jwks]})


BAD_ANSWERS: list[Any] = [
    pytest.param(lambda r: r.fail_keys(500), id="500"),
    pytest.param(lambda r: r.fail_keys(404), id="404"),
    pytest.param(_serve(b"{not json"), id="invalid-json"),
    pytest.param(_serve({"keys": []}), id="no-keys"),
    pytest.param(_serve(b" " * 300_000), id="huge-body"),
    pytest.param(lambda r: r.fail_keys(401), id="401"),
    pytest.param(lambda r: r.fail_keys(403), id="403"),
    pytest.param(lambda r: r.fail_keys(429), id="429"),
    pytest.param(
        lambda r: r.fail_keys(502, body=b"<html>502</html>", content_type="text/html"),
        id="502-html",
    ),
    pytest.param(lambda r: r.fail_keys(503), id="503"),
    pytest.param(lambda r: r.fail_keys(201, body=b'{"keys":[]}'), id="201"),
    pytest.param(lambda r: r.fail_keys(204, body=b"", content_type=None), id="204"),
    pytest.param(
        lambda r: r.fail_keys(
            200, body=b"<!DOCTYPE html><form>login</form>", content_type="text/html"
        ),
        id="200-login-page",
    ),
    pytest.param(
        lambda r: r.fail_keys(200, body=b"", content_type="application/json"), id="200-empty"
    ),
    pytest.param(_serve(b"null"), id="json-null"),
    pytest.param(_serve(b'"keys"'), id="json-string"),
    pytest.param(_serve(b'{"keys":[{"kty":"RSA","n":NaN,"e":"AQAB"}]}'), id="json-nan"),
    pytest.param(_serve(b'{"keys":[{"e":1' + b"0" * 5000 + b"}]}"), id="json-5000-digit-int"),
    pytest.param(_serve(b'{"keys":[]}garbage'), id="trailing-garbage"),
    pytest.param(_serve(b"\xff\xfe{}"), id="not-utf8"),
    pytest.param(_serve({"keys": None}), id="keys-null"),
    pytest.param(_serve({"keys": {"kid": "x"}}), id="keys-object"),
    pytest.param(_serve({"keys": ["a", 1, None, []]}), id="keys-not-objects"),
    pytest.param(_serve({"Keys": []}), id="keys-misspelled"),
    *(pytest.param(_keys(param.values[0]), id=f"only-{param.id}") for param in BAD_KEYS),
]


@pytest.mark.parametrize("break_endpoint", BAD_ANSWERS)
def test_cold_start_on_a_bad_answer_is_503_rate_limited_then_recovers(
    realm: LocalRealm,
    make_validator: MakeValidator,
    validate: Validate,
    clock: FakeClock,
    break_endpoint: Break,
) -> None:
    break_endpoint(realm)
    validator = make_validator()
    with pytest.raises(KeysUnavailable) as caught:
        validate(validator, realm.mint(CLIENT))
    assert caught.value.status_code == 503
    assert caught.value.retry_after == 30
    assert caught.value.response_headers("api")["Retry-After"] == "30"
    assert realm.request_count("certs") == 1
    clock.advance(29)
    with pytest.raises(KeysUnavailable) as caught:
        validate(validator, realm.mint(CLIENT))
    assert caught.value.retry_after == 1
    assert realm.request_count("certs") == 1  # rate limited: no second request yet
    realm.heal_keys()
    clock.advance(1)
    assert validate(validator, realm.mint(CLIENT)).client_id == CLIENT
    assert realm.request_count("certs") == 2


@pytest.mark.parametrize("break_endpoint", BAD_ANSWERS)
def test_bad_answers_after_warm_up_keep_the_good_keys_until_the_endpoint_heals(
    realm: LocalRealm,
    make_validator: MakeValidator,
    validate: Validate,
    clock: FakeClock,
    break_endpoint: Break,
) -> None:
    validator = make_validator(token_cache_size=0)
    validate(validator, realm.mint(CLIENT))
    break_endpoint(realm)
    clock.advance(301)  # stale: every validation now wants a refresh, one per interval is made
    for _ in range(5):
        assert validate(validator, realm.mint(CLIENT)).client_id == CLIENT
    assert realm.request_count("certs") == 2
    clock.advance(30)
    assert validate(validator, realm.mint(CLIENT)).client_id == CLIENT
    assert realm.request_count("certs") == 3
    # Healed, with a key added meanwhile: the next allowed attempt adopts the new key set.
    added = ec.generate_private_key(ec.SECP256R1())
    realm.serve_keys_document({"keys": [good(realm), _public_jwk(added, "added")]})
    clock.advance(30)
    token = realm.mint(CLIENT, signing_key=added, header={"kid": "added"})
    assert validate(validator, token).client_id == CLIENT
    assert realm.request_count("certs") == 4


# --- bad keys beside a good one -------------------------------------------------------------------


@pytest.mark.parametrize("bad_key", BAD_KEYS)
def test_a_bad_key_beside_a_good_one_is_skipped(
    realm: LocalRealm, make_validator: MakeValidator, validate: Validate, bad_key: Jwk
) -> None:
    realm.serve_keys_document({"keys": [bad_key(realm), good(realm), bad_key(realm)]})
    validator = make_validator()
    assert validate(validator, realm.mint(CLIENT)).client_id == CLIENT
    with pytest.raises(UnknownKey):
        validate(validator, realm.mint(CLIENT, header={"kid": "bad"}))
    assert realm.request_count("certs") == 2  # start-up, and the refetch the unknown kid set off
    with pytest.raises(UnknownKey):
        validate(validator, realm.mint(CLIENT, header={"kid": "bad"}))
    assert realm.request_count("certs") == 2


@pytest.mark.parametrize("alg", [["RS256"], {"alg": "RS256"}], ids=["list", "object"])
def test_a_key_with_a_non_string_alg_is_skipped_at_cold_start(
    realm: LocalRealm, make_validator: MakeValidator, validate: Validate, alg: object
) -> None:
    realm.serve_keys_document({"keys": [changed(alg=alg)(realm), good(realm)]})
    validator = make_validator()
    for _ in range(3):
        assert validate(validator, realm.mint(CLIENT)).client_id == CLIENT
    assert realm.request_count("certs") == 1


def test_a_key_with_a_non_string_alg_does_not_cost_a_warm_validator_its_keys(
    realm: LocalRealm, make_validator: MakeValidator, validate: Validate, clock: FakeClock
) -> None:
    validator = make_validator(token_cache_size=0)
    validate(validator, realm.mint(CLIENT))
    realm.serve_keys_document({"keys": [changed(alg=["RS256"])(realm), good(realm)]})
    clock.advance(301)
    for _ in range(3):
        assert validate(validator, realm.mint(CLIENT)).client_id == CLIENT
    assert realm.request_count("certs") == 2


def test_a_certificate_that_disagrees_with_n_is_not_trusted(
    realm: LocalRealm,
    make_validator: MakeValidator,
    validate: Validate,
    other: LocalRealm,
) -> None:
    """x5c carries another realm's key: the validator verifies with n and e only, so a token
    signed by the certificate's key is refused however it names the key."""
    published = {**good(realm), "x5c": other.public_jwk(other.active_kid)["x5c"]}
    realm.serve_keys_document({"keys": [published]})
    validator = make_validator()
    assert validate(validator, realm.mint(CLIENT)).client_id == CLIENT
    forged = realm.mint(
        CLIENT, signing_key=other.private_key(other.active_kid), header={"kid": realm.active_kid}
    )
    with pytest.raises(InvalidSignature):
        validate(validator, forged)
    assert realm.request_count("certs") == 1
    assert other.request_count("certs") == 0


# --- redirects ------------------------------------------------------------------------------------

REDIRECTS = [301, 302, 303, 307, 308]


@pytest.mark.parametrize("status", REDIRECTS)
def test_a_redirect_at_cold_start_is_not_followed(
    realm: LocalRealm,
    make_validator: MakeValidator,
    validate: Validate,
    other: LocalRealm,
    status: int,
) -> None:
    other.serve_keys_document({"keys": [good(realm)]})  # following it would have worked
    realm.redirect_keys(other.jwks_url, status=status)
    with pytest.raises(KeysUnavailable):
        validate(make_validator(), realm.mint(CLIENT))
    assert realm.request_count("certs") == 1
    assert other.request_count("certs") == 0


@pytest.mark.parametrize("status", REDIRECTS)
def test_a_redirect_after_warm_up_is_not_followed_and_the_keys_stay(
    realm: LocalRealm,
    make_validator: MakeValidator,
    validate: Validate,
    clock: FakeClock,
    other: LocalRealm,
    status: int,
) -> None:
    validator = make_validator(token_cache_size=0)
    validate(validator, realm.mint(CLIENT))
    other.serve_keys_document({"keys": []})  # an attacker's key set would empty the cache
    realm.redirect_keys(other.jwks_url, status=status)
    clock.advance(301)
    assert validate(validator, realm.mint(CLIENT)).client_id == CLIENT
    clock.advance(30)
    assert validate(validator, realm.mint(CLIENT)).client_id == CLIENT
    assert realm.request_count("certs") == 3
    assert other.request_count("certs") == 0
