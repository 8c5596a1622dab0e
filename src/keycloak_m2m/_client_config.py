"""ClientCredentials' configuration: every option checked once, at construction, into Settings.

A wrong option is a ValueError naming it, raised before any request is made; what passes is held
in frozen dataclasses the flows read.
"""

from __future__ import annotations

import os
import random
import re
import ssl
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal, TypeAlias, get_args
from urllib.parse import quote

import httpx

from ._client_auth import read_secret
from ._options import http_url, is_number, require, text

AuthMethod: TypeAlias = Literal["client_secret_basic", "client_secret_post", "private_key_jwt"]
_AUTH_METHODS: tuple[AuthMethod, ...] = get_args(AuthMethod)

_TOKEN_PATH = "/protocol/openid-connect/token"  # noqa: S105 - a path

CertificatePair: TypeAlias = tuple[str | os.PathLike[str], str | os.PathLike[str]]


@dataclass(frozen=True, slots=True)
class Retry:
    max_retries: int
    backoff: float
    max_backoff: float

    def delay(self, retry: int) -> float:
        """Exponential, capped, with jitter so a fleet restarted together does not retry in step."""
        ceiling = min(self.max_backoff, self.backoff * 2 ** (retry - 1))
        return random.uniform(ceiling / 2, ceiling)  # noqa: S311 - timing jitter, not a secret


@dataclass(frozen=True, slots=True)
class Settings:
    token_url: str
    client_id: str
    # None with private_key_jwt, or with tls_client_auth, where the certificate authenticates.
    client_secret: str | None = field(repr=False)
    # Read again when the server refuses the client: the secret may have rotated.
    secret_file: str | None
    scopes: tuple[str, ...]
    audience: str | None
    auth_method: AuthMethod
    renewal_margin: float
    timeout: float
    retry: Retry


def settings(
    *,
    client_id: str,
    client_secret: str | None,
    client_secret_file: str | os.PathLike[str] | None,
    cert: CertificatePair | None,
    signs: bool,
    token_url: str | None,
    keycloak_url: str | None,
    realm: str | None,
    legacy_auth_prefix: bool,
    scopes: str | Iterable[str],
    audience: str | None,
    auth_method: AuthMethod,
    renewal_margin: float,
    timeout: float,
    max_retries: int,
    backoff: float,
    max_backoff: float,
) -> Settings:
    """The constructor's options, checked. ``signs``: whether a private key was given."""
    require(auth_method in _AUTH_METHODS, "auth_method must be " + " or ".join(_AUTH_METHODS))
    require(
        audience is None or (isinstance(audience, str) and audience != ""),
        "audience must be a non-empty string",
    )
    for name, value in (("renewal_margin", renewal_margin), ("backoff", backoff)):
        require(is_number(value) and value >= 0, f"{name} must be a number >= 0")
    require(is_number(timeout) and timeout > 0, "timeout must be a number > 0")
    require(is_number(max_backoff) and max_backoff >= backoff, "max_backoff must be >= backoff")
    require(type(max_retries) is int and max_retries >= 0, "max_retries must be an int >= 0")
    secret_file = None if client_secret_file is None else os.fspath(client_secret_file)
    secret = _secret(client_secret, secret_file, cert, auth_method, signs)
    return Settings(
        token_url=_token_url(token_url, keycloak_url, realm, legacy_auth_prefix),
        client_id=text("client_id", client_id),
        client_secret=secret,
        secret_file=secret_file,
        scopes=scope_names(scopes),
        audience=audience,
        auth_method=auth_method,
        renewal_margin=float(renewal_margin),
        timeout=float(timeout),
        retry=Retry(max_retries, float(backoff), float(max_backoff)),
    )


def _secret(
    client_secret: str | None,
    secret_file: str | None,
    cert: CertificatePair | None,
    auth_method: AuthMethod,
    signs: bool,
) -> str | None:
    # private_key_jwt signs an assertion with the key; with cert and no secret the TLS
    # certificate authenticates (tls_client_auth); the others send a secret.
    require(
        signs == (auth_method == "private_key_jwt"),
        "private_key goes with auth_method='private_key_jwt', and that method needs it",
    )
    secrets = (client_secret is not None) + (secret_file is not None)
    require(secrets <= 1, "give client_secret or client_secret_file, not both")
    require(
        not signs or secrets == 0,
        "private_key_jwt sends no secret: give no client_secret or client_secret_file",
    )
    require(
        signs or secrets == 1 or cert is not None,
        "give client_secret or client_secret_file (or cert, for TLS client authentication)",
    )
    if secret_file is not None:
        return read_secret(secret_file)
    return None if client_secret is None else text("client_secret", client_secret)


def _token_url(
    token_url: str | None, keycloak_url: str | None, realm: str | None, legacy_auth_prefix: bool
) -> str:
    if token_url is not None:
        require(
            keycloak_url is None and realm is None,
            "give token_url or keycloak_url and realm, not both",
        )
        return http_url("token_url", text("token_url", token_url))
    require(
        keycloak_url is not None and realm is not None,
        "give token_url, or keycloak_url and realm",
    )
    base = http_url("keycloak_url", text("keycloak_url", keycloak_url)).rstrip("/")
    prefix = "/auth" if legacy_auth_prefix else ""
    return f"{base}{prefix}/realms/{quote(text('realm', realm), safe='')}{_TOKEN_PATH}"


def scope_names(scopes: str | Iterable[str]) -> tuple[str, ...]:
    # A lone string is the OAuth scope parameter itself: space-separated names.
    names = tuple(scopes.split() if isinstance(scopes, str) else scopes)
    require(
        all(isinstance(name, str) and name and not re.search(r"\s", name) for name in names),
        "scopes must be names without whitespace",
    )
    return names


def certificate_context(
    cert: CertificatePair, token_url: str, verify: bool | str | ssl.SSLContext
) -> ssl.SSLContext:
    """The TLS context that presents the client certificate (mutual TLS, RFC 8705), trusting
    the certificate authorities ``verify`` names."""
    require(
        isinstance(cert, tuple) and len(cert) == 2,
        "cert must be a (certificate file, private key file) pair",
    )
    require(token_url.startswith("https:"), "cert needs an https token URL")
    require(
        not isinstance(verify, ssl.SSLContext),
        "with cert, give verify as True or a CA bundle path (or load the certificate into "
        "your own SSLContext and pass that as verify, without cert)",
    )
    context = (
        httpx.create_ssl_context()
        if verify is True
        else ssl.create_default_context(
            cafile=os.fspath(verify)  # type: ignore[arg-type]
        )
    )
    context.load_cert_chain(*cert)
    return context
