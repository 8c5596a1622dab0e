"""JOSE without I/O: strict token parsing, header rules, JWK loading and signature checks.

Everything here treats its input as hostile. Parsing is strict where parsers in the field disagree
(base64url alphabet and canonical form, duplicate JSON members, non-finite numbers), because a token
two parsers read differently is a token an attacker can shape.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeAlias

from cryptography.exceptions import InvalidSignature as _CryptoInvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from jwt.algorithms import get_default_algorithms

from ._errors import MalformedToken

PublicKey: TypeAlias = (
    rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | ed448.Ed448PublicKey
)

RSA_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"})
EC_ALGORITHM_BY_CURVE = {"P-256": "ES256", "P-384": "ES384", "P-521": "ES512"}
EC_CURVES = {"P-256": ec.SECP256R1(), "P-384": ec.SECP384R1(), "P-521": ec.SECP521R1()}
OKP_CURVES = frozenset({"Ed25519", "Ed448"})
ASYMMETRIC_ALGORITHMS = frozenset({*RSA_ALGORITHMS, *EC_ALGORITHM_BY_CURVE.values(), "EdDSA"})
DEFAULT_ALGORITHMS = ASYMMETRIC_ALGORITHMS

# Keycloak's smallest real realm keys are 1024-bit; anything below is factorable in practice.
MIN_RSA_BITS = 1024
MAX_KID_LENGTH = 256

_B64_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_B64URL_BYTES = _B64_ALPHABET.encode()
# A final character whose unused low bits are set decodes to the same bytes as the canonical
# one; accepting it would let anyone mint byte-different copies of a valid signature.
_CANONICAL_LAST = {
    2: frozenset(_B64_ALPHABET[::16]),
    3: frozenset(_B64_ALPHABET[::4]),
}
_URLSAFE_TO_STANDARD = bytes.maketrans(b"-_", b"+/")
_PADDING = {0: b"", 2: b"==", 3: b"="}
_HEADER_TYPES = frozenset({"jwt", "at+jwt", "application/at+jwt"})
_RFC9068_TYPES = frozenset({"at+jwt", "application/at+jwt"})
# Members whose meaning we do not implement: honouring them is unsafe, ignoring them misreads.
_REFUSED_HEADER_MEMBERS = ("crit", "jku", "x5u", "x5c", "jwk", "enc", "zip", "cty")

_SIGNERS = get_default_algorithms()


# --- base64url and JSON ------------------------------------------------------------------------


def b64url_decode(segment: str) -> bytes:
    """Decode one canonical, unpadded base64url segment already matched against the alphabet."""
    remainder = len(segment) % 4
    if remainder == 1 or (remainder and segment[-1] not in _CANONICAL_LAST[remainder]):
        raise MalformedToken("invalid base64url encoding")
    # One C call each: the alphabet was checked by the caller's regular expression.
    standard = segment.encode("ascii").translate(_URLSAFE_TO_STANDARD)
    return binascii.a2b_base64(standard + _PADDING[remainder])


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    members = dict(pairs)
    if len(members) != len(pairs):
        raise MalformedToken("duplicate JSON member name")
    return members


def _reject_constant(_name: str) -> float:
    raise MalformedToken("non-finite number in JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise MalformedToken("non-finite number in JSON")
    return value


def json_decoder(*, accept_duplicate_members: bool) -> json.JSONDecoder:
    """A JSON decoder refusing NaN, Infinity, overflowing numbers and (unless told) duplicates."""
    return json.JSONDecoder(
        object_pairs_hook=None if accept_duplicate_members else _reject_duplicates,
        parse_constant=_reject_constant,
        parse_float=_finite_float,
    )


def decode_json_object(segment: str, decoder: json.JSONDecoder) -> dict[str, Any]:
    """Decode a base64url segment holding a strict UTF-8 JSON object."""
    try:
        text = b64url_decode(segment).decode("utf-8")
        try:
            # The scanner alone skips JSONDecoder.decode's Python-level whitespace handling.
            value, end = decoder.scan_once(text, 0)
        except StopIteration:
            end = -1
        if end != len(text):
            value = decoder.decode(text)  # surrounding whitespace is legal; the rest raises
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise MalformedToken("segment is not a JSON object") from None
    if type(value) is not dict:
        raise MalformedToken("segment is not a JSON object")
    return value


# --- the token ---------------------------------------------------------------------------------


def split_token(token: object, max_size: int) -> tuple[str, str, str]:
    """Check size and shape before any decoding; return the three segments."""
    if type(token) is not str:
        raise MalformedToken("token is not a string")
    if len(token) > max_size:
        raise MalformedToken("token too large")
    segments = token.split(".")
    # Deleting the alphabet in one C call must leave exactly the two dots; isascii first, as
    # encode would raise on anything else.
    if (
        len(segments) != 3
        or not token.isascii()
        or token.encode().translate(None, _B64URL_BYTES) != b".."
        or not all(segments)
    ):
        raise MalformedToken("token is not three base64url segments")
    header, payload, signature = segments
    return header, payload, signature


@dataclass(frozen=True, slots=True)
class Header:
    """The few header members that matter, after the header rules were applied."""

    alg: str
    kid: str | None


def parse_header(
    segment: str, decoder: json.JSONDecoder, algorithms: frozenset[str], require_at_jwt: bool
) -> Header:
    members = decode_json_object(segment, decoder)
    alg = members.get("alg")
    if type(alg) is not str or alg not in algorithms:
        raise MalformedToken("algorithm not allowed")
    for name in _REFUSED_HEADER_MEMBERS:
        if name in members:
            raise MalformedToken(f"unsupported header member {name}")
    if members.get("b64", True) is not True:
        raise MalformedToken("unsupported header member b64")
    _check_header_type(members.get("typ"), require_at_jwt)
    kid = members.get("kid")
    if kid is not None and (type(kid) is not str or not 0 < len(kid) <= MAX_KID_LENGTH):
        raise MalformedToken("invalid kid")
    return Header(alg=alg, kid=kid)


def _check_header_type(typ: object, require_at_jwt: bool) -> None:
    if typ is None and not require_at_jwt:
        return
    if type(typ) is not str:
        raise MalformedToken("invalid typ header")
    accepted = _RFC9068_TYPES if require_at_jwt else _HEADER_TYPES
    if typ.lower() not in accepted:
        raise MalformedToken("invalid typ header")


# --- keys --------------------------------------------------------------------------------------


class VerificationKey:
    """A public key from the issuer's key set and the algorithms it may verify.

    ``retired`` turns true when a refresh of the key set no longer lists the key, so anything
    verified with it (the verified-token cache) can tell without a scan.
    """

    __slots__ = ("algorithms", "fingerprint", "kid", "public_key", "retired")

    def __init__(self, kid: str | None, algorithms: frozenset[str], public_key: PublicKey) -> None:
        self.kid = kid
        self.algorithms = algorithms
        self.public_key = public_key
        der = public_key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
        self.fingerprint = (kid, algorithms, hashlib.sha256(der).digest())
        self.retired = False


class UnusableKey(ValueError):
    """A JWK that cannot serve for verification; the rest of its key set still can."""


def _param(jwk: Mapping[str, Any], name: str) -> bytes:
    value = jwk.get(name)
    if type(value) is not str or not value:
        raise UnusableKey(f"missing {name}")
    try:
        return base64.urlsafe_b64decode(value.rstrip("=") + "=" * (-len(value.rstrip("=")) % 4))
    except (binascii.Error, ValueError):
        raise UnusableKey(f"bad {name}") from None


def _integer(jwk: Mapping[str, Any], name: str) -> int:
    # Big-endian integers, whatever the length: Keycloak 12 wrote 65-byte P-521 coordinates.
    return int.from_bytes(_param(jwk, name), "big")


def _rsa_key(jwk: Mapping[str, Any]) -> tuple[frozenset[str], PublicKey]:
    key = rsa.RSAPublicNumbers(_integer(jwk, "e"), _integer(jwk, "n")).public_key()
    if key.key_size < MIN_RSA_BITS:
        raise UnusableKey("RSA key too small")
    return RSA_ALGORITHMS, key


def _ec_key(jwk: Mapping[str, Any]) -> tuple[frozenset[str], PublicKey]:
    crv = jwk.get("crv")
    if crv not in EC_CURVES:
        raise UnusableKey("unsupported curve")
    numbers = ec.EllipticCurvePublicNumbers(_integer(jwk, "x"), _integer(jwk, "y"), EC_CURVES[crv])
    return frozenset({EC_ALGORITHM_BY_CURVE[crv]}), numbers.public_key()


def _okp_key(jwk: Mapping[str, Any]) -> tuple[frozenset[str], PublicKey]:
    crv = jwk.get("crv")
    loaders: dict[object, Callable[[bytes], PublicKey]] = {
        "Ed25519": ed25519.Ed25519PublicKey.from_public_bytes,
        "Ed448": ed448.Ed448PublicKey.from_public_bytes,
    }
    if crv not in loaders:
        raise UnusableKey("unsupported curve")
    return frozenset({"EdDSA"}), loaders[crv](_param(jwk, "x"))


_KEY_LOADERS = {"RSA": _rsa_key, "EC": _ec_key, "OKP": _okp_key}


def load_jwk(jwk: object) -> VerificationKey:
    """Turn one JWK into a verification key, or raise UnusableKey."""
    if not isinstance(jwk, dict):
        raise UnusableKey("not an object")
    if jwk.get("use", "sig") != "sig":
        raise UnusableKey("not a signing key")
    key_ops = jwk.get("key_ops")
    if key_ops is not None and (not isinstance(key_ops, list) or "verify" not in key_ops):
        raise UnusableKey("key_ops exclude verify")
    loader = _KEY_LOADERS.get(str(jwk.get("kty")))
    if loader is None:
        raise UnusableKey("unsupported key type")
    kid = jwk.get("kid")
    if kid is not None and type(kid) is not str:
        raise UnusableKey("bad kid")
    try:
        algorithms, public_key = loader(jwk)
    except (ValueError, TypeError, OverflowError) as error:
        raise UnusableKey("invalid key parameters") from error
    declared = jwk.get("alg")
    if declared is not None:
        if declared not in algorithms:
            raise UnusableKey("alg does not fit the key type")
        algorithms = frozenset({declared})
    return VerificationKey(kid, algorithms, public_key)


def verify_signature(
    key: VerificationKey, alg: str, signing_input: bytes, signature: bytes
) -> bool:
    """Check one signature; any failure of the primitive is a plain no."""
    try:
        return bool(_SIGNERS[alg].verify(signing_input, key.public_key, signature))
    except (_CryptoInvalidSignature, ValueError, TypeError):
        return False
