"""A Flask notification service whose views only other services may call.

Run it: ``python examples/flask_app.py``. It starts a local Keycloak-compatible realm, serves
the app with Werkzeug's WSGI server on 127.0.0.1, calls it as the ``shop-api`` service and prints
the answers. The validator comes from ``app.config``, as it would from your settings.
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
from flask import Flask, jsonify
from flask.typing import ResponseReturnValue
from flask.views import MethodView
from werkzeug.serving import make_server

from keycloak_m2m.flask import TokenAuth, current_principal
from keycloak_m2m.testing import LocalRealm

auth = TokenAuth()  # the validator is built by init_app from app.config


class Notifications(MethodView):
    @auth.require()
    def get(self) -> ResponseReturnValue:
        caller = current_principal()  # the same object as flask.g.principal
        assert caller is not None
        return jsonify(caller=caller.client_id)

    @auth.require(roles=["notifications:send"])
    async def post(self) -> ResponseReturnValue:  # async views need flask[async]
        caller = current_principal()
        assert caller is not None
        return jsonify(sent_by=caller.client_id), 201

    @auth.require(client_roles={"notification-service": ["purge"]})
    def delete(self) -> ResponseReturnValue:
        return "", 204


def create_app(issuer: str) -> Flask:
    app = Flask(__name__)
    app.config["KEYCLOAK_M2M_ISSUER"] = issuer
    app.config["KEYCLOAK_M2M_AUDIENCE"] = "notification-service"
    app.config["KEYCLOAK_M2M_ALLOWED_CLIENTS"] = ["shop-api"]
    auth.init_app(app)
    app.add_url_rule("/notifications", view_func=Notifications.as_view("notifications"))

    @app.get("/health")
    def health() -> ResponseReturnValue:
        return "ok"

    return app


@contextmanager
def serving(app: Flask) -> Iterator[str]:
    """Serve the app with Werkzeug's threaded WSGI server on 127.0.0.1 until the block ends."""
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join()
        server.server_close()


def main() -> None:
    with LocalRealm("shop") as realm:
        secret = secrets.token_urlsafe(16)  # a throwaway local realm's made-up secret
        realm.add_client(
            "shop-api",
            secret,
            realm_roles=["notifications:send"],
            audience=["notification-service"],
        )
        grant = {"grant_type": "client_credentials"}
        token = httpx.post(realm.token_url, data=grant, auth=("shop-api", secret)).json()
        bearer = {"Authorization": f"Bearer {token['access_token']}"}

        with serving(create_app(realm.issuer)) as base_url, httpx.Client(base_url=base_url) as http:
            for method, who, headers in [
                ("GET", "anonymous", {}),
                ("GET", "shop-api", bearer),
                ("POST", "shop-api", bearer),
                ("DELETE", "shop-api", bearer),
            ]:
                response = http.request(method, "/notifications", headers=headers)
                answer = f"{response.status_code} {response.text.strip()}"
                print(f"{method} /notifications as {who} -> {answer}")


if __name__ == "__main__":
    main()
