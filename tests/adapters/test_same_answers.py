"""The same request gets the same answer from every adapter, over real HTTP.

One table of cases, run against each app of ``apps.ADAPTERS`` served by uvicorn (ASGI) or
Werkzeug's threaded server (WSGI). A second app per adapter uses a validator whose key endpoint
is closed, for the 503 case.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from keycloak_m2m import TokenValidator
from keycloak_m2m._request import MAX_FORM_BODY
from keycloak_m2m.testing import LocalRealm

from ..support import AUDIENCE, CLIENT, TLS, add_shop_client
from .apps import ADAPTERS, ASGI_ADAPTERS, MISSING_ROLE, MISSING_SCOPE
from .checks import assert_refused
from .servers import serve_asgi, serve_wsgi

FORM = "application/x-www-form-urlencoded"


@dataclass(frozen=True)
class Served:
    realm: LocalRealm
    url: str
    keys_down_url: str
    tokens: dict[str, str] = field(default_factory=dict)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def shop() -> Iterator[LocalRealm]:
    with LocalRealm("shop") as realm:
        add_shop_client(realm)
        yield realm


@pytest.fixture(scope="module", params=sorted(ADAPTERS))
def served(request: pytest.FixtureRequest, shop: LocalRealm) -> Iterator[Served]:
    name: str = request.param
    factory = ADAPTERS[name]
    serve: Callable[[Any], Any] = serve_asgi if name in ASGI_ADAPTERS else serve_wsgi
    healthy = TokenValidator(shop.issuer, AUDIENCE)
    keys_down = TokenValidator(
        shop.issuer, AUDIENCE, jwks_url=f"http://127.0.0.1:{_closed_port()}/certs"
    )
    with ExitStack() as stack:
        url = stack.enter_context(serve(factory(healthy)))
        keys_down_url = stack.enter_context(serve(factory(keys_down)))
        yield Served(shop, url, keys_down_url)


@pytest.fixture
def token(shop: LocalRealm) -> str:
    return shop.mint(CLIENT)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_valid_token_passes(served: Served, token: str) -> None:
    response = httpx.get(served.url + "/any", headers=bearer(token), verify=TLS)
    assert response.status_code == 200
    assert response.json()["client_id"] == CLIENT


def test_form_body_reaches_the_app_after_the_check(served: Served, token: str) -> None:
    headers = {**bearer(token), "Content-Type": FORM}
    response = httpx.post(
        served.url + "/echo", headers=headers, content=b"message=hello", verify=TLS
    )
    assert response.status_code == 200
    assert response.json() == {"client_id": CLIENT, "body": "message=hello"}


def test_no_token_gets_a_bare_challenge(served: Served) -> None:
    response = httpx.get(served.url + "/any", verify=TLS)
    assert_refused(response, 401, None, realm=served.realm.issuer)


def test_malformed_token_is_invalid(served: Served) -> None:
    response = httpx.get(served.url + "/any", headers=bearer("not.a.token"), verify=TLS)
    assert_refused(response, 401, "invalid_token", realm=served.realm.issuer)


def test_expired_token_is_invalid(served: Served) -> None:
    expired = served.realm.mint(CLIENT, expires_in=-120)
    response = httpx.get(served.url + "/any", headers=bearer(expired), verify=TLS)
    body = assert_refused(response, 401, "invalid_token", realm=served.realm.issuer, token=expired)
    assert body["error_description"] == "token expired"


def test_several_authorization_headers_are_a_bad_request(served: Served, token: str) -> None:
    headers = [("Authorization", f"Bearer {token}"), ("Authorization", f"Bearer {token}")]
    response = httpx.get(served.url + "/any", headers=headers, verify=TLS)
    assert_refused(response, 400, "invalid_request", realm=served.realm.issuer, token=token)


def test_token_in_the_query_is_a_bad_request(served: Served, token: str) -> None:
    response = httpx.get(
        served.url + "/any", params={"access_token": token}, headers=bearer(token), verify=TLS
    )
    assert_refused(response, 400, "invalid_request", realm=served.realm.issuer)


def test_token_in_a_form_body_is_a_bad_request(served: Served, token: str) -> None:
    headers = {**bearer(token), "Content-Type": FORM}
    response = httpx.post(
        served.url + "/echo", headers=headers, content=f"access_token={token}", verify=TLS
    )
    assert_refused(response, 400, "invalid_request", realm=served.realm.issuer)


def test_oversized_form_body_is_a_bad_request(served: Served, token: str) -> None:
    headers = {**bearer(token), "Content-Type": FORM}
    body = b"message=" + b"x" * MAX_FORM_BODY
    response = httpx.post(served.url + "/echo", headers=headers, content=body, verify=TLS)
    refusal = assert_refused(response, 400, "invalid_request", realm=served.realm.issuer)
    assert "too large" in refusal["error_description"]


def test_oversized_form_body_is_refused_at_the_bound(served: Served) -> None:
    """The answer comes while most of a declared 64 MiB body was never sent: the adapter read
    no further than the bound (a server reading the whole body would wait for the rest)."""
    host, port = served.url.removeprefix("http://").split(":")
    declared = 64 * 1024 * 1024
    head = (
        f"POST /echo HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: {FORM}\r\n"
        f"Content-Length: {declared}\r\nConnection: close\r\n\r\n"
    ).encode()
    with socket.create_connection((host, int(port)), timeout=30) as connection:
        connection.sendall(head + b"message=" + b"x" * (MAX_FORM_BODY + 64 * 1024))
        reply = b""
        while b"\r\n\r\n" not in reply:
            chunk = connection.recv(65536)
            assert chunk, "the server closed the connection without an answer"
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 400"), reply[:200]
    assert b"invalid_request" in reply or b"invalid_request" in reply.lower()


def test_missing_role_is_named(served: Served, token: str) -> None:
    response = httpx.get(served.url + "/role", headers=bearer(token), verify=TLS)
    body = assert_refused(response, 403, "insufficient_scope", realm=served.realm.issuer)
    assert MISSING_ROLE in body["error_description"]


def test_missing_scope_is_in_the_challenge(served: Served, token: str) -> None:
    response = httpx.get(served.url + "/scope", headers=bearer(token), verify=TLS)
    assert_refused(response, 403, "insufficient_scope", realm=served.realm.issuer)
    assert f'scope="{MISSING_SCOPE}"' in response.headers["WWW-Authenticate"]


def test_optional_route_without_a_token_is_anonymous(served: Served) -> None:
    response = httpx.get(served.url + "/optional", verify=TLS)
    assert response.status_code == 200
    assert response.json()["client_id"] is None


def test_optional_route_with_a_bad_token_is_refused(served: Served) -> None:
    response = httpx.get(served.url + "/optional", headers=bearer("not.a.token"), verify=TLS)
    assert_refused(response, 401, "invalid_token", realm=served.realm.issuer)


def test_optional_route_with_a_token_knows_the_caller(served: Served, token: str) -> None:
    response = httpx.get(served.url + "/optional", headers=bearer(token), verify=TLS)
    assert response.json()["client_id"] == CLIENT


def test_keys_unavailable_is_a_503_with_retry_after(served: Served, token: str) -> None:
    response = httpx.get(served.keys_down_url + "/any", headers=bearer(token), verify=TLS)
    assert_refused(
        response,
        503,
        None,
        realm=served.realm.issuer,
        token=token,
        body_error="temporarily_unavailable",
    )
    assert int(response.headers["Retry-After"]) >= 1
