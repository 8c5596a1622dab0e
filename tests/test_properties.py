"""Properties of the parser and claim checks: only the package's own errors ever escape, and no
altered token is ever accepted."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keycloak_m2m import AuthError, TokenValidator
from keycloak_m2m.testing import LocalRealm

from .support import AUDIENCE, CLIENT, START

PROPERTY_SETTINGS = settings(
    max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.fixture(scope="module")
def warm() -> Iterator[tuple[LocalRealm, TokenValidator, str]]:
    clock = lambda: START  # noqa: E731
    with LocalRealm("props", clock=clock) as realm:
        realm.add_client(CLIENT, "secret", audience=[AUDIENCE])
        validator = TokenValidator(realm.issuer, AUDIENCE, clock=clock, token_cache_size=0)
        token = realm.mint(CLIENT)
        validator.validate(token)
        yield realm, validator, token


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@PROPERTY_SETTINGS
@given(st.one_of(st.text(max_size=300), st.binary(max_size=300), st.none(), st.integers()))
def test_arbitrary_input_raises_only_auth_errors(
    warm: tuple[LocalRealm, TokenValidator, str], garbage: Any
) -> None:
    _, validator, _ = warm
    with pytest.raises(AuthError):
        validator.validate(garbage)


@PROPERTY_SETTINGS
@given(st.binary(max_size=200), st.binary(max_size=400), st.binary(max_size=300))
def test_arbitrary_segments_raise_only_auth_errors(
    warm: tuple[LocalRealm, TokenValidator, str], header: bytes, payload: bytes, signature: bytes
) -> None:
    _, validator, _ = warm
    with pytest.raises(AuthError):
        validator.validate(f"{_b64(header)}.{_b64(payload)}.{_b64(signature)}")


@PROPERTY_SETTINGS
@given(st.data())
def test_no_altered_token_is_accepted(
    warm: tuple[LocalRealm, TokenValidator, str], data: st.DataObject
) -> None:
    _, validator, token = warm
    position = data.draw(st.integers(0, len(token) - 1))
    replacement = data.draw(st.characters(codec="ascii"))
    altered = token[:position] + replacement + token[position + 1 :]
    if altered == token:
        return
    with pytest.raises(AuthError):
        validator.validate(altered)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
CLAIM_NAMES = st.sampled_from(
    [
        "iss",
        "exp",
        "nbf",
        "iat",
        "aud",
        "typ",
        "azp",
        "client_id",
        "clientId",
        "sub",
        "preferred_username",
        "realm_access",
        "resource_access",
        "scope",
        "jti",
    ]
)


@PROPERTY_SETTINGS
@given(st.dictionaries(CLAIM_NAMES, JSON_VALUES, max_size=6))
def test_signed_tokens_with_random_claims_raise_only_auth_errors(
    warm: tuple[LocalRealm, TokenValidator, str], overrides: dict[str, Any]
) -> None:
    realm, validator, _ = warm
    claims = realm.token_claims(CLIENT)
    claims.update(overrides)
    token = realm.mint(CLIENT, raw_payload=json.dumps(claims).encode())
    try:
        principal = validator.validate(token)
    except AuthError:
        return
    # Accepted: then every rule held for these claims.
    assert claims["iss"] == realm.issuer
    assert claims["typ"] == "Bearer"
    assert principal.client_id in {
        claims.get("azp"),
        claims.get("client_id"),
        claims.get("clientId"),
    }
