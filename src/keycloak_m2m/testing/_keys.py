"""The realm's keys and the JOSE bytes it writes: key generation, JWKs, kids, signing.

Everything here is shaped like Keycloak's output, byte for byte where validators may care (the
JWS header spacing, the kid, the member order of a JWK).
"""

from __future__ import annotations

import base64
import binascii
import datetime
import functools
import hashlib
import json
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final, Literal, TypeAlias

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID
from jwt.algorithms import get_default_algorithms

PrivateKey: TypeAlias = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
PublicKey: TypeAlias = rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey

RSA_ALGORITHMS: Final = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512")
_EC_ALGORITHMS: Final[Mapping[str, Callable[[], ec.EllipticCurve]]] = {
    "ES256": ec.SECP256R1,
    "ES384": ec.SECP384R1,
    "ES512": ec.SECP521R1,
}
SUPPORTED_ALGORITHMS: Final = (*RSA_ALGORITHMS, *_EC_ALGORITHMS, "EdDSA")
# JOSE names (RFC 7518 6.2.1.1) and matching JWS algorithm, keyed by cryptography's curve name.
_JWK_CURVES: Final = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}
_CURVE_ALGORITHMS: Final = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}
# PyJWT's signers give JOSE's raw r||s for ECDSA, which cryptography alone would DER-encode.
_JWS_SIGNERS: Final = get_default_algorithms()
# The hash behind each algorithm, for at_hash (OpenID Connect Core 3.1.3.6). Keycloak hashes
# EdDSA (Ed25519) tokens with SHA-512.
_HASHES: Final = {"256": hashlib.sha256, "384": hashlib.sha384, "512": hashlib.sha512}


@dataclass(frozen=True)
class Key:
    kid: str
    algorithm: str
    use: Literal["sig", "enc"]
    private_key: PrivateKey = field(repr=False)
    jwk: Mapping[str, Any] = field(repr=False)


# ---------------------------------------------------------------------------------------------
# Encoding


