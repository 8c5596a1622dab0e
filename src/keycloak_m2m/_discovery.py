"""Where a validator finds its issuer's key set: at the URL its options give or imply, or at the
``jwks_uri`` of the issuer's discovery document (OpenID Connect Discovery 1.0).

No I/O: the validator fetches the document and hands it over.
"""

from __future__ import annotations

import json
from typing import Any, Final
from urllib.parse import urlsplit

from ._http import Connection, FetchFailure, FetchPolicy
from ._options import http_url, is_number, require

__all__ = [
    "CERTS_PATH",
    "DiscoveryError",
    "discovery_policy",
    "discovery_url",
    "jwks_uri_from",
    "key_set_url",
]

CERTS_PATH: Final = "/protocol/openid-connect/certs"
_DISCOVERY_PATH: Final = "/.well-known/openid-configuration"


class DiscoveryError(Exception):
    """The discovery document could not be fetched or does not describe the expected issuer."""


def key_set_url(issuer: str, jwks_url: str | None, keycloak_url: str | None) -> str:
    require(jwks_url is None or keycloak_url is None, "give jwks_url or keycloak_url, not both")
    if jwks_url is not None:
        return http_url("jwks_url", jwks_url)
    if keycloak_url is not None:
        # Keycloak reached on an internal address: same realm path (with any legacy /auth),
        # another base. The issuer stays the public one.
        base = http_url("keycloak_url", keycloak_url).rstrip("/")
        return base + urlsplit(issuer).path.rstrip("/") + CERTS_PATH
    return http_url("issuer", issuer).rstrip("/") + CERTS_PATH


def discovery_policy(options: dict[str, Any]) -> FetchPolicy:
    """Discovery goes out as the key fetches will: same deadline, CAs and proxy."""
    timeout = options.get("jwks_timeout", 5.0)
    require(is_number(timeout) and timeout > 0, "jwks_timeout must be a number > 0")
    connection = Connection.create(options.get("verify", True), options.get("proxy"))
    return FetchPolicy(timeout=float(timeout), connection=connection)


def discovery_url(issuer: str) -> str:
    return http_url("issuer", issuer).rstrip("/") + _DISCOVERY_PATH


def jwks_uri_from(document: bytes | FetchFailure, issuer: str, options: dict[str, Any]) -> str:
    require(
        "jwks_url" not in options and "keycloak_url" not in options,
        "from_discovery takes the key set URL from the discovery document",
    )
    if isinstance(document, FetchFailure):
        raise DiscoveryError(f"discovery document unavailable: {document.reason}")
    try:
        metadata = json.loads(document)
    except (ValueError, RecursionError):
        raise DiscoveryError("discovery document is not JSON") from None
    if not isinstance(metadata, dict):
        raise DiscoveryError("discovery document is not a JSON object")
    if metadata.get("issuer") != issuer:
        raise DiscoveryError("discovery document names another issuer")
    jwks_uri = metadata.get("jwks_uri")
    if not isinstance(jwks_uri, str):
        raise DiscoveryError("discovery document has no jwks_uri")
    try:
        return http_url("jwks_uri", jwks_uri)
    except ValueError as error:
        raise DiscoveryError(str(error)) from None
