"""JOSE without I/O: strict token parsing, header rules, JWK loading and signature checks.

Everything here treats its input as hostile. Parsing is strict where parsers in the field disagree
(base64url alphabet and canonical form, duplicate JSON members, non-finite numbers), because a token
two parsers read differently is a token an attacker can shape.
"""

from __future__ import annotations

import base64
import functools
import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from math import isfinite
from types import MappingProxyType
from typing import Any, TypeAlias

import jiter
import orjson
import pybase64
from cryptography.exceptions import InvalidSignature as _CryptoInvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from ._errors import MalformedToken

PublicKey: TypeAlias = (
    rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | ed448.Ed448PublicKey
)

RSA_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"})
EC_ALGORITHM_BY_CURVE = {"P-256": "ES256", "P-384": "ES384", "P-521": "ES512"}
EC_CURVES = {"P-256": ec.SECP256R1(), "P-384": ec.SECP384R1(), "P-521": ec.SECP521R1()}
# RFC 9864 names Ed25519 and Ed448 signatures by their curve; "EdDSA" is the older name for both.
OKP_CURVES = frozenset({"Ed25519", "Ed448"})
ASYMMETRIC_ALGORITHMS = frozenset(
    {*RSA_ALGORITHMS, *EC_ALGORITHM_BY_CURVE.values(), "EdDSA", *OKP_CURVES}
)
DEFAULT_ALGORITHMS = ASYMMETRIC_ALGORITHMS

# Keycloak's smallest real realm keys are 1024-bit; anything below is factorable in practice.
MIN_RSA_BITS = 1024
MAX_KID_LENGTH = 256

_B64_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_B64URL_BYTES = _B64_ALPHABET.encode()
# A final character whose unused low bits are set decodes to the same bytes as the canonical
# one; accepting it would let anyone mint byte-different copies of a valid signature.
_CANONICAL_LAST = {
    2: frozenset(_B64URL_BYTES[::16]),
    3: frozenset(_B64URL_BYTES[::4]),
}
_PADDING = {0: b"", 2: b"==", 3: b"="}
_NO_DOT = (b"", b"", b"")
_PLUS, _SLASH, _PAD, _DOT = b"+/=."
_HEADER_TYPES = frozenset({"jwt", "at+jwt", "application/at+jwt"})
_RFC9068_TYPES = frozenset({"at+jwt", "application/at+jwt"})
# Members whose meaning we do not implement: honouring them is unsafe, ignoring them misreads.
_REFUSED_HEADER_MEMBERS = ("crit", "jku", "x5u", "x5c", "jwk", "enc", "zip", "cty")


# --- base64url and JSON ------------------------------------------------------------------------


def b64url_decode(segment: bytes) -> bytes:
    """Decode one canonical, unpadded base64url segment.

    pybase64 (SIMD) refuses any byte outside both base64 alphabets; what only the standard one
    has (``+``, ``/`` and the ``=`` padding) it would take, so that is refused first."""
    remainder = len(segment) % 4
    if remainder == 1 or (remainder and segment[-1] not in _CANONICAL_LAST[remainder]):
        raise MalformedToken("invalid base64url encoding")
    # An int needle is one memchr; a bytes needle or a translation is many times slower.
    if _PLUS in segment or _SLASH in segment or _PAD in segment:
        raise MalformedToken("invalid base64url encoding")
    try:
        return pybase64.b64decode(segment + _PADDING[remainder], b"-_", True)
    except ValueError:  # binascii.Error: a character outside the alphabet
        raise MalformedToken("invalid base64url encoding") from None


