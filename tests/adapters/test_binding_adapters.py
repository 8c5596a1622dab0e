"""Certificate-bound tokens and introspection through the adapters, on real servers: the proxy
header is read only when configured, an unreadable one is 400, and routes that ask for
introspection get it."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fastapi import Depends, FastAPI
from flask import Flask

from keycloak_m2m import Introspection, Principal, TokenValidator
from keycloak_m2m._asgi_scope import presented
from keycloak_m2m._binding import ForwardedCertificate
from keycloak_m2m.fastapi import TokenAuth as FastApiAuth
from keycloak_m2m.flask import TokenAuth as FlaskAuth
from keycloak_m2m.flask import current_principal
from keycloak_m2m.testing import CertificateAuthority, LocalRealm

from ..support import AUDIENCE, CLIENT, TLS
from .servers import serve_asgi, serve_wsgi

AUTHORITY = CertificateAuthority()
MINE = AUTHORITY.client_certificate(CLIENT)
OTHER = AUTHORITY.client_certificate("someone-else")
XFCC = "x-forwarded-client-cert"


def xfcc(der: bytes) -> str:
    return f'By=spiffe://shop;Hash={hashlib.sha256(der).hexdigest()};Subject="CN=x"'


def flask_app(auth: FlaskAuth) -> Flask:
    app = Flask(__name__)

    @app.get("/")
    @auth.require()
    def caller() -> str:
        principal = current_principal()
        assert principal is not None
        return principal.client_id

    return app


@pytest.fixture
def bound_token(realm: LocalRealm) -> str:
    return realm.mint(CLIENT, claims={"cnf": {"x5t#S256": MINE.thumbprint}})


def test_flask_reads_the_configured_envoy_header(
    validator: TokenValidator, bound_token: str
) -> None:
    app = flask_app(FlaskAuth(validator, client_cert_header=XFCC))
    bearer = {"Authorization": f"Bearer {bound_token}"}
    with serve_wsgi(app) as base_url:
        assert (
            httpx.get(base_url, headers={**bearer, XFCC: xfcc(MINE.der)}, verify=TLS).text == CLIENT
        )
        other = httpx.get(base_url, headers={**bearer, XFCC: xfcc(OTHER.der)}, verify=TLS)
        assert other.status_code == 401
        assert other.json()["error_description"] == "certificate mismatch"
        garbage = httpx.get(base_url, headers={**bearer, XFCC: "Hash=nothex"}, verify=TLS)
        assert garbage.status_code == 400
        assert garbage.json()["error"] == "invalid_request"
        assert httpx.get(base_url, headers=bearer, verify=TLS).status_code == 401


def test_flask_ignores_the_header_unless_configured(
    validator: TokenValidator, bound_token: str
) -> None:
    app = flask_app(FlaskAuth(validator))
    headers = {"Authorization": f"Bearer {bound_token}", XFCC: xfcc(MINE.der)}
    with serve_wsgi(app) as base_url:
        assert httpx.get(base_url, headers=headers, verify=TLS).status_code == 401


def test_flask_reads_the_wsgi_servers_certificate(
    validator: TokenValidator, bound_token: str
) -> None:
    client = flask_app(FlaskAuth(validator)).test_client()
    headers = {"Authorization": f"Bearer {bound_token}"}
    answer = client.get(
        "/", headers=headers, environ_base={"SSL_CLIENT_CERT": MINE.certificate_pem}
    )
    assert answer.status_code == 200
    assert client.get("/", headers=headers).status_code == 401


def test_an_unknown_header_name_is_refused_at_setup(validator: TokenValidator) -> None:
    for make in (
        lambda: FlaskAuth(validator, client_cert_header="x-ssl-cert"),
        lambda: FastApiAuth(validator, client_cert_header="x-ssl-cert"),
    ):
        with pytest.raises(ValueError, match="client_cert_header"):
            make()


def test_the_asgi_tls_extension_gives_the_certificate_unless_a_header_is_configured() -> None:
    scope: dict[str, Any] = {
        "type": "http",
        "path": "/",
        "headers": [(b"ssl-client-cert", b"forged")],
        "extensions": {"tls": {"client_cert_chain": [MINE.certificate_pem]}},
    }
    assert presented(scope).client_certificate == MINE.certificate_pem
    assert presented(scope, "ssl-client-cert").client_certificate == ForwardedCertificate(
        "ssl-client-cert", ("forged",)
    )


# --- introspection on the routes that ask for it ----------------------------------------------


def test_fastapi_routes_that_ask_introspect(
    realm: LocalRealm, make_validator: Callable[..., TokenValidator]
) -> None:
    realm.add_client(AUDIENCE, "rs-secret")
    validator = make_validator(
        introspection=Introspection(AUDIENCE, "rs-secret", when="on_request")
    )
    auth = FastApiAuth(validator)
    app = FastAPI()
    auth.install(app)

    @app.get("/read")
    async def read(caller: Principal = Depends(auth)) -> str:  # noqa: B008
        return caller.client_id

    @app.post("/pay")
    async def pay(caller: Principal = Depends(auth.require(introspect=True))) -> str:  # noqa: B008
        return caller.client_id

    token = realm.mint(CLIENT)
    headers = {"Authorization": f"Bearer {token}"}
    with serve_asgi(app) as base_url:
        assert httpx.post(base_url + "/pay", headers=headers, verify=TLS).status_code == 200
        realm.revoke(token)
        assert httpx.get(base_url + "/read", headers=headers, verify=TLS).status_code == 200
        assert realm.request_count("introspect") == 1
        realm.reset_counts()
        fresh = realm.mint(CLIENT)
        realm.fail_introspection(500)
        down = httpx.post(
            base_url + "/pay", headers={"Authorization": f"Bearer {fresh}"}, verify=TLS
        )
        assert down.status_code == 503
        assert down.headers["Retry-After"] == "1"
        assert down.json()["error"] == "temporarily_unavailable"
        realm.heal_introspection()
        another = realm.mint(CLIENT)
        realm.revoke(another)
        revoked = httpx.post(
            base_url + "/pay", headers={"Authorization": f"Bearer {another}"}, verify=TLS
        )
        assert revoked.status_code == 401
        assert revoked.json()["error_description"] == "token revoked or inactive"
