"""keycloak-m2m: validate and obtain Keycloak machine-to-machine tokens, sync and async."""

from ._client import ClientCredentials, TokenRequestError
from ._discovery import DiscoveryError
from ._errors import (
    AuthError,
    CertificateMismatch,
    ClientNotAllowed,
    ExpiredToken,
    InsufficientScope,
    IntrospectionUnavailable,
    InvalidAudience,
    InvalidClaim,
    InvalidDPoPProof,
    InvalidIssuer,
    InvalidRequest,
    InvalidSignature,
    InvalidToken,
    InvalidTokenType,
    KeysUnavailable,
    MalformedToken,
    MissingToken,
    NotServiceAccount,
    ReplayCacheUnavailable,
    TokenNotYetValid,
    TokenRevoked,
    UnknownKey,
    UseDPoPNonce,
)
from ._introspection import Introspection
from ._multi import MultiIssuerValidator
from ._principal import Principal
from ._replay import MemoryReplayCache, ReplayCache
from ._validator import TokenValidator

__all__ = [
    "AuthError",
    "CertificateMismatch",
    "ClientCredentials",
    "ClientNotAllowed",
    "DiscoveryError",
    "ExpiredToken",
    "InsufficientScope",
    "Introspection",
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
    "MemoryReplayCache",
    "MissingToken",
    "MultiIssuerValidator",
    "NotServiceAccount",
    "Principal",
    "ReplayCache",
    "ReplayCacheUnavailable",
    "TokenNotYetValid",
    "TokenRequestError",
    "TokenRevoked",
    "TokenValidator",
    "UnknownKey",
    "UseDPoPNonce",
]
