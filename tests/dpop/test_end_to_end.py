"""ClientCredentials(dpop_key=True) against LocalRealm, calling a service behind each adapter,
over real HTTP: bound tokens, a fresh proof per request, nonces, and the refusals."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
import requests
from fastapi import Depends, FastAPI
from flask import Flask

from keycloak_m2m import ClientCredentials, Principal, TokenValidator
from keycloak_m2m.asgi import TokenAuthMiddleware
from keycloak_m2m.fastapi import TokenAuth as FastAPIAuth
from keycloak_m2m.flask import TokenAuth as FlaskAuth
from keycloak_m2m.requests import BearerAuth
from keycloak_m2m.testing import LocalRealm

from ..adapters.apps import ADAPTERS, WSGI_ADAPTERS, Factory
from ..adapters.checks import bare_challenge
from ..adapters.servers import serve_asgi, serve_wsgi
from ..support import AUDIENCE, CLIENT, TLS, add_shop_client, asgi_messages

SECRET = "shop-api-secret"


@pytest.fixture(scope="module")
def live_realm() -> Iterator[LocalRealm]:
    with LocalRealm("shop") as realm:
        add_shop_client(realm)
        yield realm


def credentials(realm: LocalRealm) -> ClientCredentials:
    return ClientCredentials(CLIENT, SECRET, token_url=realm.token_url, dpop_key=True)


@contextmanager
def serve(factory: Factory | Any, validator: TokenValidator) -> Iterator[str]:
    app = factory(validator)
    wsgi = factory in WSGI_ADAPTERS.values() or isinstance(app, Flask)
    with serve_wsgi(app) if wsgi else serve_asgi(app) as url:
        yield url


@pytest.fixture(params=list(ADAPTERS))
def adapter(request: pytest.FixtureRequest) -> Factory:
    return ADAPTERS[request.param]


def test_bound_tokens_end_to_end(live_realm: LocalRealm, adapter: Factory) -> None:
    creds = credentials(live_realm)
    validator = TokenValidator(live_realm.issuer, AUDIENCE)
    with (
        serve(adapter, validator) as url,
        httpx.Client(base_url=url, auth=creds, verify=TLS) as client,
    ):
        for _ in range(3):  # a fresh proof each time; the token's verdict comes from the cache
            answer = client.get("/any")
            assert answer.status_code == 200, answer.text
            assert answer.json()["client_id"] == CLIENT
        echoed = client.post("/echo", content=b"hello")
        assert echoed.status_code == 200
        assert echoed.json()["body"] == "hello"
        assert echoed.request.headers["Authorization"].startswith("DPoP ")
        token = creds.get_token()
        # The realm bound the token as Keycloak does.
        claims = validator.validate(
            token, dpop_proof=creds.dpop_proof("GET", url + "/any"), method="GET", url=url + "/any"
        ).claims
        assert claims["typ"] == "DPoP"
        assert claims["cnf"] == {"jkt": creds.dpop_jkt}
        # Sent as a bearer token, it is refused (RFC 9449 section 7.2).
        stolen = httpx.get(url + "/any", headers={"Authorization": f"Bearer {token}"}, verify=TLS)
        assert stolen.status_code == 401
        assert 'error="invalid_token"' in stolen.headers["WWW-Authenticate"]
        # A captured request replayed as is: its proof was used already.
        proof = creds.dpop_proof("GET", url + "/any")
        headers = {"Authorization": f"DPoP {token}", "DPoP": proof}
        assert httpx.get(url + "/any", headers=headers, verify=TLS).status_code == 200
        replayed = httpx.get(url + "/any", headers=headers, verify=TLS)
        assert replayed.status_code == 401
        assert replayed.headers["WWW-Authenticate"].startswith(
            f'DPoP realm="{live_realm.issuer}", error="invalid_dpop_proof"'
        )
        assert replayed.json()["error"] == "invalid_dpop_proof"
        # Two DPoP headers: invalid_request.
        twice = httpx.get(
            url + "/any",
            headers=[("Authorization", f"DPoP {token}"), ("DPoP", proof), ("DPoP", proof)],
            verify=TLS,
        )
        assert twice.status_code == 400
        # No token: both challenges.
        missing = httpx.get(url + "/any", verify=TLS)
        assert missing.status_code == 401
        assert missing.headers["WWW-Authenticate"] == bare_challenge(live_realm.issuer)


def test_server_nonce_is_answered_once(live_realm: LocalRealm, adapter: Factory) -> None:
    creds = credentials(live_realm)
    validator = TokenValidator(live_realm.issuer, AUDIENCE, dpop_nonce=True)
    with (
        serve(adapter, validator) as url,
        httpx.Client(base_url=url, auth=creds, verify=TLS) as client,
    ):
        first = client.get("/any")
        assert first.status_code == 200, first.text
        assert [r.status_code for r in first.history] == [401]
        assert first.history[0].headers["DPoP-Nonce"]
        # The nonce is kept for this server: no second round trip.
        second = client.post("/echo", content=b"x")
        assert second.status_code == 200
        assert second.history == []


def test_async_client(live_realm: LocalRealm) -> None:
    creds = credentials(live_realm)
    validator = TokenValidator(live_realm.issuer, AUDIENCE, dpop_nonce=True)

    async def call(url: str) -> list[int]:
        async with httpx.AsyncClient(base_url=url, auth=creds, verify=TLS) as client:
            answers = [await client.get("/any"), await client.post("/echo", content=b"y")]
        return [answer.status_code for answer in answers]

    with serve(ADAPTERS["fastapi-dependency"], validator) as url:
        assert asyncio.run(call(url)) == [200, 200]


@pytest.mark.parametrize("nonce", [False, True], ids=["plain", "nonce"])
def test_requests_adapter(live_realm: LocalRealm, nonce: bool) -> None:
    creds = credentials(live_realm)
    validator = TokenValidator(live_realm.issuer, AUDIENCE, dpop_nonce=nonce)
    with serve(ADAPTERS["flask-sync"], validator) as url, requests.Session() as session:
        session.auth = BearerAuth(creds)
        for _ in range(2):
            answer = session.get(url + "/any")
            assert answer.status_code == 200, answer.text
            assert answer.request.headers["Authorization"].startswith("DPoP ")
        assert session.post(url + "/echo", data=b"z").json()["body"] == "z"


def test_token_endpoint_refuses_a_bad_proof_and_requires_one_where_set(
    live_realm: LocalRealm,
) -> None:
    creds = credentials(live_realm)
    stale = creds._dpop.key.proof("POST", live_realm.token_url + "/elsewhere")  # type: ignore[union-attr]
    answer = httpx.post(
        live_realm.token_url,
        data={"grant_type": "client_credentials"},
        auth=(CLIENT, SECRET),
        headers={"DPoP": stale},
        verify=TLS,
    )
    assert answer.status_code == 400
    assert answer.json()["error"] == "invalid_dpop_proof"
    live_realm.add_client("strict", "strict-secret", audience=[AUDIENCE], dpop_bound=True)
    plain = httpx.post(
        live_realm.token_url,
        data={"grant_type": "client_credentials"},
        auth=("strict", "strict-secret"),
        verify=TLS,
    )
    assert plain.status_code == 400
    bound = ClientCredentials(
        "strict", "strict-secret", token_url=live_realm.token_url, dpop_key=True
    )
    assert bound.get_token()
    # A client that wants DPoP refuses a bearer token from a server that ignored its proof.
    live_realm.fail_token(
        200,
        body=b'{"access_token":"a.b.c","expires_in":60,"token_type":"Bearer"}',
        content_type="application/json",
    )
    try:
        from keycloak_m2m import TokenRequestError

        with pytest.raises(TokenRequestError, match="not DPoP"):
            credentials(live_realm).get_token()
    finally:
        live_realm.heal_token()


# --- behind a proxy: public_url -------------------------------------------------------------

PUBLIC = "https://api.example.com"


def _endpoint_ok() -> Any:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    return app


def _middleware(validator: TokenValidator) -> Any:
    return TokenAuthMiddleware(_endpoint_ok(), validator=validator, public_url=PUBLIC)


def _dependency(validator: TokenValidator) -> Any:
    auth = FastAPIAuth(validator, public_url=PUBLIC)
    app = FastAPI()
    auth.install(app)
    caller = Depends(auth)

    @app.get("/any")
    async def read(principal: Principal = caller) -> str:
        return "ok"

    return app


def _flask(validator: TokenValidator) -> Any:
    auth = FlaskAuth(validator, public_url=PUBLIC)
    app = Flask(__name__)
    app.add_url_rule("/any", "any", auth.require()(lambda: "ok"))
    return app


@pytest.mark.parametrize(
    "factory", [_middleware, _dependency, _flask], ids=["middleware", "dependency", "flask"]
)
def test_public_url_is_the_htu(live_realm: LocalRealm, factory: Any) -> None:
    creds = credentials(live_realm)
    token = creds.get_token()
    validator = TokenValidator(live_realm.issuer, AUDIENCE)
    with serve(factory, validator) as url:

        def call(htu: str) -> httpx.Response:
            proof = creds.dpop_proof("GET", htu)
            return httpx.get(
                url + "/any", headers={"Authorization": f"DPoP {token}", "DPoP": proof}, verify=TLS
            )

        assert call(PUBLIC + "/any").status_code == 200
        direct = call(url + "/any")  # the address the proxy used, not the one clients call
        assert direct.status_code == 401
        assert "htu" in direct.json()["error_description"]


@pytest.mark.parametrize(
    ("scope", "htu"),
    [
        ({"root_path": "/api", "method": "POST"}, "http://api.test/api/any"),
        ({"scheme": "https"}, "https://api.test/any"),
        ({"headers": []}, "http://10.0.0.7:8000/any"),  # no Host: the server's address
    ],
    ids=["root-path-and-method", "scheme", "no-host"],
)
def test_the_middleware_checks_the_proof_against_the_scopes_method_and_url(
    live_realm: LocalRealm, scope: dict[str, Any], htu: str
) -> None:
    creds = credentials(live_realm)
    token = creds.get_token()
    middleware = TokenAuthMiddleware(
        _endpoint_ok(), validator=TokenValidator(live_realm.issuer, AUDIENCE)
    )
    method = scope.get("method", "GET")

    def status(proof_method: str, proof_url: str) -> int:
        headers = scope.get("headers", [(b"host", b"api.test")])
        proof = creds.dpop_proof(proof_method, proof_url).encode()
        authorization = f"DPoP {token}".encode()
        request = {
            "type": "http",
            "path": "/any",
            "query_string": b"",
            "server": ("10.0.0.7", 8000),
            **scope,
            "headers": [*headers, (b"authorization", authorization), (b"dpop", proof)],
        }
        status: int = asgi_messages(middleware, request)[0]["status"]
        return status

    assert status(method, htu) == 200
    assert status(method, "http://api.test/other") == 401
    assert status("PUT", htu) == 401
