"""The one error tree of keycloak-m2m.

Every error knows how it is answered over HTTP (status, RFC 6750 error code, ``WWW-Authenticate``),
so adapters only translate. Descriptions are fixed phrases chosen at the raise site: they never
carry the token or a claim value, because they are sent back to whoever presented the token.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from typing import ClassVar

__all__ = [
    "AuthError",
    "CertificateMismatch",
    "ClientNotAllowed",
    "ExpiredToken",
    "InsufficientScope",
    "IntrospectionUnavailable",
    "InvalidAudience",
    "InvalidClaim",
    "InvalidDPoPProof",
    "InvalidIssuer",
    "InvalidRequest",
    "InvalidSignature",
    "InvalidToken",
    "InvalidTokenType",
    "KeysUnavailable",
    "MalformedToken",
    "MissingToken",
    "NotServiceAccount",
    "ReplayCacheUnavailable",
    "TokenNotYetValid",
    "TokenRevoked",
    "Unavailable",
    "UnknownKey",
    "UseDPoPNonce",
]

# RFC 9449 section 7.1: a DPoP challenge lists the proof algorithms the server accepts. The
# proof checks accept exactly these, so the challenge and the checks cannot disagree.
DPOP_ALGORITHMS = ("ES256", "ES384", "ES512", "EdDSA", "Ed25519", "PS256", "RS256")

# RFC 6750 section 3: quoted values may hold %x20-21 / %x23-5B / %x5D-7E only.
_UNSAFE_HEADER_CHARS = re.compile(r"[^\x20\x21\x23-\x5b\x5d-\x7e]")


def _quoted(value: str) -> str:
    return '"' + _UNSAFE_HEADER_CHARS.sub("?", value) + '"'


class AuthError(Exception):
    """Base of every error that ``validate`` and the adapters raise."""

    status_code: ClassVar[int] = 401
    error: ClassVar[str | None] = None
    default_description: ClassVar[str] = "authentication failed"
    # The caller refused, when it is known (a valid token lacking a grant): for the audit log.
    client_id: str | None = None
    # The authentication schemes whose challenges an answer carries (RFC 9110 section 11.6.1
    # allows several in one header); MissingToken names those the route accepts.
    schemes: tuple[str, ...] = ("Bearer",)

    def __init__(self, description: str | None = None) -> None:
        self.description = description or self.default_description
        super().__init__(self.description)

    def _challenge_params(self) -> list[tuple[str, str]]:
        if self.error is None:
            return []
        return [("error", self.error), ("error_description", self.description)]

    def www_authenticate(self, realm: str) -> str:
        """The ``WWW-Authenticate`` header value for this error: one challenge per scheme."""
        params = [("realm", realm), *self._challenge_params()]
        return ", ".join(_challenge(scheme, params) for scheme in self.schemes)

    def response_headers(self, realm: str) -> dict[str, str]:
        """Every header an HTTP answer to this error carries."""
        return {"WWW-Authenticate": self.www_authenticate(realm)}

    def response_body(self) -> dict[str, str]:
        """The JSON body of an HTTP answer: ``{"error": ..., "error_description": ...}``."""
        return {"error": self.error or "unauthorized", "error_description": self.description}


def _challenge(scheme: str, params: list[tuple[str, str]]) -> str:
    if scheme == "DPoP":
        params = [*params, ("algs", " ".join(DPOP_ALGORITHMS))]
    return scheme + " " + ", ".join(f"{name}={_quoted(value)}" for name, value in params)


class MissingToken(AuthError):
    """No token was presented: answered with a bare challenge (RFC 6750 section 3.1) for each
    scheme the route accepts (RFC 9449 section 7.1 for DPoP)."""

    default_description = "bearer token required"

    def __init__(self, description: str | None = None, *, schemes: tuple[str, ...] = ()) -> None:
        super().__init__(description)
        if schemes:
            self.schemes = schemes


class InvalidRequest(AuthError):
    """The request carries the token in a way RFC 6750 forbids, e.g. in two places at once."""

    status_code = 400
    error = "invalid_request"
    default_description = "malformed authorization request"


class InvalidToken(AuthError):
    """The token is not acceptable; subclasses say why."""

    error = "invalid_token"
    default_description = "invalid token"


class MalformedToken(InvalidToken):
    """Structure, encoding, JSON, size or header rules are broken, or the algorithm is refused."""

    default_description = "malformed token"


class InvalidClaim(InvalidToken):
    """A claim is missing, of the wrong type or shape, or contradicts another claim."""

    default_description = "invalid claim"


class ExpiredToken(InvalidToken):
    default_description = "token expired"


class TokenNotYetValid(InvalidToken):
    default_description = "token not yet valid"


class InvalidSignature(InvalidToken):
    default_description = "signature verification failed"


class UnknownKey(InvalidToken):
    """No key of the issuer's key set fits the token's ``kid`` and algorithm."""

    default_description = "signing key not found"


class InvalidIssuer(InvalidToken):
    default_description = "issuer mismatch"


class InvalidAudience(InvalidToken):
    default_description = "audience mismatch"


class InvalidTokenType(InvalidToken):
    default_description = "wrong token type"


class ClientNotAllowed(InvalidToken):
    default_description = "client not allowed"


class NotServiceAccount(InvalidToken):
    default_description = "not a service-account token"


class CertificateMismatch(InvalidToken):
    """The token is bound to a TLS client certificate (RFC 8705) the request was not made with,
    or a bound token is required and this one is not."""

    default_description = "certificate mismatch"


class TokenRevoked(InvalidToken):
    """The issuer's introspection endpoint says the token is no longer active (RFC 7662):
    revoked, its client disabled, its session ended."""

    default_description = "token revoked or inactive"


class InvalidDPoPProof(AuthError):
    """The DPoP proof is missing, malformed, or does not fit the request or the token
    (RFC 9449 section 7.1): challenged with the DPoP scheme and the accepted algorithms."""

    error = "invalid_dpop_proof"
    default_description = "invalid DPoP proof"
    schemes = ("DPoP",)


class UseDPoPNonce(InvalidDPoPProof):
    """The proof lacks a current server nonce (RFC 9449 section 9): ``nonce`` goes back in the
    ``DPoP-Nonce`` header, for the client to sign into its next proof."""

    error = "use_dpop_nonce"
    default_description = "a DPoP nonce is required"

    def __init__(self, nonce: str, description: str | None = None) -> None:
        self.nonce = nonce
        super().__init__(description)

    def response_headers(self, realm: str) -> dict[str, str]:
        return {**super().response_headers(realm), "DPoP-Nonce": self.nonce}


class InsufficientScope(AuthError):
    """The token is valid but lacks roles or scopes the resource requires."""

    status_code = 403
    error = "insufficient_scope"
    default_description = "insufficient scope"

    def __init__(
        self,
        *,
        missing_roles: Iterable[str] = (),
        missing_client_roles: Iterable[tuple[str, str]] = (),
        missing_scopes: Iterable[str] = (),
        wanted_any_roles: Iterable[str] = (),
        wanted_any_scopes: Iterable[str] = (),
        refused_by_policy: bool = False,
    ) -> None:
        self.missing_roles = tuple(missing_roles)
        self.missing_client_roles = tuple(missing_client_roles)
        self.missing_scopes = tuple(missing_scopes)
        # Alternatives of which the caller holds none (any_roles=, any_scopes=).
        self.wanted_any_roles = tuple(wanted_any_roles)
        self.wanted_any_scopes = tuple(wanted_any_scopes)
        self.refused_by_policy = refused_by_policy
        parts = []
        if self.missing_roles:
            parts.append("missing realm roles: " + ", ".join(self.missing_roles))
        if self.wanted_any_roles:
            parts.append("needs one of realm roles: " + ", ".join(self.wanted_any_roles))
        if self.missing_client_roles:
            named = (f"{client}/{role}" for client, role in self.missing_client_roles)
            parts.append("missing client roles: " + ", ".join(named))
        if self.missing_scopes:
            parts.append("missing scopes: " + ", ".join(self.missing_scopes))
        if self.wanted_any_scopes:
            parts.append("needs one of scopes: " + ", ".join(self.wanted_any_scopes))
        if refused_by_policy:
            # Fixed: whatever the application's check looked at stays on the server.
            parts.append("refused by the access policy")
        super().__init__("; ".join(parts) or None)

    def _challenge_params(self) -> list[tuple[str, str]]:
        params = super()._challenge_params()
        if self.missing_scopes:
            params.append(("scope", " ".join(self.missing_scopes)))
        return params


class Unavailable(AuthError):
    """The token cannot be decided now because a service of the issuer cannot be reached:
    503 with ``Retry-After``."""

    status_code = 503
    default_description = "temporarily unavailable"

    def __init__(self, retry_after: float, description: str | None = None) -> None:
        self.retry_after = max(1, math.ceil(retry_after))
        super().__init__(description)

    def response_headers(self, realm: str) -> dict[str, str]:
        return {**super().response_headers(realm), "Retry-After": str(self.retry_after)}

    def response_body(self) -> dict[str, str]:
        return {"error": "temporarily_unavailable", "error_description": self.description}


class KeysUnavailable(Unavailable):
    """No usable signing key: the key endpoint cannot be reached and nothing usable is cached."""

    default_description = "signing keys temporarily unavailable"


class IntrospectionUnavailable(Unavailable):
    """The introspection endpoint gave no answer, and ``on_failure="refuse"``."""

    default_description = "token introspection temporarily unavailable"


class ReplayCacheUnavailable(Unavailable):
    """The shared DPoP replay cache cannot be reached and is set to refuse meanwhile: a proof
    whose first use cannot be established is not accepted."""

    default_description = "DPoP replay cache temporarily unavailable"
