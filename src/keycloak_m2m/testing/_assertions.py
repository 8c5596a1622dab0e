"""Keycloak's "Signed JWT" client authenticator: RFC 7523 client assertions (private_key_jwt).

A client registers the key it signs with, uploaded (a public key or certificate) or published at
a JWKS URL, as Keycloak's client "Keys" tab offers. The realm checks an assertion in Keycloak
26's order and answers as it does (JWTClientAuthenticator, AbstractBaseJWTValidator): an
assertion that names no client signing this way (an unknown or disabled client, a client with a
secret, ``iss`` other than ``sub``) gets the generic 401 ``invalid_client``; any other failure a
400 ``invalid_client`` with Keycloak's description.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

import httpx
import jwt
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ._keys import (
    SUPPORTED_ALGORITHMS,
    PublicKey,
    keycloak_kid,
    read_jws,
    signature_valid,
    verifying_key,
)
from ._protocol import ClientAuthenticationFailed, invalid_client

if TYPE_CHECKING:
    from ._claims import Client
    from ._realm import LocalRealm

__all__ = ["ASSERTION_TYPE", "AssertionKey", "assertion_client", "assertion_key"]

ASSERTION_TYPE: Final = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
# Keycloak's JWTClientValidator: 15 s of clock skew, and an assertion is good for at most the
# client's "Max expiration" (token.endpoint.auth.signing.max.exp, 60 s by default) after iat.
_CLOCK_SKEW: Final = 15
_MAX_LIFETIME: Final = 60
_JWKS_TIMEOUT: Final = 5.0
_SIGNATURE_FAILED: Final = (
    "Client authentication with signed JWT failed: Signature on JWT token failed validation"
)


@dataclass(frozen=True)
class AssertionKey:
    """The key a client's assertions are checked with: ``public_key`` as uploaded, or the
    signing key of the assertion's ``kid`` at ``jwks_url``, fetched for each assertion (so a
    client that rotates its published keys is followed at once)."""

    public_key: PublicKey | None = field(default=None, repr=False)
    jwks_url: str | None = None

    def for_assertion(self, kid: object) -> PublicKey | None:
        if self.public_key is not None:
            # Keycloak names an uploaded key by its KeyUtils.createKeyId; another kid finds
            # no key.
            return self.public_key if kid in (None, keycloak_kid(self.public_key)) else None
        assert self.jwks_url is not None
        return _published_key(self.jwks_url, kid)


def assertion_key(
    public_key: PublicKey | str | bytes | None, jwks_url: str | None
) -> AssertionKey | None:
    """The key ``add_client(public_key=..., jwks_url=...)`` registers, checked; None for
    neither."""
    if public_key is not None and jwks_url is not None:
        raise ValueError("give public_key or jwks_url, not both (Keycloak's 'Use JWKS URL')")
    if jwks_url is not None:
        if not jwks_url.startswith(("http://", "https://")):
            raise ValueError("jwks_url must be an http:// or https:// URL")
        return AssertionKey(jwks_url=jwks_url)
    if public_key is None:
        return None
    return AssertionKey(public_key=_loaded_public_key(public_key))


def _loaded_public_key(value: PublicKey | str | bytes) -> PublicKey:
    key: object = value
    if isinstance(value, (str, bytes)):
        pem = value.encode("ascii") if isinstance(value, str) else value
        try:
            if b"-----BEGIN CERTIFICATE-----" in pem:
                key = x509.load_pem_x509_certificate(pem).public_key()
            else:
                key = serialization.load_pem_public_key(pem)
        except ValueError:
            raise ValueError("public_key is not a PEM public key or certificate") from None
    checked = verifying_key(key)
    if checked is not None:
        return checked
    raise ValueError("public_key must be an RSA, P-256/384/521 or Ed25519 public key (or its PEM)")


def _published_key(jwks_url: str, kid: object) -> PublicKey | None:
    """The signing key ``kid`` names (the first signing key if the header has no kid) in the
    client's JWKS, or None if it cannot be had."""
    try:
        response = httpx.get(jwks_url, timeout=_JWKS_TIMEOUT, follow_redirects=False)
        document = response.json() if response.status_code == 200 else None
    except (httpx.HTTPError, ValueError):
        return None
    keys = document.get("keys") if isinstance(document, dict) else None
    for jwk in keys if isinstance(keys, list) else []:
        if not isinstance(jwk, dict) or jwk.get("use", "sig") != "sig":
            continue
        if kid is not None and jwk.get("kid") != kid:
            continue
        try:
            key = verifying_key(jwt.PyJWK(jwk).key)
        except jwt.PyJWTError:
            continue
        if key is not None:
            return key
    return None


# ---------------------------------------------------------------------------------------------
# Checking an assertion


def _refused(description: str) -> ClientAuthenticationFailed:
    return ClientAuthenticationFailed(400, "invalid_client", description)


