"""A corpus of hostile tokens, as a table any driver can run: the core validator, an ASGI app...

Each ``Case`` makes its token from a ``HostileRealms`` (the realm under attack and its
neighbours), names the key set the validator fetches and the validator options, and expects one
error class and one HTTP status. ``open_realms`` builds the realms, ``build_validator`` and
``ValidatorPool`` the validators, and ``leaked_fragments`` / ``check_challenge`` check an answer.

Every token carries ``MARKER`` in its header and payload (and crafted values carry it where the
value matters): no answer may ever echo it, nor any piece of the token.
"""

from __future__ import annotations

import base64
import contextlib
import json
import re
import socket
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from keycloak_m2m import (
    AuthError,
    ClientNotAllowed,
    ExpiredToken,
    InvalidAudience,
    InvalidClaim,
    InvalidIssuer,
    InvalidSignature,
    InvalidTokenType,
    KeysUnavailable,
    MalformedToken,
    NotServiceAccount,
    TokenNotYetValid,
    TokenValidator,
    UnknownKey,
)
from keycloak_m2m.testing import LocalRealm

from ..support import AUDIENCE, CLIENT, FakeClock

# Planted in every crafted token; must never come back in any answer.
MARKER = "zq7MARKERq7z"
MAX_TOKEN_SIZE = 16 * 1024
# RFC 6750 section 3: auth-param values hold %x20-21 / %x23-5B / %x5D-7E only.
CHALLENGE = re.compile(r'Bearer realm="api"(, [a-z_]+="[\x20\x21\x23-\x5b\x5d-\x7e]*")*')
# The status each class must answer with, written down independently of the classes.
EXPECTED_STATUS: Mapping[type[AuthError], int] = {KeysUnavailable: 503}

QUICKSTART_DIR = (
    Path(__file__).resolve().parents[3]
    / "shared"
    / "fixtures"
    / "keycloak-real"
    / "kc-quickstarts-springboot"
)
# The kid of the key of Keycloak's public example realm, whose private half is published.
QUICKSTART_KID = "FJ86GcF3jTbNLOco4NvZkUCIUmfYCqoqtOQeMfbhNlE"
QUICKSTART_ISSUER = "http://localhost:8180/auth/realms/spring-boot-quickstart"
_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


# --- the realms ---------------------------------------------------------------------------------


@dataclass
class HostileRealms:
    """The realm under attack and its neighbours, all on 127.0.0.1.

    * ``main`` ("shop"): RS256 active key; an older RS256, an ES256, an ES384 and an EdDSA key
      passive; the enc key. Client ``shop-api`` with audience ``notification-service``.
    * ``elsewhere``: another realm with its own keys and the same client: tokens from it, and
      the target of ``jku``/``x5u`` headers.
    * ``example``: serves the real key set of Keycloak's public example realm (kid FJ86...).
    * ``doctored``: serves main's active key plus doctored copies of main's keys.
    * ``dead_url``: a port on 127.0.0.1 bound by no listener: connections are refused.
    """

    clock: FakeClock
    main: LocalRealm
    elsewhere: LocalRealm
    example: LocalRealm
    doctored: LocalRealm
    dead_url: str
    kid: str
    old_kid: str
    ec_kid: str
    ec384_kid: str
    ed_kid: str
    enc_kid: str
    stranger_rsa: rsa.RSAPrivateKey
    stranger_ec: ec.EllipticCurvePrivateKey
    # A 1024-bit key posing as the example realm's (kid FJ86...).
    impostor: rsa.RSAPrivateKey
    quickstart_available: bool
    _cache: dict[str, Any] = field(default_factory=dict)

    @property
    def now(self) -> int:
        return int(self.clock.now)

    def key_source(self, name: str) -> str:
        if name == "dead":
            return self.dead_url
        realm: LocalRealm = getattr(self, name)
        return realm.jwks_url

    def certs_counts(self) -> dict[str, int]:
        return {
            name: getattr(self, name).request_count("certs")
            for name in ("main", "elsewhere", "example", "doctored")
        }

    def cached(self, name: str, make: Callable[[], Any]) -> Any:
        if name not in self._cache:
            self._cache[name] = make()
        return self._cache[name]


def _quickstart_jwks() -> bytes | None:
    path = QUICKSTART_DIR / "jwks.json"
    return path.read_bytes() if path.is_file() else None


def quickstart_token(name: str) -> str:
    path = QUICKSTART_DIR / f"{name}.jwt"
    if not path.is_file():
        pytest.skip(f"the real Keycloak corpus is not at {QUICKSTART_DIR}")
    return path.read_text().strip()


def _doctored_key_set(main: LocalRealm, ec_kid: str) -> dict[str, Any]:
    good = main.public_jwk(main.active_kid)
    ec_jwk = main.public_jwk(ec_kid)
    tiny_n = (1 << 511) | 0x1F3D5B7A9 | 1  # 512 bits: under the 1024-bit floor
    x25519 = base64.urlsafe_b64encode(b"\x09" + b"\x00" * 31).rstrip(b"=").decode()

    def copy(source: dict[str, Any], kid: object, **changes: Any) -> dict[str, Any]:
        doctored = {**source, "kid": kid, **changes}
        return {name: value for name, value in doctored.items() if value is not None}

    return {
        "keys": [
            good,
            copy(good, "alg-ps256", alg="PS256"),
            copy(good, "alg-hs256", alg="HS256"),
            copy(good, "alg-none", alg="none"),
            copy(good, "use-enc", use="enc"),
            copy(good, "ops-sign", key_ops=["sign"]),
            copy(good, "ops-string", key_ops="verify"),
            copy(good, "kty-ec", kty="EC"),
            copy(good, "kty-oct", kty="oct", k="c2VjcmV0"),
            copy(good, 7),
            copy(good, "e-one", e="AQ"),
            copy(good, "rsa-512", n=_uint(tiny_n)),
            copy(ec_jwk, "ec-alg-es384", alg="ES384"),
            copy(ec_jwk, "ec-wrong-curve", crv="P-384", alg=None),
            copy(ec_jwk, "ec-secp256k1", crv="secp256k1", alg=None),
            copy(ec_jwk, "ec-as-rsa", kty="RSA"),
            {"kty": "OKP", "crv": "X25519", "kid": "okp-x25519", "x": x25519},
        ]
    }


def _uint(value: int) -> str:
    raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@contextlib.contextmanager
def open_realms(clock: FakeClock) -> Iterator[HostileRealms]:
    """Start every realm of the corpus (about a second) and stop them afterwards."""
    with contextlib.ExitStack() as stack:
        main = stack.enter_context(LocalRealm("shop", clock=clock))
        main.add_client(
            CLIENT,
            "shop-api-secret",
            realm_roles=["notifications:send"],
            client_roles={AUDIENCE: ["send"]},
            audience=[AUDIENCE],
        )
        old_kid = main.active_kid
        ec_kid = main.rotate_keys(algorithm="ES256")
        ec384_kid = main.rotate_keys(algorithm="ES384")
        ed_kid = main.rotate_keys(algorithm="EdDSA")
        kid = main.rotate_keys(algorithm="RS256")
        elsewhere = stack.enter_context(LocalRealm("elsewhere", clock=clock))
        elsewhere.add_client(CLIENT, "elsewhere-secret", audience=[AUDIENCE])
        # The size of the published example-realm key.
        impostor = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505
        example = stack.enter_context(LocalRealm("spring-boot-quickstart", clock=clock))
        real_jwks = _quickstart_jwks()
        example.serve_keys_document(real_jwks if real_jwks is not None else {"keys": []})
        doctored = stack.enter_context(LocalRealm("doctored", clock=clock))
        doctored.serve_keys_document(_doctored_key_set(main, ec_kid))
        # Bound but never listening: every connection is refused, and no one else gets the port.
        dead = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
        dead.bind(("127.0.0.1", 0))
        dead_url = (
            f"http://127.0.0.1:{dead.getsockname()[1]}/realms/shop/protocol/openid-connect/certs"
        )
        yield HostileRealms(
            clock=clock,
            main=main,
            elsewhere=elsewhere,
            example=example,
            doctored=doctored,
            dead_url=dead_url,
            kid=kid,
            old_kid=old_kid,
            ec_kid=ec_kid,
            ec384_kid=ec384_kid,
            ed_kid=ed_kid,
            enc_kid=main.encryption_kid,
            stranger_rsa=rsa.generate_private_key(public_exponent=65537, key_size=2048),
            stranger_ec=ec.generate_private_key(ec.SECP256R1()),
            impostor=impostor,
            quickstart_available=real_jwks is not None,
        )


# --- validators -----------------------------------------------------------------------------------


