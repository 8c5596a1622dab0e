"""Hypothesis against the parser, the header rules and the claim checks.

Beyond tests/test_properties.py: structured garbage, valid tokens under stacked mutations, random
headers and random payloads that are *properly signed*, each compared with an independent
reading of the documented rules (docs/validator.md). Only the package's own errors may escape, a
token is accepted only when the rules say so, and a mutated token only when it is byte-identical
to a valid one. One realm and warmed validators for the module, the clock frozen: no case may
cause a key-set request.
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from keycloak_m2m import (
    AuthError,
    ExpiredToken,
    InvalidAudience,
    InvalidClaim,
    InvalidIssuer,
    InvalidSignature,
    InvalidTokenType,
    MalformedToken,
    NotServiceAccount,
    Principal,
    TokenNotYetValid,
    TokenValidator,
    UnknownKey,
)
from keycloak_m2m.testing import LocalRealm

from ..support import AUDIENCE, CLIENT, START

ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
LEEWAY = 30.0
NOW = START
ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"}
    | {"EdDSA", "Ed25519", "Ed448"}
)
REFUSED_MEMBERS = ("crit", "jku", "x5u", "x5c", "jwk", "enc", "zip", "cty")


def fuzz_settings(examples: int) -> Any:
    return settings(
        max_examples=examples,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


@dataclass(frozen=True)
class Fuzzed:
    realm: LocalRealm
    cached: TokenValidator  # the default verified-token cache
    uncached: TokenValidator  # token_cache_size=0: every token takes the full path
    key_algorithms: dict[str, str]  # kid -> the JWK's declared alg
    valid: tuple[str, ...]

    def validate(self, token: object, use_async: bool, use_cache: bool) -> Principal:
        validator = self.cached if use_cache else self.uncached
        if use_async:
            return asyncio.run(validator.validate_async(token))
        return validator.validate(token)


@pytest.fixture(scope="module")
def fuzzed() -> Iterator[Fuzzed]:
    clock = lambda: NOW  # noqa: E731
    with LocalRealm("fuzz", clock=clock) as realm:
        realm.add_client(
            CLIENT,
            "secret",
            realm_roles=["notifications:send"],
            client_roles={AUDIENCE: ["send"]},
            audience=[AUDIENCE],
        )
        rsa_kid = realm.active_kid
        ec_kid = realm.rotate_keys(algorithm="ES256")
        ed_kid = realm.rotate_keys(algorithm="EdDSA")
        ps_kid = realm.rotate_keys(algorithm="PS256")
        realm.rotate_keys(algorithm="RS256")
        algorithms = {kid: realm.public_jwk(kid)["alg"] for kid in realm.signing_kids}
        cached = TokenValidator(realm.issuer, AUDIENCE, clock=clock)
        uncached = TokenValidator(realm.issuer, AUDIENCE, clock=clock, token_cache_size=0)
        valid = (
            realm.mint(CLIENT),
            realm.mint(CLIENT, kid=rsa_kid),
            realm.mint(CLIENT, kid=ec_kid),
            realm.mint(CLIENT, kid=ed_kid),
            realm.mint(CLIENT, remove_header=["kid"]),
            realm.mint(CLIENT, claims={"scope": "profile"}, remove_header=["typ"]),
            # About one RSA signature in 256 starts with a zero octet: a copy with it stripped
            # must not verify (OpenSSL's PSS check takes it).
            with_leading_zero_octet(lambda: realm.mint(CLIENT, kid=ps_kid)),
            with_leading_zero_octet(lambda: realm.mint(CLIENT, kid=rsa_kid)),
        )
        unknown_kid = realm.mint(CLIENT, kid=rsa_kid, header={"kid": "warm-up-unknown-kid"})
        for validator in (cached, uncached):
            for token in valid:
                validator.validate(token)
            # The one refetch an unknown kid may set off, spent before any case runs.
            with pytest.raises(UnknownKey):
                validator.validate(unknown_kid)
        assert realm.request_count("certs") == 4
        yield Fuzzed(realm, cached, uncached, algorithms, valid)
        # Thousands of hostile tokens later: not one more key-set request.
        assert realm.request_count("certs") == 4


DRIVERS = st.tuples(st.booleans(), st.booleans())  # (async?, verified-token cache?)


def with_leading_zero_octet(mint: Callable[[], str]) -> str:
    """Mint (PSS is randomised; every PKCS#1 token has a fresh jti) until the signature's first
    octet is zero."""
    while True:
        token = mint()
        if unb64(token.rsplit(".", 1)[1])[0] == 0:
            return token


def refused(fuzzed: Fuzzed, token: object, drivers: tuple[bool, bool]) -> AuthError:
    with pytest.raises(AuthError) as caught:
        fuzzed.validate(token, *drivers)
    return caught.value


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


# --- garbage with the shape of a token ---------------------------------------------------------

SEGMENT = st.text(alphabet=ALPHABET, max_size=120)
NEAR_ALPHABET = st.sampled_from(
    [*ALPHABET, ".", "=", "+", "/", " ", "\n", "\t", "\x00", "é", "\u200b"]
)


@fuzz_settings(800)
@given(
    st.one_of(
        st.tuples(SEGMENT, SEGMENT, SEGMENT).map(".".join),
        st.lists(SEGMENT, max_size=7).map(".".join),
        st.text(alphabet=NEAR_ALPHABET, max_size=400),
        st.binary(max_size=300).map(lambda raw: raw.decode("latin-1")),
    ),
    DRIVERS,
)
def test_token_shaped_garbage_raises_only_auth_errors(
    fuzzed: Fuzzed, garbage: str, drivers: tuple[bool, bool]
) -> None:
    error = refused(fuzzed, garbage, drivers)
    assert error.status_code == 401


@fuzz_settings(600)
@given(
    st.sampled_from(range(6)),
    st.one_of(st.binary(max_size=300), st.text(max_size=100).map(str.encode)),
    st.one_of(st.binary(max_size=300), st.integers(0, 600).map(bytes)),
    DRIVERS,
)
def test_a_real_header_with_random_payload_and_signature_is_never_accepted(
    fuzzed: Fuzzed, which: int, body: bytes, signature: bytes, drivers: tuple[bool, bool]
) -> None:
    header = fuzzed.valid[which].split(".")[0]
    token = f"{header}.{b64(body)}.{b64(signature)}"
    if token in fuzzed.valid:
        return
    assert type(refused(fuzzed, token, drivers)) in (MalformedToken, InvalidSignature)


# --- valid tokens under stacked mutations ---------------------------------------------------------


@st.composite
def mutated(draw: st.DrawFn, valid: tuple[str, ...]) -> str:
    token = draw(st.sampled_from(valid))
    for _ in range(draw(st.integers(1, 3))):
        segments = token.split(".")
        index = draw(st.integers(0, max(0, len(segments) - 1)))
        position = draw(st.integers(0, max(0, len(token) - 1)))
        operation = draw(
            st.sampled_from(
                [
                    "replace",
                    "insert",
                    "delete",
                    "truncate",
                    "swap",
                    "splice",
                    "duplicate",
                    "pad",
                    "standard",
                    "flip-decoded",
                    "signature-length",
                    "case",
                ]
            )
        )
        if operation == "replace":
            token = token[:position] + draw(NEAR_ALPHABET | st.characters()) + token[position + 1 :]
        elif operation == "insert":
            token = token[:position] + draw(NEAR_ALPHABET | st.characters()) + token[position:]
        elif operation == "delete":
            token = token[:position] + token[position + draw(st.integers(1, 8)) :]
        elif operation == "truncate":
            token = token[:position]
        elif operation == "swap":
            other = draw(st.integers(0, max(0, len(segments) - 1)))
            segments[index], segments[other] = segments[other], segments[index]
            token = ".".join(segments)
        elif operation == "splice":
            donor = draw(st.sampled_from(valid)).split(".")
            if index < len(donor):
                segments[index] = donor[index]
            token = ".".join(segments)
        elif operation == "duplicate":
            segments.insert(index, segments[index])
            token = ".".join(segments)
        elif operation == "pad":
            segments[index] += "=" * draw(st.integers(1, 3))
            token = ".".join(segments)
        elif operation == "standard":
            segments[index] = segments[index].replace("-", "+").replace("_", "/")
            token = ".".join(segments)
        elif operation == "flip-decoded":
            try:
                raw = bytearray(unb64(segments[index]))
            except ValueError:
                continue
            if raw:
                bit = draw(st.integers(0, len(raw) * 8 - 1))
                raw[bit // 8] ^= 1 << (bit % 8)
                segments[index] = b64(bytes(raw))
                token = ".".join(segments)
        elif operation == "signature-length":
            # The same number, one octet shorter or longer: a leading zero stripped or added.
            try:
                raw = unb64(segments[-1])
            except ValueError:
                continue
            segments[-1] = b64(raw[1:] if raw[:1] == b"\0" else b"\0" + raw)
            token = ".".join(segments)
        else:
            token = (
                token[:position] + token[position : position + 1].swapcase() + token[position + 1 :]
            )
    return token


@pytest.mark.parametrize("drivers", [(False, False), (False, True), (True, False), (True, True)])
def test_an_rsa_signature_without_its_leading_zero_octet_is_refused(
    fuzzed: Fuzzed, drivers: tuple[bool, bool]
) -> None:
    """The same integer in one octet fewer than the modulus (RFC 8017: exactly its length)."""
    zero_led = [token for token in fuzzed.valid if unb64(token.rsplit(".", 1)[1])[0] == 0]
    assert {json.loads(unb64(token.split(".")[0]))["alg"] for token in zero_led} >= {
        "PS256",
        "RS256",
    }
    for token in zero_led:
        signing_input, signature = token.rsplit(".", 1)
        stripped = f"{signing_input}.{b64(unb64(signature)[1:])}"
        assert type(refused(fuzzed, stripped, drivers)) is InvalidSignature


@fuzz_settings(2000)
@given(st.data(), DRIVERS)
def test_no_mutated_token_is_accepted_unless_byte_identical_to_a_valid_one(
    fuzzed: Fuzzed, data: st.DataObject, drivers: tuple[bool, bool]
) -> None:
    token = data.draw(mutated(fuzzed.valid))
    event("identical to a valid token" if token in fuzzed.valid else "mutated")
    if token in fuzzed.valid:
        assert fuzzed.validate(token, *drivers).client_id == CLIENT
    else:
        refused(fuzzed, token, drivers)


# --- properly signed random headers -------------------------------------------------------------

ABSENT = object()
JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
JSON = st.recursive(
    JSON_SCALARS,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3)
    ),
    max_leaves=8,
)


def expected_header_error(header: dict[str, Any], signed_by: str, fuzzed: Fuzzed) -> type | None:
    """The documented header and key rules, read independently of the package."""
    alg = header.get("alg")
    if type(alg) is not str or alg not in ALGORITHMS:
        return MalformedToken
    if any(name in header for name in REFUSED_MEMBERS) or header.get("b64", True) is not True:
        return MalformedToken
    typ = header.get("typ")
    if "typ" in header and (
        type(typ) is not str or typ.lower() not in ("jwt", "at+jwt", "application/at+jwt")
    ):
        return MalformedToken
    kid = header.get("kid")
    if "kid" in header and (type(kid) is not str or not 0 < len(kid) <= 256):
        return MalformedToken
    fitting = [
        key
        for key, key_alg in fuzzed.key_algorithms.items()
        if key_alg == alg and (kid is None or kid == key)
    ]
    if not fitting:
        return UnknownKey
    if signed_by in fitting and fuzzed.key_algorithms[signed_by] == alg:
        return None
    return InvalidSignature


@st.composite
def headers(draw: st.DrawFn, fuzzed: Fuzzed, signed_by: str) -> dict[str, Any]:
    """Mostly near-valid headers for the signing key, with one or two things off."""
    kids = list(fuzzed.key_algorithms)
    weight = st.integers(0, 9)
    members: dict[str, Any] = {}
    if draw(weight) < 6:
        members["alg"] = fuzzed.key_algorithms[signed_by]
    elif draw(weight) < 5:
        members["alg"] = draw(
            st.sampled_from(["RS256", "ES256", "EdDSA", "PS256", "ES384", "Ed25519", "RS512"])
        )
    elif draw(weight) < 8:
        members["alg"] = draw(st.sampled_from(["none", "None", "HS256", "RS256 ", "", "rs256"]))
    elif draw(st.booleans()):
        members["alg"] = draw(JSON)
    category = draw(weight)
    if category < 4:
        members["kid"] = signed_by
    elif category < 6:
        members["kid"] = draw(st.sampled_from(kids))
    elif category < 8:
        members["kid"] = draw(st.one_of(st.text(max_size=8), JSON))
    category = draw(weight)
    if category < 7:
        members["typ"] = draw(st.sampled_from(["JWT", "jwt", "at+jwt", "application/at+jwt"]))
    elif category < 9:
        members["typ"] = draw(st.one_of(st.sampled_from(["JOSE", "Bearer", ""]), JSON))
    if draw(weight) < 3:
        members.update(
            draw(
                st.dictionaries(
                    st.sampled_from([*REFUSED_MEMBERS, "b64", "x5t", "x5t#S256", "exp", "note"]),
                    st.one_of(st.just(True), JSON),
                    min_size=1,
                    max_size=2,
                )
            )
        )
    order = draw(st.permutations(list(members)))
    return {name: members[name] for name in order}


@fuzz_settings(800)
@given(st.data(), DRIVERS)
def test_properly_signed_random_headers_follow_the_rules(
    fuzzed: Fuzzed, data: st.DataObject, drivers: tuple[bool, bool]
) -> None:
    signed_by = data.draw(st.sampled_from(list(fuzzed.key_algorithms)))
    header = data.draw(headers(fuzzed, signed_by))
    token = fuzzed.realm.mint(CLIENT, kid=signed_by, raw_header=json.dumps(header).encode())
    expected = expected_header_error(header, signed_by, fuzzed)
    event(f"expected {getattr(expected, '__name__', 'accepted')}")
    if expected is None:
        assert fuzzed.validate(token, *drivers).client_id == CLIENT
    else:
        assert type(refused(fuzzed, token, drivers)) is expected


# --- properly signed random payloads ------------------------------------------------------------


def _is_time(value: object) -> bool:
    return type(value) is int or (type(value) is float and math.isfinite(value))


def _strings(value: object) -> bool:
    return type(value) is list and all(type(item) is str for item in value)


def _roles_ok(container: object) -> bool:
    if container is None:
        return True
    if type(container) is not dict:
        return False
    roles = container.get("roles")
    return roles is None or _strings(roles)


def expected_claims_error(claims: object, issuer: str) -> type | None:
    """The documented claim rules (docs/validator.md, "The checks, in order"), read
    independently of the package, for the validator's default options."""
    if type(claims) is not dict:
        return MalformedToken
    if claims.get("iss") != issuer:
        return InvalidIssuer
    exp, nbf, iat = claims.get("exp"), claims.get("nbf", 0), claims.get("iat", 0)
    if not _is_time(exp) or not (_is_time(nbf) and _is_time(iat)):
        return InvalidClaim
    if exp + LEEWAY <= NOW:
        return ExpiredToken
    if nbf > NOW + LEEWAY or iat > NOW + LEEWAY:
        return TokenNotYetValid
    aud = claims.get("aud")
    if aud is None or (type(aud) is str and aud != AUDIENCE):
        return InvalidAudience
    if type(aud) is not str:
        if not _strings(aud):
            return InvalidClaim
        if AUDIENCE not in aud:
            return InvalidAudience
    if claims.get("typ") != "Bearer":
        return InvalidTokenType
    named = [claims.get(name) for name in ("azp", "client_id", "clientId")]
    present = [value for value in named if value is not None]
    if any(type(value) is not str or not value for value in present) or len(set(present)) != 1:
        return InvalidClaim
    client_id = present[0]
    username = claims.get("preferred_username")
    azp = claims.get("azp")
    service_account = (
        type(username) is str and username.lower() == f"service-account-{client_id}".lower()
    ) or (azp is not None and azp in (claims.get("client_id"), claims.get("clientId")))
    if not service_account:
        return NotServiceAccount
    if claims.get("sub") is not None and type(claims.get("sub")) is not str:
        return InvalidClaim
    resource_access = claims.get("resource_access")
    if not _roles_ok(claims.get("realm_access")) or not (
        resource_access is None
        or (type(resource_access) is dict and all(map(_roles_ok, resource_access.values())))
    ):
        return InvalidClaim
    scope = claims.get("scope")
    if scope is not None and type(scope) is not str:
        return InvalidClaim
    return None


NOW_INT = int(NOW)
TIMES = st.one_of(
    st.integers(NOW_INT - 400, NOW_INT + 400),
    st.floats(NOW - 400, NOW + 400),
    st.sampled_from([0, -1, 2**53, 1e300, True, "1750000000"]),
)
CLIENT_NAMES = st.sampled_from([CLIENT, CLIENT.upper(), "billing", "", None])
ROLES = st.lists(st.sampled_from(["send", "admin", 1, None]), max_size=3) | JSON
CLAIM_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "iss": st.sampled_from(["ISSUER", "ISSUER/", "", None]) | JSON,
    "exp": TIMES,
    "nbf": TIMES,
    "iat": TIMES,
    "aud": st.sampled_from([AUDIENCE, [AUDIENCE], ["account", AUDIENCE], "account", [], None])
    | st.lists(st.sampled_from([AUDIENCE, "account", 1, None]), max_size=3)
    | JSON,
    "typ": st.sampled_from(["Bearer", "ID", "bearer", None]) | JSON,
    "azp": CLIENT_NAMES | JSON,
    "client_id": CLIENT_NAMES | JSON,
    "clientId": CLIENT_NAMES | JSON,
    "preferred_username": st.sampled_from(
        [f"service-account-{CLIENT}", f"SERVICE-ACCOUNT-{CLIENT.upper()}", "alice", None]
    )
    | JSON,
    "sub": st.text(max_size=8) | JSON,
    "realm_access": st.fixed_dictionaries({"roles": ROLES}) | JSON,
    "resource_access": st.dictionaries(
        st.sampled_from([AUDIENCE, "account"]), st.fixed_dictionaries({"roles": ROLES}) | JSON
    )
    | JSON,
    "scope": st.sampled_from(["profile email", "", None]) | JSON,
}