def b64(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def b64_text(data: bytes) -> str:
    return b64(data).decode("ascii")


def _b64_uint(value: int) -> str:
    return b64_text(value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big"))


def decoded_segment(segment: str) -> bytes:
    """A base64url segment, padded or not; raises ValueError (binascii.Error) if malformed."""
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def compact_json(value: Any) -> str:
    # Jackson's default output, which Keycloak uses for payloads: no spaces, raw UTF-8.
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def keycloak_header_json(members: Mapping[str, Any]) -> bytes:
    # Keycloak's JWSBuilder writes the header by hand: {"alg":"RS256","typ" : "JWT","kid" : "…"}.
    # Kept byte for byte: the signing input covers these bytes, and validators must cope with them.
    parts = [
        compact_json(name) + (":" if name == "alg" else " : ") + compact_json(value)
        for name, value in members.items()
    ]
    return ("{" + ",".join(parts) + "}").encode("utf-8")


def payload_of(token: str) -> dict[str, Any] | None:
    """The payload of a compact JWS as a JSON object, unverified; None if it is not one."""
    try:
        _, segment, _ = token.split(".")
        payload = json.loads(decoded_segment(segment))
    except (ValueError, binascii.Error):
        return None
    return payload if isinstance(payload, dict) else None


# ---------------------------------------------------------------------------------------------
# Keys


def check_algorithm(algorithm: str) -> None:
    if algorithm not in SUPPORTED_ALGORITHMS:
        raise ValueError(f"unsupported algorithm {algorithm!r}; use one of {SUPPORTED_ALGORITHMS}")


def _generate_private_key(algorithm: str) -> PrivateKey:
    if algorithm in _EC_ALGORITHMS:
        return ec.generate_private_key(_EC_ALGORITHMS[algorithm]())
    if algorithm == "EdDSA":
        return ed25519.Ed25519PrivateKey.generate()
    return _generate_rsa_key()


def _generate_rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


class _RetiredRsaKeys:
    """The RSA signing keys of stopped realms, handed to the next realm or rotation of this
    process. Generating an RSA-2048 key costs about 0.1 s of CPU, most of a short test that
    starts a realm; with this, a process generates about as many as it has realms alive at
    once. Only keys of stopped realms enter, and a stopped realm generates fresh ones (see
    KeyRing.retire), so no two live realms share a key and no realm is handed one it published.
    EC and Ed25519 keys are cheap to make and never recycled."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._keys: list[rsa.RSAPrivateKey] = []

    def take(self) -> rsa.RSAPrivateKey:
        with self._lock:
            if self._keys:
                return self._keys.pop()
        return _generate_rsa_key()

    def give_back(self, keys: Iterable[rsa.RSAPrivateKey]) -> None:
        with self._lock:
            self._keys.extend(keys)


_RETIRED_RSA_KEYS: Final = _RetiredRsaKeys()


@functools.lru_cache(maxsize=1)
def shared_encryption_key() -> rsa.RSAPrivateKey:
    # The enc key is only ever published, never used; sharing one per process keeps realm
    # creation to a single RSA key generation.
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _spki_der(public_key: PublicKey) -> bytes:
    return public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def keycloak_kid(public_key: PublicKey) -> str:
    # Keycloak's KeyUtils.createKeyId: SHA-256 of the X.509 SubjectPublicKeyInfo, base64url.
    return b64_text(hashlib.sha256(_spki_der(public_key)).digest())


def public_key_base64(key: Key) -> str:
    """The key as Keycloak's realm page publishes it: base64 DER SubjectPublicKeyInfo, no PEM."""
    return base64.b64encode(_spki_der(key.private_key.public_key())).decode("ascii")


def _public_params(public_key: PublicKey) -> dict[str, str]:
    if isinstance(public_key, rsa.RSAPublicKey):
        numbers = public_key.public_numbers()
        return {"kty": "RSA", "n": _b64_uint(numbers.n), "e": _b64_uint(numbers.e)}
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        size = (public_key.curve.key_size + 7) // 8  # RFC 7518 6.2.1.2: full-length coordinates
        point = public_key.public_numbers()
        return {
            "kty": "EC",
            "crv": _JWK_CURVES[public_key.curve.name],
            "x": b64_text(point.x.to_bytes(size, "big")),
            "y": b64_text(point.y.to_bytes(size, "big")),
        }
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return {"kty": "OKP", "crv": "Ed25519", "x": b64_text(raw)}


def _certificate_params(private_key: PrivateKey, subject: str) -> dict[str, Any]:
    # Keycloak publishes its generated RSA and EC keys with a self-signed certificate; a validator
    # must not be thrown by (or rely on) x5c. Its EdDSA keys come without one.
    if isinstance(private_key, ed25519.Ed25519PrivateKey):
        return {}
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject[:64])])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .sign(private_key, hashes.SHA256())
    )
    der = certificate.public_bytes(serialization.Encoding.DER)
    return {
        "x5c": [base64.b64encode(der).decode("ascii")],
        "x5t": b64_text(hashlib.sha1(der, usedforsecurity=False).digest()),
        "x5t#S256": b64_text(hashlib.sha256(der).digest()),
    }


def new_key(
    algorithm: str,
    *,
    subject: str,
    use: Literal["sig", "enc"] = "sig",
    private_key: PrivateKey | None = None,
) -> Key:
    if private_key is None:
        private_key = _generate_private_key(algorithm)
    public_key = private_key.public_key()
    kid = keycloak_kid(public_key)
    params = _public_params(public_key)
    # Keycloak's member order: kid, kty, alg, use, then the key material.
    jwk = {"kid": kid, "kty": params["kty"], "alg": algorithm, "use": use}
    jwk.update(params)
    jwk.update(_certificate_params(private_key, subject))
    return Key(kid, algorithm, use, private_key, MappingProxyType(jwk))


def natural_algorithm(key: PrivateKey | bytes) -> str:
    if isinstance(key, bytes):
        return "HS256"
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return _CURVE_ALGORITHMS[key.curve.name]
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return "EdDSA"
    return "RS256"


