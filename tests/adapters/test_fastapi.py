"""The FastAPI dependency through FastAPI's test client, and its OpenAPI document."""

# No ``from __future__ import annotations``: FastAPI would evaluate the route annotations
# in this module's globals, where ``auth`` is the fixture, not the local dependency.
from collections.abc import Iterator
from typing import Annotated, Any
from urllib.parse import parse_qsl

import pytest
from fastapi import Depends, FastAPI, Request, Security
from starlette.testclient import TestClient

from keycloak_m2m import Principal, TokenValidator
from keycloak_m2m.fastapi import TokenAuth
from keycloak_m2m.testing import LocalRealm

from ..support import AUDIENCE, CLIENT, shared_realm
from .checks import assert_refused, bare_challenge

# The tests leave the realm as they found it (or rotate its keys, which gets the next test a
# new one): one realm for the module, see SharedRealm.
clock, realm = shared_realm()


def fastapi_app(auth: TokenAuth) -> FastAPI:
    app = FastAPI()
    auth.install(app)

    @app.get("/whoami")
    async def whoami(caller: Annotated[Principal, Depends(auth)]) -> dict[str, str]:
        return {"client_id": caller.client_id}

    @app.get("/send")
    async def send(
        caller: Annotated[
            Principal,
            Depends(auth.require(roles=["notifications:send"], client_roles={AUDIENCE: ["send"]})),
        ],
    ) -> dict[str, str]:
        return {"client_id": caller.client_id}

    @app.get("/admin")
    async def admin(
        caller: Annotated[Principal, Depends(auth.require(roles=["admin"], scopes=["admin"]))],
    ) -> dict[str, str]:
        return {"client_id": caller.client_id}

    @app.get("/email")
    async def email(caller: Annotated[Principal, Security(auth, scopes=["email"])]) -> str:
        return caller.client_id

    @app.get("/purge")
    async def purge(caller: Annotated[Principal, Security(auth, scopes=["purge"])]) -> str:
        return caller.client_id

    @app.get("/maybe")
    async def maybe(
        caller: Annotated[Principal | None, Depends(auth.require(optional=True))],
    ) -> dict[str, str | None]:
        return {"client_id": caller.client_id if caller else None}

    @app.post("/form")
    async def form(caller: Annotated[Principal, Depends(auth)], request: Request) -> str:
        # The dependency read the form body; the route still gets all of it.
        return dict(parse_qsl((await request.body()).decode()))["message"]

    @app.get("/health")
    async def health() -> str:
        return "ok"

    return app


@pytest.fixture
def auth(validator: TokenValidator, realm: LocalRealm) -> TokenAuth:
    return TokenAuth(validator, token_url=realm.token_url)


@pytest.fixture
def client(auth: TokenAuth) -> Iterator[TestClient]:
    with TestClient(fastapi_app(auth)) as client:
        yield client


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_depends_gives_the_principal(client: TestClient, token: str) -> None:
    assert client.get("/whoami", headers=bearer(token)).json() == {"client_id": CLIENT}


def test_missing_token_is_401_not_fastapis_403(client: TestClient, realm: LocalRealm) -> None:
    assert_refused(client.get("/whoami"), 401, None, realm=realm.issuer)
    other_scheme = client.get("/whoami", headers={"Authorization": "Basic Zm9vOmJhcg=="})
    assert_refused(other_scheme, 401, None, realm=realm.issuer)


def test_bad_token_is_invalid_token(client: TestClient, realm: LocalRealm) -> None:
    token = realm.mint(CLIENT, expires_in=-3600)
    response = client.get("/whoami", headers=bearer(token))
    assert_refused(response, 401, "invalid_token", realm=realm.issuer, token=token)
    assert CLIENT not in response.text


def test_two_headers_or_query_token_is_a_bad_request(
    client: TestClient, realm: LocalRealm, token: str
) -> None:
    twice = client.get("/whoami", headers=[("Authorization", f"Bearer {token}")] * 2)
    assert_refused(twice, 400, "invalid_request", realm=realm.issuer, token=token)
    in_query = client.get("/whoami", params={"access_token": token}, headers=bearer(token))
    assert_refused(in_query, 400, "invalid_request", realm=realm.issuer, token=token)


def test_form_token_is_a_bad_request_and_forms_still_work(
    client: TestClient, realm: LocalRealm, token: str
) -> None:
    ok = client.post("/form", data={"message": "hi"}, headers=bearer(token))
    assert ok.json() == "hi"
    doubled = client.post(
        "/form", data={"message": "hi", "access_token": token}, headers=bearer(token)
    )
    assert_refused(doubled, 400, "invalid_request", realm=realm.issuer, token=token)


def test_require_checks_roles_and_client_roles(
    client: TestClient, realm: LocalRealm, token: str
) -> None:
    assert client.get("/send", headers=bearer(token)).json() == {"client_id": CLIENT}
    refused = client.get("/admin", headers=bearer(token))
    body = assert_refused(refused, 403, "insufficient_scope", realm=realm.issuer, token=token)
    assert "admin" in body["error_description"]
    assert refused.headers["WWW-Authenticate"].endswith(', scope="admin"')


