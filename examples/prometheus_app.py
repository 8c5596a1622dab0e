"""Prometheus metrics of a protected FastAPI service, through OpenTelemetry's Prometheus exporter.

Run it: ``python examples/prometheus_app.py`` (needs ``pip install "keycloak-m2m[otel]"
opentelemetry-sdk opentelemetry-exporter-prometheus fastapi uvicorn``). It starts a local
Keycloak-compatible realm, serves the app on 127.0.0.1, makes three accepted calls and two
refused ones, then scrapes ``/metrics`` as Prometheus would and prints the package's series.
"""

from __future__ import annotations

import secrets
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import uvicorn
from fastapi import FastAPI, Request, Response
from opentelemetry import metrics
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.metrics import MeterProvider
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from keycloak_m2m import ClientCredentials, TokenValidator
from keycloak_m2m.asgi import TokenAuthMiddleware
from keycloak_m2m.testing import LocalRealm

# Once, at startup, before any validator or client is made: the SDK and its Prometheus reader.
metrics.set_meter_provider(MeterProvider(metric_readers=[PrometheusMetricReader()]))


def create_app(validator: TokenValidator) -> FastAPI:
    app = FastAPI()
    # /metrics stays open to the scraper; everything else needs a valid token.
    app.add_middleware(TokenAuthMiddleware, validator=validator, exclude_paths=["/metrics"])

    @app.get("/notifications")
    async def list_notifications(request: Request) -> dict[str, str]:
        return {"caller": request.auth.client_id}

    @app.get("/metrics")
    async def prometheus_metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

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
        realm.add_client("shop-api", secret, audience=["notification-service"])
        validator = TokenValidator(realm.issuer, "notification-service")
        shop_api = ClientCredentials("shop-api", secret, token_url=realm.token_url)
        with serving(create_app(validator)) as base_url:
            with httpx.Client(base_url=base_url, auth=shop_api) as caller:
                accepted = [caller.get("/notifications").status_code for _ in range(3)]
            with httpx.Client(base_url=base_url) as stranger:
                refused = [
                    stranger.get("/notifications").status_code,  # no token: no validation
                    stranger.get(
                        "/notifications", headers={"Authorization": "Bearer x.y.z"}
                    ).status_code,
                ]
            print(f"calls: {accepted} accepted, {refused} refused")
            scraped = httpx.get(base_url + "/metrics").text
        for line in scraped.splitlines():
            if line.startswith("keycloak_m2m_") and "_bucket" not in line:
                print(line)


if __name__ == "__main__":
    main()