def signing_algorithm(key: Key) -> str:
    # The enc key's alg (RSA-OAEP) is not a JWS algorithm; signing with it is a test of
    # validators that forget to check ``use``.
    return key.algorithm if key.use == "sig" else "RS256"


class KeyRing:
    """The realm's keys: signing keys (one active, the others passive, all published) and the
    enc key Keycloak also publishes. Safe to use from any thread."""

    def __init__(self, algorithm: str, subject: str) -> None:
        check_algorithm(algorithm)
        self._subject = subject
        self._lock = threading.Lock()
        # Every RSA key this ring took from _RETIRED_RSA_KEYS, passive or dropped ones too;
        # None once retired.
        self._recyclable: list[rsa.RSAPrivateKey] | None = []
        first = self._new_signing_key(algorithm)
        self._keys: dict[str, Key] = {first.kid: first}
        self._active_kid = first.kid
        self.encryption = new_key(
            "RSA-OAEP", subject=subject, use="enc", private_key=shared_encryption_key()
        )

    def _new_signing_key(self, algorithm: str) -> Key:
        with self._lock:
            recyclable = self._recyclable
        if algorithm not in RSA_ALGORITHMS or recyclable is None:
            return new_key(algorithm, subject=self._subject)
        private_key = _RETIRED_RSA_KEYS.take()
        with self._lock:
            if self._recyclable is None:  # retired meanwhile: the key may not stay with us
                _RETIRED_RSA_KEYS.give_back([private_key])
                return new_key(algorithm, subject=self._subject)
            self._recyclable.append(private_key)
        return new_key(algorithm, subject=self._subject, private_key=private_key)

    def retire(self) -> None:
        """Hand this ring's RSA keys on to the realms started after it; from now on it makes
        fresh keys (a stopped realm can still rotate), never recycled ones. Idempotent."""
        with self._lock:
            recyclable, self._recyclable = self._recyclable, None
        _RETIRED_RSA_KEYS.give_back(recyclable or ())

    def active(self) -> Key:
        with self._lock:
            return self._keys[self._active_kid]

    def signing_keys(self) -> list[Key]:
        """Active first, then the passive ones newest first."""
        with self._lock:
            passive = [key for kid, key in reversed(self._keys.items()) if kid != self._active_kid]
            return [self._keys[self._active_kid], *passive]

    def named(self, kid: str) -> Key | None:
        """A published key, signing or enc."""
        with self._lock:
            key = self._keys.get(kid)
        return self.encryption if key is None and kid == self.encryption.kid else key

    def newest(self, algorithm: str) -> Key | None:
        return next((key for key in self.signing_keys() if key.algorithm == algorithm), None)

    def rotate(self, *, keep_old: bool, algorithm: str | None) -> str:
        algorithm = algorithm or self.active().algorithm
        check_algorithm(algorithm)
        key = self._new_signing_key(algorithm)  # slow for a new RSA key: outside the lock
        with self._lock:
            if not keep_old:
                self._keys.clear()
            self._keys[key.kid] = key
            self._active_kid = key.kid
        return key.kid

    def jwks(self) -> dict[str, Any]:
        # The enc key first, as Keycloak often lists it: a validator that takes keys[0] or
        # ignores ``use`` fails right away.
        keys = [self.encryption, *self.signing_keys()]
        return {"keys": [dict(key.jwk) for key in keys]}


# ---------------------------------------------------------------------------------------------
# Signing and checking


def sign(signing_input: bytes, algorithm: str, key: PrivateKey | bytes) -> bytes:
    try:
        signer = _JWS_SIGNERS[algorithm]
    except KeyError:
        raise ValueError(f"cannot sign with alg {algorithm!r}; pass signature= instead") from None
    return signer.sign(signing_input, key)


def compact_jws(header: bytes, payload: bytes, signer: Callable[[bytes], bytes]) -> str:
    signing_input = b64(header) + b"." + b64(payload)
    return (signing_input + b"." + b64(signer(signing_input))).decode("ascii")


