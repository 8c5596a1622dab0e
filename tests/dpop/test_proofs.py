"""RFC 9449 section 4.3 and 7 through TokenValidator.validate: every hostile proof refused with
the right error, an honest one accepted, under the sync and the async driver."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import given, settings
from hypothesis import strategies as st

from keycloak_m2m import (
    InvalidDPoPProof,
    InvalidRequest,
    InvalidToken,
    InvalidTokenType,
    Principal,
    TokenValidator,
    UseDPoPNonce,
)
from keycloak_m2m._dpop import normalized_url
from keycloak_m2m._request import CheckToken, Gate, Presented
from keycloak_m2m._requirement import Requirement
from keycloak_m2m.testing import LocalRealm

from ..support import CLIENT, REFUSED_KEYS, FakeClock, private_keys, refusal, shared_realm
from .support import URL, new_key, private_jwk, proof

# The tests leave the realm as they found it (or rotate its keys, which gets the next test a
# new one): one realm for the module, see SharedRealm.
clock, realm = shared_realm()

Check = Callable[..., Principal]


@pytest.fixture(params=["sync", "async"])
def check(request: pytest.FixtureRequest) -> Check:
    """validate(token, dpop_proof=..., method=..., url=...) through one driver."""

    def run(validator: TokenValidator, token: str, **material: Any) -> Principal:
        if request.param == "sync":
            return validator.validate(token, **material)
        return asyncio.run(validator.validate_async(token, **material))

    return run


@pytest.fixture
def key() -> Any:
    return new_key()


@pytest.fixture
def bound(realm: LocalRealm, key: Any) -> str:
    return realm.mint(CLIENT, dpop_jkt=key.thumbprint)


def material(p: str, method: str = "GET", url: str = URL) -> dict[str, Any]:
    return {"dpop_proof": p, "method": method, "url": url}


def test_honest_proof_accepted_and_token_bound_as_keycloak_binds(
    make_validator: Callable[..., TokenValidator],
    check: Check,
    bound: str,
    key: Any,
    clock: FakeClock,
) -> None:
    principal = check(make_validator(), bound, **material(proof(key, token=bound, iat=clock())))
    assert principal.client_id == CLIENT
    assert principal.claims["typ"] == "DPoP"
    assert principal.claims["cnf"] == {"jkt": key.thumbprint}


def test_other_cnf_members_are_tolerated(
    realm: LocalRealm, make_validator: Callable[..., TokenValidator], check: Check, key: Any
) -> None:
    clock = make_validator()._clock
    token = realm.mint(CLIENT, claims={"typ": "DPoP", "cnf": {"jkt": key.thumbprint, "kid": "k1"}})
    check(make_validator(), token, **material(proof(key, token=token, iat=clock())))


HOSTILE: dict[str, tuple[dict[str, Any], str]] = {
    # name: (changes to an honest proof, a word the refusal's description holds)
    "wrong htm": ({"method": "POST"}, "htm"),
    "other host": ({"url": "https://evil.example.com/notifications"}, "htu"),
    "other path": ({"url": "https://api.example.com/admin"}, "htu"),
    "other scheme": ({"url": "http://api.example.com/notifications"}, "htu"),
    "other port": ({"url": "https://api.example.com:8443/notifications"}, "htu"),
    "stale iat": ({"iat_offset": -(60 + 30 + 1)}, "too old"),
    "future iat": ({"iat_offset": 30 + 1}, "future"),
    "wrong ath": ({"claims": {"ath": "x" * 43}}, "ath"),
    "no ath": ({"remove": ["ath"]}, "ath"),
    "proof for another token": ({"token": "another.token.value"}, "ath"),
    "no jti": ({"remove": ["jti"]}, "jti"),
    "non-string jti": ({"claims": {"jti": 7}}, "jti"),
    "no iat": ({"remove": ["iat"]}, "iat"),
    "boolean iat": ({"claims": {"iat": True}}, "iat"),
    "alg none": ({"header": {"alg": "none"}, "signature": b"x"}, "algorithm"),
    "HS256": ({"alg": "HS256", "signing_key": b"k" * 32}, "algorithm"),
    "private jwk": ({"private": True}, "private"),
    "no typ": ({"remove_header": ["typ"]}, "typ"),
    "typ JWT": ({"header": {"typ": "JWT"}}, "typ"),
    "typ of an access token": ({"header": {"typ": "at+jwt"}}, "typ"),
    "no jwk": ({"remove_header": ["jwk"]}, "jwk"),
    "jwk not an object": ({"header": {"jwk": "key"}}, "jwk"),
    "crit": ({"header": {"crit": ["exp"]}}, "crit"),
    "bad signature": ({"signature": b"\x01" * 64}, "signature"),
    "alg of another key type": ({"header": {"alg": "RS256"}}, "alg"),
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_proof_refused(
    name: str,
    make_validator: Callable[..., TokenValidator],
    check: Check,
    bound: str,
    key: Any,
    clock: FakeClock,
) -> None:
    changes, word = dict(HOSTILE[name][0]), HOSTILE[name][1]
    method = changes.pop("method", "GET")
    url = changes.pop("url", URL)
    iat = clock() + changes.pop("iat_offset", 0)
    token = changes.pop("token", bound)
    if changes.pop("private", False):
        changes["header"] = {"jwk": private_jwk(key)}
    hostile = proof(key, token=token, iat=iat, method=method, url=url, **changes)
    with pytest.raises(InvalidDPoPProof) as refused:
        check(make_validator(), bound, **material(hostile))
    assert word in refused.value.description
    assert refused.value.status_code == 401
    challenge = refused.value.www_authenticate("api")
    assert challenge.startswith('DPoP realm="api", error="invalid_dpop_proof", ')
    assert 'algs="ES256 ' in challenge


def test_proof_of_another_key_refused(
    make_validator: Callable[..., TokenValidator], check: Check, bound: str, clock: FakeClock
) -> None:
    thief = new_key()
    with pytest.raises(InvalidDPoPProof, match="binding"):
        check(make_validator(), bound, **material(proof(thief, token=bound, iat=clock())))


def test_rsa_proof_key_accepted(
    realm: LocalRealm, make_validator: Callable[..., TokenValidator], check: Check
) -> None:
    from keycloak_m2m._client_dpop import DPoPKey

    rsa_key = DPoPKey(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    token = realm.mint(CLIENT, dpop_jkt=rsa_key.thumbprint)
    validator = make_validator()
    check(validator, token, **material(proof(rsa_key, token=token, iat=validator._clock())))


KEY_KINDS = private_keys()


@pytest.mark.parametrize("kind", sorted(KEY_KINDS.keys() - REFUSED_KEYS))
def test_every_kind_of_dpop_key_signs_proofs_the_validator_accepts(
    realm: LocalRealm, make_validator: Callable[..., TokenValidator], check: Check, kind: str
) -> None:
    from keycloak_m2m._client_dpop import DPoPKey

    key = DPoPKey(KEY_KINDS[kind])
    token = realm.mint(CLIENT, dpop_jkt=key.thumbprint)
    validator = make_validator()
    check(validator, token, **material(proof(key, token=token, iat=validator._clock())))


@pytest.mark.parametrize("kind", sorted(KEY_KINDS))
def test_a_dpop_key_is_checked_as_a_signed_jwt_key_is(kind: str) -> None:
    # Both sign a JWS with the caller's key: one rule (_signing) takes or refuses the same keys.
    from keycloak_m2m import ClientCredentials

    key = KEY_KINDS[kind]
    token_url = "https://sso.example.com/realms/shop/protocol/openid-connect/token"

    proofs = refusal(
        lambda: ClientCredentials(CLIENT, "s", token_url=token_url, dpop_key=key), "dpop_key"
    )
    assertions = refusal(
        lambda: ClientCredentials(
            CLIENT, private_key=key, auth_method="private_key_jwt", token_url=token_url
        ),
        "private_key",
    )

    assert proofs == assertions
    assert (proofs == "accepted") == (kind not in REFUSED_KEYS)


def test_replayed_proof_refused(
    make_validator: Callable[..., TokenValidator],
    check: Check,
    bound: str,
    key: Any,
    clock: FakeClock,
) -> None:
    validator = make_validator()
    honest = proof(key, token=bound, iat=clock())
    check(validator, bound, **material(honest))
    with pytest.raises(InvalidDPoPProof, match="replayed"):
        check(validator, bound, **material(honest))
    # A fresh proof of the same key still passes: the token's verdict is cached, not the proof's.
    check(validator, bound, **material(proof(key, token=bound, iat=clock())))


def test_every_request_checks_its_proof_though_the_token_is_cached(
    make_validator: Callable[..., TokenValidator],
    check: Check,
    bound: str,
    key: Any,
    clock: FakeClock,
) -> None:
    validator = make_validator()
    check(validator, bound, **material(proof(key, token=bound, iat=clock())))
    assert validator.cached(bound) is None  # never a cache hit without a proof
    with pytest.raises(InvalidDPoPProof, match="htm"):
        check(validator, bound, **material(proof(key, token=bound, iat=clock(), method="PUT")))


def test_query_and_fragment_of_htu_are_ignored_and_urls_normalised(
    make_validator: Callable[..., TokenValidator],
    check: Check,
    bound: str,
    key: Any,
    clock: FakeClock,
) -> None:
    validator = make_validator()
    for htu in (
        URL + "?page=2",
        URL + "#top",
        "HTTPS://API.Example.COM:443/notifications",
        "https://api.example.com/./notifications",
        "https://api.example.com/%6Eotifications",
    ):
        check(validator, bound, **material(proof(key, token=bound, iat=clock(), url=htu)))


@given(st.text(alphabet="abcXYZ/-._~%20", min_size=1, max_size=12))
@settings(max_examples=200)
def test_a_path_that_normalises_differently_never_matches(path: str) -> None:
    from keycloak_m2m._dpop import same_url

    other = "https://api.example.com/" + path
    assert same_url(other, URL) == (normalized_url(other) == normalized_url(URL))
    if same_url(other, URL):
        assert normalized_url(other).endswith("/notifications")


def test_bound_token_sent_as_bearer_refused(
    make_validator: Callable[..., TokenValidator], check: Check, bound: str
) -> None:
    with pytest.raises(InvalidToken, match="bearer") as refused:
        check(make_validator(), bound)
    assert refused.value.www_authenticate("api").startswith('Bearer realm="api", error="invalid_')


def test_bound_token_as_bearer_refused_after_its_proofed_use(
    make_validator: Callable[..., TokenValidator],
    check: Check,
    bound: str,
    key: Any,
    clock: FakeClock,
) -> None:
    validator = make_validator()
    check(validator, bound, **material(proof(key, token=bound, iat=clock())))
    with pytest.raises(InvalidToken, match="bearer"):
        check(validator, bound)


def test_unbound_token_with_a_proof_refused(
    realm: LocalRealm,
    make_validator: Callable[..., TokenValidator],
    check: Check,
    key: Any,
    clock: FakeClock,
) -> None:
    plain = realm.mint(CLIENT)
    with pytest.raises(InvalidToken, match="not DPoP-bound"):
        check(make_validator(), plain, **material(proof(key, token=plain, iat=clock())))


def test_dpop_typ_without_binding_refused(
    realm: LocalRealm, make_validator: Callable[..., TokenValidator], check: Check
) -> None:
    with pytest.raises(InvalidTokenType):
        check(make_validator(), realm.mint(CLIENT, claims={"typ": "DPoP"}))


def test_required_refuses_unbound_tokens(
    realm: LocalRealm,
    make_validator: Callable[..., TokenValidator],
    check: Check,
    bound: str,
    key: Any,
    clock: FakeClock,
) -> None:
    validator = make_validator(dpop="required")
    plain = realm.mint(CLIENT)
    for _ in range(2):  # the second time from the cache
        with pytest.raises(InvalidToken, match="required"):
            check(validator, plain)
    assert validator.cached(plain) is None
    check(validator, bound, **material(proof(key, token=bound, iat=clock())))


def test_off_refuses_bound_tokens_and_proofs(
    realm: LocalRealm,
    make_validator: Callable[..., TokenValidator],
    check: Check,
    bound: str,
    key: Any,
    clock: FakeClock,
) -> None:
    validator = make_validator(dpop="off")
    with pytest.raises(InvalidToken, match="not accepted"):
        check(validator, bound, **material(proof(key, token=bound, iat=clock())))
    with pytest.raises(InvalidToken, match="bearer"):
        check(validator, bound)
    check(validator, realm.mint(CLIENT))


def test_nonce_demanded_then_accepted_by_every_replica(
    make_validator: Callable[..., TokenValidator],
    check: Check,
    bound: str,
    key: Any,
    clock: FakeClock,
) -> None:
    secret = b"s" * 32
    first = make_validator(dpop_nonce=True, dpop_nonce_secret=secret)
    second = make_validator(dpop_nonce=True, dpop_nonce_secret=secret)
    with pytest.raises(UseDPoPNonce) as demanded:
        check(first, bound, **material(proof(key, token=bound, iat=clock())))
    nonce = demanded.value.nonce
    headers = demanded.value.response_headers("api")
    assert headers["DPoP-Nonce"] == nonce
    assert headers["WWW-Authenticate"].startswith('DPoP realm="api", error="use_dpop_nonce"')
    check(second, bound, **material(proof(key, token=bound, iat=clock(), claims={"nonce": nonce})))
    assert second.dpop_nonce() == nonce
    # Two windows later the nonce is stale: a new one is demanded.
    clock.advance(121)
    with pytest.raises(UseDPoPNonce) as again:
        check(
            first, bound, **material(proof(key, token=bound, iat=clock(), claims={"nonce": nonce}))
        )
    assert again.value.nonce != nonce


def test_nonce_of_another_secret_refused(
    make_validator: Callable[..., TokenValidator],
    check: Check,
    bound: str,
    key: Any,
    clock: FakeClock,
) -> None:
    other = make_validator(dpop_nonce=True, dpop_nonce_secret=b"o" * 32)
    nonce = other.dpop_nonce()
    mine = make_validator(dpop_nonce=True, dpop_nonce_secret=b"m" * 32)
    with pytest.raises(UseDPoPNonce):
        check(
            mine, bound, **material(proof(key, token=bound, iat=clock(), claims={"nonce": nonce}))
        )


@pytest.mark.parametrize(
    "options",
    [
        {"dpop": "sometimes"},
        {"dpop_max_age": 0},
        {"dpop_nonce_secret": b"short"},
        {"dpop_nonce_secret": b"s" * 32},  # without dpop_nonce
        {"replay_cache": object()},
    ],
)
def test_dpop_options_are_checked(
    make_validator: Callable[..., TokenValidator], options: dict[str, Any]
) -> None:
    with pytest.raises(ValueError, match=r"dpop|replay_cache"):
        make_validator(**options)


# --- the request step ---------------------------------------------------------------------


def presented(authorization: list[str], dpop: list[str], path: str = "/notifications") -> Presented:
    headers = [value.encode("latin-1") for value in authorization]
    return Presented("GET", "http", "10.0.0.7:8000", path, headers, dpop, b"", None)


def test_gate_asks_for_the_proof_check_with_the_public_url(
    make_validator: Callable[..., TokenValidator], bound: str, key: Any, clock: FakeClock
) -> None:
    validator = make_validator()
    gate = Gate(validator, public_url="https://api.example.com/")
    p = proof(key, token=bound, iat=clock())
    need = gate.admit(presented([f"DPoP {bound}"], [p]), Requirement())
    assert isinstance(need, CheckToken)
    assert (need.token, need.proof, need.method, need.url) == (bound, p, "GET", URL)
    principal = gate.run(
        presented([f"dpop  {bound}"], [proof(key, token=bound, iat=clock())]), Requirement(), bytes
    )
    assert principal is not None
    assert principal.client_id == CLIENT


def test_gate_refuses_several_or_no_dpop_headers(
    make_validator: Callable[..., TokenValidator], bound: str, key: Any, clock: FakeClock
) -> None:
    gate = Gate(make_validator())
    p = proof(key, token=bound, iat=clock())
    with pytest.raises(InvalidRequest):
        gate.admit(presented([f"DPoP {bound}"], [p, p]), Requirement())
    with pytest.raises(InvalidDPoPProof, match="required"):
        gate.admit(presented([f"DPoP {bound}"], []), Requirement())


def test_gate_with_dpop_off_does_not_read_the_dpop_scheme(
    make_validator: Callable[..., TokenValidator], bound: str
) -> None:
    from keycloak_m2m import MissingToken

    gate = Gate(make_validator(dpop="off"))
    with pytest.raises(MissingToken) as missing:
        gate.admit(presented([f"DPoP {bound}"], ["x"]), Requirement())
    assert missing.value.www_authenticate("api") == 'Bearer realm="api"'


def test_missing_token_challenges_follow_the_mode(
    make_validator: Callable[..., TokenValidator],
) -> None:
    from keycloak_m2m import MissingToken

    for mode, schemes in (("allowed", ["Bearer", "DPoP"]), ("required", ["DPoP"])):
        with pytest.raises(MissingToken) as missing:
            Gate(make_validator(dpop=mode)).admit(presented([], []), Requirement())
        challenge = missing.value.www_authenticate("api")
        assert [part.split(" ")[0] for part in challenge.split(", ") if "realm" in part] == schemes


def test_public_url_is_checked(make_validator: Callable[..., TokenValidator]) -> None:
    for bad in ("api.example.com", "ftp://x", "https://x/?q=1"):
        with pytest.raises(ValueError, match="public_url"):
            Gate(make_validator(), public_url=bad)


def test_multi_issuer_validator_checks_proofs_too(
    realm: LocalRealm,
    make_validator: Callable[..., TokenValidator],
    bound: str,
    key: Any,
    clock: FakeClock,
) -> None:
    from keycloak_m2m import MultiIssuerValidator

    multi = MultiIssuerValidator([make_validator()])
    assert multi.dpop == "allowed"
    honest = proof(key, token=bound, iat=clock())
    assert multi.validate(bound, **material(honest)).client_id == CLIENT
    with pytest.raises(InvalidDPoPProof, match="replayed"):
        asyncio.run(multi.validate_async(bound, **material(honest)))
    with pytest.raises(InvalidToken, match="bearer"):
        multi.validate(bound)
    with LocalRealm("other", clock=clock) as other:
        second = TokenValidator(other.issuer, "x", dpop="off", clock=clock)
        with pytest.raises(ValueError, match="one dpop mode"):
            MultiIssuerValidator([make_validator(), second])
