"""The hostile corpus through the core validator, on the sync and the async driver.

Every case must be refused with its exact error class and status, a well-formed RFC 6750
challenge, an answer that repeats nothing of the token, and no request to any key endpoint: the
validators were warmed up (the start-up fetch, and the one refetch an unknown kid may set off),
the clock is frozen, so unknown kids hit the rate limit, never the realm.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from keycloak_m2m import AuthError, KeysUnavailable

from ..support import CLIENT, FakeClock, Validate, validate_async, validate_sync
from .corpus import (
    CASES,
    MAX_TOKEN_SIZE,
    QUICKSTART_ISSUER,
    Case,
    HostileRealms,
    ValidatorPool,
    build_validator,
    check_challenge,
    ec_high_s_of,
    ec_token,
    header,
    leaked_fragments,
    open_realms,
    payload,
    quickstart_token,
    sized_token,
    token,
)


@pytest.fixture(scope="module")
def realms() -> Iterator[HostileRealms]:
    with open_realms(FakeClock()) as realms:
        yield realms


@pytest.fixture(scope="module")
def pool(realms: HostileRealms) -> ValidatorPool:
    return ValidatorPool(realms)


def test_the_corpus_is_large_and_covers_every_refusal() -> None:
    assert len(CASES) >= 150
    classes = {case.error.__name__ for case in CASES}
    assert classes >= {
        "MalformedToken",
        "UnknownKey",
        "InvalidSignature",
        "InvalidClaim",
        "InvalidIssuer",
        "InvalidAudience",
        "InvalidTokenType",
        "ExpiredToken",
        "TokenNotYetValid",
        "ClientNotAllowed",
        "NotServiceAccount",
        "KeysUnavailable",
    }
    assert {case.status for case in CASES} == {401, 503}


def test_the_untampered_forms_of_the_corpus_tokens_are_accepted(
    realms: HostileRealms, pool: ValidatorPool, validate: Validate
) -> None:
    """Controls: each way the corpus builds tokens gives a valid token before it is broken, so
    every refusal below is the broken part's doing."""
    validator = pool.validator()
    for make in (
        token(),
        ec_token(),
        token(kid=lambda r: r.ec384_kid),
        token(kid=lambda r: r.ed_kid),
        token(remove_header=["kid"]),
        header(b"{HEAD}"),
        payload(b"{CLAIMS}"),
        lambda r: sized_token(r, MAX_TOKEN_SIZE),
    ):
        assert validate(validator, make(realms)).client_id == CLIENT
    rfc9068 = pool.validator(options={"profile": "rfc9068"})
    assert validate(rfc9068, token(header={"typ": "at+jwt"})(realms)).client_id == CLIENT
    # The doctored key set holds main's active key among its doctored copies.
    assert validate(pool.validator("doctored"), token()(realms)).client_id == CLIENT
    # The example realm serves the real key set of Keycloak's example realm: its real tokens
    # verify under their own issuer, so the corpus cases above are refused for the right reason.
    if realms.quickstart_available:
        quickstart = pool.validator(
            "example",
            {
                "issuer": QUICKSTART_ISSUER,
                "audience": "app-authz-rest-springboot",
                "clock": lambda: 1504191636.0,
                "service_accounts_only": False,
            },
        )
        alice = validate(quickstart, quickstart_token("access_token_alice_1"))
        assert alice.claims["preferred_username"] == "alice"


def check_refusal(error: AuthError, case: Case, token: object) -> None:
    """Class, status, challenge, body and headers of one refusal; shared by both drivers."""
    assert type(error) is case.error, f"{type(error).__name__}: {error.description}"
    assert error.status_code == case.status
    challenge = error.www_authenticate("api")
    check_challenge(challenge, case.status)
    body = error.response_body()
    headers = error.response_headers("api")
    assert headers["WWW-Authenticate"] == challenge
    if case.status == 401:
        assert body["error"] == "invalid_token"
        assert set(headers) == {"WWW-Authenticate"}
    else:
        assert isinstance(error, KeysUnavailable)
        assert body["error"] == "temporarily_unavailable"
        assert headers["Retry-After"] == str(error.retry_after)
        assert 1 <= error.retry_after <= 30
    for text in (error.description, str(error), challenge, json.dumps(body), *headers.values()):
        assert not leaked_fragments(text, token, case), text


@pytest.mark.parametrize("case", [case.param() for case in CASES])
def test_hostile_token_is_refused(
    case: Case, realms: HostileRealms, pool: ValidatorPool, validate: Validate
) -> None:
    validator = pool.get(case)
    token = case.make(realms)
    before = realms.certs_counts()
    with pytest.raises(AuthError) as caught:
        validate(validator, token)
    check_refusal(caught.value, case, token)
    assert realms.certs_counts() == before


def test_ecdsa_malleability_is_a_known_limit(
    realms: HostileRealms, pool: ValidatorPool, validate: Validate
) -> None:
    """(r, s) and (r, n - s) are both valid ECDSA signatures of the same data. Keycloak (JCA) does
    not normalise s, so refusing high s would refuse half of its real ES256 tokens: the rewritten
    copy verifies and names the same caller. Recorded so that changing it is a decision."""
    original = ec_token()(realms)
    copy = ec_high_s_of(original)
    assert copy != original
    validator = pool.validator()
    assert validate(validator, copy).claims == validate(validator, original).claims


def test_a_storm_of_the_whole_corpus_costs_the_realm_little(
    realms: HostileRealms, pool: ValidatorPool
) -> None:
    """A fresh validator takes every main-realm case in turn, one per second, alternating the
    drivers: key-set requests are bounded by the refetch interval, whatever the kids."""
    storm = [case for case in CASES if case.keys == "main" and not case.options]
    validator = build_validator(realms)
    before = realms.main.request_count("certs")
    start = realms.clock.now
    try:
        for index, case in enumerate(storm):
            try:
                token = case.make(realms)
            except pytest.skip.Exception:
                continue
            driver = validate_async if index % 2 else validate_sync
            with pytest.raises(AuthError) as caught:
                driver(validator, token)
            assert type(caught.value) is case.error, case.id
            realms.clock.advance(1)
    finally:
        elapsed = realms.clock.now - start
        realms.clock.now = start
        fetches = realms.main.request_count("certs") - before
        pool.fetches["main"] += fetches
    # The start-up fetch, then at most one per refetch interval (the first at once); and
    # unknown kids did cause them.
    assert 2 <= fetches <= 2 + elapsed // 30
    assert len(storm) >= 150


def test_the_corpus_cost_the_realms_only_the_warm_up_fetches(
    realms: HostileRealms, pool: ValidatorPool
) -> None:
    counts = realms.certs_counts()
    assert counts == {name: pool.fetches[name] for name in counts}
    # The second realm, target of jku, x5u and redirects, was never asked for anything.
    assert counts["elsewhere"] == 0
