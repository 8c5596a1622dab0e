"""The verified-token cache: repeat validations skip the work, never past expiry or key removal."""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Callable

import pytest

from keycloak_m2m import ExpiredToken, InvalidSignature, TokenValidator, UnknownKey
from keycloak_m2m._token_cache import Verified, VerifiedTokens, entry_bytes
from keycloak_m2m.testing import LocalRealm

from .support import AUDIENCE, CLIENT, FakeClock, Validate, shared_realm

# The tests leave the realm as they found it (or rotate its keys, which gets the next test a
# new one): one realm for the module, see SharedRealm.
clock, realm = shared_realm()

MakeValidator = Callable[..., TokenValidator]


def test_a_repeat_validation_is_answered_from_the_cache(
    realm: LocalRealm, make_validator: MakeValidator, validate: Validate
) -> None:
    validator = make_validator()
    token = realm.mint(CLIENT)
    assert validate(validator, token) is validate(validator, token)


def test_the_cache_can_be_turned_off(
    realm: LocalRealm, make_validator: MakeValidator, validate: Validate
) -> None:
    validator = make_validator(token_cache_size=0)
    token = realm.mint(CLIENT)
    first, second = validate(validator, token), validate(validator, token)
    assert first == second
    assert first is not second


def test_a_hit_still_checks_expiry(
    realm: LocalRealm, make_validator: MakeValidator, validate: Validate, clock: FakeClock
) -> None:
    validator = make_validator()
    token = realm.mint(CLIENT, expires_in=60)
    validate(validator, token)
    clock.advance(60 + 29)  # inside the 30 s leeway
    validate(validator, token)
    clock.advance(1)
    with pytest.raises(ExpiredToken):
        validate(validator, token)


def test_the_cache_is_bounded_least_recently_used_first(
    realm: LocalRealm, make_validator: MakeValidator, validate: Validate
) -> None:
    validator = make_validator(token_cache_size=2)
    first, second, third = (realm.mint(CLIENT, claims={"jti": str(n)}) for n in range(3))
    kept = validate(validator, first)
    validate(validator, second)
    assert validate(validator, first) is kept  # first is now the most recently used
    validate(validator, third)  # evicts second
    assert validate(validator, first) is kept
    assert validate(validator, second) is not validate(validator, third)


def test_a_hit_after_the_key_ttl_refreshes_the_keys(
    realm: LocalRealm, make_validator: MakeValidator, validate: Validate, clock: FakeClock
) -> None:
    validator = make_validator()
    token = realm.mint(CLIENT, expires_in=3600)
    validate(validator, token)
    validate(validator, token)
    assert realm.request_count("certs") == 1
    clock.advance(301)
    validate(validator, token)
    assert realm.request_count("certs") == 2


def test_a_token_sharing_the_end_of_a_cached_one_is_validated_in_full(
    realm: LocalRealm, make_validator: MakeValidator, validate: Validate
) -> None:
    validator = make_validator()
    genuine = realm.mint(CLIENT)
    validate(validator, genuine)
    # Another payload under the genuine signature: the cache is keyed on the signature's end.
    other = realm.mint(CLIENT, claims={"azp": CLIENT, "scope": "admin"})
    spliced = other.rsplit(".", 1)[0] + "." + genuine.rsplit(".", 1)[1]
    with pytest.raises(InvalidSignature):
        validate(validator, spliced)
    assert validate(validator, genuine).scopes == frozenset({"profile", "email"})


def test_cached_answers_verified_tokens_only_and_never_fetches(
    realm: LocalRealm, make_validator: MakeValidator, clock: FakeClock
) -> None:
    validator = make_validator()
    token = realm.mint(CLIENT, expires_in=60)
    assert validator.cached(token) is None
    principal = validator.validate(token)
    assert validator.cached(token) is principal
    # As a request's header carries it: what the request step passes.
    assert validator.cached(token.encode("latin-1")) is principal
    # What cannot be a header's token is a miss, not an error.
    assert validator.cached(bytearray(token.encode())) is None  # type: ignore[arg-type]
    assert validator.cached(token[:-1] + "\u0100") is None
    assert validator.cached(token.encode()[:-1]) is None
    clock.advance(60 + 30)  # past expiry and leeway
    assert validator.cached(token) is None
    assert realm.request_count("certs") == 1


def test_cached_reads_the_token_in_place_from_start(
    realm: LocalRealm, make_validator: MakeValidator
) -> None:
    validator = make_validator()
    token = realm.mint(CLIENT)
    principal = validator.validate(token)
    header = b"Bearer " + token.encode("latin-1")
    # The request step's lookup: the header's value, the token after its scheme.
    assert validator.cached(header, None, False, len(b"Bearer ")) is principal
    # Anything but exactly the verified token from there is a miss.
    for start in (0, 6, 8):
        assert validator.cached(header, None, False, start) is None
    assert validator.cached(header + b"A", None, False, 7) is None
    assert validator.cached(b"Bearer A" + token.encode(), None, False, 7) is None
    assert validator.cached(b"Bearer " + token.encode()[1:], None, False, 7) is None
    # A start that cannot point into the value is a miss, not an error.
    for bad in (-1, len(header), True, "7", None):
        assert validator.cached(header, None, False, bad) is None  # type: ignore[arg-type]


