"""The native payload reader (native/src/lib.rs) accepts only payloads the pure path accepts, and
reads them as the pure path does: the same members, of the same types, and the same roles and
scopes. Whatever it declines, the pure path reads. In the pure build (no reader) the tests that
need it skip; the compiled CI run has it, and the whole suite then goes through it."""

from __future__ import annotations

import base64
import functools
import json
from collections.abc import Callable
from types import MappingProxyType
from typing import Any

import jiter
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from keycloak_m2m import InvalidClaim, MalformedToken, _claims
from keycloak_m2m._binding import bound_thumbprint
from keycloak_m2m._claims import (
    PROFILES,
    ClaimPolicy,
    PrincipalParts,
    VerifiedClaims,
    check_claims,
    dpop_thumbprint,
    principal_parts,
)
from keycloak_m2m._jose import refuse_non_finite
from keycloak_m2m.testing import LocalRealm

from .test_json import DOCUMENTS, NUMBER_TEXTS

# The members the reader hands over; the roles and scopes it hands over as PrincipalParts.
NATIVE_MEMBERS = frozenset(
    {"iss", "typ", "azp", "client_id", "clientId", "sub", "jti", "preferred_username"}
    | {"exp", "nbf", "iat", "aud", "cnf"}
)
PARTS_MEMBERS = frozenset({"realm_access", "resource_access", "scope"})
STRICT = functools.partial(
    jiter.from_json, allow_inf_nan=False, catch_duplicate_keys=True, cache_mode="all"
)
Read = Callable[[bytes], "tuple[dict[str, Any], PrincipalParts] | None"]
needs_reader = pytest.mark.skipif(
    _claims.read_native_payload is None, reason="this build has no native payload reader"
)


def b64(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def pure_reading(payload: bytes) -> tuple[dict[str, Any], PrincipalParts] | None:
    """What the pure path takes from ``payload``: None where it refuses it."""
    try:
        value = STRICT(payload)
    except ValueError:
        return None
    if type(value) is not dict:
        return None
    try:
        refuse_non_finite(value)
        parts = principal_parts(value)
    except (MalformedToken, InvalidClaim):
        return None
    return {name: value[name] for name in NATIVE_MEMBERS & value.keys()}, parts


def typed(value: Any) -> Any:
    """``value`` with every type spelled out: 1, 1.0 and True differ, and so do a list and a
    tuple, a dict and a read-only mapping."""
    if isinstance(value, dict | MappingProxyType):
        return (type(value).__name__, sorted((name, typed(item)) for name, item in value.items()))
    if isinstance(value, list | tuple | frozenset):
        items = [typed(item) for item in value]
        return (type(value).__name__, sorted(items) if isinstance(value, frozenset) else items)
    return (type(value).__name__, value)


def reader() -> Read:
    read = _claims.read_native_payload
    assert read is not None
    return read


def check_against_pure(payload: bytes) -> bool:
    """Whether the reader took ``payload``; if it did, it read what the pure path reads."""
    native = reader()(b64(payload))
    if native is None:
        return False
    pure = pure_reading(payload)
    assert pure is not None, f"read natively, refused by the pure path: {payload!r}"
    assert typed(native[0]) == typed(pure[0])
    assert typed(native[1]) == typed(pure[1])
    return True


STRINGS = st.one_of(
    st.sampled_from(["svc", "https://kc.example/realms/shop", "service-account-svc", ""]),
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0x17F), max_size=6),
    st.text(max_size=6),  # control characters and quotes too, which JSON escapes
)
ROLE_LISTS = st.lists(STRINGS, max_size=3)
ACCESS = st.one_of(
    st.fixed_dictionaries({"roles": ROLE_LISTS}),
    st.fixed_dictionaries({"roles": ROLE_LISTS, "other": st.integers()}),
    st.just({}),
    st.sampled_from([{"roles": None}, {"roles": "admin"}, {"roles": [1]}, None, [], "x"]),
)
SCOPES = st.one_of(
    st.lists(st.sampled_from(["email", "profile", "a", "é", "\u00a0", "\u2003", "\t", "  "])).map(
        "".join
    ),
    STRINGS,
)
CLAIM_VALUES: dict[str, st.SearchStrategy[Any]] = {
    **dict.fromkeys(NATIVE_MEMBERS - {"exp", "nbf", "iat", "aud", "cnf"}, STRINGS),
    **{name: st.integers() for name in ("exp", "nbf", "iat")},
    "aud": st.one_of(STRINGS, ROLE_LISTS),
    "cnf": st.dictionaries(st.sampled_from(["jkt", "x5t#S256", "other"]), STRINGS, max_size=2),
    "realm_access": ACCESS,
    "resource_access": st.one_of(
        st.dictionaries(st.sampled_from(["shop", "billing", "é"]), ACCESS, max_size=3),
        st.sampled_from([None, [], "shop"]),
    ),
    "scope": SCOPES,
}
# The wrong types and the numbers tokens should never hold, for any member.
ODD_VALUES = st.one_of(
    st.sampled_from([None, True, False, 1.5, -0.0, [], {}]),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
)