@fuzz_settings(1500)
@given(
    st.dictionaries(st.sampled_from(sorted(CLAIM_VALUES)), st.just(None), max_size=5).flatmap(
        lambda chosen: st.fixed_dictionaries(
            {name: st.one_of(st.just(ABSENT), CLAIM_VALUES[name]) for name in chosen}
        )
    ),
    st.dictionaries(st.text(max_size=6), JSON, max_size=2),
    st.sampled_from([None, None, None, None, "first", "last"]),
    # Compact, as Keycloak writes it (the parser's shortcut), or not.
    st.sampled_from([(",", ":"), (", ", ": ")]),
    DRIVERS,
)
def test_properly_signed_random_claims_get_the_documented_verdict(
    fuzzed: Fuzzed,
    overrides: dict[str, Any],
    extra: dict[str, Any],
    duplicate: str | None,
    separators: tuple[str, str],
    drivers: tuple[bool, bool],
) -> None:
    claims = fuzzed.realm.token_claims(CLIENT)
    for name, value in overrides.items():
        if value is ABSENT:
            claims.pop(name, None)
        else:
            claims[name] = (
                fuzzed.realm.issuer + value[6:] if value in ("ISSUER", "ISSUER/") else value
            )
    claims.update({name: value for name, value in extra.items() if name not in CLAIM_VALUES})
    comma, colon = separators
    members = [
        json.dumps(name, ensure_ascii=False)
        + colon
        + json.dumps(value, ensure_ascii=False, separators=separators)
        for name, value in claims.items()
    ]
    if duplicate and members:
        members.insert(0 if duplicate == "first" else len(members), members[-1])
    raw_payload = ("{" + comma.join(members) + "}").encode()
    token = fuzzed.realm.mint(CLIENT, raw_payload=raw_payload)
    expected = (
        MalformedToken
        if duplicate and members
        else expected_claims_error(claims, fuzzed.realm.issuer)
    )
    event(f"expected {getattr(expected, '__name__', 'accepted')}")
    if expected is None:
        principal = fuzzed.validate(token, *drivers)
        assert principal.client_id in (
            claims.get("azp"),
            claims.get("client_id"),
            claims.get("clientId"),
        )
        assert principal.expires_at == claims["exp"]
    else:
        assert type(refused(fuzzed, token, drivers)) is expected, claims


@fuzz_settings(500)
@given(JSON, DRIVERS)
def test_properly_signed_payloads_that_are_any_json_raise_only_auth_errors(
    fuzzed: Fuzzed, value: Any, drivers: tuple[bool, bool]
) -> None:
    token = fuzzed.realm.mint(CLIENT, raw_payload=json.dumps(value).encode())
    expected = expected_claims_error(value, fuzzed.realm.issuer)
    assert expected is not None  # random JSON never names the issuer
    assert type(refused(fuzzed, token, drivers)) is expected