def test_security_scopes_are_required(client: TestClient, realm: LocalRealm, token: str) -> None:
    assert client.get("/email", headers=bearer(token)).json() == CLIENT
    refused = client.get("/purge", headers=bearer(token))
    assert_refused(refused, 403, "insufficient_scope", realm=realm.issuer, token=token)
    assert refused.headers["WWW-Authenticate"].endswith(', scope="purge"')


def test_optional_lets_anonymous_through_but_not_bad_tokens(
    client: TestClient, realm: LocalRealm, token: str
) -> None:
    assert client.get("/maybe").json() == {"client_id": None}
    assert client.get("/maybe", headers=bearer(token)).json() == {"client_id": CLIENT}
    assert_refused(
        client.get("/maybe", headers=bearer("x.y.z")), 401, "invalid_token", realm=realm.issuer
    )


def test_keys_unavailable_is_503(client: TestClient, realm: LocalRealm, token: str) -> None:
    realm.fail_keys(502)
    response = client.get("/whoami", headers=bearer(token))
    assert_refused(response, 503, None, realm=realm.issuer, body_error="temporarily_unavailable")
    assert int(response.headers["Retry-After"]) >= 1


def test_nested_security_scopes_add_up(auth: TokenAuth, realm: LocalRealm, token: str) -> None:
    app = FastAPI()
    auth.install(app)

    async def mailer(caller: Annotated[Principal, Security(auth, scopes=["email"])]) -> Principal:
        return caller

    @app.get("/mail")
    async def mail(caller: Annotated[Principal, Security(mailer, scopes=["profile"])]) -> list[str]:
        return sorted(caller.scopes)

    with TestClient(app) as client:
        assert client.get("/mail", headers=bearer(token)).json() == ["email", "profile"]


def test_without_install_the_status_and_headers_are_still_right(
    validator: TokenValidator, realm: LocalRealm
) -> None:
    auth = TokenAuth(validator)
    app = FastAPI()

    @app.get("/whoami")
    async def whoami(caller: Annotated[Principal, Depends(auth)]) -> str:
        return caller.client_id

    with TestClient(app) as client:
        response = client.get("/whoami")
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == bare_challenge(realm.issuer)
    assert response.json()["detail"]["error"] == "unauthorized"


def whoami_app(auth: TokenAuth) -> FastAPI:
    app = FastAPI()

    @app.get("/whoami")
    async def whoami(caller: Annotated[Principal, Depends(auth)]) -> str:
        return caller.client_id

    return app


def test_install_after_the_routes_works(validator: TokenValidator) -> None:
    auth = TokenAuth(validator)
    app = whoami_app(auth)  # routes first, then install: the order does not matter
    auth.install(app)

    with TestClient(app) as client:
        assert client.get("/whoami").json()["error"] == "unauthorized"


def test_install_after_the_app_served_a_request_fails_loudly(validator: TokenValidator) -> None:
    auth = TokenAuth(validator)
    app = whoami_app(auth)
    with TestClient(app) as client:
        assert client.get("/whoami").status_code == 401

        with pytest.raises(RuntimeError, match=r"install\(app\) must be called before the app"):
            auth.install(app)

        # Nothing changed half-way: refusals keep FastAPI's body.
        assert client.get("/whoami").json()["detail"]["error"] == "unauthorized"


# --- OpenAPI ----------------------------------------------------------------------------------


def operation_security(document: dict[str, Any], path: str) -> Any:
    return document["paths"][path]["get"].get("security")


def test_openapi_lists_bearer_and_client_credentials(client: TestClient, realm: LocalRealm) -> None:
    document = client.get("/openapi.json").json()
    assert document["components"]["securitySchemes"] == {
        "bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
        "clientCredentials": {
            "type": "oauth2",
            "flows": {"clientCredentials": {"tokenUrl": realm.token_url, "scopes": {}}},
        },
    }
    assert operation_security(document, "/whoami") == [
        {"bearerAuth": []},
        {"clientCredentials": []},
    ]
    # auth.require(scopes=...) lists its scopes for the OAuth2 scheme; Security(auth, scopes=...)
    # makes FastAPI list them for both.
    assert operation_security(document, "/admin") == [
        {"bearerAuth": []},
        {"clientCredentials": ["admin"]},
    ]
    assert operation_security(document, "/email") == [
        {"bearerAuth": ["email"]},
        {"clientCredentials": ["email"]},
    ]
    assert operation_security(document, "/health") is None
    # No stray parameters from the dependency's signature.
    assert "parameters" not in document["paths"]["/whoami"]["get"]


def test_openapi_without_token_url_lists_bearer_only(validator: TokenValidator) -> None:
    with TestClient(fastapi_app(TokenAuth(validator))) as client:
        document = client.get("/openapi.json").json()
    assert list(document["components"]["securitySchemes"]) == ["bearerAuth"]
    assert operation_security(document, "/whoami") == [{"bearerAuth": []}]


def test_swagger_ui_is_served(client: TestClient) -> None:
    assert "swagger-ui" in client.get("/docs").text
