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
from dataclasses import dataclass
from typing import Final
from urllib.parse import quote_plus

from cryptography.hazmat.primitives import serialization

from ._signing import Signer, SigningKey, signer

__all__ = [
    "ASSERTION_TYPE",
    "AssertionKey",
    "basic_credentials",
    "client_assertion",
    "read_secret",
    "signing_key",
]

ASSERTION_TYPE: Final = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
# Long enough for a slow network and a skewed clock, short enough that a captured assertion is
# soon worthless; Keycloak also refuses a reused jti.
_LIFETIME = 60


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _key_id(key: SigningKey) -> str:
    # Keycloak's KeyUtils.createKeyId: base64url(SHA-256(DER SubjectPublicKeyInfo)), the kid it
    # gives a key imported from a certificate or PEM.
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return _b64url(hashlib.sha256(der).digest())


@dataclass(frozen=True, slots=True)
class AssertionKey:
    """A client's signing key with the kid Keycloak knows it by, worked out once."""

    signer: Signer
    key_id: str


def signing_key(key: object) -> AssertionKey:
    """Check ``key`` (a private key of cryptography, or its unencrypted PEM) and prepare it."""
    if isinstance(key, (str, bytes)):
        try:
            key = serialization.load_pem_private_key(
                key.encode() if isinstance(key, str) else key, None
            )
        except (ValueError, TypeError):
            raise ValueError("private_key is not an unencrypted PEM private key") from None
    checked = signer(key, "private_key")
    return AssertionKey(checked, _key_id(checked.key))


def client_assertion(key: AssertionKey, client_id: str, audience: str, now: float) -> str:
    """A fresh assertion: ``iss`` = ``sub`` = the client, ``aud`` = ``audience`` (the endpoint
    or the issuer), a new ``jti``, valid for a minute from ``now``."""
    header = {"alg": key.signer.algorithm, "typ": "JWT", "kid": key.key_id}
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
    return signing_input + "." + _b64url(key.signer.sign(signing_input.encode("ascii")))


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