def build_validator(
    realms: HostileRealms, keys: str = "main", options: Mapping[str, Any] | None = None
) -> TokenValidator:
    """A validator for the main realm's issuer whose keys come from ``keys``."""
    settings = dict(options or {})
    issuer = settings.pop("issuer", realms.main.issuer)
    audience = settings.pop("audience", AUDIENCE)
    settings.setdefault("clock", realms.clock)
    return TokenValidator(issuer, audience, jwks_url=realms.key_source(keys), **settings)


def warm_up(realms: HostileRealms, validator: TokenValidator) -> None:
    """Validations that reach key selection under any options of the corpus (small, ES256,
    typ at+jwt): the first makes the start-up fetch, the second (an unknown kid) the one refetch
    the rate limit allows, so neither is left for the cases."""
    for kid in (realms.ec_kid, "warm-up-unknown-kid"):
        header = {"alg": "ES256", "typ": "at+jwt", "kid": kid}
        raw_header = json.dumps(header).encode()
        probe = realms.main.mint(kid=realms.ec_kid, raw_header=raw_header, raw_payload=b"{}")
        with contextlib.suppress(AuthError):
            validator.validate(probe)


class ValidatorPool:
    """One warmed validator per (key source, options): the corpus runs against a server that has
    been up for a while, so every key-set request a case causes is one it should not."""

    def __init__(self, realms: HostileRealms) -> None:
        self._realms = realms
        self._validators: dict[tuple[str, str], TokenValidator] = {}
        # Key-set requests made by warming up, per realm: all the corpus may ever cost.
        self.fetches: Counter[str] = Counter()

    def get(self, case: Case) -> TokenValidator:
        return self.validator(case.keys, case.options)

    def validator(
        self, keys: str = "main", options: Mapping[str, Any] | None = None
    ) -> TokenValidator:
        options = options or {}
        key = (keys, repr(sorted(options.items())))
        validator = self._validators.get(key)
        if validator is None:
            validator = build_validator(self._realms, keys, options)
            before = self._realms.certs_counts()
            warm_up(self._realms, validator)
            after = self._realms.certs_counts()
            if keys != "dead":
                # The start-up fetch, and the unknown kid's refetch unless the start-up fetch
                # failed (without the real corpus the example realm serves an empty key set).
                empty = keys == "example" and not self._realms.quickstart_available
                assert after[keys] == before[keys] + (1 if empty else 2), (keys, before, after)
            self.fetches.update({name: after[name] - before[name] for name in after})
            self._validators[key] = validator
        return validator


# --- checking an answer ---------------------------------------------------------------------------


def leaked_fragments(text: str, token: object, case: Case) -> list[str]:
    """Pieces of the token, or values planted in it, that ``text`` repeats."""
    fragments = [MARKER, *case.planted]
    if isinstance(token, (str, bytes, bytearray)):
        whole = token if isinstance(token, str) else bytes(token).decode("latin-1")
        fragments += [whole] if len(whole) >= 8 else []
        # The segments (between dots and whitespace) of 8 characters or more; findall rather
        # than split: a megabyte of dots would be a million empty parts.
        fragments += re.findall(r"[^.\s]{8,}", whole)
    return [fragment for fragment in fragments if fragment and fragment in text]


def check_challenge(challenge: str, status: int) -> None:
    """A ``WWW-Authenticate`` value for realm "api" is well formed for ``status``."""
    assert challenge.startswith('Bearer realm="api"'), challenge
    assert CHALLENGE.fullmatch(challenge), challenge
    if status == 401:
        assert ', error="invalid_token", error_description="' in challenge, challenge
    else:
        assert challenge == 'Bearer realm="api"', challenge


# --- the cases ------------------------------------------------------------------------------------

Make = Callable[[HostileRealms], object]


@dataclass(frozen=True)
class Case:
    id: str
    make: Make
    error: type[AuthError]
    status: int
    # Whose key set the validator fetches: "main", "example", "doctored" or "dead".
    keys: str = "main"
    options: Mapping[str, Any] = field(default_factory=dict)
    planted: tuple[str, ...] = ()

    def param(self) -> Any:
        return pytest.param(self, id=self.id)


CASES: list[Case] = []


def case(
    case_id: str,
    make: Make,
    error: type[AuthError],
    *,
    keys: str = "main",
    options: Mapping[str, Any] | None = None,
    planted: tuple[str, ...] = (),
) -> None:
    CASES.append(
        Case(
            case_id,
            make,
            error,
            EXPECTED_STATUS.get(error, 401),
            keys,
            dict(options or {}),
            planted,
        )
    )


# --- token helpers --------------------------------------------------------------------------------


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def _resolve(value: Any, realms: HostileRealms) -> Any:
    return value(realms) if callable(value) else value


def mint(realms: HostileRealms, realm: LocalRealm | None = None, **options: Any) -> str:
    """A token of ``realm`` (default main) for shop-api, with MARKER planted in header and payload;
    option values may be functions of the realms."""
    options = {name: _resolve(value, realms) for name, value in options.items()}
    for name in ("header", "claims"):
        if isinstance(options.get(name), Mapping):
            options[name] = {key: _resolve(value, realms) for key, value in options[name].items()}
    if options.get("raw_header") is None:
        options["header"] = {"x-note": MARKER, **(options.get("header") or {})}
    if options.get("raw_payload") is None:
        options["claims"] = {"note": MARKER, **(options.get("claims") or {})}
    return (realm or realms.main).mint(CLIENT, **options)


def token(**options: Any) -> Make:
    return lambda realms: mint(realms, **options)


def claims(**values: Any) -> Make:
    """A main-realm token with these claims; a value may be a function of the realms."""
    return lambda realms: mint(
        realms, claims={name: _resolve(value, realms) for name, value in values.items()}
    )


def tampered(change: Callable[[str, HostileRealms], str], **options: Any) -> Make:
    return lambda realms: change(mint(realms, **options), realms)


def claims_text(realms: HostileRealms, drop: tuple[str, ...] = ()) -> bytes:
    """The planted claims of a valid token as JSON members, without the braces."""
    values = {**realms.main.token_claims(CLIENT), "note": MARKER}
    for name in drop:
        values.pop(name, None)
    return json.dumps(values, separators=(",", ":")).encode()[1:-1]


def header_text(realms: HostileRealms) -> bytes:
    return (
        '"alg":"RS256","typ":"JWT","kid":"' + realms.kid + '","x-note":"' + MARKER + '"'
    ).encode()


def payload(template: bytes, drop: tuple[str, ...] = ()) -> Make:
    """A properly signed token whose payload is ``template`` with CLAIMS filled in."""
    return lambda realms: mint(
        realms, raw_payload=template.replace(b"CLAIMS", claims_text(realms, drop))
    )


def header(template: bytes) -> Make:
    """A properly signed (RS256, active key) token whose header is ``template`` with HEAD
    (Keycloak's members and the marker) filled in."""
    return lambda realms: mint(realms, raw_header=template.replace(b"HEAD", header_text(realms)))


def with_signature(make: Make, signature: Callable[[bytes, HostileRealms], bytes]) -> Make:
    """The token of ``make`` with its signature replaced by ``signature(old, realms)``."""

    def change(realms: HostileRealms) -> str:
        head, old = str(make(realms)).rsplit(".", 1)
        return head + "." + b64(signature(unb64(old), realms))

    return change


def ec_token(**options: Any) -> Make:
    return token(kid=lambda r: r.ec_kid, **options)


def _replace_char(text: str, position: int, replacement: str) -> str:
    return text[:position] + replacement + text[position + 1 :]


def _noncanonical(segment: str) -> str:
    # Only segments of length 2 or 3 mod 4 have unused bits in their last character.
    assert len(segment) % 4 in (2, 3)
    return segment[:-1] + _ALPHABET[_ALPHABET.index(segment[-1]) | 1]


def _header_of_length_mod(realms: HostileRealms, remainder: int) -> bytes:
    """Keycloak's header JSON padded with spaces until its base64url length is remainder mod 4."""
    text = b"{" + header_text(realms) + b"}"
    while len(b64(text)) % 4 != remainder:
        text += b" "
    return text


