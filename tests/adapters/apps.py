"""One app per adapter, all with the same routes, for the cross-adapter suite.

Every factory takes a validator and returns an ASGI or a WSGI app serving:

* ``GET /any`` and ``POST /echo`` (the body echoed back): any valid token;
* ``GET /role``: realm role ``admin``, which the test client lacks;
* ``GET /scope``: scope ``notifications:admin``, which the test client lacks;
* ``GET /optional``: a token is optional.

Each answers ``{"client_id": ..., "body": ...}``. A new adapter gets the whole suite by adding a
factory to ``ADAPTERS``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import partial
from typing import Any

from fastapi import Depends, FastAPI
from fastapi import Request as FastAPIRequest
from flask import Flask, jsonify
from flask import request as flask_request
from flask.typing import ResponseReturnValue
from flask.views import MethodView
from litestar import Litestar, post
from litestar import Request as LitestarRequest
from litestar import get as litestar_get
from quart import Quart
from quart import request as quart_request
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from keycloak_m2m import Principal, TokenValidator
from keycloak_m2m.asgi import TokenAuthMiddleware
from keycloak_m2m.fastapi import TokenAuth as FastAPIAuth
from keycloak_m2m.flask import TokenAuth as FlaskAuth
from keycloak_m2m.flask import current_principal

MISSING_ROLE = "admin"
MISSING_SCOPE = "notifications:admin"
# path -> the requirement of that route, as keyword arguments of every adapter.
ROUTES: dict[str, dict[str, Any]] = {
    "/any": {},
    "/echo": {},
    "/role": {"roles": [MISSING_ROLE]},
    "/scope": {"scopes": [MISSING_SCOPE]},
    "/optional": {"optional": True},
}

App = Any
Factory = Callable[[TokenValidator], App]


def _answer(principal: object, body: bytes = b"") -> dict[str, Any]:
    client_id = principal.client_id if isinstance(principal, Principal) else None
    return {"client_id": client_id, "body": body.decode()}


def _each_route_guarded(app: App, validator: TokenValidator) -> App:
    """``app`` behind one TokenAuthMiddleware per route, each with that route's requirement."""
    guarded = {
        path: TokenAuthMiddleware(app, validator=validator, **requirement)
        for path, requirement in ROUTES.items()
    }

    async def dispatch(scope: Any, receive: Any, send: Any) -> None:
        await guarded.get(scope.get("path", ""), app)(scope, receive, send)

    return dispatch


# --- ASGI middleware in each framework ---------------------------------------------------------


def bare_asgi(validator: TokenValidator) -> App:
    async def endpoint(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            return
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        payload = json.dumps(_answer(scope["auth"], body)).encode()
        headers = [(b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": payload})

    return _each_route_guarded(endpoint, validator)


def starlette(validator: TokenValidator) -> App:
    async def endpoint(request: Request) -> JSONResponse:
        return JSONResponse(_answer(request.auth, await request.body()))

    guard = partial(Middleware, TokenAuthMiddleware, validator=validator)
    methods = {"/echo": ["POST"]}
    return Starlette(
        routes=[
            Route(
                path,
                endpoint,
                methods=methods.get(path, ["GET"]),
                middleware=[guard(**requirement)],
            )
            for path, requirement in ROUTES.items()
        ]
    )


def fastapi_middleware(validator: TokenValidator) -> App:
    app = FastAPI()

    @app.get("/any")
    @app.get("/role")
    @app.get("/scope")
    @app.get("/optional")
    async def read(request: FastAPIRequest) -> dict[str, Any]:
        return _answer(request.scope["auth"])

    @app.post("/echo")
    async def echo(request: FastAPIRequest) -> dict[str, Any]:
        return _answer(request.scope["auth"], await request.body())

    return _each_route_guarded(app, validator)


def litestar(validator: TokenValidator) -> App:
    @litestar_get(["/any", "/role", "/scope", "/optional"])
    async def read(request: LitestarRequest[Any, Any, Any]) -> dict[str, Any]:
        return _answer(request.scope["auth"])

    @post("/echo", status_code=200)
    async def echo(request: LitestarRequest[Any, Any, Any]) -> dict[str, Any]:
        return _answer(request.scope["auth"], await request.body())

    return _each_route_guarded(Litestar([read, echo]), validator)


def quart(validator: TokenValidator) -> App:
    app = Quart(__name__)

    @app.get("/any")
    @app.get("/role")
    @app.get("/scope")
    @app.get("/optional")
    async def read() -> dict[str, Any]:
        return _answer(quart_request.scope["auth"])  # type: ignore[typeddict-item]

    @app.post("/echo")
    async def echo() -> dict[str, Any]:
        return _answer(quart_request.scope["auth"], await quart_request.get_data())  # type: ignore[typeddict-item]

    return _each_route_guarded(app, validator)


# --- the FastAPI dependency --------------------------------------------------------------------


def fastapi_dependency(validator: TokenValidator) -> App:
    auth = FastAPIAuth(validator)
    app = FastAPI()
    auth.install(app)

    for path, requirement in ROUTES.items():
        if path == "/echo":
            continue
        dependency = Depends(auth.require(**requirement))

        async def read(principal: Principal | None = dependency) -> dict[str, Any]:
            return _answer(principal)

        app.get(path)(read)

    any_caller = Depends(auth)

    @app.post("/echo")
    async def echo(request: FastAPIRequest, principal: Principal = any_caller) -> dict[str, Any]:
        return _answer(principal, await request.body())

    return app


# --- the Flask decorator -----------------------------------------------------------------------


def _flask_answer() -> ResponseReturnValue:
    return jsonify(_answer(current_principal(), flask_request.get_data()))


def flask_sync(validator: TokenValidator) -> App:
    auth = FlaskAuth(validator)
    app = Flask(__name__)
    for path, requirement in ROUTES.items():
        methods = ["POST"] if path == "/echo" else ["GET"]
        view = auth.require(**requirement)(_flask_answer)
        app.add_url_rule(path, path, view, methods=methods)
    return app


def flask_async(validator: TokenValidator) -> App:
    auth = FlaskAuth(validator)
    app = Flask(__name__)
    for path, requirement in ROUTES.items():
        methods = ["POST"] if path == "/echo" else ["GET"]

        async def answer() -> ResponseReturnValue:
            return _flask_answer()

        app.add_url_rule(path, path, auth.require(**requirement)(answer), methods=methods)
    return app


def flask_class_based(validator: TokenValidator) -> App:
    auth = FlaskAuth(validator)
    app = Flask(__name__)
    for path, requirement in ROUTES.items():

        class Answer(MethodView):
            decorators = [auth.require(**requirement)]  # noqa: RUF012 - Flask's own attribute

            def get(self) -> ResponseReturnValue:
                return _flask_answer()

            def post(self) -> ResponseReturnValue:
                return _flask_answer()

        app.add_url_rule(path, view_func=Answer.as_view(path))
    return app


ASGI_ADAPTERS: dict[str, Factory] = {
    "bare-asgi": bare_asgi,
    "starlette": starlette,
    "fastapi-middleware": fastapi_middleware,
    "fastapi-dependency": fastapi_dependency,
    "litestar": litestar,
    "quart": quart,
}
WSGI_ADAPTERS: dict[str, Factory] = {
    "flask-sync": flask_sync,
    "flask-async": flask_async,
    "flask-class-based": flask_class_based,
}
ADAPTERS = {**ASGI_ADAPTERS, **WSGI_ADAPTERS}
