"""A throwaway certificate authority, for HTTPS and mutual TLS on 127.0.0.1 in tests.

P-256 keys: made in a millisecond, accepted by Python's ssl, nginx and every HTTP client.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import ipaddress
import ssl
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["CertificateAuthority", "IssuedCertificate", "RealmTls", "common_name", "thumbprint"]

_VALIDITY = datetime.timedelta(days=2)


@dataclass(frozen=True)
class IssuedCertificate:
    """A certificate and its private key, in PEM, and the certificate's DER."""

    certificate_pem: str
    private_key_pem: str = field(repr=False)
    der: bytes = field(repr=False)

    @property
    def thumbprint(self) -> str:
        """RFC 8705 ``x5t#S256``: what a token bound to this certificate carries in ``cnf``."""
        return thumbprint(self.der)

    def write(self, directory: str | Path, name: str) -> tuple[Path, Path]:
        """Write ``<name>.pem`` and ``<name>.key`` (readable by the owner only); return both."""
        cert_file, key_file = Path(directory) / f"{name}.pem", Path(directory) / f"{name}.key"
        cert_file.write_text(self.certificate_pem)
        key_file.touch(mode=0o600)
        key_file.write_text(self.private_key_pem)
        return cert_file, key_file


class CertificateAuthority:
    """A self-signed CA that issues server certificates (for 127.0.0.1 and localhost) and
    client certificates (named by their common name)."""

    def __init__(self, name: str = "keycloak-m2m test CA") -> None:
        self._key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        self._name = subject
        self._certificate = (
            _builder(subject, subject, self._key.public_key())
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .sign(self._key, hashes.SHA256())
        )

    @property
    def certificate_pem(self) -> str:
        return self._certificate.public_bytes(serialization.Encoding.PEM).decode("ascii")

    def write(self, directory: str | Path, name: str = "ca") -> Path:
        """Write the CA certificate as ``<name>.pem``, for clients and servers to trust."""
        path = Path(directory) / f"{name}.pem"
        path.write_text(self.certificate_pem)
        return path

    def server_certificate(self) -> IssuedCertificate:
        """A certificate for a server on 127.0.0.1 or localhost."""
        names = [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
        return self._issue(
            "127.0.0.1",
            ExtendedKeyUsageOID.SERVER_AUTH,
            x509.SubjectAlternativeName(names),
        )

    def client_certificate(self, common_name: str) -> IssuedCertificate:
        """A TLS client certificate whose subject is ``CN=<common_name>``."""
        return self._issue(common_name, ExtendedKeyUsageOID.CLIENT_AUTH, None)

    def _issue(
        self,
        common_name: str,
        usage: x509.ObjectIdentifier,
        names: x509.SubjectAlternativeName | None,
    ) -> IssuedCertificate:
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        builder = (
            _builder(subject, self._name, key.public_key())
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        )
        if names is not None:
            builder = builder.add_extension(names, critical=False)
        certificate = builder.sign(self._key, hashes.SHA256())
        return IssuedCertificate(
            certificate.public_bytes(serialization.Encoding.PEM).decode("ascii"),
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ).decode("ascii"),
            certificate.public_bytes(serialization.Encoding.DER),
        )


def _builder(
    subject: x509.Name, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey
) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.timezone.utc)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + _VALIDITY)
    )


def thumbprint(der: bytes) -> str:
    """RFC 8705 ``x5t#S256`` of a certificate: the base64url SHA-256 of its DER."""
    return base64.urlsafe_b64encode(hashlib.sha256(der).digest()).rstrip(b"=").decode("ascii")


def common_name(der: bytes) -> str | None:
    """The subject's common name of a DER certificate, None if it has none."""
    names = x509.load_der_x509_certificate(der).subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else None


class RealmTls:
    """A ``tls=True`` realm's CA, its server certificate and the server's TLS context: client
    certificates are asked for, verified against the CA, and optional at the TLS level (each
    client's authentication decides whether it needs one)."""

    def __init__(self, name: str) -> None:
        self.authority = CertificateAuthority(f"{name} realm CA")
        self.directory = tempfile.TemporaryDirectory(prefix="keycloak-m2m-realm-")
        self.ca_file = self.authority.write(self.directory.name)
        cert_file, key_file = self.authority.server_certificate().write(
            self.directory.name, "server"
        )
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(cert_file, key_file)
        self.context.load_verify_locations(cafile=self.ca_file)
        self.context.verify_mode = ssl.CERT_OPTIONAL
