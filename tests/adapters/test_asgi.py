"""TokenAuthMiddleware in Starlette, FastAPI, Litestar and a bare ASGI app, and under uvicorn."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest
from fastapi import FastAPI
from litestar import Litestar, get
from litestar import Request as LitestarRequest
from litestar.middleware import DefineMiddleware
from litestar.testing import TestClient as LitestarClient
from quart import Quart
from quart import request as quart_request
from starlette.applications import Starlette
from starlette.authentication import requires
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route, WebSocketRoute
from starlette.testclient import TestClient, WebSocketDenialResponse
from starlette.websockets import WebSocket
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from keycloak_m2m import InsufficientScope, Principal, TokenValidator
from keycloak_m2m._request import MAX_FORM_BODY
from keycloak_m2m.asgi import ANONYMOUS, ServiceUser, TokenAuthMiddleware
from keycloak_m2m.testing import LocalRealm

from ..support import AUDIENCE, CLIENT, shared_realm
from .checks import assert_refused, bare_challenge
from .servers import serve_asgi

# The tests leave the realm as they found it (or rotate its keys, which gets the next test a
# new one): one realm for the module, see SharedRealm.
clock, realm = shared_realm()

# --- a Starlette app --------------------------------------------------------------------------


async def whoami(request: Request) -> JSONResponse:
    principal = request.auth
    if not isinstance(principal, Principal):
        return JSONResponse({"anonymous": request.user is ANONYMOUS})
    assert isinstance(request.user, ServiceUser)
    return JSONResponse(
        {
            "client_id": principal.client_id,
            "user": request.user.display_name,
            "authenticated": request.user.is_authenticated,
        }
    )


@requires("email")
async def email_scope(request: Request) -> PlainTextResponse:
    return PlainTextResponse("has email")


@requires("admin")
async def admin_scope(request: Request) -> PlainTextResponse:
    return PlainTextResponse("has admin")


async def echo_form(request: Request) -> JSONResponse:
    # The body the middleware looked at must reach the app whole.
    return JSONResponse(dict(parse_qsl((await request.body()).decode())))


async def health(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


async def websocket_whoami(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_json({"client_id": websocket.auth.client_id})
    await websocket.close()


def starlette_app(validator: TokenValidator, **options: Any) -> Starlette:
    routes = [
        Route("/whoami", whoami),
        Route("/email", email_scope),
        Route("/admin", admin_scope),
        Route("/form", echo_form, methods=["POST"]),
        Route("/health", health),
        WebSocketRoute("/ws", websocket_whoami),
    ]
    return Starlette(
        routes=routes, middleware=[Middleware(TokenAuthMiddleware, validator=validator, **options)]
    )


@pytest.fixture
def client(validator: TokenValidator) -> Iterator[TestClient]:
    with TestClient(starlette_app(validator, exclude_paths=["/health"])) as client:
        yield client


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# --- the token and the principal --------------------------------------------------------------


def test_valid_token_sets_auth_and_user(client: TestClient, token: str) -> None:
    response = client.get("/whoami", headers=bearer(token))
    assert response.status_code == 200
    assert response.json() == {"client_id": CLIENT, "user": CLIENT, "authenticated": True}


@pytest.mark.parametrize("scheme", ["bearer", "BEARER", "BeArEr"])
def test_scheme_is_case_insensitive(client: TestClient, token: str, scheme: str) -> None:
    response = client.get("/whoami", headers={"Authorization": f"{scheme} {token}"})
    assert response.status_code == 200


def test_starlette_requires_checks_the_token_scopes(client: TestClient, token: str) -> None:
    assert client.get("/email", headers=bearer(token)).text == "has email"
    assert client.get("/admin", headers=bearer(token)).status_code == 403


# --- no token, or a token presented wrongly ---------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Basic c2hvcC1hcGk6c2VjcmV0"}, {"Authorization": "Bearer "}],
    ids=["no-header", "basic", "empty-token"],
)
def test_missing_token_gets_a_bare_challenge(
    client: TestClient, realm: LocalRealm, headers: dict[str, str]
) -> None:
    assert_refused(client.get("/whoami", headers=headers), 401, None, realm=realm.issuer)


def test_two_authorization_headers_are_a_bad_request(
    client: TestClient, realm: LocalRealm, token: str
) -> None:
    headers = [("Authorization", f"Bearer {token}"), ("Authorization", f"Bearer {token}")]
    response = client.get("/whoami", headers=headers)
    assert_refused(response, 400, "invalid_request", realm=realm.issuer, token=token)


def test_token_also_in_the_query_is_a_bad_request(
    client: TestClient, realm: LocalRealm, token: str
) -> None:
    response = client.get("/whoami", params={"access_token": token}, headers=bearer(token))
    assert_refused(response, 400, "invalid_request", realm=realm.issuer, token=token)


def test_token_also_in_the_form_is_a_bad_request(
    client: TestClient, realm: LocalRealm, token: str
) -> None:
    response = client.post("/form", data={"access_token": token}, headers=bearer(token))
    assert_refused(response, 400, "invalid_request", realm=realm.issuer, token=token)


def test_a_form_without_a_token_still_reaches_the_app(client: TestClient, token: str) -> None:
    response = client.post("/form", data={"message": "hello"}, headers=bearer(token))
    assert response.json() == {"message": "hello"}


def test_a_form_too_large_to_check_before_authentication_is_refused(
    client: TestClient, realm: LocalRealm, token: str
) -> None:
    # Read before the caller is authenticated: an anonymous client must not make it unbounded.
    within = "x" * (MAX_FORM_BODY - len("message="))
    assert client.post("/form", data={"message": within}, headers=bearer(token)).status_code == 200
    response = client.post("/form", data={"message": within + "x"}, headers=bearer(token))
    assert_refused(response, 400, "invalid_request", realm=realm.issuer, token=token)


# --- bad tokens -------------------------------------------------------------------------------


def test_garbage_token_is_invalid(client: TestClient, realm: LocalRealm) -> None:
    response = client.get("/whoami", headers=bearer("not-a-token"))
    body = assert_refused(response, 401, "invalid_token", realm=realm.issuer, token="not-a-token")
    assert body["error_description"]


def test_expired_token_is_invalid_and_leaks_no_claim(client: TestClient, realm: LocalRealm) -> None:
    token = realm.mint(CLIENT, expires_in=-3600)
    response = client.get("/whoami", headers=bearer(token))
    assert_refused(response, 401, "invalid_token", realm=realm.issuer, token=token)
    assert CLIENT not in response.text


def test_wrong_audience_is_invalid(client: TestClient, realm: LocalRealm) -> None:
    token = realm.mint(CLIENT, claims={"aud": "someone-else"})
    response = client.get("/whoami", headers=bearer(token))
    assert_refused(response, 401, "invalid_token", realm=realm.issuer, token=token)


def test_keys_unavailable_is_503_with_retry_after(
    client: TestClient, realm: LocalRealm, token: str
) -> None:
    realm.fail_keys(500)
    response = client.get("/whoami", headers=bearer(token))
    assert_refused(
        response, 503, None, realm=realm.issuer, token=token, body_error="temporarily_unavailable"
    )
    assert int(response.headers["Retry-After"]) >= 1


# --- open paths, optional authentication, per-route requirements ------------------------------


def test_excluded_path_needs_no_token_even_when_keys_are_down(
    client: TestClient, realm: LocalRealm
) -> None:
    realm.fail_keys(500)
    response = client.get("/health", headers=bearer("garbage"))
    assert response.text == "ok"


def test_excluded_paths_must_be_paths(validator: TokenValidator) -> None:
    with pytest.raises(ValueError, match="exclude_paths"):
        TokenAuthMiddleware(bare_app, validator=validator, exclude_paths=["health"])


def test_optional_lets_anonymous_requests_through(
    validator: TokenValidator, realm: LocalRealm, token: str
) -> None:
    with TestClient(starlette_app(validator, optional=True)) as client:
        assert client.get("/whoami").json() == {"anonymous": True}
        assert client.get("/email").status_code == 403  # requires() refuses anonymous
        assert client.get("/whoami", headers=bearer(token)).json()["client_id"] == CLIENT
        bad = client.get("/whoami", headers=bearer("garbage"))
        assert_refused(bad, 401, "invalid_token", realm=realm.issuer)


@pytest.mark.parametrize(
    ("requirement", "status"),
    [
        ({"roles": ["notifications:send"]}, 200),
        ({"client_roles": {AUDIENCE: ["send"]}}, 200),
        ({"scopes": "email"}, 200),
        ({"roles": ["admin"]}, 403),
        ({"client_roles": {AUDIENCE: ["delete"]}}, 403),
        ({"scopes": ["email", "admin"]}, 403),
    ],
)
def test_requirements_must_all_be_met(
    validator: TokenValidator, token: str, requirement: dict[str, Any], status: int
) -> None:
    with TestClient(starlette_app(validator, **requirement)) as client:
        assert client.get("/whoami", headers=bearer(token)).status_code == status


def test_insufficient_scope_names_what_is_missing(
    validator: TokenValidator, realm: LocalRealm, token: str
) -> None:
    app = starlette_app(validator, roles=["admin"], scopes=["admin", "email"])
    with TestClient(app) as client:
        response = client.get("/whoami", headers=bearer(token))
    body = assert_refused(response, 403, "insufficient_scope", realm=realm.issuer, token=token)
    missing = InsufficientScope(missing_roles=["admin"], missing_scopes=["admin"])
    assert body["error_description"] == missing.description
    assert response.headers["WWW-Authenticate"].endswith(', scope="admin"')


def test_per_route_middleware(validator: TokenValidator, token: str) -> None:
    guarded = Middleware(TokenAuthMiddleware, validator=validator, roles=["admin"])
    app = Starlette(
        routes=[Route("/open", health), Route("/admin", health, middleware=[guarded])],
        middleware=[Middleware(TokenAuthMiddleware, validator=validator)],
    )
    with TestClient(app) as client:
        assert client.get("/open", headers=bearer(token)).status_code == 200
        assert client.get("/admin", headers=bearer(token)).status_code == 403


def test_realm_name_is_configurable(validator: TokenValidator) -> None:
    with TestClient(starlette_app(validator, realm="notifications")) as client:
        response = client.get("/whoami")
    assert response.headers["WWW-Authenticate"] == bare_challenge("notifications")


# --- lifespan and websockets ------------------------------------------------------------------


def test_lifespan_passes_through(validator: TokenValidator) -> None:
    events: list[str] = []

    @asynccontextmanager
    async def lifespan(app: Starlette) -> Any:
        events.append("startup")
        yield
        events.append("shutdown")

    app = Starlette(
        lifespan=lifespan, middleware=[Middleware(TokenAuthMiddleware, validator=validator)]
    )
    with TestClient(app):
        assert events == ["startup"]
    assert events == ["startup", "shutdown"]


def test_websocket_with_a_valid_token_is_accepted(client: TestClient, token: str) -> None:
    with client.websocket_connect("/ws", headers=bearer(token)) as websocket:
        assert websocket.receive_json() == {"client_id": CLIENT}


def test_websocket_with_a_bad_token_gets_a_denial_response(
    client: TestClient, realm: LocalRealm
) -> None:
    with (
        pytest.raises(WebSocketDenialResponse) as denied,
        client.websocket_connect("/ws", headers=bearer("garbage")),
    ):
        pass  # pragma: no cover - the handshake is refused
    assert_refused(denied.value, 401, "invalid_token", realm=realm.issuer, token="garbage")


# --- a bare ASGI app, driven by hand where no test client helps -------------------------------


async def bare_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "websocket":
        await send({"type": "websocket.accept"})
        return
    body = scope["auth"].client_id.encode() if isinstance(scope["auth"], Principal) else b"-"
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


async def run_websocket(app: Any, token: str) -> list[dict[str, Any]]:
    """Open a websocket on ``app`` from a server without the denial-response extension."""
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "websocket.connect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "websocket",
        "path": "/ws",
        "query_string": b"",
        "headers": [(b"authorization", f"Bearer {token}".encode())],
    }
    await app(scope, receive, send)
    return sent


async def test_bare_asgi_app_over_http(validator: TokenValidator, token: str) -> None:
    app = TokenAuthMiddleware(bare_app, validator=validator)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        assert (await client.get("/", headers=bearer(token))).text == CLIENT
        assert (await client.get("/")).status_code == 401


async def test_bare_websocket_is_closed_before_accept(validator: TokenValidator) -> None:
    sent = await run_websocket(TokenAuthMiddleware(bare_app, validator=validator), "garbage")
    [close] = sent
    assert close["type"] == "websocket.close"
    assert close["code"] == 1008
    assert close["reason"]


async def test_bare_websocket_during_key_outage_is_told_to_retry(
    validator: TokenValidator, realm: LocalRealm, token: str
) -> None:
    realm.fail_keys(503)
    sent = await run_websocket(TokenAuthMiddleware(bare_app, validator=validator), token)
    assert [message["code"] for message in sent] == [1013]


async def test_bare_websocket_with_a_valid_token_reaches_the_app(
    validator: TokenValidator, token: str
) -> None:
    sent = await run_websocket(TokenAuthMiddleware(bare_app, validator=validator), token)
    assert sent == [{"type": "websocket.accept"}]


async def test_other_scope_types_pass_untouched(validator: TokenValidator) -> None:
    seen: list[dict[str, Any]] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        seen.append(scope)

    scope = {"type": "lifespan", "asgi": {"version": "3.0"}}
    await TokenAuthMiddleware(app, validator=validator)(scope, None, None)
    assert seen == [{"type": "lifespan", "asgi": {"version": "3.0"}}]


# --- other frameworks -------------------------------------------------------------------------


def test_fastapi_add_middleware(validator: TokenValidator, realm: LocalRealm, token: str) -> None:
    app = FastAPI()
    app.add_middleware(
        TokenAuthMiddleware, validator=validator, exclude_paths=["/docs", "/openapi.json"]
    )

    @app.get("/whoami")
    async def who(request: Request) -> dict[str, str]:
        return {"client_id": request.auth.client_id}

    with TestClient(app) as client:
        assert client.get("/whoami", headers=bearer(token)).json() == {"client_id": CLIENT}
        assert client.get("/openapi.json").status_code == 200
        assert_refused(client.get("/whoami"), 401, None, realm=realm.issuer)


def test_litestar(validator: TokenValidator, realm: LocalRealm, token: str) -> None:

    @get("/whoami")
    async def who(request: LitestarRequest[ServiceUser, Principal, Any]) -> dict[str, str]:
        return {"client_id": request.auth.client_id, "user": request.user.display_name}

    app = Litestar(
        route_handlers=[who],
        middleware=[DefineMiddleware(TokenAuthMiddleware, validator=validator)],
    )
    with LitestarClient(app) as client:
        response = client.get("/whoami", headers=bearer(token))
        assert response.json() == {"client_id": CLIENT, "user": CLIENT}
        assert_refused(client.get("/whoami"), 401, None, realm=realm.issuer)


async def test_quart(validator: TokenValidator, realm: LocalRealm, token: str) -> None:
    app = Quart(__name__)

    @app.get("/whoami")
    async def who() -> dict[str, str]:
        return {"client_id": quart_request.scope["auth"].client_id}  # type: ignore[typeddict-item]

    app.asgi_app = TokenAuthMiddleware(app.asgi_app, validator=validator)  # type: ignore[method-assign]
    # httpx types ASGI apps its own way, which Quart's TypedDict scopes do not match.
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        response = await client.get("/whoami", headers=bearer(token))
        assert response.json() == {"client_id": CLIENT}
        assert_refused(await client.get("/whoami"), 401, None, realm=realm.issuer)


# --- a real server ----------------------------------------------------------------------------


async def test_real_uvicorn_server(
    validator: TokenValidator, realm: LocalRealm, token: str
) -> None:
    app = starlette_app(validator, exclude_paths=["/health"])
    with serve_asgi(app) as base_url:
        async with httpx.AsyncClient(base_url=base_url) as client:
            assert (await client.get("/whoami", headers=bearer(token))).json()[
                "client_id"
            ] == CLIENT
            assert (await client.get("/health")).text == "ok"
            refused = await client.get("/whoami", headers=bearer("garbage"))
            assert_refused(refused, 401, "invalid_token", realm=realm.issuer, token="garbage")


def test_real_uvicorn_websocket_denial(validator: TokenValidator, token: str) -> None:
    with serve_asgi(starlette_app(validator)) as base_url:
        ws_url = base_url.replace("http", "ws", 1) + "/ws"
        with connect(ws_url, additional_headers=bearer(token)) as websocket:
            assert websocket.recv(timeout=5) == '{"client_id":"shop-api"}'
        with pytest.raises(InvalidStatus) as refused:
            connect(ws_url, additional_headers=bearer("garbage"))
    assert refused.value.response.status_code == 401
    assert b"invalid_token" in refused.value.response.body


def test_exclusions_ending_in_a_star_match_by_prefix(
    validator: TokenValidator, realm: LocalRealm
) -> None:
    app = FastAPI()
    app.add_middleware(TokenAuthMiddleware, validator=validator, exclude_paths=["/docs*"])

    @app.get("/docsearch")
    async def docsearch() -> dict[str, str]:
        return {}

    @app.get("/doc")
    async def doc() -> dict[str, str]:
        return {}

    with TestClient(app) as client:
        assert client.get("/docs").status_code == 200
        assert client.get("/docs/oauth2-redirect").status_code == 200
        assert client.get("/docsearch").status_code == 200  # a prefix is a prefix
        assert_refused(client.get("/doc"), 401, None, realm=realm.issuer)
        assert_refused(client.get("/openapi.json"), 401, None, realm=realm.issuer)


def test_exclusions_without_a_star_stay_exact(validator: TokenValidator, realm: LocalRealm) -> None:
    with TestClient(starlette_app(validator, exclude_paths=["/health"])) as client:
        assert client.get("/health").status_code == 200
        assert_refused(client.get("/health/deep"), 401, None, realm=realm.issuer)