class JsonParser:
    """Strict JSON: UTF-8 only, no NaN or Infinity, no trailing data, and (unless told) no
    duplicate member names at any depth. ``parser(data)`` is the value."""

    __slots__ = ("_lenient", "_strict")

    def __init__(self, *, accept_duplicate_members: bool) -> None:
        self._lenient = _jiter(catch_duplicate_keys=False)
        self._strict = None if accept_duplicate_members else _jiter(catch_duplicate_keys=True)

    def __call__(self, data: bytes) -> Any:
        return self.parse(data)[0]

    def parse(self, data: bytes) -> tuple[Any, bool]:
        """The value, and whether ``data`` is, byte for byte, orjson's serialization of it.

        Then it has no duplicate member at any depth (a dict has none to write) and no number
        that parsed as infinity (written ``null``), so the lenient parse stands: jiter's
        duplicate check costs half again what its parse does. Any other document (whitespace,
        escapes, numbers written another way, duplicates) is parsed again, strictly."""
        value = self._lenient(data)
        if self._strict is None:
            return value, False
        try:
            if orjson.dumps(value) == data:
                return value, True
        except orjson.JSONEncodeError:  # what orjson cannot write: an integer beyond 64 bits
            pass
        return self._strict(data), False


def _jiter(*, catch_duplicate_keys: bool) -> Callable[[bytes], Any]:
    # Strings too: the values tokens repeat (issuer, client ids, role names) are then one
    # object each, shared by every principal the verified-token cache keeps.
    return functools.partial(
        jiter.from_json,
        allow_inf_nan=False,
        catch_duplicate_keys=catch_duplicate_keys,
        cache_mode="all",
    )


def decode_json_object(segment: bytes, parse: JsonParser) -> dict[str, Any]:
    """Decode a base64url segment holding a strict UTF-8 JSON object."""
    return decode_canonical_object(segment, parse)[0]


def decode_canonical_object(segment: bytes, parse: JsonParser) -> tuple[dict[str, Any], bool]:
    """``decode_json_object``, and whether the object was in canonical form (``parse``): then
    no number in it is infinite."""
    try:
        value, canonical = parse.parse(b64url_decode(segment))
    except ValueError:
        raise MalformedToken("invalid JSON in token") from None
    if type(value) is not dict:
        raise MalformedToken("token segment is not a JSON object")
    return value, canonical


def refuse_non_finite(members: dict[str, Any]) -> None:
    """Refuse a parsed JSON object holding a number that parsed as infinity, at any depth: the
    parser refuses the literal ``Infinity``, not ``1e999999``. The parser bounds the depth."""
    for value in members.values():
        kind = type(value)
        if kind is str:  # most claims: one test, not three
            continue
        if kind is dict:
            refuse_non_finite(value)
        elif kind is list:
            _refuse_non_finite_items(value)
        elif kind is float and not isfinite(value):
            raise MalformedToken("number out of range")


def _refuse_non_finite_items(items: list[Any]) -> None:
    try:
        "".join(items)  # the usual array, of strings only (roles, audiences), in one C call
    except TypeError:
        pass
    else:
        return
    for item in items:
        kind = type(item)
        if kind is dict:
            refuse_non_finite(item)
        elif kind is list:
            _refuse_non_finite_items(item)
        elif kind is float and not isfinite(item):
            raise MalformedToken("number out of range")


def read_only_object(members: Mapping[str, Any]) -> Mapping[str, Any]:
    """A parsed JSON object, read-only at every depth: objects become read-only mappings, arrays
    tuples. A verified payload is handed to every request that presents its token, so one
    request must not be able to change what the next one reads. A copy: ``members`` stays as
    parsed."""
    frozen = dict(members)
    for name, value in members.items():
        kind = type(value)
        if kind is dict:
            frozen[name] = read_only_object(value)
        elif kind is list:
            frozen[name] = _read_only_array(value)
    return MappingProxyType(frozen)


def _read_only_array(items: list[Any]) -> tuple[Any, ...]:
    try:
        "".join(items)
    except TypeError:
        pass
    else:
        return tuple(items)
    return tuple(
        read_only_object(item)
        if type(item) is dict
        else _read_only_array(item)
        if type(item) is list
        else item
        for item in items
    )


# --- the token ---------------------------------------------------------------------------------


