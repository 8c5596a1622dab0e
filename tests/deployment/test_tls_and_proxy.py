"""``verify=`` and ``proxy=``: Keycloak behind a company CA, reached through a proxy.

The realm serves HTTPS itself (``LocalRealm(tls=True)``) with a certificate from a CA made for
the test, which nothing trusts unless it is given ``realm.ca_file``.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest

from keycloak_m2m import (
    ClientCredentials,
    DiscoveryError,
    KeysUnavailable,
    TokenRequestError,
    TokenValidator,
)
from keycloak_m2m.asgi import TokenAuthMiddleware
from keycloak_m2m.testing import LocalRealm

from ..adapters.servers import serve_asgi
from ..support import AUDIENCE, CLIENT, Validate, add_shop_client
from .servers import forward_proxy

SECRET = "shop-api-secret"


@pytest.fixture
def realm() -> Iterator[LocalRealm]:
    with LocalRealm("shop", tls=True) as realm:
        add_shop_client(realm)
        yield realm


@pytest.fixture
def plain_realm() -> Iterator[LocalRealm]:
    with LocalRealm("shop") as realm:
        add_shop_client(realm)
        yield realm


def ca_context(realm: LocalRealm) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(realm.ca_file))


# --- the validator ------------------------------------------------------------------------------


def test_without_the_ca_the_keys_are_unavailable(realm: LocalRealm, validate: Validate) -> None:
    validator = TokenValidator(realm.issuer, AUDIENCE)

    with pytest.raises(KeysUnavailable) as refused:
        validate(validator, realm.mint(CLIENT))

    assert refused.value.status_code == 503
    assert realm.request_count("certs") == 0  # the handshake failed: no request was made


@pytest.mark.parametrize("how", ["path", "context"])
def test_with_the_ca_tokens_pass(realm: LocalRealm, validate: Validate, how: str) -> None:
    verify = str(realm.ca_file) if how == "path" else ca_context(realm)
    validator = TokenValidator(realm.issuer, AUDIENCE, verify=verify)

    assert validate(validator, realm.mint(CLIENT)).client_id == CLIENT
    assert realm.request_count("certs") == 1


def test_the_middleware_answers_503_without_the_ca_and_passes_with_it(realm: LocalRealm) -> None:
    token = realm.mint(CLIENT)
    headers = {"Authorization": f"Bearer {token}"}

    async def hello(scope: object, receive: object, send: object) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})  # type: ignore[operator]
        await send({"type": "http.response.body", "body": b"hello"})  # type: ignore[operator]

    untrusting = TokenAuthMiddleware(hello, validator=TokenValidator(realm.issuer, AUDIENCE))
    trusting = TokenAuthMiddleware(
        hello, validator=TokenValidator(realm.issuer, AUDIENCE, verify=str(realm.ca_file))
    )
    with serve_asgi(untrusting) as refusing_url, serve_asgi(trusting) as passing_url:
        refused = httpx.get(refusing_url + "/", headers=headers)
        passed = httpx.get(passing_url + "/", headers=headers)

    assert refused.status_code == 503
    assert "Retry-After" in refused.headers
    assert passed.status_code == 200
    assert passed.text == "hello"


@pytest.mark.parametrize("driver", ["sync", "async"])
def test_discovery_uses_the_same_ca(realm: LocalRealm, driver: str) -> None:
    issuer = realm.issuer

    def discover(**options: object) -> TokenValidator:
        if driver == "sync":
            return TokenValidator.from_discovery(issuer, AUDIENCE, **options)
        return asyncio.run(TokenValidator.from_discovery_async(issuer, AUDIENCE, **options))

    with pytest.raises(DiscoveryError):
        discover()
    validator = discover(verify=str(realm.ca_file))

    assert validator.jwks_url == realm.jwks_url
    assert validator.validate(realm.mint(CLIENT)).client_id == CLIENT
    assert realm.request_count("discovery") == 1  # the first attempt failed its handshake


def test_discovery_uses_jwks_timeout() -> None:
    # A server that takes the connection and never answers: only the timeout ends the wait.
    with socket.create_server(("127.0.0.1", 0)) as silent:
        issuer = f"http://127.0.0.1:{silent.getsockname()[1]}/realms/shop"
        with pytest.raises(DiscoveryError, match="timed out"):
            TokenValidator.from_discovery(issuer, AUDIENCE, jwks_timeout=0.3)


def test_ca_bundle_from_the_environment(realm: LocalRealm, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEYCLOAK_URL", realm.base_url)
    monkeypatch.setenv("KEYCLOAK_REALM", "shop")
    monkeypatch.setenv("KEYCLOAK_AUDIENCE", AUDIENCE)
    monkeypatch.setenv("KEYCLOAK_CLIENT_ID", CLIENT)
    monkeypatch.setenv("KEYCLOAK_CLIENT_SECRET", SECRET)
    with pytest.raises(KeysUnavailable):
        TokenValidator.from_env().validate(realm.mint(CLIENT))

    monkeypatch.setenv("KEYCLOAK_CA_BUNDLE", str(realm.ca_file))
    credentials = ClientCredentials.from_env()
    validator = TokenValidator.from_env()

    assert validator.validate(credentials.get_token()).client_id == CLIENT


def test_the_default_still_honours_ssl_cert_file(realm: LocalRealm) -> None:
    # httpx's environment handling, as before verify= existed; a fresh process, because the
    # default CA certificates are loaded once per process.
    script = (
        "import sys; from keycloak_m2m._http import FetchPolicy, fetch; "
        "print(type(fetch(sys.argv[1], FetchPolicy())).__name__)"
    )
    url = realm.jwks_url
    trusted = subprocess.run(
        [sys.executable, "-c", script, url],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={"SSL_CERT_FILE": str(realm.ca_file), "PATH": ""},
    )
    untrusted = subprocess.run(
        [sys.executable, "-c", script, url],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={"PATH": ""},
    )

    assert trusted.stdout.strip() == "bytes"
    assert untrusted.stdout.strip() == "FetchFailure"


# --- the client ---------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["path", "context"])
def test_the_client_trusts_the_ca_it_is_given(realm: LocalRealm, how: str) -> None:
    verify = str(realm.ca_file) if how == "path" else ca_context(realm)

    with pytest.raises(TokenRequestError):
        ClientCredentials(CLIENT, SECRET, token_url=realm.token_url, max_retries=0).get_token()
    trusting = ClientCredentials(CLIENT, SECRET, token_url=realm.token_url, verify=verify)

    validator = TokenValidator(realm.issuer, AUDIENCE, verify=verify)
    assert validator.validate(trusting.get_token()).client_id == CLIENT
    assert asyncio.run(trusting.renew_token_async(trusting.get_token()))
    assert realm.request_count("token") == 2  # the untrusting attempt never got through


# --- proxies ------------------------------------------------------------------------------------


@pytest.mark.usefixtures("no_proxy_variables")
def test_keys_and_tokens_go_through_the_proxy(plain_realm: LocalRealm) -> None:
    realm = plain_realm

    async def through(proxy: str) -> str:
        credentials = ClientCredentials(CLIENT, SECRET, token_url=realm.token_url, proxy=proxy)
        validator = TokenValidator(realm.issuer, AUDIENCE, proxy=proxy)
        return (await validator.validate_async(await credentials.get_token_async())).client_id

    with forward_proxy() as proxy:
        credentials = ClientCredentials(CLIENT, SECRET, token_url=realm.token_url, proxy=proxy.url)
        validator = TokenValidator(realm.issuer, AUDIENCE, proxy=proxy.url)
        principal = validator.validate(credentials.get_token())
        assert asyncio.run(through(proxy.url)) == CLIENT

    assert principal.client_id == CLIENT
    assert proxy.targets == [realm.token_url, realm.jwks_url, realm.token_url, realm.jwks_url]


@pytest.mark.usefixtures("no_proxy_variables")
def test_without_a_proxy_nothing_goes_through_one(plain_realm: LocalRealm) -> None:
    realm = plain_realm

    with forward_proxy() as proxy:
        TokenValidator(realm.issuer, AUDIENCE).validate(realm.mint(CLIENT))

    assert proxy.targets == []
    assert realm.request_count("certs") == 1


# --- settings -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"verify": False}, "verify must be True, a CA bundle path, or an ssl.SSLContext"),
        ({"verify": "/nonexistent/ca.pem"}, "no CA bundle file at /nonexistent/ca.pem"),
        ({"verify": __file__}, "is not a readable PEM CA bundle"),
        ({"proxy": "proxy.internal:3128"}, "proxy must be a URL"),
    ],
)
def test_bad_connection_settings_are_refused_at_construction(
    options: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        TokenValidator("https://sso.example.com/realms/shop", AUDIENCE, **options)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=message):
        ClientCredentials(CLIENT, SECRET, token_url="https://sso.example.com/t", **options)  # type: ignore[arg-type]