@st.composite
def members(draw: st.DrawFn) -> tuple[str, str]:
    """One member's text: a claim the rules read, well-typed or not, or any other member."""
    name = draw(st.sampled_from([*sorted(CLAIM_VALUES), "email", "x", "a"]))
    kind = draw(st.integers(0, 9))  # mostly well-typed, so that most payloads are read
    if kind < 7 and name in CLAIM_VALUES:
        value = draw(CLAIM_VALUES[name])
    elif kind < 8:
        value = draw(ODD_VALUES)
    else:
        return json.dumps(name), draw(st.one_of(DOCUMENTS.map(bytes.decode), NUMBER_TEXTS))
    return json.dumps(name), json.dumps(value, ensure_ascii=kind == 0)


@st.composite
def payloads(draw: st.DrawFn) -> bytes:
    """Payload texts, mostly token-shaped: a few members (repeated ones too), written compactly
    or with whitespace, with or without escapes."""
    unique_names = draw(st.integers(0, 3)) > 0  # a repeated member is refused anyway
    listed = draw(
        st.lists(
            members(), max_size=8, unique_by=(lambda member: member[0]) if unique_names else None
        )
    )
    comma, colon = draw(st.sampled_from([(",", ":"), (", ", ": "), ("\n,", " :\t")]))
    text = "{" + comma.join(name + colon + value for name, value in listed) + "}"
    return draw(st.sampled_from(["", " ", "\r\n"])).join(["", text, ""]).encode()


@needs_reader
@settings(max_examples=3000)
@given(payloads())
def test_the_reader_reads_what_the_pure_path_reads(payload: bytes) -> None:
    event("read natively" if check_against_pure(payload) else "declined")


@needs_reader
@settings(max_examples=1000)
@given(DOCUMENTS)
def test_the_reader_takes_no_document_the_strict_parse_refuses(document: bytes) -> None:
    event("read natively" if check_against_pure(document) else "declined")


@needs_reader
@settings(max_examples=500)
@given(st.binary(max_size=40))
def test_the_reader_takes_no_segment_the_pure_path_refuses(segment: bytes) -> None:
    """Any bytes as a segment: what is not canonical base64url, or not a JSON object, it
    declines."""
    native = reader()(segment)
    if native is not None:
        padded = segment + b"=" * (-len(segment) % 4)
        assert base64.urlsafe_b64encode(base64.urlsafe_b64decode(padded)).rstrip(b"=") == segment
        assert check_against_pure(base64.urlsafe_b64decode(padded))


def test_the_pure_reading_refuses_what_it_must() -> None:
    """The reference the tests above hold the reader to refuses what the pure path does."""
    for refused in (b'{"a":1,"a":2}', b'{"x":1e400}', b"[]", b'{"scope":1}', b"{"):
        assert pure_reading(refused) is None


@needs_reader
@pytest.mark.parametrize(
    "payload",
    [
        b'{"a":1,"a":2}',
        b'{"x":{"b":1,"b":2}}',
        b'{"x":[{"c":[],"c":{}}]}',
        b'{"x":1e400}',
        b'{"x":-1e309}',
        b'{"x":NaN}',
        b'{"x":Infinity}',
        b'{"x":01}',
        b'{"x":1.}',
        b'{"x":"\\ud800"}',
        b'{"x":"a\x01"}',
        b'{"exp":1.5}',
        b'{"exp":12345678901234567890}',
        b'{"iss":null}',
        b'{"scope":"a\\u00a0b"}',
        b'{"realm_access":{"roles":["a","a"],"roles":[]}}',
        b'{"x":1} x',
        b'{"x":1}{}',
        b"[" * 40 + b"]" * 40,
        b'{"x":' + b"[" * 40 + b"]" * 40 + b"}",
        b"\xef\xbb\xbf{}",
        b'{"x":"\xff"}',
    ],
)
def test_the_reader_declines_what_the_pure_path_must_judge(payload: bytes) -> None:
    assert reader()(b64(payload)) is None


