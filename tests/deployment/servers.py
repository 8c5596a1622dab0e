"""Servers for the deployment tests: an HTTPS front with a throwaway CA, and a forward proxy.

Both relay to a LocalRealm over plain HTTP, as a TLS-terminating proxy in front of Keycloak does.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import httpx
import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from keycloak_m2m._assertion import ASSERTION_TYPE

_HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "transfer-encoding",
    "content-length",
    "proxy-connection",
}


@dataclass(frozen=True)
class ThrowawayCA:
    """A CA made for one test, and a certificate it issued for 127.0.0.1."""

    ca_file: Path
    certificate_file: Path
    key_file: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.certificate_file, self.key_file)
        return context


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def make_ca(directory: Path) -> ThrowawayCA:
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("keycloak-m2m throwaway CA"))
        .issuer_name(_name("keycloak-m2m throwaway CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(_name("127.0.0.1"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = ThrowawayCA(directory / "ca.pem", directory / "server.pem", directory / "server.key")
    paths.ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths.certificate_file.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    paths.key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


@dataclass
class Relay:
    """What the relay saw, and how it behaves."""

    url: str = ""
    targets: list[str] = field(default_factory=list)
    # Seconds to wait before answering a discovery request.
    discovery_delay: float = 0.0


def _handler(upstreams: dict[str, str] | None, relay: Relay, stop: threading.Event) -> type:
    """Relay to the upstream of the longest matching path prefix; None: a forward proxy."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def _relay(self) -> None:
            # A forward proxy gets the absolute URL; a front gets a path under an upstream.
            upstream = None
            if upstreams is not None:
                prefix = max((p for p in upstreams if self.path.startswith(p)), key=len)
                upstream = upstreams[prefix]
            target = self.path if upstream is None else upstream + self.path
            relay.targets.append(target)
            if self.path.endswith("/.well-known/openid-configuration"):
                stop.wait(relay.discovery_delay)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            headers = {
                name: value
                for name, value in self.headers.items()
                if name.lower() not in _HOP_BY_HOP and name.lower() != "host"
            }
            answer = httpx.request(self.command, target, headers=headers, content=body)
            content = answer.content
            if upstream is not None:
                # The front is the public address: documents name it, as Keycloak's frontend
                # URL makes them do.
                content = content.replace(upstream.encode(), relay.url.encode())
            self.send_response(answer.status_code)
            for name, value in answer.headers.items():
                if name.lower() not in _HOP_BY_HOP and name.lower() != "content-encoding":
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(content)))
            self.end_headers()
            self.wfile.write(content)

        do_GET = do_POST = _relay

    return Handler


@contextmanager
def _serving(server: ThreadingHTTPServer, stop: threading.Event) -> Iterator[None]:
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield
    finally:
        stop.set()
        server.shutdown()
        server.server_close()
        thread.join()


@contextmanager
def https_front(upstream: str, ca: ThrowawayCA) -> Iterator[Relay]:
    """HTTPS on 127.0.0.1 with a certificate of ``ca``, relaying to ``upstream``."""
    stop = threading.Event()
    relay = Relay()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler({"": upstream}, relay, stop))
    server.socket = ca.server_context().wrap_socket(server.socket, server_side=True)
    relay.url = f"https://127.0.0.1:{server.server_address[1]}"
    with _serving(server, stop):
        yield relay


@contextmanager
def one_keycloak(upstreams: dict[str, str]) -> Iterator[Relay]:
    """One HTTP base URL for several realms: path prefix (``/realms/a``) -> that realm's server."""
    stop = threading.Event()
    relay = Relay()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(upstreams, relay, stop))
    relay.url = f"http://127.0.0.1:{server.server_address[1]}"
    with _serving(server, stop):
        yield relay


@contextmanager
def forward_proxy() -> Iterator[Relay]:
    """A plain HTTP forward proxy on 127.0.0.1 that records every URL it was asked for."""
    stop = threading.Event()
    relay = Relay()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(None, relay, stop))
    relay.url = f"http://127.0.0.1:{server.server_address[1]}"
    with _serving(server, stop):
        yield relay


@dataclass
class AssertionCheck:
    """A token endpoint that authenticates clients by RFC 7523 assertions, as Keycloak's
    "Signed JWT" authenticator does, and gets the token from a LocalRealm with the secret."""

    client_id: str
    public_key: Any
    key_id: str
    secret: str
    realm_token_url: str
    url: str = ""
    headers: list[dict[str, Any]] = field(default_factory=list)
    claims: list[dict[str, Any]] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    # Answer this many authenticated requests with 503, as an overloaded Keycloak would.
    unavailable: int = 0

    @property
    def token_url(self) -> str:
        return self.url + "/token"

    def verdict(self, form: dict[str, str]) -> str | None:
        """None if the assertion authenticates the client, else why not."""
        if form.get("client_assertion_type") != ASSERTION_TYPE or "client_secret" in form:
            return "wrong client authentication"
        assertion = form.get("client_assertion", "")
        try:
            header = jwt.get_unverified_header(assertion)
            claims = jwt.decode(
                assertion,
                self.public_key,
                algorithms=["RS256", "ES256"],
                audience=self.token_url,
                issuer=self.client_id,
                options={"require": ["exp", "iat", "jti", "sub"]},
            )
        except (jwt.InvalidTokenError, TypeError, ValueError) as error:  # TypeError: key type
            return type(error).__name__
        self.headers.append(header)
        if header.get("kid") != self.key_id or claims["sub"] != self.client_id:
            return "wrong kid or sub"
        if claims["jti"] in {seen["jti"] for seen in self.claims}:
            return "reused jti"
        self.claims.append(claims)
        return None


def _assertion_handler(check: AssertionCheck) -> type:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            form = dict(parse_qsl(self.rfile.read(length).decode()))
            reason = check.verdict(form)
            if reason is not None:
                check.refused.append(reason)
                body = json.dumps({"error": "invalid_client", "error_description": reason})
                self._send(401, body.encode())
                return
            if check.unavailable > 0:
                check.unavailable -= 1
                self._send(503, b'{"error":"temporarily_unavailable"}')
                return
            grant = {k: v for k, v in form.items() if not k.startswith("client_assertion")}
            answer = httpx.post(
                check.realm_token_url, data=grant, auth=(check.client_id, check.secret)
            )
            self._send(answer.status_code, answer.content)

        def _send(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler


@contextmanager
def assertion_endpoint(check: AssertionCheck) -> Iterator[AssertionCheck]:
    stop = threading.Event()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _assertion_handler(check))
    check.url = f"http://127.0.0.1:{server.server_address[1]}"
    with _serving(server, stop):
        yield check
