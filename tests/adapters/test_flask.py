"""The Flask decorator through Flask's test client, and once through a real WSGI server."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import httpx
import pytest
from flask import Flask, g, jsonify, request
from flask.typing import ResponseReturnValue
from flask.views import MethodView, View

from keycloak_m2m import TokenValidator
from keycloak_m2m.flask import TokenAuth, current_principal
from keycloak_m2m.testing import LocalRealm

from ..support import AUDIENCE, CLIENT, FakeClock, shared_realm
from .checks import assert_refused
from .servers import serve_wsgi

# The tests leave the realm as they found it (or rotate its keys, which gets the next test a
# new one): one realm for the module, see SharedRealm.
clock, realm = shared_realm()


def caller_json() -> ResponseReturnValue:
    principal = current_principal()
    assert principal is g.principal
    return jsonify(client_id=principal.client_id if principal else None)


def flask_app(auth: TokenAuth, app: Flask | None = None) -> Flask:
    app = app or Flask(__name__)

    @app.get("/whoami")
    @auth.require()
    def whoami() -> ResponseReturnValue:
        return caller_json()

    @app.get("/async")
    @auth.require(scopes=["email"])
    async def async_whoami() -> ResponseReturnValue:
        return caller_json()

    @app.get("/send")
    @auth.require(roles=["notifications:send"], client_roles={AUDIENCE: ["send"]})
    def send() -> ResponseReturnValue:
        return caller_json()

    @app.get("/admin")
    @auth.require(roles=["admin"], scopes=["admin"])
    def admin() -> ResponseReturnValue:
        return caller_json()

    @app.get("/maybe")
    @auth.require(optional=True)
    def maybe() -> ResponseReturnValue:
        return caller_json()

    @app.post("/form")
    @auth.require()
    def form() -> ResponseReturnValue:
        return jsonify(request.form.to_dict())

    class Whoami(View):
        decorators: ClassVar[list[Callable[..., Any]]] = [auth.require()]

        def dispatch_request(self) -> ResponseReturnValue:
            return caller_json()

    app.add_url_rule("/class", view_func=Whoami.as_view("class_whoami"))

    class Notifications(MethodView):
        @auth.require()
        async def get(self) -> ResponseReturnValue:
            return caller_json()

        @auth.require(roles=["admin"])
        def post(self) -> ResponseReturnValue:
            return caller_json()

    app.add_url_rule("/methods", view_func=Notifications.as_view("methods"))
    return app


@pytest.fixture
def app(validator: TokenValidator) -> Flask:
    return flask_app(TokenAuth(validator))


@pytest.fixture
def client(app: Flask) -> Any:
    return app.test_client()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.parametrize("path", ["/whoami", "/async", "/send", "/class", "/methods"])
def test_views_get_the_principal(client: Any, token: str, path: str) -> None:
    response = client.get(path, headers=bearer(token))
    assert response.status_code == 200
    assert response.get_json() == {"client_id": CLIENT}


@pytest.mark.parametrize("path", ["/whoami", "/async", "/class", "/methods"])
def test_views_refuse_a_missing_token(client: Any, realm: LocalRealm, path: str) -> None:
    assert_refused(client.get(path), 401, None, realm=realm.issuer)


def test_other_scheme_and_empty_token_count_as_missing(client: Any, realm: LocalRealm) -> None:
    for value in ("Basic Zm9vOmJhcg==", "Bearer", "Bearer   "):
        response = client.get("/whoami", headers={"Authorization": value})
        assert_refused(response, 401, None, realm=realm.issuer)


def test_bad_token_is_invalid(client: Any, realm: LocalRealm) -> None:
    token = realm.mint(CLIENT, claims={"iss": "https://evil.example/realms/shop"})
    response = client.get("/whoami", headers=bearer(token))
    assert_refused(response, 401, "invalid_token", realm=realm.issuer, token=token)
    assert b"evil" not in response.get_data()


def test_requirements(client: Any, realm: LocalRealm, token: str) -> None:
    refused = client.get("/admin", headers=bearer(token))
    assert_refused(refused, 403, "insufficient_scope", realm=realm.issuer, token=token)
    assert refused.headers["WWW-Authenticate"].endswith(', scope="admin"')
    method_refused = client.post("/methods", headers=bearer(token))
    assert_refused(method_refused, 403, "insufficient_scope", realm=realm.issuer, token=token)


def test_optional(client: Any, realm: LocalRealm, token: str) -> None:
    assert client.get("/maybe").get_json() == {"client_id": None}
    assert client.get("/maybe", headers=bearer(token)).get_json() == {"client_id": CLIENT}
    bad = client.get("/maybe", headers=bearer("garbage"))
    assert_refused(bad, 401, "invalid_token", realm=realm.issuer, token="garbage")


def test_token_in_two_places_is_a_bad_request(client: Any, realm: LocalRealm, token: str) -> None:
    twice = client.get("/whoami", headers=[("Authorization", f"Bearer {token}")] * 2)
    assert_refused(twice, 400, "invalid_request", realm=realm.issuer, token=token)
    in_query = client.get("/whoami", query_string={"access_token": token}, headers=bearer(token))
    assert_refused(in_query, 400, "invalid_request", realm=realm.issuer, token=token)
    in_form = client.post("/form", data={"access_token": token}, headers=bearer(token))
    assert_refused(in_form, 400, "invalid_request", realm=realm.issuer, token=token)


def test_the_view_still_reads_the_form(client: Any, token: str) -> None:
    response = client.post("/form", data={"message": "hi"}, headers=bearer(token))
    assert response.get_json() == {"message": "hi"}


def test_keys_unavailable_is_503(client: Any, realm: LocalRealm, token: str) -> None:
    realm.fail_keys(500)
    response = client.get("/whoami", headers=bearer(token))
    assert_refused(response, 503, None, realm=realm.issuer, body_error="temporarily_unavailable")
    assert int(response.headers["Retry-After"]) >= 1


# --- init_app and app.config ------------------------------------------------------------------


def configured_app(realm: LocalRealm, clock: FakeClock, **settings: Any) -> Flask:
    app = Flask(__name__)
    app.config.update(
        KEYCLOAK_M2M_ISSUER=realm.issuer,
        KEYCLOAK_M2M_AUDIENCE=AUDIENCE,
        KEYCLOAK_M2M_CLOCK=clock,
        **settings,
    )
    return app


def test_init_app_builds_the_validator_from_config(
    realm: LocalRealm, clock: FakeClock, token: str
) -> None:
    auth = TokenAuth()
    app = flask_app(auth, configured_app(realm, clock, KEYCLOAK_M2M_REALM="notifications"))
    auth.init_app(app)
    client = app.test_client()
    assert client.get("/whoami", headers=bearer(token)).get_json() == {"client_id": CLIENT}
    assert_refused(client.get("/whoami"), 401, None, realm="notifications")


def test_config_options_reach_the_validator(
    realm: LocalRealm, clock: FakeClock, token: str
) -> None:
    auth = TokenAuth()
    app = flask_app(auth, configured_app(realm, clock, KEYCLOAK_M2M_ALLOWED_CLIENTS=["billing"]))
    auth.init_app(app)
    response = app.test_client().get("/whoami", headers=bearer(token))
    assert_refused(response, 401, "invalid_token", realm=realm.issuer, token=token)


def test_misspelt_setting_is_refused(realm: LocalRealm, clock: FakeClock) -> None:
    app = configured_app(realm, clock, KEYCLOAK_M2M_ALLOWED_CLIENT=["billing"])
    with pytest.raises(RuntimeError, match="KEYCLOAK_M2M_ALLOWED_CLIENT"):
        TokenAuth().init_app(app)


def test_missing_settings_are_named() -> None:
    with pytest.raises(RuntimeError, match="KEYCLOAK_M2M_ISSUER and KEYCLOAK_M2M_AUDIENCE"):
        TokenAuth().init_app(Flask(__name__))


def test_without_init_app_the_view_fails_loudly(realm: LocalRealm, token: str) -> None:
    app = flask_app(TokenAuth())
    app.config["PROPAGATE_EXCEPTIONS"] = True
    with pytest.raises(RuntimeError, match="init_app"):
        app.test_client().get("/whoami", headers=bearer(token))


def test_one_auth_serves_several_apps(realm: LocalRealm, clock: FakeClock, token: str) -> None:
    auth = TokenAuth()
    apps = [flask_app(auth, configured_app(realm, clock)) for _ in range(2)]
    for app in apps:
        auth.init_app(app)
    for app in apps:
        assert app.test_client().get("/whoami", headers=bearer(token)).status_code == 200


# --- a real WSGI server -----------------------------------------------------------------------


def test_real_wsgi_server(app: Flask, realm: LocalRealm, token: str) -> None:
    with serve_wsgi(app) as base_url, httpx.Client(base_url=base_url) as http:
        assert http.get("/async", headers=bearer(token)).json() == {"client_id": CLIENT}
        refused = http.get("/whoami", headers=bearer("garbage"))
        assert_refused(refused, 401, "invalid_token", realm=realm.issuer, token="garbage")
        # The server folds repeated headers into one, comma-separated: still two tokens.
        twice = http.get("/whoami", headers=[("Authorization", f"Bearer {token}")] * 2)
        assert_refused(twice, 400, "invalid_request", realm=realm.issuer, token=token)


def misordered_app(auth: TokenAuth) -> Flask:
    app = Flask(__name__)

    @auth.require(roles=["admin"])  # above the route: the route keeps the bare view
    @app.get("/admin")
    def admin() -> ResponseReturnValue:
        return caller_json()

    @app.get("/fine")
    @auth.require()
    def fine() -> ResponseReturnValue:
        return caller_json()

    return app


def test_a_guard_above_the_route_fails_at_the_first_request(
    validator: TokenValidator, token: str
) -> None:
    app = misordered_app(TokenAuth(validator))
    app.config["PROPAGATE_EXCEPTIONS"] = True
    with pytest.raises(RuntimeError, match=r"misordered_app\.<locals>\.admin.*below @app\.route"):
        app.test_client().get("/fine", headers=bearer(token))


def test_a_guard_above_the_route_fails_at_init_app(validator: TokenValidator) -> None:
    auth = TokenAuth(validator)
    with pytest.raises(RuntimeError, match=r"'admin'.*registered unguarded"):
        auth.init_app(misordered_app(auth))


def test_init_app_before_the_routes_catches_it_on_any_request(validator: TokenValidator) -> None:
    auth = TokenAuth(validator)
    app = Flask(__name__)
    auth.init_app(app)  # an app factory: the extension first, the views after

    @auth.require(roles=["admin"])
    @app.get("/admin")
    def admin() -> ResponseReturnValue:
        return caller_json()

    app.config["PROPAGATE_EXCEPTIONS"] = True
    with pytest.raises(RuntimeError, match=r"'admin'.*registered unguarded"):
        app.test_client().get("/admin")  # the bare view itself: without the check, a 200
