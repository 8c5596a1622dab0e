"""A FastAPI notification service that only other services may call.

Run it: ``python examples/fastapi_app.py``. It starts a local Keycloak-compatible realm, serves
the app with uvicorn on 127.0.0.1, calls it as the ``shop-api`` service and prints the answers.
Against a real Keycloak, build the validator from your realm's issuer instead.
"""

# No ``from __future__ import annotations``: FastAPI reads the routes' annotations at runtime,
# and ``auth`` below is local to create_app.
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import httpx
import uvicorn
from fastapi import Depends, FastAPI, Security

from keycloak_m2m import Principal, TokenValidator
from keycloak_m2m.fastapi import TokenAuth
from keycloak_m2m.testing import LocalRealm


def create_app(validator: TokenValidator, token_url: str) -> FastAPI:
    auth = TokenAuth(validator, token_url=token_url)  # token_url: Swagger UI's Authorize button
    app = FastAPI(title="notification-service")
    auth.install(app)  # refusals get the RFC 6750 JSON body

    @app.get("/notifications")
    async def list_notifications(caller: Annotated[Principal, Depends(auth)]) -> dict[str, str]:
        return {"caller": caller.client_id}

    @app.post("/notifications", status_code=201)
    async def send_notification(
        caller: Annotated[Principal, Depends(auth.require(roles=["notifications:send"]))],
    ) -> dict[str, str]:
        return {"sent_by": caller.client_id}

    @app.delete("/notifications")
    async def purge_notifications(
        caller: Annotated[Principal, Security(auth, scopes=["notifications:purge"])],
    ) -> dict[str, str]:
        return {"purged_by": caller.client_id}

    @app.get("/health")
    async def health() -> str:
        return "ok"

    return app


@contextmanager
def serving(app: FastAPI) -> Iterator[str]:
    """Serve the app with uvicorn on a free port of 127.0.0.1 until the block ends."""
    sock = socket.create_server(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]})
    thread.start()
    while not server.started and thread.is_alive():
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join()
        sock.close()


def main() -> None:
    with LocalRealm("shop") as realm:
        secret = secrets.token_urlsafe(16)  # a throwaway local realm's made-up secret
        realm.add_client(
            "shop-api",
            secret,
            realm_roles=["notifications:send"],
            audience=["notification-service"],
        )
        validator = TokenValidator(realm.issuer, "notification-service")
        app = create_app(validator, realm.token_url)
        grant = {"grant_type": "client_credentials"}
        token = httpx.post(realm.token_url, data=grant, auth=("shop-api", secret)).json()
        bearer = {"Authorization": f"Bearer {token['access_token']}"}

        with serving(app) as base_url, httpx.Client(base_url=base_url) as http:
            for method, who, headers in [
                ("GET", "anonymous", {}),
                ("GET", "shop-api", bearer),
                ("POST", "shop-api", bearer),
                ("DELETE", "shop-api", bearer),
            ]:
                response = http.request(method, "/notifications", headers=headers)
                print(f"{method} /notifications as {who} -> {response.status_code} {response.text}")
            schemes = http.get("/openapi.json").json()["components"]["securitySchemes"]
            print(f"OpenAPI security schemes: {', '.join(schemes)}")


if __name__ == "__main__":
    main()
