"""The error tree: statuses, RFC 6750 codes and challenges, and descriptions that leak nothing."""

from __future__ import annotations

import pytest

from keycloak_m2m import (
    AuthError,
    ClientNotAllowed,
    ExpiredToken,
    InsufficientScope,
    InvalidAudience,
    InvalidClaim,
    InvalidIssuer,
    InvalidRequest,
    InvalidSignature,
    InvalidToken,
    InvalidTokenType,
    KeysUnavailable,
    MalformedToken,
    MissingToken,
    NotServiceAccount,
    TokenNotYetValid,
    TokenValidator,
    UnknownKey,
)
from keycloak_m2m.testing import LocalRealm

from .support import AUDIENCE, CLIENT, FakeClock

INVALID_TOKEN_KINDS = [
    MalformedToken,
    InvalidClaim,
    ExpiredToken,
    TokenNotYetValid,
    InvalidSignature,
    UnknownKey,
    InvalidIssuer,
    InvalidAudience,
    InvalidTokenType,
    ClientNotAllowed,
    NotServiceAccount,
]


@pytest.mark.parametrize("kind", INVALID_TOKEN_KINDS)
def test_invalid_token_kinds(kind: type[InvalidToken]) -> None:
    error = kind()
    assert isinstance(error, InvalidToken)
    assert isinstance(error, AuthError)
    assert (error.status_code, error.error) == (401, "invalid_token")
    assert error.www_authenticate("api") == (
        f'Bearer realm="api", error="invalid_token", error_description="{error.description}"'
    )
    assert error.response_body() == {
        "error": "invalid_token",
        "error_description": error.description,
    }


def test_missing_token_is_a_bare_challenge() -> None:
    error = MissingToken()
    assert error.status_code == 401
    assert error.error is None
    assert error.www_authenticate("api") == 'Bearer realm="api"'


def test_invalid_request() -> None:
    error = InvalidRequest()
    assert (error.status_code, error.error) == (400, "invalid_request")


def test_insufficient_scope_names_what_is_missing() -> None:
    error = InsufficientScope(
        missing_roles=["admin"],
        missing_client_roles=[("billing", "pay")],
        missing_scopes=["a", "b"],
    )
    assert (error.status_code, error.error) == (403, "insufficient_scope")
    assert error.missing_roles == ("admin",)
    assert error.missing_client_roles == (("billing", "pay"),)
    assert error.description == (
        "missing realm roles: admin; missing client roles: billing/pay; missing scopes: a, b"
    )
    assert error.www_authenticate("api").endswith(', scope="a b"')


def test_keys_unavailable_says_when_to_retry() -> None:
    error = KeysUnavailable(retry_after=12.2)
    assert error.status_code == 503
    assert error.retry_after == 13
    assert error.response_headers("api") == {
        "WWW-Authenticate": 'Bearer realm="api"',
        "Retry-After": "13",
    }
    assert KeysUnavailable(retry_after=0).retry_after == 1


def test_header_values_are_kept_within_rfc_6750_characters() -> None:
    error = InsufficientScope(missing_scopes=['we"ird\\scope', "ünï"])
    challenge = error.www_authenticate('re"alm')
    assert challenge.startswith('Bearer realm="re?alm"')
    assert 'scope="we?ird?scope ?n?"' in challenge
    assert challenge.isascii()


def test_descriptions_never_echo_claim_values(realm: LocalRealm, clock: FakeClock) -> None:
    validator = TokenValidator(realm.issuer, AUDIENCE, clock=clock)
    marker = "LEAK-MARKER"
    tokens = [
        realm.mint(CLIENT, claims={"iss": marker}),
        realm.mint(CLIENT, claims={"aud": marker}),
        realm.mint(CLIENT, claims={"typ": marker}),
        realm.mint(CLIENT, claims={"azp": marker}),
        realm.mint(CLIENT, claims={"exp": marker}),
        realm.mint(CLIENT, header={"kid": marker}),
        realm.mint(CLIENT, header={"alg": marker}),
    ]
    for token in tokens:
        with pytest.raises(InvalidToken) as caught:
            validator.validate(token)
        assert marker not in str(caught.value)
        assert marker not in caught.value.www_authenticate("api")