def split_token(token: object, max_size: int) -> tuple[bytes, bytes, bytes, bytes]:
    """Check size and shape before any decoding; return the header, payload and signature
    segments and the signing input (header and payload with their dot). Each segment's alphabet
    is checked where it is decoded, strictly (``b64url_decode``): a caller decodes all three
    before it acts on any of them, or looks one up among segments it decoded before."""
    if type(token) is not str:
        raise MalformedToken("token is not a string")
    if len(token) > max_size:
        raise MalformedToken("token too large")
    # Searching for one byte runs as memchr; counting them does not.
    signing_input, _, signature = token.encode().rpartition(b".") if token.isascii() else _NO_DOT
    header, dot, payload = signing_input.partition(b".")
    if not dot or _DOT in payload:
        raise MalformedToken("token is not three base64url segments")
    if not (header and payload and signature):
        raise MalformedToken("token has an empty segment")
    return header, payload, signing_input, signature


@dataclass(frozen=True, slots=True)
class Header:
    """The few header members that matter, after the header rules were applied."""

    alg: str
    kid: str | None


def parse_header(
    segment: bytes, parse: JsonParser, algorithms: frozenset[str], require_at_jwt: bool
) -> Header:
    members = decode_json_object(segment, parse)
    alg = members.get("alg")
    if type(alg) is not str or alg not in algorithms:
        raise MalformedToken("algorithm not allowed")
    for name in _REFUSED_HEADER_MEMBERS:
        if name in members:
            raise MalformedToken(f"unsupported header member {name}")
    if members.get("b64", True) is not True:
        raise MalformedToken("unsupported header member b64")
    if "typ" in members or require_at_jwt:
        _check_header_type(members.get("typ"), require_at_jwt)
    # Present means a string: a null kid or typ is malformed, not absent.
    kid = members.get("kid")
    if "kid" in members and (type(kid) is not str or not 0 < len(kid) <= MAX_KID_LENGTH):
        raise MalformedToken("invalid kid")
    return Header(alg=alg, kid=kid)


def _check_header_type(typ: object, require_at_jwt: bool) -> None:
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

    __slots__ = ("algorithms", "fingerprint", "kid", "public_key", "retired", "signature_size")

    def __init__(self, kid: str | None, algorithms: frozenset[str], public_key: PublicKey) -> None:
        self.kid = kid
        self.algorithms = algorithms
        self.public_key = public_key
        self.signature_size = _signature_size(public_key)
        der = public_key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
        self.fingerprint = (kid, algorithms, hashlib.sha256(der).digest())
        self.retired = False


