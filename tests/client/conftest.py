"""Fixtures of the caller-side tests: credentials against the local realm, a resource server."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from keycloak_m2m import AuthError, TokenValidator
from keycloak_m2m._client import ClientCredentials
from keycloak_m2m.testing import LocalRealm
from keycloak_m2m.testing._server import HttpServer, Request, Response

from ..support import AUDIENCE, CLIENT, FakeClock

SECRET = "shop-api-secret"
# Retries in tests wait a few milliseconds, not seconds.
FAST_RETRIES: dict[str, Any] = {"backoff": 0.001, "max_backoff": 0.005}

MakeCredentials = Callable[..., ClientCredentials]


@pytest.fixture
def make_credentials(realm: LocalRealm, clock: FakeClock) -> MakeCredentials:
    def make(client_id: str = CLIENT, secret: str = SECRET, **options: Any) -> ClientCredentials:
        if "keycloak_url" not in options:
            options.setdefault("token_url", realm.token_url)
        options.setdefault("clock", clock)
        return ClientCredentials(client_id, secret, **{**FAST_RETRIES, **options})

    return make


@pytest.fixture
def credentials(make_credentials: MakeCredentials) -> ClientCredentials:
    return make_credentials()


class ResourceServer:
    """The notification-service: answers 200 with the caller's client id, or 401."""

    def __init__(self, validator: TokenValidator) -> None:
        self._validator = validator
        self.presented: list[str] = []
        self._server = HttpServer(self._handle)
        self.url = f"http://127.0.0.1:{self._server.port}/notifications"

    def _handle(self, request: Request) -> Response:
        token = request.headers.get("authorization", "").removeprefix("Bearer ")
        self.presented.append(token)
        try:
            principal = self._validator.validate(token)
        except AuthError as error:
            return Response(error.status_code, json.dumps(error.response_body()).encode())
        body = {"client": principal.client_id, "echo": request.body.decode()}
        return Response(200, json.dumps(body).encode())

    def close(self) -> None:
        self._server.close()


@pytest.fixture
def make_resource_server(
    realm: LocalRealm, clock: FakeClock
) -> Iterator[Callable[..., ResourceServer]]:
    servers: list[ResourceServer] = []

    def make(audience: str = AUDIENCE) -> ResourceServer:
        server = ResourceServer(TokenValidator(realm.issuer, audience, clock=clock))
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.close()
