"""The caller side of DPoP (RFC 9449): a key that signs proofs, and the steps that put one on
every request ClientCredentials sends.

``DPoPKey`` signs proofs without I/O. ``DPoPSession.send`` is a generator step for the client's
flows: it signs the request with a fresh proof, yields it, and when the server answers
``use_dpop_nonce`` (at the token endpoint: 400 with that OAuth error; at a resource server: 401
with that challenge) signs it again with the server's ``DPoP-Nonce`` and yields it once more.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Generator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import pybase64
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from ._dpop import access_token_hash, jwk_thumbprint
from ._signing import SigningKey, signer

__all__ = ["DPoPKey", "DPoPSession"]

_EC_CURVE_NAMES = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}
_NONCE_ERROR = "use_dpop_nonce"


def _b64(data: bytes) -> str:
    return pybase64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64_int(value: int) -> str:
    return _b64(value.to_bytes((value.bit_length() + 7) // 8 or 1, "big"))


class DPoPKey:
    """A private key and the proofs it signs: ES256/384/512 for EC keys, RS256 for RSA, EdDSA
    for Ed25519, the keys a client assertion may be signed with too (``_signing``). The header
    (type, algorithm, public key) is the same for every proof, so it is encoded once."""

    def __init__(self, private_key: SigningKey) -> None:
        self._signer = signer(private_key, "dpop_key")
        self.public_jwk = _public_jwk(self._signer.key)
        self.thumbprint = jwk_thumbprint(self.public_jwk)
        header = {"typ": "dpop+jwt", "alg": self.alg, "jwk": self.public_jwk}
        self._header = _b64(json.dumps(header, separators=(",", ":")).encode())

    @property
    def alg(self) -> str:
        return self._signer.algorithm

    @classmethod
    def generate(cls) -> DPoPKey:
        """A fresh P-256 key (ES256), the algorithm every DPoP server supports."""
        return cls(ec.generate_private_key(ec.SECP256R1()))

    def __repr__(self) -> str:
        return f"DPoPKey({self.alg}, jkt={self.thumbprint!r})"

    def proof(
        self,
        method: str,
        url: str,
        *,
        access_token: str | None = None,
        nonce: str | None = None,
    ) -> str:
        """A proof for one request: ``htu`` is ``url`` without query and fragment, ``ath``
        hashes ``access_token`` when one is sent, ``nonce`` is the server's if it asked."""
        claims: dict[str, Any] = {
            "jti": secrets.token_urlsafe(16),
            "htm": method,
            "htu": htu_of(url),
            "iat": int(time.time()),
        }
        if access_token is not None:
            claims["ath"] = access_token_hash(access_token)
        if nonce is not None:
            claims["nonce"] = nonce
        payload = _b64(json.dumps(claims, separators=(",", ":")).encode())
        signing_input = f"{self._header}.{payload}".encode("ascii")
        return f"{self._header}.{payload}.{_b64(self._signer.sign(signing_input))}"


def _public_jwk(key: SigningKey) -> dict[str, str]:
    if isinstance(key, ec.EllipticCurvePrivateKey):
        numbers = key.public_key().public_numbers()
        size = (key.curve.key_size + 7) // 8
        return {
            "kty": "EC",
            "crv": _EC_CURVE_NAMES[key.curve.name],
            "x": _b64(numbers.x.to_bytes(size, "big")),
            "y": _b64(numbers.y.to_bytes(size, "big")),
        }
    if isinstance(key, rsa.RSAPrivateKey):
        public = key.public_key().public_numbers()
        return {"kty": "RSA", "e": _b64_int(public.e), "n": _b64_int(public.n)}
    assert isinstance(key, ed25519.Ed25519PrivateKey)
    return {"kty": "OKP", "crv": "Ed25519", "x": _b64(key.public_key().public_bytes_raw())}


def htu_of(url: str) -> str:
    """RFC 9449 section 4.2: the request URL without query and fragment."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path or "/", "", ""))


def _origin(url: httpx.URL | str) -> str:
    parts = urlsplit(str(url))
    return f"{parts.scheme}://{parts.netloc}".lower()


class DPoPSession:
    """A DPoPKey and the latest nonce each server (origin) gave: what a client needs to sign
    its requests. Nonces are replaced whole, so threads sharing one session need no lock."""

    def __init__(self, key: DPoPKey) -> None:
        self.key = key
        self._nonces: dict[str, str] = {}

    def proof(self, method: str, url: str, access_token: str | None, nonce: str | None) -> str:
        if nonce is not None:
            self._nonces[_origin(url)] = nonce
        else:
            nonce = self._nonces.get(_origin(url))
        return self.key.proof(method, url, access_token=access_token, nonce=nonce)

    def sign(self, request: httpx.Request, access_token: str | None) -> httpx.Request:
        """A fresh proof on ``request`` (and ``Authorization: DPoP`` when a token is sent)."""
        request.headers["DPoP"] = self.proof(request.method, str(request.url), access_token, None)
        if access_token is not None:
            request.headers["Authorization"] = f"DPoP {access_token}"
        return request

    def send(
        self, request: httpx.Request, access_token: str | None
    ) -> Generator[httpx.Request, Any, Any]:
        """Yield ``request`` signed; once more, signed with the server's nonce, if it asked for
        one. Returns the last outcome (a response, or whatever the driver sent back)."""
        outcome = yield self.sign(request, access_token)
        if (
            isinstance(outcome, httpx.Response)
            and self.learn_nonce(request.url, outcome)
            and isinstance(request.stream, httpx.ByteStream)
        ):
            outcome = yield self.sign(request, access_token)
        return outcome

    def learn_nonce(self, url: httpx.URL | str, response: httpx.Response) -> bool:
        """Keep the server's ``DPoP-Nonce``; True when the answer was ``use_dpop_nonce``."""
        nonce = response.headers.get("DPoP-Nonce")
        if not nonce:
            return False
        self._nonces[_origin(url)] = nonce
        return asks_for_nonce(response)


def asks_for_nonce(response: Any) -> bool:
    """Whether an httpx or requests answer is RFC 9449's ``use_dpop_nonce`` (section 8 at a
    token endpoint: 400 and the OAuth error; section 9 at a resource server: 401 and the
    challenge)."""
    status = response.status_code
    if status == 401:
        return _NONCE_ERROR in response.headers.get("WWW-Authenticate", "")
    if status != 400:
        return False
    try:
        body = response.json()
    except (ValueError, httpx.ResponseNotRead):
        return False
    return isinstance(body, dict) and body.get("error") == _NONCE_ERROR
