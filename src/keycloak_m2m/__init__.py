"""keycloak-m2m: validate and obtain Keycloak machine-to-machine tokens, sync and async."""

from ._client import ClientCredentials, TokenRequestError
from ._errors import (
    AuthError,
    CertificateMismatch,
    ClientNotAllowed,
    ExpiredToken,
    InsufficientScope,
    IntrospectionUnavailable,
    InvalidAudience,
    InvalidClaim,
    InvalidIssuer,
    InvalidRequest,
    InvalidSignature,
    InvalidToken,
    InvalidTokenType,
    KeysUnavailable,
    MalformedToken,
    MissingToken,
    NotServiceAccount,
    TokenNotYetValid,
    TokenRevoked,
    UnknownKey,
)
from ._introspection import Introspection
from ._multi import MultiIssuerValidator
from ._principal import Principal
from ._validator import DiscoveryError, TokenValidator

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
    "InvalidIssuer",
    "InvalidRequest",
    "InvalidSignature",
    "InvalidToken",
    "InvalidTokenType",
    "KeysUnavailable",
    "MalformedToken",
    "MissingToken",
    "MultiIssuerValidator",
    "NotServiceAccount",
    "Principal",
    "TokenNotYetValid",
    "TokenRequestError",
    "TokenRevoked",
    "TokenValidator",
    "UnknownKey",
]