def _signature_size(public_key: PublicKey) -> int:
    """The one length in octets of every signature the key makes.

    RSA: the modulus length (RFC 8017, sections 8.1.2 and 8.2.2); OpenSSL verifies a PSS
    signature with its leading zero octet stripped, which would give every such token a
    byte-different twin. ECDSA: JOSE's r || s (RFC 7518, section 3.4). EdDSA: RFC 8032.
    """
    if isinstance(public_key, rsa.RSAPublicKey):
        return (public_key.key_size + 7) // 8
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        return 2 * ((public_key.curve.key_size + 7) // 8)
    return 64 if isinstance(public_key, ed25519.Ed25519PublicKey) else 114


class UnusableKey(ValueError):
    """A JWK that cannot serve for verification; the rest of its key set still can."""


def _param(jwk: Mapping[str, Any], name: str) -> bytes:
    value = jwk.get(name)
    if type(value) is not str or not value:
        raise UnusableKey(f"missing {name}")
    try:
        return base64.urlsafe_b64decode(value.rstrip("=") + "=" * (-len(value.rstrip("=")) % 4))
    except ValueError:  # binascii.Error included
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
    return frozenset({"EdDSA", str(crv)}), loaders[crv](_param(jwk, "x"))


_KEY_LOADERS = {"RSA": _rsa_key, "EC": _ec_key, "OKP": _okp_key}


def load_jwk(jwk: object) -> VerificationKey:
    """Turn one JWK into a verification key, or raise UnusableKey."""
    try:
        return _read_jwk(jwk)
    except UnusableKey:
        raise
    except (ValueError, TypeError, OverflowError) as error:
        # A member of a hostile shape (a list where a string belongs, ...) spoils this key only.
        raise UnusableKey("invalid key member") from error


def _read_jwk(jwk: object) -> VerificationKey:
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
    algorithms, public_key = loader(jwk)
    declared = jwk.get("alg")
    if declared is not None:
        if type(declared) is not str or declared not in algorithms:
            raise UnusableKey("alg does not fit the key type")
        algorithms = frozenset({declared})
    return VerificationKey(kid, algorithms, public_key)


# --- signatures ----------------------------------------------------------------------------------

# Each verifier raises on a bad signature. Padding and hash objects are built once: making them
# per call is a measurable share of a validation. Keys reach a verifier only for an algorithm
# their type fits (the key index guarantees it), hence the loose key type.
Verifier: TypeAlias = Callable[[Any, bytes, bytes], None]


def _rsa_pkcs1(hash_algorithm: hashes.HashAlgorithm) -> Verifier:
    scheme = padding.PKCS1v15()

    def verify(key: rsa.RSAPublicKey, data: bytes, signature: bytes) -> None:
        key.verify(signature, data, scheme, hash_algorithm)

    return verify


def _rsa_pss(hash_algorithm: hashes.HashAlgorithm) -> Verifier:
    # RFC 7518 section 3.5: the salt is as long as the hash output.
    scheme = padding.PSS(mgf=padding.MGF1(hash_algorithm), salt_length=hash_algorithm.digest_size)

    def verify(key: rsa.RSAPublicKey, data: bytes, signature: bytes) -> None:
        key.verify(signature, data, scheme, hash_algorithm)

    return verify


def _ecdsa(hash_algorithm: hashes.HashAlgorithm) -> Verifier:
    scheme = ec.ECDSA(hash_algorithm)

    def verify(key: ec.EllipticCurvePublicKey, data: bytes, signature: bytes) -> None:
        # JOSE sends r || s of exactly twice the curve size (verifying_key has checked the
        # length, so DER or any other length never gets here); cryptography takes DER.
        half = len(signature) // 2
        r, s = int.from_bytes(signature[:half], "big"), int.from_bytes(signature[half:], "big")
        key.verify(encode_dss_signature(r, s), data, scheme)

    return verify


def _eddsa(key: ed25519.Ed25519PublicKey, data: bytes, signature: bytes) -> None:
    key.verify(signature, data)


_VERIFIERS: dict[str, Verifier] = {
    "RS256": _rsa_pkcs1(hashes.SHA256()),
    "RS384": _rsa_pkcs1(hashes.SHA384()),
    "RS512": _rsa_pkcs1(hashes.SHA512()),
    "PS256": _rsa_pss(hashes.SHA256()),
    "PS384": _rsa_pss(hashes.SHA384()),
    "PS512": _rsa_pss(hashes.SHA512()),
    "ES256": _ecdsa(hashes.SHA256()),
    "ES384": _ecdsa(hashes.SHA384()),
    "ES512": _ecdsa(hashes.SHA512()),
    "EdDSA": _eddsa,
    "Ed25519": _eddsa,
    "Ed448": _eddsa,
}


def verifying_key(
    keys: tuple[VerificationKey, ...], alg: str, signing_input: bytes, signature: bytes
) -> VerificationKey | None:
    """The first key whose signature check passes; any failure of the primitive is a plain no."""
    verify = _VERIFIERS[alg]
    size = len(signature)
    for key in keys:
        if size != key.signature_size:
            continue
        try:
            verify(key.public_key, signing_input, signature)
        except (_CryptoInvalidSignature, ValueError, TypeError):
            continue
        return key
    return None
