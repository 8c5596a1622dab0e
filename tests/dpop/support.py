"""Proofs for the DPoP tests, honest or hostile, built byte by byte."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterable, Mapping
from typing import Any

import pybase64
from cryptography.hazmat.primitives.asymmetric import ec

from keycloak_m2m._client_dpop import DPoPKey
from keycloak_m2m._dpop import access_token_hash
from keycloak_m2m.testing._keys import composed

URL = "https://api.example.com/notifications"


def b64(data: bytes) -> bytes:
    return pybase64.urlsafe_b64encode(data).rstrip(b"=")


def new_key() -> DPoPKey:
    return DPoPKey(ec.generate_private_key(ec.SECP256R1()))


def private_jwk(key: DPoPKey) -> dict[str, Any]:
    numbers = key._signer.key.private_numbers()  # type: ignore[union-attr]
    d = b64(numbers.private_value.to_bytes(32, "big")).decode()
    return {**key.public_jwk, "d": d}


def proof(
    key: DPoPKey,
    *,
    token: str | None,
    iat: float,
    method: str = "GET",
    url: str = URL,
    header: Mapping[str, Any] | None = None,
    remove_header: Iterable[str] = (),
    claims: Mapping[str, Any] | None = None,
    remove: Iterable[str] = (),
    alg: str | None = None,
    signing_key: Any = None,
    signature: bytes | None = None,
) -> str:
    """A proof as ``key`` signs it, then changed: header and claim overrides and removals,
    another algorithm, another signing key or raw signature bytes."""
    members: dict[str, Any] = {"typ": "dpop+jwt", "alg": alg or key.alg, "jwk": key.public_jwk}
    members.update(header or {})
    for name in remove_header:
        members.pop(name, None)
    payload: dict[str, Any] = {
        "jti": secrets.token_urlsafe(12),
        "htm": method,
        "htu": url,
        "iat": iat,
    }
    if token is not None:
        payload["ath"] = access_token_hash(token)
    payload.update(claims or {})
    for name in remove:
        payload.pop(name, None)
    return composed(
        json.dumps(members).encode(),
        json.dumps(payload).encode(),
        alg or key.alg,
        signing_key if signing_key is not None else key._signer.key,
        signature,
    )
