"""RFC 6750 section 2.1 in the request step: how the Authorization header's bytes are read.

The step reads the header as bytes and takes the usual ``Bearer <token>`` without lowering or
stripping it; every other spelling goes the general way. These tests hold the two to the same
answers: a verified token is admitted from the cache however its header is spelt, and any
other value gets the same verdict whichever way it went.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from keycloak_m2m import AuthError, Principal, TokenValidator
from keycloak_m2m._request import CheckToken, Gate, Presented
from keycloak_m2m._requirement import Requirement

from .support import AUDIENCE, CLIENT, START, FakeClock, SharedRealm

Verdict = tuple[str, str]

# What bytes.strip removes, as HTTP servers and WSGI hand it on.
WHITESPACE = st.lists(st.sampled_from([b" ", b"\t", b"\n", b"\r", b"\x0b", b"\x0c"]), max_size=3)
SPELLINGS = st.sampled_from([b"bearer", b"BEARER", b"bEaReR", b"Bearer"])


@pytest.fixture(scope="module")
def verified(module_realm: SharedRealm, module_clock: FakeClock) -> Iterator[tuple[Gate, bytes]]:
    """A request step whose validator has verified (and so caches) the token, given as bytes."""
    module_clock.now = START
    with module_realm.lent() as realm:
        validator = TokenValidator(realm.issuer, AUDIENCE, clock=module_clock)
        token = realm.mint(CLIENT, expires_in=3600)
        validator.validate(token)
        yield Gate(validator), token.encode("ascii")


def verdict(gate: Gate, *authorization: bytes) -> Verdict:
    """What the step's first move is for a GET carrying these Authorization headers."""
    request = Presented("GET", "http", "api.test", "/orders", authorization, (), b"", None)
    try:
        outcome = gate.admit(request, Requirement())
    except AuthError as refusal:
        return type(refusal).__name__, refusal.description
    if isinstance(outcome, CheckToken):
        return "validate", outcome.token
    assert isinstance(outcome, Principal)
    return "admitted", outcome.client_id


@pytest.mark.parametrize(
    ("before", "scheme", "between", "after"),
    [
        (b"", b"Bearer", b" ", b""),
        (b"", b"bearer", b" ", b""),
        (b"", b"BEARER", b"   ", b""),
        (b"", b"Bearer", b" \t", b""),
        (b" ", b"Bearer", b" ", b" "),
        (b"\x0b", b"BeArEr", b" ", b"\x0c\t"),
    ],
)
def test_a_verified_token_is_admitted_however_its_header_is_spelt(
    verified: tuple[Gate, bytes], before: bytes, scheme: bytes, between: bytes, after: bytes
) -> None:
    gate, token = verified
    header = before + scheme + between + token + after
    assert verdict(gate, header) == ("admitted", CLIENT)


def test_headers_that_carry_no_token_or_several(verified: tuple[Gate, bytes]) -> None:
    gate, token = verified
    missing = ("MissingToken", "bearer token required")
    several = ("InvalidRequest", "more than one Authorization header")
    # Only a space separates the scheme from the token (RFC 6750 section 2.1).
    assert verdict(gate, b"Bearer\t" + token) == missing
    assert verdict(gate, b"Bearer" + token) == missing
    assert verdict(gate, b"Bearers " + token) == missing
    assert verdict(gate, b"Bearer") == missing
    assert verdict(gate, b"Bearer ") == missing
    assert verdict(gate, b"  ") == missing
    assert verdict(gate, b"Basic c2hvcC1hcGk6c2VjcmV0") == missing
    assert verdict(gate, b"Bearer " + token + b", Bearer " + token) == several
    assert verdict(gate, b"Bearer " + token, b"Bearer " + token) == several


def test_a_token_the_cache_does_not_hold_goes_to_the_validator_as_text(
    verified: tuple[Gate, bytes],
) -> None:
    gate, token = verified
    assert verdict(gate, b"Bearer " + token[:-1]) == ("validate", token[:-1].decode())
    # Header bytes stand for latin-1 text (RFC 9110 section 5.5); the validator refuses it.
    assert verdict(gate, b"bearer \xe9t\xe9 ") == ("validate", "\xe9t\xe9")


@given(
    before=WHITESPACE,
    spelling=SPELLINGS,
    lead=WHITESPACE,
    with_token=st.booleans(),
    tail=st.binary(max_size=24) | WHITESPACE.map(b"".join),
    after=WHITESPACE,
)
def test_every_spelling_gets_the_answer_of_the_usual_one(
    verified: tuple[Gate, bytes],
    before: list[bytes],
    spelling: bytes,
    lead: list[bytes],
    with_token: bool,
    tail: bytes,
    after: list[bytes],
) -> None:
    gate, token = verified
    rest = b"".join(lead) + (token if with_token else b"") + tail
    usual = verdict(gate, b"Bearer " + rest)
    spelt = b"".join(before) + spelling + b" " + rest + b"".join(after)
    assert verdict(gate, spelt) == usual