def test_a_token_shorter_than_the_cache_key_is_found_in_place_too(
    realm: LocalRealm, make_validator: MakeValidator
) -> None:
    # Opaque tokens can be short: the key is then the whole token, not the header's end.
    principal = make_validator().validate(realm.mint(CLIENT))
    tokens = VerifiedTokens(max_entries=4, max_bytes=1 << 20)
    entry = Verified(b"short", principal, None, math.inf, None, True, None, True, None)
    tokens.keep(entry)
    assert tokens.get(b"short") is entry
    assert tokens.get(b"Bearer short", len(b"Bearer ")) is entry
    assert tokens.get(b"Bearer short", len(b"Bearer")) is None
    assert tokens.get(b"Bearer xshort", len(b"Bearer ")) is None


def test_cached_misses_once_the_key_set_is_due_for_a_refresh(
    realm: LocalRealm, make_validator: MakeValidator, clock: FakeClock
) -> None:
    validator = make_validator()
    token = realm.mint(CLIENT, expires_in=3600)
    principal = validator.validate(token)
    clock.advance(299)
    assert validator.cached(token) is principal
    clock.advance(2)  # the key set's 300 s TTL is over
    assert validator.cached(token) is None
    assert realm.request_count("certs") == 1


def test_an_early_refresh_that_drops_the_key_drops_its_cached_tokens(
    realm: LocalRealm, make_validator: MakeValidator, validate: Validate, clock: FakeClock
) -> None:
    validator = make_validator()
    old_token = realm.mint(CLIENT, expires_in=3600)
    validate(validator, old_token)
    realm.rotate_keys(keep_old=False)
    clock.advance(31)  # past the refetch interval, well inside the key set's TTL
    validate(validator, realm.mint(CLIENT))  # an unknown kid: the key set is fetched again
    assert realm.request_count("certs") == 2
    assert validator.cached(old_token) is None
    with pytest.raises(UnknownKey):
        validate(validator, old_token)


def test_claims_are_read_only_at_every_depth_so_no_request_changes_the_next_hit(
    realm: LocalRealm, make_validator: MakeValidator, validate: Validate
) -> None:
    validator = make_validator()
    token = realm.mint(CLIENT, claims={"custom": {"list": [1, 2.5, {"deep": ["x"]}, [True]]}})
    principal = validate(validator, token)
    claims = principal.claims
    with pytest.raises(AttributeError):
        claims["realm_access"]["roles"].append("admin")
    with pytest.raises(TypeError):
        claims["realm_access"]["roles"] = ["admin"]  # type: ignore[index]
    with pytest.raises(TypeError):
        claims["resource_access"][AUDIENCE]["roles"] += ("admin",)
    with pytest.raises(AttributeError):
        claims["custom"]["list"][2]["deep"].append("y")
    with pytest.raises(TypeError):
        claims["custom"]["list"][2]["other"] = 1
    with pytest.raises(AttributeError):
        claims["aud"].clear()
    hit = validate(validator, token)
    assert "admin" not in hit.claims["realm_access"]["roles"]
    assert hit.claims["custom"]["list"][2]["deep"] == ("x",)
    # Still the payload, value for value: arrays read as tuples, objects as read-only mappings.
    assert json.loads(json.dumps(hit.claims, default=dict)) == _payload(token)


def _payload(token: str) -> object:
    segment = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))


def test_the_cache_is_bounded_in_bytes_too(
    realm: LocalRealm, make_validator: MakeValidator, validate: Validate
) -> None:
    tokens = [realm.mint(CLIENT, claims={"jti": str(n)}) for n in range(4)]
    # Room for two entries as the cache counts them, whatever their number bound.
    size = entry_bytes(tokens[0].encode())  # the cache holds a token as its header bytes
    room = 2 * size + size // 2
    validator = make_validator(token_cache_size=100, token_cache_bytes=room)
    for token in tokens:
        validate(validator, token)
    assert [validator.cached(token) is not None for token in tokens] == [
        False,
        False,
        True,
        True,
    ]


def test_a_token_larger_than_the_byte_bound_is_validated_but_not_kept(
    realm: LocalRealm, make_validator: MakeValidator, validate: Validate
) -> None:
    token = realm.mint(CLIENT)
    validator = make_validator(token_cache_bytes=entry_bytes(token.encode()) - 1)
    first = validate(validator, token)
    assert validator.cached(token) is None
    assert validate(validator, token) is not first


@pytest.mark.parametrize("bad", [-1, 1.5, "1", None])
def test_a_bad_byte_bound_is_refused(bad: object) -> None:
    with pytest.raises(ValueError, match="token_cache_bytes must be an integer >= 0"):
        TokenValidator("https://kc/realms/a", AUDIENCE, token_cache_bytes=bad)  # type: ignore[arg-type]


def test_claims_are_read_when_first_used_and_then_kept(
    realm: LocalRealm, make_validator: MakeValidator, validate: Validate
) -> None:
    validator = make_validator()
    token = realm.mint(CLIENT, claims={"custom": {"nested": [1, 2]}})
    principal = validate(validator, token)
    assert principal.claims is principal.claims
    assert principal.claims["custom"]["nested"] == (1, 2)
    assert validate(validator, token).claims is principal.claims  # the cached principal's
