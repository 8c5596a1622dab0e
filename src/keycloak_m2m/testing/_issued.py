"""What a LocalRealm remembers of the tokens it issued, as Keycloak keeps it server side: the
full claims of lightweight access tokens (which introspection answers with), the opaque tokens
and what they stand for, and the revoked tokens.

Thread-safe: the realm's request threads and the test's thread use it at once.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
from typing import Any

from ._keys import payload_of

__all__ = ["IssuedTokens"]


class IssuedTokens:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        # Revoked tokens by jti (by digest when they have none).
        self._revoked: set[str] = set()
        # The full claims of the lightweight tokens issued, by jti.
        self._full_claims: dict[str, dict[str, Any]] = {}
        # The claims the opaque (non-JWT) tokens issued stand for, by token.
        self._opaque: dict[str, dict[str, Any]] = {}

    def remember_full(self, claims: dict[str, Any]) -> None:
        """Keep the full claims of a lightweight token, for introspection."""
        with self._lock:
            self._full_claims[str(claims["jti"])] = claims

    def full(self, claims: dict[str, Any]) -> dict[str, Any]:
        """The full claims of the token whose JWT carries ``claims``."""
        with self._lock:
            return self._full_claims.get(str(claims.get("jti")), claims)

    def opaque_token(self, claims: dict[str, Any]) -> str:
        """A new opaque token standing for ``claims``."""
        token = secrets.token_urlsafe(32)
        with self._lock:
            self._opaque[token] = claims
        return token

    def opaque_claims(self, token: str) -> dict[str, Any] | None:
        with self._lock:
            return self._opaque.get(token)

    def revoke(self, token: str) -> None:
        key = _revocation_key(token)
        with self._lock:
            self._revoked.add(key)

    def revoked(self, token: str) -> bool:
        key = _revocation_key(token)
        with self._lock:
            return key in self._revoked


def _revocation_key(token: str) -> str:
    payload = payload_of(token)
    jti = payload.get("jti") if payload is not None else None
    if isinstance(jti, str):
        return "jti:" + jti
    return "sha256:" + hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()
