"""Certificate-bound tokens (RFC 8705): the certificate comparison and the proxy headers.

Pure functions of their arguments: no I/O, no framework. A token bound to a TLS client
certificate carries ``cnf["x5t#S256"]``, the base64url SHA-256 of the certificate's DER; the
request is allowed only when the certificate it was made with has that thumbprint.

Where TLS ends at a proxy, the certificate reaches the application in a header the proxy sets;
such a header is trusted only when the adapter is told its name, because anyone can send it to
an application that is reachable without the proxy. Adapters hand the raw values over as a
``ForwardedCertificate`` and they are parsed here, on demand: a request whose token is not bound
never pays for it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeAlias
from urllib.parse import unquote

from ._errors import CertificateMismatch, InvalidClaim, InvalidRequest

__all__ = [
    "CERTIFICATE_HEADERS",
    "CertificateBound",
    "CertificateHeader",
    "ClientCertificate",
    "ForwardedCertificate",
    "bound_thumbprint",
    "certificate_header",
    "check_certificate",
    "matches",
    "thumbprint",
]

CertificateHeader: TypeAlias = Literal["ssl-client-cert", "x-forwarded-client-cert"]
CertificateBound: TypeAlias = Literal["allowed", "required"]
CERTIFICATE_HEADERS: Final[tuple[CertificateHeader, ...]] = (
    "ssl-client-cert",
    "x-forwarded-client-cert",
)

_PEM: Final = re.compile(r"-----BEGIN CERTIFICATE-----([A-Za-z0-9+/=\s]+)-----END CERTIFICATE-----")
_SHA256_HEX: Final = re.compile(r"[0-9A-Fa-f]{64}")
# One XFCC key=value pair: a bare value, or a quoted one in which \" and \\ stand for themselves.
_XFCC_PAIR: Final = re.compile(r'\s*([A-Za-z]+)=(?:"((?:[^"\\]|\\.)*)"|([^;,"]*))\s*(;|,|$)')
_X5T: Final = "x5t#S256"


@dataclass(frozen=True, slots=True)
class ForwardedCertificate:
    """The values of a trusted proxy's certificate header, as the request carried them."""

    header: CertificateHeader
    values: tuple[str, ...]


ClientCertificate: TypeAlias = str | bytes | ForwardedCertificate


def certificate_header(name: object) -> CertificateHeader | None:
    """An adapter's ``client_cert_header`` setting, checked: None, or a header we can parse."""
    if name is None:
        return None
    if not isinstance(name, str) or name.lower() not in CERTIFICATE_HEADERS:
        raise ValueError("client_cert_header must be one of " + ", ".join(CERTIFICATE_HEADERS))
    header: CertificateHeader = name.lower()  # type: ignore[assignment]
    return header


def thumbprint(certificate: ClientCertificate) -> str | None:
    """The RFC 8705 ``x5t#S256`` of a certificate (PEM text or bytes, DER, or a proxy header),
    or None when the header says no certificate was presented. Raises InvalidRequest for a
    value that does not hold one certificate."""
    if isinstance(certificate, ForwardedCertificate):
        digest = _forwarded_digest(certificate)
        return None if digest is None else _b64url(digest)
    return _b64url(hashlib.sha256(_der(certificate)).digest())


def bound_thumbprint(claims: Mapping[str, Any]) -> str | None:
    """The certificate thumbprint a token is bound to, None for a token bound to none."""
    confirmation = claims.get("cnf")
    if confirmation is None:
        return None
    # The parsed payload, never the Principal's read-only copy of it.
    bound = confirmation.get(_X5T) if type(confirmation) is dict else None
    if bound is None:
        return None
    if type(bound) is not str or not bound:
        raise InvalidClaim("invalid cnf")
    return bound


def matches(bound: str, certificate: ClientCertificate | None) -> bool:
    """Whether ``certificate`` is the one the token is bound to; False for an unreadable one."""
    if certificate is None:
        return False
    try:
        return hmac.compare_digest(thumbprint(certificate) or "", bound)
    except InvalidRequest:
        return False


def check_certificate(bound: str, certificate: ClientCertificate | None) -> None:
    """Refuse unless ``certificate`` is the one the token is bound to."""
    presented = None if certificate is None else thumbprint(certificate)
    if presented is None or not hmac.compare_digest(presented, bound):
        raise CertificateMismatch()


# --- certificates ------------------------------------------------------------------------------


def _der(certificate: str | bytes) -> bytes:
    if isinstance(certificate, bytes):
        if not certificate.lstrip().startswith(b"-----"):
            if not certificate:
                raise InvalidRequest("empty client certificate")
            return certificate
        certificate = certificate.decode("ascii", "replace")
    return _pem_to_der(certificate)


def _pem_to_der(text: str) -> bytes:
    found = _PEM.findall(text)
    if len(found) != 1:
        raise InvalidRequest("client certificate is not one PEM certificate")
    try:
        return base64.b64decode("".join(found[0].split()), validate=True)
    except binascii.Error:
        raise InvalidRequest("client certificate is not valid base64") from None


def _b64url(digest: bytes) -> str:
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


# --- proxy headers -----------------------------------------------------------------------------


def _forwarded_digest(forwarded: ForwardedCertificate) -> bytes | None:
    values = [value for value in forwarded.values if value.strip()]
    if not values:
        return None
    if forwarded.header == "ssl-client-cert":
        if len(values) > 1:
            raise InvalidRequest("more than one client certificate header")
        # nginx's $ssl_client_escaped_cert is the URL-encoded PEM; a raw PEM has no '%'.
        return hashlib.sha256(_pem_to_der(unquote(values[0]))).digest()
    # Several XFCC headers read as one list (RFC 9110 section 5.3); the proxy nearest to us
    # appends the last element, and it is the one that saw the client's certificate.
    return _xfcc_digest(_xfcc_elements(",".join(values))[-1])


def _xfcc_elements(value: str) -> list[dict[str, str]]:
    """Envoy's x-forwarded-client-cert: elements split by ',', pairs by ';', values quoted
    when they hold either."""
    elements: list[dict[str, str]] = [{}]
    position = 0
    while position < len(value):
        match = _XFCC_PAIR.match(value, position)
        if match is None or match.end() == position:
            raise InvalidRequest("malformed x-forwarded-client-cert header")
        key, quoted, bare, separator = match.groups()
        text = re.sub(r"\\(.)", r"\1", quoted) if quoted is not None else bare
        elements[-1][key.lower()] = text
        if separator == ",":
            elements.append({})
        position = match.end()
    return elements


def _xfcc_digest(element: Mapping[str, str]) -> bytes:
    digest = element.get("hash")
    if digest is not None:
        if not _SHA256_HEX.fullmatch(digest):
            raise InvalidRequest("malformed Hash in x-forwarded-client-cert")
        return bytes.fromhex(digest)
    certificate = element.get("cert")
    if certificate is None:
        raise InvalidRequest("x-forwarded-client-cert names no certificate")
    return hashlib.sha256(_pem_to_der(unquote(certificate))).digest()
