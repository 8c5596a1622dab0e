"""``any_roles``, ``any_scopes`` and ``allow``: on Principal.require and through every adapter."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import flask
import httpx
import pytest
from fastapi import Depends, FastAPI

from keycloak_m2m import ClientCredentials, InsufficientScope, Principal, TokenValidator
from keycloak_m2m.asgi import TokenAuthMiddleware
from keycloak_m2m.fastapi import TokenAuth as FastAPIAuth
from keycloak_m2m.flask import TokenAuth as FlaskAuth
from keycloak_m2m.flask import current_principal
from keycloak_m2m.testing import LocalRealm

from ..adapters.servers import serve_asgi, serve_wsgi
from ..support import AUDIENCE, CLIENT, TLS, add_shop_client

SECRET = "shop-api-secret"
POLICY_REFUSAL = "refused by the access policy"
# path -> requirement keywords, and the status the shop-api caller gets.
ROUTES: dict[str, tuple[dict[str, Any], int]] = {
    "/one-of-roles": ({"any_roles": ["admin", "notifications:send"]}, 200),
    "/none-of-roles": ({"any_roles": ["admin", "ops"]}, 403),
    "/one-of-scopes": ({"any_scopes": ["email", "notifications:admin"]}, 200),
    "/none-of-scopes": ({"any_scopes": ["notifications:admin", "audit"]}, 403),
    "/allowed": ({"allow": lambda principal: principal.client_id == CLIENT}, 200),
    "/denied": ({"allow": lambda principal: principal.client_id == "billing"}, 403),
    "/roles-and-allow": ({"roles": ["notifications:send"], "allow": lambda p: True}, 200),
}


@pytest.fixture(scope="module")
def realm() -> Iterator[LocalRealm]:
    with LocalRealm("shop") as realm:
        add_shop_client(realm)
        yield realm


@pytest.fixture(scope="module")
def token(realm: LocalRealm) -> str:
    return ClientCredentials(CLIENT, SECRET, token_url=realm.token_url).get_token()


@pytest.fixture(scope="module")
def principal(realm: LocalRealm, token: str) -> Principal:
    return TokenValidator(realm.issuer, AUDIENCE).validate(token)


# --- Principal.require --------------------------------------------------------------------------


def test_one_of_the_roles_is_enough(principal: Principal) -> None:
    principal.require(any_roles=["admin", "notifications:send"])
    principal.require(any_roles="notifications:send")  # a lone string is one name

    with pytest.raises(InsufficientScope) as refused:
        principal.require(any_roles=["admin", "ops"])

    assert refused.value.description == "needs one of realm roles: admin, ops"
    assert refused.value.wanted_any_roles == ("admin", "ops")


def test_one_of_the_scopes_is_enough(principal: Principal) -> None:
    principal.require(any_scopes=["email", "audit"])

    with pytest.raises(InsufficientScope) as refused:
        principal.require(scopes=["profile"], any_scopes=["audit", "billing"])

    assert refused.value.description == "needs one of scopes: audit, billing"
    # scope= in the challenge lists scopes that are all needed; alternatives are not that.
    assert "scope=" not in refused.value.www_authenticate("shop")


def test_everything_missing_is_named_at_once(principal: Principal) -> None:
    with pytest.raises(InsufficientScope) as refused:
        principal.require(roles=["admin"], scopes=["audit"], any_roles=["ops", "root"])

    assert refused.value.description == (
        "missing realm roles: admin; needs one of realm roles: ops, root; missing scopes: audit"
    )


def test_allow_decides_last_with_a_fixed_description(principal: Principal) -> None:
    seen: list[Principal] = []

    def policy(caller: Principal) -> bool:
        seen.append(caller)
        return caller.claims.get("clientAddress") == "10.0.0.1"

    with pytest.raises(InsufficientScope) as not_reached:
        principal.require(roles=["admin"], allow=policy)
    assert seen == []  # the declared requirement failed first: the policy never ran
    assert POLICY_REFUSAL not in not_reached.value.description

    with pytest.raises(InsufficientScope) as refused:
        principal.require(roles=["notifications:send"], allow=policy)

    assert seen == [principal]
    assert refused.value.description == POLICY_REFUSAL
    assert refused.value.refused_by_policy
    principal.require(allow=lambda caller: caller is principal)


@pytest.mark.parametrize("answer", [None, 1, "yes"])
def test_only_true_allows(principal: Principal, answer: object) -> None:
    with pytest.raises(InsufficientScope, match=POLICY_REFUSAL):
        principal.require(allow=lambda caller: answer)  # type: ignore[arg-type, return-value]


# --- the adapters -------------------------------------------------------------------------------


def asgi_app(validator: TokenValidator) -> Any:
    async def hello(scope: Any, receive: Any, send: Any) -> None:
        body = scope["auth"].client_id.encode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})

    guarded = {
        path: TokenAuthMiddleware(hello, validator=validator, **requirement)
        for path, (requirement, _) in ROUTES.items()
    }

    async def route(scope: Any, receive: Any, send: Any) -> None:
        await guarded[scope["path"]](scope, receive, send)

    return route


def fastapi_app(validator: TokenValidator) -> Any:
    auth = FastAPIAuth(validator)
    app = FastAPI()
    auth.install(app)
    for path, (requirement, _) in ROUTES.items():
        dependency = Depends(auth.require(**requirement))

        async def read(principal: Principal = dependency) -> str:
            return principal.client_id

        app.get(path)(read)
    return app


def flask_app(validator: TokenValidator) -> Any:
    auth = FlaskAuth(validator)
    app = flask.Flask(__name__)
    for path, (requirement, _) in ROUTES.items():

        def read() -> str:
            principal = current_principal()
            assert principal is not None
            return principal.client_id

        app.add_url_rule(path, path, auth.require(**requirement)(read))
    return app


APPS: dict[str, tuple[Callable[[TokenValidator], Any], Callable[[Any], Any]]] = {
    "asgi": (asgi_app, serve_asgi),
    "fastapi": (fastapi_app, serve_asgi),
    "flask": (flask_app, serve_wsgi),
}


@pytest.mark.parametrize("adapter", sorted(APPS))
def test_every_adapter_takes_the_requirements(adapter: str, realm: LocalRealm, token: str) -> None:
    make, serve = APPS[adapter]
    with serve(make(TokenValidator(realm.issuer, AUDIENCE))) as url:
        answers = {
            path: httpx.get(url + path, headers={"Authorization": f"Bearer {token}"}, verify=TLS)
            for path in ROUTES
        }

    assert {path: a.status_code for path, a in answers.items()} == {
        path: status for path, (_, status) in ROUTES.items()
    }
    assert answers["/one-of-roles"].text.strip('"') == CLIENT
    challenge = answers["/denied"].headers["WWW-Authenticate"]
    assert 'error="insufficient_scope"' in challenge
    assert f'error_description="{POLICY_REFUSAL}"' in challenge
    assert answers["/none-of-roles"].json()["error_description"] == (
        "needs one of realm roles: admin, ops"
    )


def test_a_misspelt_requirement_keyword_is_an_error_in_every_adapter(realm: LocalRealm) -> None:
    validator = TokenValidator(realm.issuer, AUDIENCE)

    with pytest.raises(TypeError, match="any_role"):
        TokenAuthMiddleware(asgi_app(validator), validator=validator, any_role=["x"])  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="any_role"):
        FastAPIAuth(validator).require(any_role=["x"])  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="any_role"):
        FlaskAuth(validator).require(any_role=["x"])  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="allow must be a callable"):
        FlaskAuth(validator).require(allow=True)  # type: ignore[typeddict-item]
