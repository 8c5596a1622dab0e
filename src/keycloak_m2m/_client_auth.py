"""How a client proves who it is to Keycloak: a secret (sent as Basic credentials or in the
form, possibly read from a file) or an RFC 7523 client assertion signed with its private key.

ClientCredentials and the validator's introspection client both authenticate as a client; the
rules for their keys, secret files and credentials are these, once. Keycloak calls the signed
assertion "Signed JWT". No network I/O: the caller passes the time.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from typing import Final, TypeAlias
from urllib.parse import quote_plus

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

__all__ = [
    "ASSERTION_TYPE",
    "Signer",
    "SigningKey",
    "basic_credentials",
    "client_assertion",
    "read_secret",
    "signing_key",
]

SigningKey: TypeAlias = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
ASSERTION_TYPE: Final = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
# Long enough for a slow network and a skewed clock, short enough that a captured assertion is
# soon worthless; Keycloak also refuses a reused jti.
_LIFETIME = 60
_MIN_RSA_BITS = 2048
# The curves Keycloak's Signed JWT authenticator verifies, with their JWS algorithm and hash.
_CURVES: Final[dict[str, tuple[str, hashes.HashAlgorithm]]] = {
    "secp256r1": ("ES256", hashes.SHA256()),
    "secp384r1": ("ES384", hashes.SHA384()),
    "secp521r1": ("ES512", hashes.SHA512()),
}
_KEY_KINDS = "an RSA (2048 bits or more), EC (P-256, P-384, P-521) or Ed25519 private key"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _key_id(key: SigningKey) -> str:
    # Keycloak's KeyUtils.createKeyId: base64url(SHA-256(DER SubjectPublicKeyInfo)), the kid it
    # gives a key imported from a certificate or PEM.
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return _b64url(hashlib.sha256(der).digest())


class Signer:
    """A private key with its algorithm and kid, worked out once."""

    __slots__ = ("algorithm", "key", "key_id")

    def __init__(self, key: SigningKey, algorithm: str) -> None:
        self.key = key
        self.algorithm = algorithm
        self.key_id = _key_id(key)

    def __repr__(self) -> str:
        return f"Signer({self.algorithm}, kid={self.key_id!r})"

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


def signing_key(key: object) -> Signer:
    """Check ``key`` (a private key of cryptography, or its unencrypted PEM) and prepare it."""
    if isinstance(key, (str, bytes)):
        try:
            key = serialization.load_pem_private_key(
                key.encode() if isinstance(key, str) else key, None
            )
        except (ValueError, TypeError):
            raise ValueError("private_key is not an unencrypted PEM private key") from None
    if isinstance(key, rsa.RSAPrivateKey):
        if key.key_size < _MIN_RSA_BITS:
            raise ValueError(f"private_key: RSA keys need at least {_MIN_RSA_BITS} bits")
        return Signer(key, "RS256")
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name in _CURVES:
        return Signer(key, _CURVES[key.curve.name][0])
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return Signer(key, "EdDSA")
    raise ValueError(f"private_key must be {_KEY_KINDS}, or its PEM")


def client_assertion(signer: Signer, client_id: str, audience: str, now: float) -> str:
    """A fresh assertion: ``iss`` = ``sub`` = the client, ``aud`` = ``audience`` (the endpoint
    or the issuer), a new ``jti``, valid for a minute from ``now``."""
    header = {"alg": signer.algorithm, "typ": "JWT", "kid": signer.key_id}
    issued_at = int(now)
    claims = {
        "iss": client_id,
        "sub": client_id,
        "aud": audience,
        "jti": secrets.token_urlsafe(18),
        "iat": issued_at,
        "exp": issued_at + _LIFETIME,
    }
    signing_input = ".".join(
        _b64url(json.dumps(part, separators=(",", ":")).encode("utf-8"))
        for part in (header, claims)
    )
    return signing_input + "." + _b64url(signer.sign(signing_input.encode("ascii")))


def basic_credentials(client_id: str, secret: str) -> str:
    """The ``Authorization: Basic`` value for a client and its secret."""
    # RFC 6749 2.3.1: each half is form-urlencoded before the two are joined.
    pair = f"{quote_plus(client_id)}:{quote_plus(secret)}"
    return base64.b64encode(pair.encode()).decode("ascii")


def read_secret(path: str) -> str:
    """The secret in ``path``, without the line end an editor or ``kubectl`` may leave."""
    try:
        with open(path, encoding="utf-8") as file:
            secret = file.read().rstrip("\r\n")
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(
            f"client_secret_file {path} cannot be read ({type(error).__name__})"
        ) from None
    if secret == "":
        raise ValueError(f"client_secret_file {path} is empty")
    return secret