def sized_token(realms: HostileRealms, size: int, **options: Any) -> str:
    """A token of exactly ``size`` characters: pad a header member and a claim until it fits."""
    for header_pad in range(4):
        base = mint(realms, header={"pad": "h" * header_pad}, claims={"pad": ""}, **options)
        missing = size - len(base)
        for claim_pad in range(max(0, missing * 3 // 4 - 3), missing * 3 // 4 + 4):
            made = mint(
                realms, header={"pad": "h" * header_pad}, claims={"pad": "c" * claim_pad}, **options
            )
            if len(made) == size:
                return made
    raise AssertionError(f"no token of exactly {size} characters")


def _stripped_leading_zero(realms: HostileRealms) -> str:
    """A valid RS256 token whose signature starts with a zero byte, with that byte dropped."""

    def find() -> str:
        for attempt in range(20_000):
            made = mint(realms, claims={"attempt": attempt})
            head, signature = made.rsplit(".", 1)
            raw = unb64(signature)
            if raw[0] == 0:
                return head + "." + b64(raw[1:])
        raise AssertionError("no RS256 signature with a leading zero byte")

    return str(realms.cached("stripped-zero", find))


def ec_high_s_of(token: str) -> str:
    """An ES256 token with its signature (r, s) replaced by the equally valid (r, n - s)."""
    head, signature = token.rsplit(".", 1)
    raw = unb64(signature)
    r, s = int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big")
    return head + "." + b64(r.to_bytes(32, "big") + (_P256_ORDER - s).to_bytes(32, "big"))


def _ec_der(realms: HostileRealms) -> str:
    made = mint(realms, kid=realms.ec_kid)
    head = made.rsplit(".", 1)[0]
    key = realms.main.private_key(realms.ec_kid)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    der = key.sign(head.encode(), ec.ECDSA(hashes.SHA256()))
    decode_dss_signature(der)  # a well-formed DER signature of the right data
    return head + "." + b64(der)


def _ed25519_s_plus_l(old: bytes, realms: HostileRealms) -> bytes:
    order = 2**252 + 27742317777372353535851937790883648493
    s = int.from_bytes(old[32:], "little")
    return old[:32] + (s + order).to_bytes(32, "little")


def _jwe(realms: HostileRealms) -> str:
    protected = json.dumps({"alg": "RSA-OAEP", "enc": "A256GCM", "kid": realms.enc_kid})
    parts = [protected.encode(), b"\x01" * 256, b"\x02" * 12, MARKER.encode() * 4, b"\x03" * 16]
    return ".".join(b64(part) for part in parts)


def _public_pem(realms: HostileRealms, kid: str, pem_format: Any) -> bytes:
    return (
        realms.main.private_key(kid)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, pem_format)
    )


def _public_der(realms: HostileRealms) -> bytes:
    return (
        realms.main.private_key(realms.kid)
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )


def _certificate_der(realms: HostileRealms) -> bytes:
    return base64.b64decode(realms.main.public_jwk(realms.kid)["x5c"][0])


def _spki(realms: HostileRealms) -> bytes:
    return _public_pem(realms, realms.kid, serialization.PublicFormat.SubjectPublicKeyInfo)


def _impostor_jwk(realms: HostileRealms) -> dict[str, Any]:
    numbers = realms.impostor.public_key().public_numbers()
    return {"kty": "RSA", "kid": QUICKSTART_KID, "use": "sig", "n": _uint(numbers.n), "e": "AQAB"}


def _foreign(**options: Any) -> Make:
    """A token of the 'elsewhere' realm, signed by its key."""
    return lambda realms: mint(realms, realms.elsewhere, **options)


def _on_elsewhere_with_main_claims(**options: Any) -> Make:
    """A token of the 'elsewhere' realm, signed by its key, claiming to come from main."""
    return lambda realms: mint(
        realms, realms.elsewhere, claims={"iss": realms.main.issuer}, **options
    )


def _standard_alphabet_signature(token: str, realms: HostileRealms) -> str:
    head, signature = token.rsplit(".", 1)
    standard = signature.replace("-", "+").replace("_", "/")
    return head + "." + _replace_char(standard, 5, "+")


def _standard_base64_payload(realms: HostileRealms) -> str:
    """The payload in standard base64 with its padding: a note sized so padding is needed."""
    for size in range(3):
        head, body, signature = mint(realms, claims={"note": MARKER + "x" * size}).split(".")
        if len(body) % 4:
            padded = base64.b64encode(unb64(body)).decode()
            assert padded.endswith("=")
            return ".".join([head, padded, signature])
    raise AssertionError("unreachable: one of three sizes needs padding")


def _noncanonical_header(realms: HostileRealms) -> str:
    text = _header_of_length_mod(realms, 2)
    _, body, signature = mint(realms, raw_header=text).split(".")
    return ".".join([_noncanonical(b64(text)), body, signature])


def _header_one_mod_four(realms: HostileRealms) -> str:
    head, rest = mint(realms).split(".", 1)
    return head + "A" * ((1 - len(head)) % 4) + "." + rest


def _quickstart_issuer_rewritten(realms: HostileRealms) -> str:
    head, body, signature = quickstart_token("access_token_alice_1").split(".")
    rewritten = unb64(body).replace(QUICKSTART_ISSUER.encode(), realms.main.issuer.encode())
    return ".".join([head, b64(rewritten), signature])


def _held_quickstart_keys(make: Make) -> Make:
    """For the cases whose validator holds the example realm's real key set."""

    def made(realms: HostileRealms) -> object:
        if not realms.quickstart_available:
            pytest.skip(f"the real Keycloak corpus is not at {QUICKSTART_DIR}")
        return make(realms)

    return made


def _spliced(first: Make, second: Make, take: tuple[int, int, int]) -> Make:
    """Segments taken from two tokens: ``take[i]`` is 0 (first token) or 1 (second)."""

    def made(realms: HostileRealms) -> str:
        tokens = [str(first(realms)).split("."), str(second(realms)).split(".")]
        return ".".join(tokens[source][index] for index, source in enumerate(take))

    return made


def _nested_inner(realms: HostileRealms) -> bytes:
    return mint(realms).encode()


def _issuer(change: Callable[[str], object]) -> Make:
    return claims(iss=lambda realms: change(realms.main.issuer))


# --- 1. the algorithm -------------------------------------------------------------------------

for spelling in ("none", "None", "NONE", "nOnE"):
    case(
        f"alg-{spelling}-empty-signature",
        token(header={"alg": spelling}, signature=b""),
        MalformedToken,
    )
case("alg-none-realm-signature", token(header={"alg": "none"}), MalformedToken)
case("alg-None-junk-signature", token(header={"alg": "None"}, signature=b"x"), MalformedToken)
case(
    "alg-NONE-no-kid",
    token(header={"alg": "NONE"}, remove_header=["kid"], signature=b"\0"),
    MalformedToken,
)
case(
    "alg-none-two-segments",
    tampered(lambda t, r: t.rsplit(".", 1)[0], header={"alg": "none"}),
    MalformedToken,
)
case("alg-missing", token(remove_header=["alg"]), MalformedToken)
case("alg-null", token(header={"alg": None}), MalformedToken)
case("alg-empty", token(header={"alg": ""}), MalformedToken)
case("alg-int", token(header={"alg": 256}), MalformedToken)
case("alg-list", token(header={"alg": ["RS256"]}), MalformedToken)
case("alg-object", token(header={"alg": {"name": "RS256"}}), MalformedToken)
case("alg-lowercase", token(header={"alg": "rs256"}), MalformedToken)
case("alg-trailing-space", token(header={"alg": "RS256 "}), MalformedToken)
case("alg-nul-suffix", token(header={"alg": "RS256\x00"}), MalformedToken)
case("alg-marker", token(header={"alg": "RS256" + MARKER}), MalformedToken)
case(
    "alg-RSA-OAEP-enc-key",
    token(kid=lambda r: r.enc_kid, header={"alg": "RSA-OAEP"}),
    MalformedToken,
)
case("alg-dir", token(header={"alg": "dir"}), MalformedToken)
case("alg-ES256K", token(header={"alg": "ES256K"}), MalformedToken)
# RFC 9864 names: accepted in general, but the realm's JWK declares "EdDSA" and alg must match it.
case(
    "alg-Ed25519-jwk-declares-EdDSA",
    token(kid=lambda r: r.ed_kid, header={"alg": "Ed25519"}),
    UnknownKey,
)
case(
    "alg-Ed448-naming-ed25519-kid",
    token(kid=lambda r: r.ed_kid, header={"alg": "Ed448"}),
    UnknownKey,
)
case(
    "alg-outside-configured-allowlist",
    token(),
    MalformedToken,
    options={"algorithms": ["PS256", "ES256"]},
)
# HS256 keyed with public material: the classic algorithm-confusion attack.
case(
    "hs256-secret-public-key-pem",
    token(alg="HS256", signing_key=_spki),
    MalformedToken,
)
case(
    "hs256-secret-public-key-pem-no-newline",
    token(alg="HS256", signing_key=lambda r: _spki(r).rstrip(b"\n")),
    MalformedToken,
)
case(
    "hs256-secret-pkcs1-pem",
    token(
        alg="HS256",
        signing_key=lambda r: _public_pem(r, r.kid, serialization.PublicFormat.PKCS1),
    ),
    MalformedToken,
)
case("hs256-secret-public-key-der", token(alg="HS256", signing_key=_public_der), MalformedToken)
case(
    "hs256-secret-published-jwk-json",
    token(
        alg="HS256",
        signing_key=lambda r: json.dumps(r.main.public_jwk(r.kid), separators=(",", ":")).encode(),
    ),
    MalformedToken,
)
case(
    "hs256-secret-jwk-n-e-json",
    token(
        alg="HS256",
        signing_key=lambda r: json.dumps(
            {k: r.main.public_jwk(r.kid)[k] for k in ("e", "kty", "n")}
        ).encode(),
    ),
    MalformedToken,
)
case(
    "hs256-secret-certificate-der", token(alg="HS256", signing_key=_certificate_der), MalformedToken
)
case("hs384-secret-public-key-pem", token(alg="HS384", signing_key=_spki), MalformedToken)
case("hs512-secret-public-key-pem", token(alg="HS512", signing_key=_spki), MalformedToken)
case(
    "hs256-secret-ec-public-key-pem",
    token(
        alg="HS256",
        kid=lambda r: r.ec_kid,
        signing_key=lambda r: _public_pem(
            r, r.ec_kid, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
    ),
    MalformedToken,
)
case(
    "hs256-secret-pem-no-kid",
    token(alg="HS256", signing_key=_spki, remove_header=["kid"]),
    MalformedToken,
)

# --- 2. algorithm and key type disagree ---------------------------------------------------------

case("rs256-naming-ec-kid", token(header={"kid": lambda r: r.ec_kid}), UnknownKey)
case(
    "rs256-naming-ec-kid-stranger-key",
    lambda r: mint(r, signing_key=r.stranger_rsa, header={"kid": r.ec_kid}),
    UnknownKey,
)
case("es256-naming-rsa-kid", lambda r: mint(r, kid=r.ec_kid, header={"kid": r.kid}), UnknownKey)
case("eddsa-naming-rsa-kid", lambda r: mint(r, kid=r.ed_kid, header={"kid": r.kid}), UnknownKey)
case(
    "es384-naming-es256-kid",
    lambda r: mint(r, kid=r.ec384_kid, header={"kid": r.ec_kid}),
    UnknownKey,
)
case(
    "es256-naming-es384-kid",
    lambda r: mint(r, kid=r.ec_kid, header={"kid": r.ec384_kid}),
    UnknownKey,
)
case(
    "es512-naming-es256-kid",
    lambda r: mint(r, kid=r.ec_kid, header={"alg": "ES512"}, signature=b"\1" * 132),
    UnknownKey,
)
case(
    "eddsa-naming-es256-kid", lambda r: mint(r, kid=r.ed_kid, header={"kid": r.ec_kid}), UnknownKey
)
case("rs256-naming-eddsa-kid", token(header={"kid": lambda r: r.ed_kid}), UnknownKey)
case("ps256-with-rs256-jwk", token(alg="PS256"), UnknownKey)
case("rs512-with-rs256-jwk", token(alg="RS512"), UnknownKey)
case("rs256-signed-by-enc-key", token(kid=lambda r: r.enc_kid), UnknownKey)
case("ps256-signed-by-enc-key", token(kid=lambda r: r.enc_kid, alg="PS256"), UnknownKey)
case(
    "es256-no-kid-signed-by-stranger-rsa",
    lambda r: mint(r, signing_key=r.stranger_rsa, header={"alg": "ES256"}, remove_header=["kid"]),
    InvalidSignature,
)

# --- 3. the kid ---------------------------------------------------------------------------------

for label, kid in [
    ("path-traversal", "../../../../etc/passwd"),
    ("path-traversal-encoded", "..%2f..%2f..%2fetc%2fpasswd"),
    ("path-traversal-windows", "..\\..\\windows\\win.ini"),
    ("certs-path", "/realms/shop/protocol/openid-connect/certs"),
    ("url", "http://127.0.0.1:9/keys.json"),
    ("nul-only", "\x00"),
    ("sql-or", "' OR '1'='1' --"),
    ("sql-drop", "x'; DROP TABLE keys; --"),
    ("sql-union", "1 UNION SELECT secret FROM keys"),
    ("shell", "$(curl 127.0.0.1:9)"),
    ("format-string", "%s%s%s%n"),
    ("log-injection", "kid\r\nWARNING forged log line"),
    ("cyrillic", "ключ"),
    ("emoji", "\U0001f511"),
    ("marker", "kid-" + MARKER),
    ("length-256", "k" * 255 + "\u00e9"),
]:
    case(
        f"kid-{label}",
        token(header={"kid": kid}),
        UnknownKey,
        planted=(kid,) if len(kid) > 7 else (),
    )
case("kid-nul-suffix", token(header={"kid": lambda r: r.kid + "\x00"}), UnknownKey)
case("kid-nul-prefix", token(header={"kid": lambda r: "\x00" + r.kid}), UnknownKey)
case("kid-case-changed", token(header={"kid": lambda r: r.kid.swapcase()}), UnknownKey)
case("kid-trailing-space", token(header={"kid": lambda r: r.kid + " "}), UnknownKey)
case("kid-leading-space", token(header={"kid": lambda r: " " + r.kid}), UnknownKey)
case("kid-padded", token(header={"kid": lambda r: r.kid + "="}), UnknownKey)
case("kid-of-elsewhere", token(header={"kid": lambda r: r.elsewhere.active_kid}), UnknownKey)
case("kid-of-enc-key-signed-by-active", token(header={"kid": lambda r: r.enc_kid}), UnknownKey)
case(
    "kid-of-old-key-signed-by-active", token(header={"kid": lambda r: r.old_kid}), InvalidSignature
)
case("kid-length-257", token(header={"kid": "k" * 257}), MalformedToken)
case("kid-10kb", token(header={"kid": "K" * 10_240}), MalformedToken)
case("kid-empty", token(header={"kid": ""}), MalformedToken)
case("kid-int", token(header={"kid": 0}), MalformedToken)
case("kid-float", token(header={"kid": 1.5}), MalformedToken)
case("kid-bool", token(header={"kid": True}), MalformedToken)
case("kid-list", token(header={"kid": lambda r: [r.kid]}), MalformedToken)
case("kid-object", token(header={"kid": lambda r: {"kid": r.kid}}), MalformedToken)
case("kid-null", token(header={"kid": None}), MalformedToken)
case("header-typ-null", token(header={"typ": None}), MalformedToken)
case(
    "kid-lone-surrogate-escape",
    header(b'{"alg":"RS256","typ":"JWT","kid":"\\ud800","x-note":"' + MARKER.encode() + b'"}'),
    MalformedToken,
)
case(
    "kid-surrogate-pair-escape",
    header(
        b'{"alg":"RS256","typ":"JWT","kid":"\\ud83d\\udd11","x-note":"' + MARKER.encode() + b'"}'
    ),
    UnknownKey,
)

# --- 4. header members that are refused -----------------------------------------------------------

case(
    "jku-elsewhere-signed-by-elsewhere",
    _on_elsewhere_with_main_claims(header=lambda r: {"jku": r.elsewhere.jwks_url}),
    MalformedToken,
)
case("jku-own-certs", token(header={"jku": lambda r: r.main.jwks_url}), MalformedToken)
case(
    "jku-example-realm-impostor",
    lambda r: mint(
        r, signing_key=r.impostor, header={"kid": QUICKSTART_KID, "jku": r.example.jwks_url}
    ),
    MalformedToken,
)
case(
    "x5u-elsewhere",
    _on_elsewhere_with_main_claims(header=lambda r: {"x5u": r.elsewhere.jwks_url}),
    MalformedToken,
)
case(
    "x5u-pem-url",
    token(header={"x5u": lambda r: r.elsewhere.base_url + "/cert.pem"}),
    MalformedToken,
)
case(
    "x5c-elsewhere-certificate",
    _on_elsewhere_with_main_claims(
        header=lambda r: {"x5c": r.elsewhere.public_jwk(r.elsewhere.active_kid)["x5c"]}
    ),
    MalformedToken,
)
case(
    "x5c-own-certificate",
    token(header={"x5c": lambda r: r.main.public_jwk(r.kid)["x5c"]}),
    MalformedToken,
)
case(
    "jwk-elsewhere-key",
    _on_elsewhere_with_main_claims(
        header=lambda r: {"jwk": r.elsewhere.public_jwk(r.elsewhere.active_kid)}
    ),
    MalformedToken,
)
case(
    "jwk-stranger-key-with-main-kid",
    lambda r: mint(
        r,
        signing_key=r.stranger_rsa,
        header={
            "jwk": {
                "kty": "RSA",
                "kid": r.kid,
                "n": _uint(r.stranger_rsa.public_key().public_numbers().n),
                "e": "AQAB",
            }
        },
    ),
    MalformedToken,
)
case("jwk-own-key", token(header={"jwk": lambda r: r.main.public_jwk(r.kid)}), MalformedToken)
case("crit-exp", token(header={"crit": ["exp"], "exp": 1}), MalformedToken)
case("crit-empty", token(header={"crit": []}), MalformedToken)
case("crit-null", token(header={"crit": None}), MalformedToken)
case("crit-b64", token(header={"crit": ["b64"], "b64": False}), MalformedToken)
case("crit-marker", token(header={"crit": ["x-note"]}), MalformedToken)
case("b64-false", token(header={"b64": False}), MalformedToken)
case("b64-string-false", token(header={"b64": "false"}), MalformedToken)
case("b64-zero", token(header={"b64": 0}), MalformedToken)
case("b64-null", token(header={"b64": None}), MalformedToken)
case("cty-JWT-nested", token(header={"cty": "JWT"}, raw_payload=_nested_inner), MalformedToken)
case("cty-jwt-lowercase", token(header={"cty": "jwt"}), MalformedToken)
case("cty-json", token(header={"cty": "application/json"}), MalformedToken)
case("nested-jwt-without-cty", token(raw_payload=_nested_inner), MalformedToken)
case("enc-in-jws-header", token(header={"enc": "A256GCM"}), MalformedToken)
case("zip-deflate", token(header={"zip": "DEF"}), MalformedToken)

# --- 5. structure ---------------------------------------------------------------------------------

case("jwe-five-segments", _jwe, MalformedToken)
case(
    "jwe-dir-empty-key-segment",
    lambda r: (
        b64(b'{"alg":"dir","enc":"A128GCM"}')
        + ".."
        + b64(b"iv" * 6)
        + "."
        + b64(MARKER.encode())
        + "."
        + b64(b"t" * 16)
    ),
    MalformedToken,
)
case("jws-plus-two-segments", tampered(lambda t, r: t + ".e30.e30"), MalformedToken)
case("two-segments-no-signature", tampered(lambda t, r: t.rsplit(".", 1)[0]), MalformedToken)
case("two-segments-no-header", tampered(lambda t, r: t.split(".", 1)[1]), MalformedToken)
case("four-segments-appended", tampered(lambda t, r: t + ".e30"), MalformedToken)
case("four-segments-empty-middle", tampered(lambda t, r: t.replace(".", "..", 1)), MalformedToken)
case("four-segments-trailing-dot", tampered(lambda t, r: t + "."), MalformedToken)
case("one-segment", tampered(lambda t, r: t.split(".")[0]), MalformedToken)
case("empty-string", lambda r: "", MalformedToken)
for dots in (1, 2, 3, 4):
    case(f"only-{dots}-dots", lambda r, dots=dots: "." * dots, MalformedToken)
case("empty-header", tampered(lambda t, r: "." + t.split(".", 1)[1]), MalformedToken)
case(
    "empty-payload", tampered(lambda t, r: t.split(".")[0] + ".." + t.split(".")[2]), MalformedToken
)
case("empty-signature", tampered(lambda t, r: t.rsplit(".", 1)[0] + "."), MalformedToken)
case("bearer-prefix-inside-token", tampered(lambda t, r: "Bearer " + t), MalformedToken)
case("leading-dot", tampered(lambda t, r: "." + t), MalformedToken)

# --- 6. base64url: padding, whitespace, foreign characters ---------------------------------------

case("padding-header", tampered(lambda t, r: t.replace(".", "=.", 1)), MalformedToken)
case(
    "padding-payload",
    tampered(lambda t, r: ".".join([t.split(".")[0], t.split(".")[1] + "==", t.split(".")[2]])),
    MalformedToken,
)
case("padding-signature", tampered(lambda t, r: t + "=="), MalformedToken)
case("padding-single", tampered(lambda t, r: t + "="), MalformedToken)
case(
    "standard-alphabet-signature",
    tampered(_standard_alphabet_signature),
    MalformedToken,
)
case(
    "slash-in-payload",
    tampered(lambda t, r: _replace_char(t, t.index(".") + 3, "/")),
    MalformedToken,
)
case("payload-standard-base64-padded", _standard_base64_payload, MalformedToken)
case("leading-space", tampered(lambda t, r: " " + t), MalformedToken)
case("trailing-space", tampered(lambda t, r: t + " "), MalformedToken)
case("trailing-newline", tampered(lambda t, r: t + "\n"), MalformedToken)
case("trailing-crlf", tampered(lambda t, r: t + "\r\n"), MalformedToken)
case("space-inside", tampered(lambda t, r: t[:20] + " " + t[20:]), MalformedToken)
case("newline-inside", tampered(lambda t, r: t[:20] + "\n" + t[20:]), MalformedToken)
case("tab-inside", tampered(lambda t, r: t[:20] + "\t" + t[20:]), MalformedToken)
case("space-after-dot", tampered(lambda t, r: t.replace(".", ". ", 1)), MalformedToken)
case("nul-at-end", tampered(lambda t, r: t + "\x00"), MalformedToken)
case("form-feed-inside", tampered(lambda t, r: t[:30] + "\x0c" + t[30:]), MalformedToken)
case(
    "percent-encoded-dash",
    tampered(lambda t, r: t.replace("-", "%2D") if "-" in t else "%2D" + t),
    MalformedToken,
)
case("unicode-e-acute", tampered(lambda t, r: _replace_char(t, 12, "\u00e9")), MalformedToken)
case("unicode-fullwidth-A", tampered(lambda t, r: _replace_char(t, 12, "\uff21")), MalformedToken)
case("unicode-cyrillic-A", tampered(lambda t, r: _replace_char(t, 12, "\u0410")), MalformedToken)
case("unicode-zero-width-space", tampered(lambda t, r: t[:12] + "\u200b" + t[12:]), MalformedToken)
case("unicode-nbsp", tampered(lambda t, r: t[:12] + "\u00a0" + t[12:]), MalformedToken)
case("unicode-rtl-override", tampered(lambda t, r: "\u202e" + t), MalformedToken)
case("unicode-fullwidth-dot", tampered(lambda t, r: t.replace(".", "\uff0e", 1)), MalformedToken)
case("noncanonical-header-last-char", _noncanonical_header, MalformedToken)
case("header-length-1-mod-4", _header_one_mod_four, MalformedToken)

# --- 7. UTF-8 and JSON ----------------------------------------------------------------------------

for where, make in (
    ("payload", lambda bad: payload(b'{CLAIMS,"x":"' + bad + b'"}')),
    ("header", lambda bad: header(b'{HEAD,"x":"' + bad + b'"}')),
):
    for label, bad in [
        ("ff", b"\xff"),
        ("overlong-slash", b"\xc0\xaf"),
        ("utf8-surrogate", b"\xed\xa0\x80"),
        ("beyond-10ffff", b"\xf4\x90\x80\x80"),
        ("truncated-multibyte", b"\xe2\x82"),
    ]:
        case(f"invalid-utf8-{where}-{label}", make(bad), MalformedToken)
case("latin1-payload", payload(b'{CLAIMS,"x":"caf\xe9"}'), MalformedToken)
case(
    "utf16-payload",
    lambda r: mint(r, raw_payload=(b"{" + claims_text(r) + b"}").decode().encode("utf-16-le")),
    MalformedToken,
)
case("bom-payload", payload(b"\xef\xbb\xbf{CLAIMS}"), MalformedToken)
case("bom-header", header(b"\xef\xbb\xbf{HEAD}"), MalformedToken)
case("lone-surrogate-escape-payload", payload(b'{CLAIMS,"x":"\\ud800"}'), MalformedToken)
case("reversed-surrogate-pair-payload", payload(b'{CLAIMS,"x":"\\udc00\\ud800"}'), MalformedToken)
case("raw-nul-in-string", payload(b'{CLAIMS,"x":"a\x00b"}'), MalformedToken)
case("raw-newline-in-string", payload(b'{CLAIMS,"x":"a\nb"}'), MalformedToken)
case("trailing-garbage-payload", payload(b"{CLAIMS}x"), MalformedToken)
case("two-objects-payload", payload(b"{CLAIMS}{}"), MalformedToken)
case("trailing-comma-payload", payload(b"{CLAIMS,}"), MalformedToken)
case("single-quotes-payload", payload(b"{CLAIMS,'x':1}"), MalformedToken)
case("comment-payload", payload(b"{CLAIMS/* " + MARKER.encode() + b" */}"), MalformedToken)
case("unquoted-key-payload", payload(b"{CLAIMS,x:1}"), MalformedToken)
case("infinity-payload", payload(b'{CLAIMS,"x":Infinity}'), MalformedToken)
case("minus-infinity-payload", payload(b'{CLAIMS,"x":-Infinity}'), MalformedToken)
# Numbers that parse as infinity, wherever they sit in the payload.
case("overflow-to-infinity", payload(b'{CLAIMS,"x":1e999999}'), MalformedToken)
case("overflow-to-minus-infinity", payload(b'{CLAIMS,"x":-1e999999}'), MalformedToken)
case("overflow-long-mantissa", payload(b'{CLAIMS,"x":1' + b"0" * 400 + b".5}"), MalformedToken)
case("overflow-in-nested-object", payload(b'{CLAIMS,"x":{"y":{"z":1e400}}}'), MalformedToken)
case("overflow-in-array", payload(b'{CLAIMS,"x":["a",1,[{"y":2e308}]]}'), MalformedToken)
case("overflow-in-string-array", payload(b'{CLAIMS,"x":["a","b",1e400]}'), MalformedToken)
case("leading-zero-number", payload(b'{CLAIMS,"x":01}'), MalformedToken)
case("plus-sign-number", payload(b'{CLAIMS,"x":+1}'), MalformedToken)
case("hex-number", payload(b'{CLAIMS,"x":0x10}'), MalformedToken)
case("whitespace-only-payload", lambda r: mint(r, raw_payload=b"   "), MalformedToken)
case(
    "deeply-nested-array-payload",
    payload(b'{CLAIMS,"x":' + b"[" * 3000 + b"]" * 3000 + b"}"),
    MalformedToken,
)
case(
    "deeply-nested-object-payload",
    payload(b'{CLAIMS,"x":' + b'{"a":' * 1500 + b"1" + b"}" * 1500 + b"}"),
    MalformedToken,
)
case(
    "deeply-nested-header", header(b'{HEAD,"x":' + b"[" * 1000 + b"]" * 1000 + b"}"), MalformedToken
)
case("trailing-garbage-header", header(b"{HEAD}x"), MalformedToken)
case("nan-in-header", header(b'{HEAD,"x":NaN}'), MalformedToken)
case("empty-object-payload", lambda r: mint(r, raw_payload=b"{}"), InvalidIssuer)
# duplicate members
case(
    "dup-iss-evil-last",
    payload(b'{CLAIMS,"iss":"https://evil.example/' + MARKER.encode() + b'"}'),
    MalformedToken,
)
case(
    "dup-iss-evil-first",
    payload(b'{"iss":"https://evil.example/' + MARKER.encode() + b'",CLAIMS}'),
    MalformedToken,
)
case(
    "dup-iss-same-value",
    lambda r: mint(
        r, raw_payload=b"{" + claims_text(r) + b',"iss":"' + r.main.issuer.encode() + b'"}'
    ),
    MalformedToken,
)
case(
    "dup-iss-escaped-name", payload(b'{CLAIMS,"\\u0069ss":"https://evil.example"}'), MalformedToken
)
case("dup-exp", payload(b'{CLAIMS,"exp":9999999999}'), MalformedToken)
case("dup-azp", payload(b'{CLAIMS,"azp":"billing"}'), MalformedToken)
case(
    "dup-in-realm-access",
    payload(
        b'{CLAIMS,"realm_access":{"roles":["admin"],"roles":["notifications:send"]}}',
        drop=("realm_access",),
    ),
    MalformedToken,
)
case(
    "dup-in-resource-access",
    payload(
        b'{CLAIMS,"resource_access":{"notification-service":{"roles":["admin"]},'
        b'"notification-service":{"roles":["send"]}}}',
        drop=("resource_access",),
    ),
    MalformedToken,
)
case("dup-deep-in-unknown-claim", payload(b'{CLAIMS,"x":{"a":{"b":1,"b":2}}}'), MalformedToken)
case("dup-header-alg-none-last", header(b'{HEAD,"alg":"none"}'), MalformedToken)
case("dup-header-alg-none-first", header(b'{"alg":"none",HEAD}'), MalformedToken)
case("dup-header-alg-escaped", header(b'{"\\u0061lg":"none",HEAD}'), MalformedToken)
case("dup-header-kid", header(b'{HEAD,"kid":"other"}'), MalformedToken)
case("dup-header-typ-same", header(b'{HEAD,"typ":"JWT"}'), MalformedToken)
# not objects
for label, text in [
    ("array", b'["RS256"]'),
    ("string", b'"RS256"'),
    ("number", b"42"),
    ("null", b"null"),
    ("true", b"true"),
    ("empty-array", b"[]"),
]:
    case(f"header-{label}", header(text), MalformedToken)
case("header-object-in-array", header(b"[{HEAD}]"), MalformedToken)
for label, text in [
    ("string", b'"' + MARKER.encode() + b'"'),
    ("number", b"1750000300"),
    ("null", b"null"),
    ("false", b"false"),
    ("empty-array", b"[]"),
]:
    case(f"payload-{label}", payload(text), MalformedToken)
case("payload-object-in-array", payload(b"[{CLAIMS}]"), MalformedToken)

# --- 8. times -------------------------------------------------------------------------------------

case("exp-string", claims(exp=lambda r: str(r.now + 300)), InvalidClaim)
case("exp-true", claims(exp=True), InvalidClaim)
case("exp-false", claims(exp=False), InvalidClaim)
case("exp-null", claims(exp=None), InvalidClaim)
case("exp-list", claims(exp=lambda r: [r.now + 300]), InvalidClaim)
case("exp-object", claims(exp=lambda r: {"value": r.now + 300}), InvalidClaim)
case("exp-scientific-string", claims(exp="1e10"), InvalidClaim)
case("exp-nan", payload(b'{CLAIMS,"exp":NaN}', drop=("exp",)), MalformedToken)
case("exp-1e400", payload(b'{CLAIMS,"exp":1e400}', drop=("exp",)), InvalidClaim)
case("exp-minus-1e400", payload(b'{CLAIMS,"exp":-1e400}', drop=("exp",)), InvalidClaim)
case(
    "exp-minus-huge-int",
    payload(b'{CLAIMS,"exp":-' + b"9" * 400 + b"}", drop=("exp",)),
    InvalidClaim,
)
case(
    "exp-just-past-float-range",
    payload(b'{CLAIMS,"exp":1' + b"0" * 309 + b"}", drop=("exp",)),
    InvalidClaim,
)
case("exp-negative", claims(exp=-1), ExpiredToken)
case("exp-zero", claims(exp=0), ExpiredToken)
case("exp-1e-400", payload(b'{CLAIMS,"exp":1e-400}', drop=("exp",)), ExpiredToken)
case("exp-at-leeway-boundary", claims(exp=lambda r: r.now - 30), ExpiredToken)
case("nbf-1e400", payload(b'{CLAIMS,"nbf":1e400}'), InvalidClaim)
case("iat-1e400", payload(b'{CLAIMS,"iat":1e400}', drop=("iat",)), InvalidClaim)
case("iat-minus-1e400", payload(b'{CLAIMS,"iat":-1e400}', drop=("iat",)), InvalidClaim)
case("nbf-true", claims(nbf=True), InvalidClaim)
case("nbf-null", claims(nbf=None), InvalidClaim)
case("iat-string", claims(iat=lambda r: str(r.now)), InvalidClaim)
case("nbf-ten-years-ahead", claims(nbf=lambda r: r.now + 10 * 365 * 86400), TokenNotYetValid)
case(
    "iat-400-digits",
    payload(b'{CLAIMS,"iat":' + b"9" * 400 + b"}", drop=("iat",)),
    TokenNotYetValid,
)

# --- 9. aud ---------------------------------------------------------------------------------------

case("aud-int", claims(aud=7), InvalidClaim)
case("aud-true", claims(aud=True), InvalidClaim)
case("aud-object", claims(aud={AUDIENCE: True}), InvalidClaim)
case("aud-list-with-null", claims(aud=[AUDIENCE, None]), InvalidClaim)
case("aud-list-nested", claims(aud=[[AUDIENCE]]), InvalidClaim)
case("aud-list-of-objects", claims(aud=[{"aud": AUDIENCE}]), InvalidClaim)
case("aud-empty-list", claims(aud=[]), InvalidAudience)
case("aud-empty-string", claims(aud=""), InvalidAudience)
case("aud-null", claims(aud=None), InvalidAudience)
case("aud-case-changed", claims(aud=AUDIENCE.upper()), InvalidAudience)
case("aud-trailing-space", claims(aud=AUDIENCE + " "), InvalidAudience)
case("aud-prefix-match", claims(aud=AUDIENCE[:-1]), InvalidAudience)
case("aud-comma-list-in-string", claims(aud="account," + AUDIENCE), InvalidAudience)
case("aud-marker", claims(aud=["account", MARKER]), InvalidAudience)

# --- 10. iss --------------------------------------------------------------------------------------

case("iss-prefix", _issuer(lambda i: "https://evil.example/" + i), InvalidIssuer)
case("iss-prefix-char", _issuer(lambda i: "x" + i), InvalidIssuer)
case("iss-suffix", _issuer(lambda i: i + "-evil"), InvalidIssuer)
case("iss-suffix-path", _issuer(lambda i: i + "/../shop"), InvalidIssuer)
case("iss-uppercase", _issuer(str.upper), InvalidIssuer)
case("iss-scheme-case", _issuer(lambda i: i.replace("http://", "HTTP://")), InvalidIssuer)
case("iss-realm-case", _issuer(lambda i: i.replace("/realms/shop", "/realms/Shop")), InvalidIssuer)
case("iss-trailing-slash", _issuer(lambda i: i + "/"), InvalidIssuer)
case("iss-auth-variant", _issuer(lambda i: i.replace("/realms/", "/auth/realms/")), InvalidIssuer)
case("iss-https", _issuer(lambda i: i.replace("http://", "https://")), InvalidIssuer)
case("iss-localhost", _issuer(lambda i: i.replace("127.0.0.1", "localhost")), InvalidIssuer)
case("iss-encoded-slash", _issuer(lambda i: i.replace("/realms/", "/realms%2F")), InvalidIssuer)
case("iss-query", _issuer(lambda i: i + "?x=" + MARKER), InvalidIssuer)
case("iss-nul", _issuer(lambda i: i + "\x00"), InvalidIssuer)
case("iss-trailing-space", _issuer(lambda i: i + " "), InvalidIssuer)
case("iss-cyrillic-s", _issuer(lambda i: i.replace("/shop", "/\u0455hop")), InvalidIssuer)
case("iss-other-realm", claims(iss=lambda r: r.elsewhere.issuer), InvalidIssuer)
case("iss-list", _issuer(lambda i: [i]), InvalidIssuer)
case("iss-object", _issuer(lambda i: {"iss": i}), InvalidIssuer)
case("iss-int", claims(iss=1), InvalidIssuer)
case("iss-null", claims(iss=None), InvalidIssuer)
case("iss-empty", claims(iss=""), InvalidIssuer)

# --- 11. typ --------------------------------------------------------------------------------------

for label, value in [
    ("ID", "ID"),
    ("Refresh", "Refresh"),
    ("Logout", "Logout"),
    ("Offline", "Offline"),
    ("lowercase-bearer", "bearer"),
    ("uppercase-bearer", "BEARER"),
    ("bearer-trailing-space", "Bearer "),
    ("bearer-leading-space", " Bearer"),
    ("bearer-nul", "Bearer\x00"),
    ("Serialized-ID", "Serialized-ID"),
    ("at+jwt", "at+jwt"),
    ("bearer-marker", "Bearer " + MARKER),
]:
    case(f"typ-{label}", claims(typ=value), InvalidTokenType)
case("typ-missing", token(remove=["typ"]), InvalidTokenType)
case("typ-null", claims(typ=None), InvalidTokenType)
case("typ-list", claims(typ=["Bearer"]), InvalidTokenType)
for label, value in [
    ("JWS", "JWS"),
    ("JOSE", "JOSE"),
    ("JOSE+JSON", "JOSE+JSON"),
    ("dpop+jwt", "dpop+jwt"),
    ("logout+jwt", "logout+jwt"),
    ("trailing-space", "JWT "),
    ("empty", ""),
    ("nul", "jwt\x00"),
]:
    case(f"header-typ-{label}", token(header={"typ": value}), MalformedToken)
case("header-typ-int", token(header={"typ": 1}), MalformedToken)
case("header-typ-list", token(header={"typ": ["JWT"]}), MalformedToken)
case(
    "header-typ-at-jwt-under-rfc9068-missing",
    token(remove_header=["typ"]),
    MalformedToken,
    options={"profile": "rfc9068"},
)

# --- 12. who is calling ---------------------------------------------------------------------------

case("azp-client_id-disagree", claims(client_id="billing"), InvalidClaim)
case("azp-case-differs", claims(azp=CLIENT.upper()), InvalidClaim)
case("azp-trailing-space", claims(azp=CLIENT + " "), InvalidClaim)
case("clientId-disagrees", claims(clientId="billing"), InvalidClaim)
case("azp-null-client_id-vs-clientId", claims(azp=None, clientId="billing"), InvalidClaim)
case("azp-empty", claims(azp=""), InvalidClaim)
case("azp-int", claims(azp=1), InvalidClaim)
case("client_id-list", claims(client_id=[CLIENT]), InvalidClaim)
case("clientId-object", claims(clientId={"id": CLIENT}), InvalidClaim)
case(
    "client-case-not-allowed",
    claims(azp="SHOP-API", client_id="SHOP-API"),
    ClientNotAllowed,
    options={"allowed_clients": [CLIENT]},
)
case(
    "client-zero-width-not-allowed",
    claims(azp=CLIENT + "\u200b", client_id=CLIENT + "\u200b"),
    ClientNotAllowed,
    options={"allowed_clients": [CLIENT]},
)
case(
    "user-token-alice",
    token(claims={"preferred_username": "alice"}, remove=["client_id"]),
    NotServiceAccount,
)
case(
    "user-token-named-like-another-service-account",
    token(claims={"preferred_username": "service-account-billing"}, remove=["client_id"]),
    NotServiceAccount,
)
case(
    "user-token-username-int",
    token(claims={"preferred_username": 7}, remove=["client_id"]),
    NotServiceAccount,
)
case("user-token-no-username", token(remove=["client_id", "preferred_username"]), NotServiceAccount)
case("sub-int", claims(sub=12), InvalidClaim)
case(
    "rfc9068-no-client_id",
    token(header={"typ": "at+jwt"}, remove=["client_id"]),
    InvalidClaim,
    options={"profile": "rfc9068"},
)
case(
    "rfc9068-no-iat",
    token(header={"typ": "at+jwt"}, remove=["iat"]),
    InvalidClaim,
    options={"profile": "rfc9068"},
)
case(
    "rfc9068-sub-null",
    token(header={"typ": "at+jwt"}, claims={"sub": None}),
    InvalidClaim,
    options={"profile": "rfc9068"},
)

# --- 13. roles and scopes of the wrong shape ------------------------------------------------------

for label, realm_access in [
    ("string", "admin"),
    ("int", 1),
    ("true", True),
    ("roles-int", {"roles": 1}),
    ("roles-object", {"roles": {"admin": True}}),
    ("roles-null-item", {"roles": [None]}),
    ("roles-nested-list", {"roles": [["admin"]]}),
    ("roles-object-item", {"roles": [{"name": "admin"}]}),
    ("roles-true", {"roles": True}),
    ("roles-bool-item", {"roles": ["notifications:send", False]}),
]:
    case(f"realm_access-{label}", claims(realm_access=realm_access), InvalidClaim)
for label, resource_access in [
    ("string", "notification-service"),
    ("int", 1),
    ("true", True),
    ("client-string", {AUDIENCE: "send"}),
    ("client-int", {AUDIENCE: 1}),
    ("client-roles-string", {AUDIENCE: {"roles": "send"}}),
    ("client-roles-int-item", {AUDIENCE: {"roles": [1]}}),
    ("client-roles-object", {AUDIENCE: {"roles": {"send": True}}}),
    ("client-roles-null-item", {AUDIENCE: {"roles": [None]}}),
    ("other-client-bad", {AUDIENCE: {"roles": ["send"]}, "x": {"roles": "admin"}}),
]:
    case(f"resource_access-{label}", claims(resource_access=resource_access), InvalidClaim)
for label, scope in [
    ("int", 1),
    ("object", {"profile": True}),
    ("true", True),
    ("list-of-lists", [["profile"]]),
]:
    case(f"scope-{label}", claims(scope=scope), InvalidClaim)

# --- 14. size -------------------------------------------------------------------------------------

case(
    "one-megabyte-signed",
    token(claims={"pad": MARKER * (1_000_000 // len(MARKER))}),
    MalformedToken,
)
case("one-megabyte-garbage", lambda r: "A" * 1_000_000, MalformedToken)
case("one-megabyte-of-dots", lambda r: "." * 1_000_000, MalformedToken)
case("one-byte-over-the-cap", lambda r: sized_token(r, MAX_TOKEN_SIZE + 1), MalformedToken)
case(
    "exactly-the-cap-stranger-signature",
    lambda r: sized_token(r, MAX_TOKEN_SIZE, signing_key=r.stranger_rsa),
    InvalidSignature,
)
case("over-a-small-configured-cap", token(), MalformedToken, options={"max_token_size": 600})

# --- 15. signatures -------------------------------------------------------------------------------

case("ecdsa-r-s-zero", ec_token(signature=b"\0" * 64), InvalidSignature)
case(
    "ecdsa-es384-r-s-zero", token(kid=lambda r: r.ec384_kid, signature=b"\0" * 96), InvalidSignature
)
case("ecdsa-r-s-order", ec_token(signature=_P256_ORDER.to_bytes(32, "big") * 2), InvalidSignature)
case("ecdsa-r-zero-s-one", ec_token(signature=b"\0" * 32 + b"\0" * 31 + b"\1"), InvalidSignature)
case("ecdsa-all-ff", ec_token(signature=b"\xff" * 64), InvalidSignature)
case("ecdsa-der-encoded", _ec_der, InvalidSignature)
case("ecdsa-truncated", with_signature(ec_token(), lambda s, r: s[:-1]), InvalidSignature)
case("ecdsa-half", with_signature(ec_token(), lambda s, r: s[:32]), InvalidSignature)
case("ecdsa-extra-byte", with_signature(ec_token(), lambda s, r: s + b"\0"), InvalidSignature)
case("ecdsa-doubled", with_signature(ec_token(), lambda s, r: s + s), InvalidSignature)
case(
    "ecdsa-r-s-swapped", with_signature(ec_token(), lambda s, r: s[32:] + s[:32]), InvalidSignature
)
case(
    "ecdsa-stranger-key-ec-kid",
    lambda r: mint(r, signing_key=r.stranger_ec, header={"kid": r.ec_kid}),
    InvalidSignature,
)
case("rsa-truncated-one-byte", with_signature(token(), lambda s, r: s[:-1]), InvalidSignature)
case("rsa-truncated-half", with_signature(token(), lambda s, r: s[:128]), InvalidSignature)
case("rsa-one-byte", with_signature(token(), lambda s, r: s[:1]), InvalidSignature)
case("rsa-leading-zero-added", with_signature(token(), lambda s, r: b"\0" + s), InvalidSignature)
case("rsa-leading-zero-stripped", _stripped_leading_zero, InvalidSignature)
case("rsa-all-zero", token(signature=b"\0" * 256), InvalidSignature)
case("rsa-all-ff", token(signature=b"\xff" * 256), InvalidSignature)
case("rsa-one", token(signature=b"\0" * 255 + b"\1"), InvalidSignature)
case(
    "rsa-modulus",
    lambda r: mint(r, signature=unb64(r.main.public_jwk(r.kid)["n"])),
    InvalidSignature,
)
case(
    "rsa-signature-of-ec-token",
    with_signature(token(), lambda s, r: unb64(mint(r, kid=r.ec_kid).rsplit(".", 1)[1])),
    InvalidSignature,
)
case(
    "rsa-no-kid-stranger-key",
    lambda r: mint(r, signing_key=r.stranger_rsa, remove_header=["kid"]),
    InvalidSignature,
)
case(
    "rsa-header-swapped-after-signing",
    lambda r: (
        b64(b'{"alg":"RS256","typ":"JWT","kid":"' + r.kid.encode() + b'"}')
        + "."
        + mint(r).split(".", 1)[1]
    ),
    InvalidSignature,
)
case(
    "rsa-payload-of-another-token",
    _spliced(token(), token(claims={"scope": "admin"}), (0, 1, 0)),
    InvalidSignature,
)
case("ec-header-on-rsa-token", _spliced(ec_token(), token(), (0, 1, 1)), InvalidSignature)
case(
    "eddsa-truncated",
    with_signature(token(kid=lambda r: r.ed_kid), lambda s, r: s[:-1]),
    InvalidSignature,
)
case("eddsa-zero", token(kid=lambda r: r.ed_kid, signature=b"\0" * 64), InvalidSignature)
case(
    "eddsa-s-plus-order",
    with_signature(token(kid=lambda r: r.ed_kid), _ed25519_s_plus_l),
    InvalidSignature,
)
case(
    "eddsa-stranger-key",
    lambda r: mint(r, signing_key=ed25519.Ed25519PrivateKey.generate(), header={"kid": r.ed_kid}),
    InvalidSignature,
)

# --- 16. other realms and the published example-realm key ----------------------------------------

case("other-realm-own-issuer", _foreign(), UnknownKey)
case("other-realm-main-claims", _on_elsewhere_with_main_claims(), UnknownKey)
case(
    "other-realm-claiming-main-kid",
    _on_elsewhere_with_main_claims(header=lambda r: {"kid": r.kid}),
    InvalidSignature,
)
case("other-realm-no-kid", _on_elsewhere_with_main_claims(remove_header=["kid"]), InvalidSignature)
case("quickstart-real-access-token", lambda r: quickstart_token("access_token_alice_1"), UnknownKey)
case("quickstart-real-refresh-token", lambda r: quickstart_token("refresh_token_rs256"), UnknownKey)
case(
    "quickstart-real-token-keys-held-wrong-issuer",
    _held_quickstart_keys(lambda r: quickstart_token("access_token_alice_2")),
    InvalidIssuer,
    keys="example",
)
case(
    "quickstart-real-token-rewritten-issuer",
    _held_quickstart_keys(_quickstart_issuer_rewritten),
    InvalidSignature,
    keys="example",
)
case(
    "quickstart-kid-impostor-main-issuer",
    lambda r: mint(r, signing_key=r.impostor, header={"kid": QUICKSTART_KID}),
    UnknownKey,
)
case(
    "quickstart-kid-impostor-quickstart-issuer",
    lambda r: mint(
        r, signing_key=r.impostor, header={"kid": QUICKSTART_KID}, claims={"iss": QUICKSTART_ISSUER}
    ),
    UnknownKey,
)
case(
    "quickstart-kid-impostor-no-kid",
    lambda r: mint(r, signing_key=r.impostor, remove_header=["kid"]),
    InvalidSignature,
)
case(
    "quickstart-kid-impostor-keys-held",
    _held_quickstart_keys(
        lambda r: mint(r, signing_key=r.impostor, header={"kid": QUICKSTART_KID})
    ),
    InvalidSignature,
    keys="example",
)
case(
    "quickstart-kid-impostor-embedded-jwk",
    lambda r: mint(
        r, signing_key=r.impostor, header={"kid": QUICKSTART_KID, "jwk": _impostor_jwk(r)}
    ),
    MalformedToken,
)

# --- 17. a doctored key set: keys that must not serve --------------------------------------------

for kid in [
    "alg-ps256",
    "alg-hs256",
    "alg-none",
    "use-enc",
    "ops-sign",
    "ops-string",
    "kty-ec",
    "kty-oct",
    "7",
    "e-one",
    "rsa-512",
]:
    case(f"doctored-key-{kid}", token(header={"kid": kid}), UnknownKey, keys="doctored")
for kid in ["ec-alg-es384", "ec-wrong-curve", "ec-secp256k1", "ec-as-rsa"]:
    case(
        f"doctored-key-{kid}",
        token(kid=lambda r: r.ec_kid, header={"kid": kid}),
        UnknownKey,
        keys="doctored",
    )
case(
    "doctored-key-okp-x25519",
    token(kid=lambda r: r.ed_kid, header={"kid": "okp-x25519"}),
    UnknownKey,
    keys="doctored",
)

# --- 18. while the key endpoint is unreachable ---------------------------------------------------

case("outage-well-formed-token", token(), KeysUnavailable, keys="dead")
case("outage-unknown-kid", token(header={"kid": "kid-" + MARKER}), KeysUnavailable, keys="dead")
case("outage-alg-none", token(header={"alg": "none"}, signature=b""), MalformedToken, keys="dead")
case("outage-one-megabyte", lambda r: "A" * 1_000_000, MalformedToken, keys="dead")
case("outage-duplicate-members", payload(b'{CLAIMS,"iss":"x"}'), MalformedToken, keys="dead")

# --- 19. not a string -----------------------------------------------------------------------------

case("bytes-of-a-valid-token", lambda r: mint(r).encode(), MalformedToken)
case("bytearray-of-a-valid-token", lambda r: bytearray(mint(r).encode()), MalformedToken)
case("none", lambda r: None, MalformedToken)
case("int", lambda r: 0, MalformedToken)
case("list-of-segments", lambda r: mint(r).split("."), MalformedToken)
case("dict", lambda r: {"token": mint(r)}, MalformedToken)


def _check_table() -> None:
    ids = [entry.id for entry in CASES]
    duplicates = [name for name, count in Counter(ids).items() if count > 1]
    assert not duplicates, duplicates


_check_table()