def assertion_client(realm: LocalRealm, form: Mapping[str, str]) -> Client:
    """The client a token (or introspection, revocation) request's assertion authenticates;
    raises ``ClientAuthenticationFailed`` with Keycloak's answer otherwise."""
    assertion = _assertion_parameter(form)
    header, claims, signing_input, signature = _parsed(assertion)
    subject = claims.get("sub")
    if claims.get("iss") != subject:
        raise invalid_client()  # Keycloak leaves assertions signed by third parties alone
    if not isinstance(subject, str):
        raise _refused("Token sub claim is required")
    if form.get("client_id", subject) != subject:
        raise _refused("client_id parameter does not match sub claim")
    client = realm._client_or_none(subject)
    if client is None or not client.enabled or client.assertion_key is None:
        raise invalid_client()
    algorithm = header.get("alg")
    if algorithm not in SUPPORTED_ALGORITHMS:  # asymmetric only: never none or HS*
        raise _refused("Invalid signature algorithm")
    key = client.assertion_key.for_assertion(header.get("kid"))
    if key is None:
        raise _refused("Unable to load public key")
    if not signature_valid(signing_input, signature, str(algorithm), key):
        raise _refused(_SIGNATURE_FAILED)
    _check_audience(claims.get("aud"), _expected_audiences(realm))
    lifetime = _remaining_lifetime(claims, int(realm._clock()))
    jti = claims.get("jti")
    if not isinstance(jti, str):
        raise _refused("Token jti claim is required")
    if not realm._assertion_replay.first_use(jti, lifetime):
        raise _refused("Token reuse detected")
    return client


def _assertion_parameter(form: Mapping[str, str]) -> str:
    assertion_type = form.get("client_assertion_type")
    if assertion_type is None:
        raise _refused("Parameter client_assertion_type is missing")
    if assertion_type != ASSERTION_TYPE:
        raise _refused(
            f"Parameter client_assertion_type has value '{assertion_type}' but expected is "
            f"'{ASSERTION_TYPE}'"
        )
    assertion = form.get("client_assertion")
    if assertion is None:
        raise _refused("client_assertion parameter missing")
    return assertion


def _parsed(assertion: str) -> tuple[dict[str, Any], dict[str, Any], bytes, bytes]:
    """Header, claims, signing input and signature of a compact JWS whose time claims are
    integers; 400 otherwise (Keycloak fails to read it)."""
    parts = read_jws(assertion)
    if parts is None or not _well_typed(parts[1]):
        raise _refused("Client authentication with signed JWT failed: Failed to read the JWT")
    return parts


def _well_typed(claims: Mapping[str, Any]) -> bool:
    times_ok = all(
        name not in claims or (type(claims[name]) is int) for name in ("exp", "iat", "nbf")
    )
    aud = claims.get("aud")
    aud_ok = (
        aud is None
        or isinstance(aud, str)
        or (isinstance(aud, list) and all(isinstance(name, str) for name in aud))
    )
    return times_ok and aud_ok


def _expected_audiences(realm: LocalRealm) -> tuple[str, ...]:
    # Keycloak's list: the issuer and the endpoints where clients authenticate with assertions
    # (token, introspection, pushed authorization requests, CIBA), though this realm serves
    # neither of the last two.
    oidc = realm.issuer + "/protocol/openid-connect"
    return (
        realm.issuer,
        realm.token_url,
        realm.introspection_url,
        oidc + "/ext/par/request",
        oidc + "/ext/ciba/auth",
    )


def _check_audience(aud: str | list[str] | None, expected: tuple[str, ...]) -> None:
    audiences = [aud] if isinstance(aud, str) else list(aud or [])
    if not set(audiences) & set(expected):
        raise _refused("Invalid token audience")
    if len(audiences) > 1:
        raise _refused("Multiple audiences not allowed")


def _remaining_lifetime(claims: Mapping[str, Any], now: int) -> int:
    """How long the assertion's jti must be remembered (as long as it could be accepted); 400
    if it is not usable ``now``."""
    # Integers or absent: _parsed checked them.
    exp: int | None = claims.get("exp")
    iat: int | None = claims.get("iat")
    nbf: int | None = claims.get("nbf")
    if exp is None:
        raise _refused("Token exp claim is required")
    if now > exp + _CLOCK_SKEW or (nbf is not None and now + _CLOCK_SKEW < nbf):
        raise _refused("Token is not active")
    lifetime = exp - now
    if iat is None:
        if lifetime > _MAX_LIFETIME:
            raise _refused(
                "Token expiration is too far in the future and iat claim not present in token"
            )
        return max(lifetime, 0) + _CLOCK_SKEW
    if iat - _CLOCK_SKEW > now:
        raise _refused("Token was issued in the future")
    lifetime = min(lifetime, _MAX_LIFETIME)
    if lifetime <= 0:
        raise _refused("Token is not active")
    if now > iat + _MAX_LIFETIME:
        raise _refused("Token was issued too far in the past to be used now")
    return lifetime + _CLOCK_SKEW
