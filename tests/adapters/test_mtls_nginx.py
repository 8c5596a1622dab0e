"""Certificate-bound tokens end to end: a real nginx terminates mutual TLS on 127.0.0.1 and
forwards ``$ssl_client_escaped_cert`` to uvicorn, where the ASGI middleware trusts that header.

The token is bound to one client certificate (RFC 8705): with it 200; with another certificate
from the same CA, or none, 401. Skips where nginx is not installed (CI installs Debian's).
"""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from keycloak_m2m import TokenValidator
from keycloak_m2m.asgi import TokenAuthMiddleware
from keycloak_m2m.testing import CertificateAuthority, IssuedCertificate, LocalRealm

from ..support import AUDIENCE, CLIENT
from .servers import serve_asgi

NGINX = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")
pytestmark = pytest.mark.skipif(NGINX is None, reason="nginx is not installed")
_START_TIMEOUT = 10.0

CONFIG = """
daemon off;
master_process off;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {dir}/server.pem;
        ssl_certificate_key {dir}/server.key;
        ssl_client_certificate {dir}/ca.pem;
        ssl_verify_client optional;
        location / {{
            proxy_pass http://127.0.0.1:{app_port};
            # Overwrites whatever the client sent under that name; nothing when it sent no
            # certificate.
            proxy_set_header ssl-client-cert $ssl_client_escaped_cert;
        }}
    }}
}}
"""


class Nginx:
    def __init__(self, directory: Path, authority: CertificateAuthority) -> None:
        self.directory = directory
        self.ca_file = authority.write(directory)
        authority.server_certificate().write(directory, "server")

    @staticmethod
    def free_port() -> int:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port: int = sock.getsockname()[1]
            return port

    @contextmanager
    def serve(self, app_base_url: str) -> Iterator[str]:
        port = self.free_port()
        config = self.directory / "nginx.conf"
        config.write_text(
            CONFIG.format(dir=self.directory, port=port, app_port=app_base_url.rsplit(":", 1)[1])
        )
        assert NGINX is not None
        process = subprocess.Popen(
            [NGINX, "-p", str(self.directory), "-c", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            _wait_for_port(port, process)
            yield f"https://127.0.0.1:{port}"
        finally:
            process.terminate()
            process.wait(_START_TIMEOUT)
            assert process.stderr is not None
            process.stderr.close()

    def client(self, certificate: IssuedCertificate | None, name: str) -> httpx.Client:
        context = ssl.create_default_context(cafile=self.ca_file)
        if certificate is not None:
            context.load_cert_chain(*certificate.write(self.directory, name))
        return httpx.Client(verify=context, timeout=_START_TIMEOUT)


def _wait_for_port(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + _START_TIMEOUT
    while True:
        if process.poll() is not None:
            assert process.stderr is not None
            raise RuntimeError("nginx exited: " + process.stderr.read().decode(errors="replace"))
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError("nginx did not start") from None
            time.sleep(0.02)


async def whoami(scope: Any, receive: Any, send: Any) -> None:
    body = scope["auth"].client_id.encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


@pytest.fixture
def proxied(
    tmp_path: Path,
) -> Iterator[tuple[Nginx, str, str, IssuedCertificate, IssuedCertificate]]:
    authority = CertificateAuthority()
    mine = authority.client_certificate(CLIENT)
    other = authority.client_certificate("someone-else")
    nginx = Nginx(tmp_path, authority)
    with LocalRealm("shop") as realm:
        realm.add_client(CLIENT, "secret", audience=[AUDIENCE])
        token = realm.mint(CLIENT, claims={"cnf": {"x5t#S256": mine.thumbprint}})
        app = TokenAuthMiddleware(
            whoami,
            validator=TokenValidator(realm.issuer, AUDIENCE),
            client_cert_header="ssl-client-cert",
        )
        with serve_asgi(app) as app_url, nginx.serve(app_url) as base_url:
            yield nginx, base_url, token, mine, other


def test_a_bound_token_passes_only_with_its_certificate(
    proxied: tuple[Nginx, str, str, IssuedCertificate, IssuedCertificate],
) -> None:
    nginx, base_url, token, mine, other = proxied
    headers = {"Authorization": f"Bearer {token}"}
    with nginx.client(mine, "mine") as client:
        response = client.get(base_url + "/", headers=headers)
        assert response.status_code == 200, response.text
        assert response.text == CLIENT
        again = client.get(base_url + "/", headers=headers)  # from the verified-token cache
        assert again.status_code == 200
    for certificate, name in ((other, "other"), (None, "none")):
        with nginx.client(certificate, name) as client:
            refused = client.get(base_url + "/", headers=headers)
        assert refused.status_code == 401, name
        assert refused.json() == {
            "error": "invalid_token",
            "error_description": "certificate mismatch",
        }
        assert 'error="invalid_token"' in refused.headers["WWW-Authenticate"]


def test_a_client_cannot_forge_the_header_through_the_proxy(
    proxied: tuple[Nginx, str, str, IssuedCertificate, IssuedCertificate],
) -> None:
    nginx, base_url, token, mine, _ = proxied
    forged = {
        "Authorization": f"Bearer {token}",
        "ssl-client-cert": quote(mine.certificate_pem, safe=""),
    }
    with nginx.client(None, "forger") as client:
        assert client.get(base_url + "/", headers=forged).status_code == 401
