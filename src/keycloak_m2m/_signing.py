"""The signatures the package makes itself: a client assertion (RFC 7523) and a DPoP proof
(RFC 9449) are both a JWS signed with a private key of the caller's. Which keys may sign, with
which algorithm, and how the signature is written (RFC 7518) are decided here, once.
"""

from __future__ import annotations

from typing import Final, TypeAlias

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

__all__ = ["Signer", "SigningKey", "signer"]

SigningKey: TypeAlias = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey

_MIN_RSA_BITS = 2048
# The curves Keycloak verifies signatures on (Signed JWT clients, DPoP proofs), with their JWS
# algorithm and hash.
_CURVES: Final[dict[str, tuple[str, hashes.HashAlgorithm]]] = {
    "secp256r1": ("ES256", hashes.SHA256()),
    "secp384r1": ("ES384", hashes.SHA384()),
    "secp521r1": ("ES512", hashes.SHA512()),
}
_KEY_KINDS = "an RSA (2048 bits or more), EC (P-256, P-384, P-521) or Ed25519 private key"


class Signer:
    """A private key and the JWS algorithm it signs with."""

    __slots__ = ("algorithm", "key")

    def __init__(self, key: SigningKey, algorithm: str) -> None:
        self.key = key
        self.algorithm = algorithm

    def __repr__(self) -> str:
        return f"Signer({self.algorithm})"

    def sign(self, data: bytes) -> bytes:
        key = self.key
        if isinstance(key, rsa.RSAPrivateKey):
            return key.sign(data, padding.PKCS1v15(), hashes.SHA256())
        if isinstance(key, ec.EllipticCurvePrivateKey):
            _, hash_algorithm = _CURVES[key.curve.name]
            r, s = decode_dss_signature(key.sign(data, ec.ECDSA(hash_algorithm)))
            size = (key.curve.key_size + 7) // 8  # JWS: r and s at the curve's full width
            return r.to_bytes(size, "big") + s.to_bytes(size, "big")
        return key.sign(data)


def signer(key: object, option: str) -> Signer:
    """``key`` checked and ready to sign; a ValueError naming ``option`` for any other key."""
    if isinstance(key, rsa.RSAPrivateKey):
        if key.key_size < _MIN_RSA_BITS:
            raise ValueError(f"{option}: RSA keys need at least {_MIN_RSA_BITS} bits")
        return Signer(key, "RS256")
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name in _CURVES:
        return Signer(key, _CURVES[key.curve.name][0])
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return Signer(key, "EdDSA")
    raise ValueError(f"{option} must be {_KEY_KINDS}")