def overridden_header(
    members: Mapping[str, Any], overrides: Mapping[str, Any], remove: Iterable[str]
) -> bytes:
    """Keycloak's header bytes for ``members`` updated with ``overrides``, less ``remove``."""
    merged = {**members, **overrides}
    for name in remove:
        merged.pop(name, None)
    return keycloak_header_json(merged)


def composed(
    header: bytes,
    payload: bytes,
    algorithm: str,
    key: PrivateKey | bytes | None,
    signature: bytes | None,
) -> str:
    """A compact JWS of exactly these bytes, signed with ``key`` or carrying ``signature``."""

    def signer(signing_input: bytes) -> bytes:
        if signature is not None:
            return signature
        if key is None:
            raise ValueError("no key to sign with; pass signing_key= or signature=")
        return sign(signing_input, algorithm, key)

    return compact_jws(header, payload, signer)


def signed_by_realm(key: Key, claims: Mapping[str, Any]) -> str:
    """A token as the realm's endpoints issue it: ``key``, Keycloak's header, compact JSON."""
    header = keycloak_header_json({"alg": key.algorithm, "typ": "JWT", "kid": key.kid})
    payload = compact_json(claims).encode("utf-8")
    return compact_jws(header, payload, lambda data: sign(data, key.algorithm, key.private_key))


def read_jws(token: str) -> tuple[dict[str, Any], dict[str, Any], bytes, bytes] | None:
    """Header, payload, signing input and signature of a compact JWS whose header and payload
    are JSON objects; None for anything else."""
    try:
        header_segment, payload_segment, signature_segment = token.split(".")
        header = json.loads(decoded_segment(header_segment))
        payload = json.loads(decoded_segment(payload_segment))
        signature = decoded_segment(signature_segment)
    except (ValueError, binascii.Error):
        return None
    if not isinstance(header, dict) or not isinstance(payload, dict):
        return None
    return header, payload, f"{header_segment}.{payload_segment}".encode("ascii"), signature


def verified_payload(token: str, key_named: Callable[[str], Key | None]) -> dict[str, Any] | None:
    """The payload of ``token`` if a published signing key (by its header's kid and alg) signed
    it; None otherwise. Only the signature: time and issuer are the caller's to check."""
    parts = read_jws(token)
    if parts is None:
        return None
    header, payload, signing_input, signature = parts
    key = key_named(str(header.get("kid")))
    if key is None or key.use != "sig" or header.get("alg") != key.algorithm:
        return None
    verifier = _JWS_SIGNERS[key.algorithm]
    if not verifier.verify(signing_input, key.private_key.public_key(), signature):
        return None
    return payload


def verifying_key(key: object) -> PublicKey | None:
    """``key`` if it is a public key the realm's algorithms verify with (RSA, P-256/384/521,
    Ed25519), else None."""
    if isinstance(key, (rsa.RSAPublicKey, ed25519.Ed25519PublicKey)):
        return key
    if isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name in _CURVE_ALGORITHMS:
        return key
    return None


def _key_algorithms(public_key: PublicKey) -> tuple[str, ...]:
    if isinstance(public_key, rsa.RSAPublicKey):
        return RSA_ALGORITHMS
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        return (_CURVE_ALGORITHMS[public_key.curve.name],)
    return ("EdDSA",)


def signature_valid(
    signing_input: bytes, signature: bytes, algorithm: str, public_key: PublicKey
) -> bool:
    """Whether ``signature`` is ``public_key``'s over ``signing_input`` with ``algorithm``, an
    algorithm that fits the key's type and curve."""
    if algorithm not in _key_algorithms(public_key):
        return False
    try:
        return bool(_JWS_SIGNERS[algorithm].verify(signing_input, public_key, signature))
    except (ValueError, TypeError):  # e.g. an ECDSA signature of the wrong length
        return False


def half_hash(token: str, algorithm: str) -> str:
    """at_hash for ``token`` signed with ``algorithm``: the left half of its hash, base64url."""
    digest = _HASHES.get(algorithm[-3:], hashlib.sha512)(token.encode("ascii")).digest()
    return b64_text(digest[: len(digest) // 2])
