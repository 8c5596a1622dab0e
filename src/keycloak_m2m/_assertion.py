"""RFC 7523 client assertions: the JWT a client signs instead of sending a shared secret.

Keycloak calls this client authenticator "Signed JWT". No I/O: the caller passes the time.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from typing import TypeAlias

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

__all__ = ["ASSERTION_TYPE", "SigningKey", "client_assertion", "signing_key"]

SigningKey: TypeAlias = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
# Long enough for a slow network and a skewed clock, short enough that a captured assertion is
# soon worthless; Keycloak also refuses a reused jti.
_LIFETIME = 60
_P256_BYTES = 32


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _key_id(key: SigningKey) -> str:
    # Keycloak's KeyUtils.createKeyId: base64url(SHA-256(DER SubjectPublicKeyInfo)), the kid it
    # gives a key imported from a certificate or PEM.
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return _b64url(hashlib.sha256(der).digest())


class _Signer:
    """A private key with its algorithm and kid, worked out once."""

    __slots__ = ("algorithm", "key", "key_id")

    def __init__(self, key: SigningKey) -> None:
        self.key = key
        self.algorithm = "RS256" if isinstance(key, rsa.RSAPrivateKey) else "ES256"
        self.key_id = _key_id(key)

    def sign(self, data: bytes) -> bytes:
        if isinstance(self.key, rsa.RSAPrivateKey):
            return self.key.sign(data, padding.PKCS1v15(), hashes.SHA256())
        r, s = decode_dss_signature(self.key.sign(data, ec.ECDSA(hashes.SHA256())))
        return r.to_bytes(_P256_BYTES, "big") + s.to_bytes(_P256_BYTES, "big")


def signing_key(key: object) -> _Signer:
    """Check ``key`` (an RSA key of 2048 bits or more, or a P-256 key) and prepare it."""
    if isinstance(key, rsa.RSAPrivateKey):
        if key.key_size < 2048:
            raise ValueError("private_key: RSA keys need at least 2048 bits")
        return _Signer(key)
    if isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP256R1):
        return _Signer(key)
    raise ValueError("private_key must be an RSA or a P-256 (ES256) private key of cryptography")


def client_assertion(signer: _Signer, client_id: str, token_url: str, now: float) -> str:
    """A fresh assertion: ``iss`` = ``sub`` = the client, ``aud`` = the token endpoint, a new
    ``jti``, valid for a minute from ``now``."""
    header = {"alg": signer.algorithm, "typ": "JWT", "kid": signer.key_id}
    issued_at = int(now)
    claims = {
        "iss": client_id,
        "sub": client_id,
        "aud": token_url,
        "jti": secrets.token_urlsafe(18),
        "iat": issued_at,
        "exp": issued_at + _LIFETIME,
    }
    signing_input = ".".join(
        _b64url(json.dumps(part, separators=(",", ":")).encode("utf-8"))
        for part in (header, claims)
    )
    return signing_input + "." + _b64url(signer.sign(signing_input.encode("ascii")))
