"""Spans and metrics of the caller side: token requests, exchanges, retries, and the W3C trace
context on outgoing calls made with ClientCredentials as httpx.Auth."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.trace import StatusCode

from keycloak_m2m._client import ClientCredentials, TokenRequestError
from keycloak_m2m.testing import LocalRealm
from keycloak_m2m.testing._server import HttpServer, Request, Response

from ..otel_sdk import Telemetry, attributes
from ..support import AUDIENCE, CLIENT
from .conftest import MakeCredentials

GRANT = "client_credentials"
EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"


class HeaderRecorder:
    """A service that answers 200 and keeps the headers of every request."""

    def __init__(self) -> None:
        self.headers: list[dict[str, str]] = []
        self._server = HttpServer(self._handle)
        self.url = f"http://127.0.0.1:{self._server.port}/notifications"

    def _handle(self, request: Request) -> Response:
        self.headers.append({name.lower(): value for name, value in request.headers.items()})
        return Response(200, b"{}")


@pytest.fixture
def service() -> Iterator[HeaderRecorder]:
    recorder = HeaderRecorder()
    yield recorder
    recorder._server.close()


def test_a_token_request(
    telemetry: Telemetry, realm: LocalRealm, credentials: ClientCredentials
) -> None:
    credentials.get_token()
    credentials.get_token()  # cached: no second request

    (span,) = telemetry.spans()
    assert span.name == "keycloak_m2m.token_request"
    assert attributes(span) == {
        "url.full": realm.token_url,
        "keycloak_m2m.client_id": CLIENT,
        "keycloak_m2m.grant_type": GRANT,
        "keycloak_m2m.outcome": "issued",
        "keycloak_m2m.retries": 0,
        "http.response.status_code": 200,
    }
    issued = frozenset({("keycloak_m2m.outcome", "issued"), ("keycloak_m2m.grant_type", GRANT)})
    found = telemetry.metrics()
    assert found["keycloak_m2m.token_requests"] == {issued: 1}
    assert found["keycloak_m2m.token_request.duration"][issued][0] == 1
    assert telemetry.units()["keycloak_m2m.token_request.duration"] == "s"
    assert telemetry.units()["keycloak_m2m.token_requests"] == "{request}"


async def test_a_failing_token_request_counts_its_retries(
    telemetry: Telemetry, realm: LocalRealm, make_credentials: MakeCredentials
) -> None:
    realm.fail_token(503)
    with pytest.raises(TokenRequestError):
        await make_credentials(max_retries=2).get_token_async()

    (span,) = telemetry.spans()
    assert attributes(span) == {
        "url.full": realm.token_url,
        "keycloak_m2m.client_id": CLIENT,
        "keycloak_m2m.grant_type": GRANT,
        "keycloak_m2m.outcome": "failed",
        "keycloak_m2m.retries": 2,
        "http.response.status_code": 503,
        "error.type": "TokenRequestError",
    }
    assert span.status.status_code is StatusCode.ERROR
    failed = frozenset({("keycloak_m2m.outcome", "failed"), ("keycloak_m2m.grant_type", GRANT)})
    assert telemetry.metrics()["keycloak_m2m.token_requests"] == {failed: 1}


def test_a_refused_token_request_names_the_oauth_error(
    telemetry: Telemetry, make_credentials: MakeCredentials
) -> None:
    with pytest.raises(TokenRequestError):
        make_credentials(secret="wrong").get_token()
    (span,) = telemetry.spans()
    assert attributes(span)["error.type"] == "invalid_client"
    assert attributes(span)["http.response.status_code"] == 401
    assert "wrong" not in str(attributes(span))


def test_a_token_exchange(
    telemetry: Telemetry, realm: LocalRealm, make_credentials: MakeCredentials
) -> None:
    realm.add_client("gateway", "gateway-secret")
    realm.add_client("checkout", "checkout-secret", audience=["gateway"])
    subject_token = make_credentials("checkout", "checkout-secret").get_token()
    telemetry.exporter.clear()

    make_credentials("gateway", "gateway-secret").exchange(subject_token, audience=AUDIENCE)

    (span,) = telemetry.spans()
    assert span.name == "keycloak_m2m.token_exchange"
    assert attributes(span) == {
        "url.full": realm.token_url,
        "keycloak_m2m.client_id": "gateway",
        "keycloak_m2m.grant_type": EXCHANGE,
        "keycloak_m2m.outcome": "issued",
        "keycloak_m2m.retries": 0,
        "http.response.status_code": 200,
    }
    exchanged = frozenset(
        {("keycloak_m2m.outcome", "issued"), ("keycloak_m2m.grant_type", EXCHANGE)}
    )
    assert telemetry.metrics()["keycloak_m2m.token_requests"][exchanged] == 1


@pytest.mark.parametrize("driver", ["sync", "async"])
async def test_outgoing_calls_carry_the_trace_context(
    telemetry: Telemetry,
    credentials: ClientCredentials,
    service: HeaderRecorder,
    driver: str,
) -> None:
    tracer = trace.get_tracer("tests")
    with tracer.start_as_current_span("shop-api checkout") as parent:
        if driver == "sync":
            with httpx.Client(auth=credentials) as client:
                assert client.post(service.url).status_code == 200
        else:
            async with httpx.AsyncClient(auth=credentials) as client:
                assert (await client.post(service.url)).status_code == 200

    (headers,) = service.headers
    version, trace_id, span_id, flags = headers["traceparent"].split("-")
    context = parent.get_span_context()
    assert version == "00"
    assert int(flags, 16) & 1  # sampled
    assert int(trace_id, 16) == context.trace_id
    assert int(span_id, 16) == context.span_id
    (token_request,) = telemetry.spans("keycloak_m2m.token_request")
    assert token_request.parent is not None
    assert token_request.parent.span_id == context.span_id
