"""Every check of the validator, each with a token that fails only that check, on both drivers."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from keycloak_m2m import (
    AuthError,
    ClientNotAllowed,
    ExpiredToken,
    InvalidAudience,
    InvalidClaim,
    InvalidIssuer,
    InvalidSignature,
    InvalidTokenType,
    MalformedToken,
    NotServiceAccount,
    TokenNotYetValid,
    TokenValidator,
    UnknownKey,
)
from keycloak_m2m.testing import LocalRealm

from .support import AUDIENCE, CLIENT, START, FakeClock, Validate, add_shop_client

Mint = Callable[[LocalRealm], str]


# One realm for the module: no test here changes it, and a realm per test (an RSA key each) cost
# most of the module's time. The clock is back at START for every test.
@pytest.fixture(scope="module")
def _module_clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(scope="module")
def _module_realm(_module_clock: FakeClock) -> Iterator[LocalRealm]:
    with LocalRealm("shop", clock=_module_clock) as realm:
        add_shop_client(realm)
        yield realm


@pytest.fixture
def clock(_module_clock: FakeClock) -> FakeClock:
    _module_clock.now = START
    return _module_clock


@pytest.fixture
def realm(_module_realm: LocalRealm, clock: FakeClock) -> LocalRealm:
    return _module_realm


def claims_json(realm: LocalRealm, drop: str | None) -> str:
    claims = realm.token_claims(CLIENT)
    claims.pop(drop or "", None)
    return json.dumps(claims, separators=(",", ":"))


def payload_with(text: str, drop: str | None = None) -> Mint:
    """A properly signed token whose payload is exactly ``text`` with the claims filled in."""
    return lambda realm: realm.mint(
        CLIENT, raw_payload=text.replace("CLAIMS", claims_json(realm, drop)[1:-1]).encode()
    )


def mint(**kwargs: Any) -> Mint:
    return lambda realm: realm.mint(CLIENT, **kwargs)


def tampered(change: Callable[[str], str]) -> Mint:
    return lambda realm: change(realm.mint(CLIENT))


def swap_signature(realm: LocalRealm) -> str:
    other = realm.mint(CLIENT, claims={"jti": "another"})
    return realm.mint(CLIENT).rsplit(".", 1)[0] + "." + other.rsplit(".", 1)[1]


def _noncanonical_signature(token: str) -> str:
    # An RS256 signature is 256 bytes: 342 characters, whose last carries 4 unused bits.
    head, signature = token.rsplit(".", 1)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet.index(signature[-1])
    return head + "." + signature[:-1] + alphabet[last | 1]


REJECTED: list[tuple[str, Mint, dict[str, Any], type[AuthError]]] = [
    # 1. size, structure, encoding, JSON
    ("too large", mint(claims={"pad": "x" * 17_000}), {}, MalformedToken),
    ("two segments", tampered(lambda t: t.rsplit(".", 1)[0]), {}, MalformedToken),
    ("four segments", tampered(lambda t: t + ".e30"), {}, MalformedToken),
    ("empty signature", tampered(lambda t: t.rsplit(".", 1)[0] + "."), {}, MalformedToken),
    ("padding", tampered(lambda t: t + "=="), {}, MalformedToken),
    ("whitespace", tampered(lambda t: t[:10] + " " + t[10:]), {}, MalformedToken),
    ("non-alphabet", tampered(lambda t: t[:10] + "+" + t[11:]), {}, MalformedToken),
    ("non-ascii", tampered(lambda t: t[:10] + "é" + t[11:]), {}, MalformedToken),
    ("non-canonical base64", tampered(_noncanonical_signature), {}, MalformedToken),
    ("invalid utf-8", lambda r: r.mint(CLIENT, raw_payload=b'{"a":"\xff"}'), {}, MalformedToken),
    ("payload not object", lambda r: r.mint(CLIENT, raw_payload=b"[1]"), {}, MalformedToken),
    ("header not object", lambda r: r.mint(CLIENT, raw_header=b'"RS256"'), {}, MalformedToken),
    ("duplicate member", payload_with('{CLAIMS,"sub":"a","sub":"b"}'), {}, MalformedToken),
    ("NaN", payload_with('{CLAIMS,"x":NaN}'), {}, MalformedToken),
    # 2. header rules
    ("alg none", mint(header={"alg": "none"}), {}, MalformedToken),
    ("alg HS256", mint(header={"alg": "HS256"}), {}, MalformedToken),
    ("alg outside allowlist", mint(), {"algorithms": ["ES256"]}, MalformedToken),
    ("crit", mint(header={"crit": ["exp"], "exp": 1}), {}, MalformedToken),
    ("jku", mint(header={"jku": "http://127.0.0.1:9/keys"}), {}, MalformedToken),
    ("x5u", mint(header={"x5u": "http://127.0.0.1:9/cert"}), {}, MalformedToken),
    ("x5c", mint(header={"x5c": ["MIIB"]}), {}, MalformedToken),
    ("jwk", mint(header={"jwk": {"kty": "RSA", "n": "AQAB", "e": "AQAB"}}), {}, MalformedToken),
    ("b64 false", mint(header={"b64": False}), {}, MalformedToken),
    ("nested JWT", mint(header={"cty": "JWT"}), {}, MalformedToken),
    ("typ header foo", mint(header={"typ": "foo"}), {}, MalformedToken),
    ("typ header JWT under rfc9068", mint(), {"profile": "rfc9068"}, MalformedToken),
    ("kid not a string", mint(header={"kid": 7}), {}, MalformedToken),
    ("kid too long", mint(header={"kid": "k" * 300}), {}, MalformedToken),
    # 3. key selection
    ("unknown kid", mint(header={"kid": "no-such-key"}), {}, UnknownKey),
    ("kid of the enc key", lambda r: r.mint(CLIENT, kid=r.encryption_kid), {}, UnknownKey),
    ("key type does not fit alg", mint(alg="PS256", header={"alg": "ES256"}), {}, UnknownKey),
    # 4. signature
    ("signature of another token", swap_signature, {}, InvalidSignature),
    (
        "signed by a key the realm does not hold",
        mint(signing_key=rsa.generate_private_key(public_exponent=65537, key_size=2048)),
        {},
        InvalidSignature,
    ),
    # 5. claims
    ("issuer prefix", mint(claims={"iss": "http://evil"}), {}, InvalidIssuer),
    ("issuer missing", mint(remove=["iss"]), {}, InvalidIssuer),
    ("exp missing", mint(remove=["exp"]), {}, InvalidClaim),
    ("exp string", mint(claims={"exp": str(int(START) + 300)}), {}, InvalidClaim),
    ("exp bool", mint(claims={"exp": True}), {}, InvalidClaim),
    ("exp null", mint(claims={"exp": None}), {}, InvalidClaim),
    (
        "exp huge int",
        payload_with('{CLAIMS,"exp":' + "9" * 400 + "}", drop="exp"),
        {},
        InvalidClaim,
    ),
    ("expired beyond leeway", mint(claims={"exp": int(START) - 31}), {}, ExpiredToken),
    ("nbf in the future", mint(claims={"nbf": int(START) + 31}), {}, TokenNotYetValid),
    ("iat in the future", mint(claims={"iat": int(START) + 31}), {}, TokenNotYetValid),
    ("nbf not a number", mint(claims={"nbf": "0"}), {}, InvalidClaim),
    ("aud missing", mint(remove=["aud"]), {}, InvalidAudience),
    ("aud other", mint(claims={"aud": "account"}), {}, InvalidAudience),
    ("aud other list", mint(claims={"aud": ["account", "x"]}), {}, InvalidAudience),
    ("aud int", mint(claims={"aud": 1}), {}, InvalidClaim),
    ("aud object", mint(claims={"aud": {AUDIENCE: True}}), {}, InvalidClaim),
    ("aud list with non-string", mint(claims={"aud": [AUDIENCE, 1]}), {}, InvalidClaim),
    ("typ ID", mint(claims={"typ": "ID"}), {}, InvalidTokenType),
    ("typ Refresh", mint(claims={"typ": "Refresh"}), {}, InvalidTokenType),
    ("typ Logout", mint(claims={"typ": "Logout"}), {}, InvalidTokenType),
    ("typ Offline", mint(claims={"typ": "Offline"}), {}, InvalidTokenType),
    ("typ missing", mint(remove=["typ"]), {}, InvalidTokenType),
    ("azp and client_id disagree", mint(claims={"client_id": "other"}), {}, InvalidClaim),
    ("no client id", mint(remove=["azp", "client_id"]), {}, InvalidClaim),
    ("client not allowed", mint(), {"allowed_clients": ["billing"]}, ClientNotAllowed),
    (
        "user token",
        mint(claims={"preferred_username": "alice"}, remove=["client_id"]),
        {},
        NotServiceAccount,
    ),
    (
        "rfc9068 without jti",
        mint(header={"typ": "at+jwt"}, remove=["jti"]),
        {"profile": "rfc9068"},
        InvalidClaim,
    ),
    # 6. roles
    ("realm roles not a list", mint(claims={"realm_access": {"roles": "admin"}}), {}, InvalidClaim),
    ("realm role not a string", mint(claims={"realm_access": {"roles": [1]}}), {}, InvalidClaim),
    ("realm_access not an object", mint(claims={"realm_access": ["admin"]}), {}, InvalidClaim),
    ("client roles wrong shape", mint(claims={"resource_access": {"x": ["r"]}}), {}, InvalidClaim),
    ("resource_access a list", mint(claims={"resource_access": []}), {}, InvalidClaim),
    ("scope not a string", mint(claims={"scope": ["profile"]}), {}, InvalidClaim),
]


@pytest.mark.parametrize(
    ("make_token", "options", "error"),
    [pytest.param(m, o, e, id=name) for name, m, o, e in REJECTED],
)
def test_rejected(
    realm: LocalRealm,
    make_validator: Callable[..., TokenValidator],
    validate: Validate,
    make_token: Mint,
    options: dict[str, Any],
    error: type[AuthError],
) -> None:
    token = make_token(realm)
    with pytest.raises(error) as caught:
        validate(make_validator(**options), token)
    assert type(caught.value) is error
    assert caught.value.status_code == 401
    assert token not in caught.value.description


ACCEPTED: list[tuple[str, Mint, dict[str, Any]]] = [
    ("a Keycloak service-account token", mint(), {}),
    ("expired within leeway", mint(claims={"exp": int(START) - 29}), {}),
    ("nbf within leeway", mint(claims={"nbf": int(START) + 29}), {}),
    ("no kid: every fitting key is tried", mint(remove_header=["kid"]), {}),
    ("no typ header", mint(remove_header=["typ"]), {}),
    ("one of several audiences", mint(claims={"aud": ["account", "x"]}), {"audience": ["x", "y"]}),
    ("aud as a plain string", mint(claims={"aud": AUDIENCE}), {}),
    ("older Keycloak: clientId", mint(claims={"clientId": CLIENT}, remove=["client_id"]), {}),
    ("JSON whitespace", payload_with(" { CLAIMS } "), {}),
    (
        "duplicate member, last wins when allowed",
        payload_with('{CLAIMS,"sub":"a","sub":"b"}'),
        {"accept_duplicate_members": True},
    ),
    (
        "user token when service accounts are not required",
        mint(claims={"preferred_username": "alice"}, remove=["client_id"]),
        {"service_accounts_only": False},
    ),
    ("allowed client", mint(), {"allowed_clients": [CLIENT, "billing"]}),
    ("rfc9068 profile", mint(header={"typ": "at+jwt"}, remove=["typ"]), {"profile": "rfc9068"}),
]


@pytest.mark.parametrize(
    ("make_token", "options"), [pytest.param(m, o, id=name) for name, m, o in ACCEPTED]
)
def test_accepted(
    realm: LocalRealm,
    make_validator: Callable[..., TokenValidator],
    validate: Validate,
    make_token: Mint,
    options: dict[str, Any],
) -> None:
    principal = validate(make_validator(**options), make_token(realm))
    assert principal.client_id == CLIENT


def test_principal_describes_the_caller(
    realm: LocalRealm, make_validator: Callable[..., TokenValidator], validate: Validate
) -> None:
    claims = realm.token_claims(CLIENT)
    principal = validate(make_validator(), realm.mint(CLIENT))
    assert principal.client_id == CLIENT
    assert principal.subject == claims["sub"] != CLIENT
    assert principal.is_service_account
    assert "notifications:send" in principal.realm_roles
    assert principal.client_roles[AUDIENCE] == frozenset({"send"})
    assert principal.scopes == frozenset({"profile", "email"})
    assert principal.expires_at == claims["exp"]
    assert principal.claims["azp"] == CLIENT
    with pytest.raises(TypeError):
        principal.claims["azp"] = "other"  # type: ignore[index]


def test_a_duplicate_member_takes_the_last_value(
    realm: LocalRealm, make_validator: Callable[..., TokenValidator], validate: Validate
) -> None:
    token = payload_with('{CLAIMS,"sub":"a","sub":"b"}', drop="sub")(realm)
    assert validate(make_validator(accept_duplicate_members=True), token).subject == "b"


def test_signature_is_checked_before_claims(
    realm: LocalRealm, make_validator: Callable[..., TokenValidator], validate: Validate
) -> None:
    stranger = ec.generate_private_key(ec.SECP256R1())
    token = realm.mint(CLIENT, signing_key=stranger, claims={"exp": 1, "iss": "x"})
    with pytest.raises(UnknownKey):
        validate(make_validator(), token)


def test_leeway_is_configurable(
    realm: LocalRealm,
    clock: FakeClock,
    make_validator: Callable[..., TokenValidator],
    validate: Validate,
) -> None:
    token = realm.mint(CLIENT, claims={"exp": int(START) - 5})
    with pytest.raises(ExpiredToken):
        validate(make_validator(leeway=0), token)
    assert validate(make_validator(leeway=10), token).client_id == CLIENT


def test_each_algorithm_verifies(clock: FakeClock, validate: Validate) -> None:
    for algorithm in LocalRealm.SUPPORTED_ALGORITHMS:
        with LocalRealm("algs", algorithm=algorithm, clock=clock) as realm:
            validator = TokenValidator(realm.issuer, "account", clock=clock)
            assert validate(validator, realm.mint()).client_id == "test-client", algorithm