JKT = "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"
WIDE = {
    "aud": ["api", "other"],
    "scope": "email profile",
    "realm_access": {"roles": ["offline_access", "uma_authorization", "admin"]},
    "resource_access": {"api": {"roles": ["read"]}, "billing": {"roles": ["pay", "refund"]}},
}


def keycloak_payloads() -> list[bytes]:
    """Payloads as LocalRealm (Keycloak's shapes) issues them: plain, wide, DPoP-bound."""
    with LocalRealm("shop") as realm:
        tokens = [realm.mint(), realm.mint(claims=WIDE), realm.mint(dpop_jkt=JKT, claims=WIDE)]
    return [base64.urlsafe_b64decode(token.split(".")[1] + "==") for token in tokens]


@needs_reader
def test_the_reader_takes_keycloak_tokens() -> None:
    """What the reader is for: the tokens Keycloak issues, which it reads in full."""
    for payload in keycloak_payloads():
        assert check_against_pure(payload), payload


@needs_reader
def test_the_reader_shares_what_tokens_repeat_and_bounds_its_tables() -> None:
    """One object per repeated string, set and mapping, as the pure path's shared tables; and a
    flood of distinct values empties the table instead of growing it."""
    read = reader()
    payload = b64(b'{"azp":"svc","realm_access":{"roles":["a"]},"resource_access":{"c":{}}}')
    first, second = read(payload), read(payload)
    assert first is not None
    assert second is not None
    assert first[0]["azp"] is second[0]["azp"]
    assert all(made is again for made, again in zip(first[1], second[1], strict=True))
    for index in range(2000):
        flood = read(b64(b'{"azp":"c%d","realm_access":{"roles":["r%d"]}}' % (index, index)))
        assert flood is not None
    after = read(payload)
    assert after is not None
    assert after[0]["azp"] is not first[0]["azp"]
    assert after[1][0] is not first[1][0]
    assert typed(after) == typed(first)


class Recorder(dict[str, Any]):
    """The claims, recording every member name read from them."""

    def __init__(self, claims: dict[str, Any]) -> None:
        super().__init__(claims)
        self.read: set[str] = set()

    def get(self, name: str, default: Any = None) -> Any:  # type: ignore[override]
        self.read.add(name)
        return super().get(name, default)

    def __getitem__(self, name: str) -> Any:
        self.read.add(name)
        return super().__getitem__(name)

    def __contains__(self, name: object) -> bool:
        self.read.add(str(name))
        return super().__contains__(name)


@pytest.mark.skipif(
    not str(_claims.__file__).endswith(".py"), reason="records reads through interpreted code"
)
@pytest.mark.parametrize("profile", PROFILES)
def test_the_reader_hands_over_every_member_the_rules_read(profile: Any) -> None:
    """A rule that read a member the reader does not hand over would see it missing."""
    read: set[str] = set()
    for payload in keycloak_payloads():
        claims = json.loads(payload)
        recorder = Recorder(claims)
        policy = ClaimPolicy(
            claims["iss"], frozenset({"account", "api"}), 0.0, profile, None, False, True
        )
        check_claims(recorder, policy, claims["iat"], VerifiedClaims(claims), False)
        dpop_thumbprint(recorder)
        bound_thumbprint(recorder)
        read |= recorder.read
    assert {"iss", "exp", "aud", "cnf", "scope"} <= read
    assert read <= NATIVE_MEMBERS | PARTS_MEMBERS, read - NATIVE_MEMBERS - PARTS_MEMBERS


@needs_reader
def test_a_call_made_during_a_call_declines() -> None:
    """Python code that runs during a read (here the read-only callable; in a server also a
    finalizer the garbage collector runs, after which another thread may get the GIL) can call
    the reader again: that call declines, and the first one finishes."""
    from keycloak_m2m._native_payload import PayloadReader

    segment = b64(b'{"azp":"svc","resource_access":{"c":{"roles":["r"]}}}')
    readers: list[PayloadReader] = []
    during: list[object] = []

    def read_only(mapping: dict[str, frozenset[str]]) -> MappingProxyType[str, frozenset[str]]:
        if readers:
            during.append(readers[0].read(segment))
        return MappingProxyType(mapping)

    readers.append(PayloadReader(read_only))
    first = readers[0].read(segment)
    assert during == [None]
    assert first is not None
    assert first[1][1] == {"c": frozenset({"r"})}
    assert readers[0].read(segment) == first
