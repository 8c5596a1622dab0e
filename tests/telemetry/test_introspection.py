"""Spans and metrics of introspection requests (RFC 7662), under both drivers and through the
FastAPI dependency.

Every request goes over real HTTP to LocalRealm's introspection endpoint (or to a port where
nothing listens); the SDK's in-memory exporter and metric reader show what was recorded.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fastapi import Depends, FastAPI
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import StatusCode

from keycloak_m2m import (
    Introspection,
    IntrospectionUnavailable,
    Principal,
    TokenRevoked,
    TokenValidator,
)
from keycloak_m2m.fastapi import TokenAuth
from keycloak_m2m.testing import LocalRealm

from ..adapters.servers import serve_asgi
from ..otel_sdk import Telemetry, attributes
from ..support import AUDIENCE, CLIENT, GRACE, Validate

MakeValidator = Callable[..., TokenValidator]
# The resource server introspects as its own client.
SECRET = "notification-service-secret"


@pytest.fixture
def realm(realm: LocalRealm) -> LocalRealm:
    realm.add_client(AUDIENCE, SECRET)
    return realm


def introspecting(make_validator: MakeValidator, **options: Any) -> TokenValidator:
    return make_validator(introspection=Introspection(AUDIENCE, SECRET, **options))


def child_of(span: ReadableSpan, parent: ReadableSpan) -> bool:
    return span.parent is not None and span.parent.span_id == parent.context.span_id


def outcomes(telemetry: Telemetry) -> dict[str, int]:
    """The introspection counter's deltas, by outcome, checked against the histogram's counts."""
    found = telemetry.metrics()
    counted = found.get("keycloak_m2m.introspections", {})
    durations = found.get("keycloak_m2m.introspection.duration", {})
    assert {labels: count for labels, (count, _) in durations.items()} == counted
    return {dict(labels)["keycloak_m2m.outcome"]: count for labels, count in counted.items()}


def test_an_active_token_is_introspected_in_a_child_span_of_its_validation(
    telemetry: Telemetry, realm: LocalRealm, make_validator: MakeValidator, validate: Validate
) -> None:
    validator = introspecting(make_validator)
    validate(validator, realm.mint(CLIENT))

    (validation,) = telemetry.spans("keycloak_m2m.validate")
    (introspection,) = telemetry.spans("keycloak_m2m.introspect")
    assert child_of(introspection, validation)
    assert attributes(introspection) == {
        "url.full": realm.introspection_url,
        "keycloak_m2m.client_id": AUDIENCE,  # the resource server's, not the caller's
        "http.response.status_code": 200,
        "keycloak_m2m.outcome": "active",
    }
    assert introspection.status.status_code is StatusCode.UNSET
    assert validation.start_time <= introspection.start_time  # type: ignore[operator]
    assert introspection.end_time <= validation.end_time  # type: ignore[operator]
    assert attributes(validation)["keycloak_m2m.outcome"] == "accepted"
    assert outcomes(telemetry) == {"active": 1}


def test_a_cached_answer_makes_no_span(
    telemetry: Telemetry, realm: LocalRealm, make_validator: MakeValidator, validate: Validate
) -> None:
    # No verified-token cache: every validation runs its checks and reads the answer's cache.
    uncached = make_validator(
        introspection=Introspection(AUDIENCE, SECRET, cache_ttl=30), token_cache_size=0
    )
    token = realm.mint(CLIENT)
    for _ in range(3):
        validate(uncached, token)
    assert [span.name for span in telemetry.spans()] == [
        "keycloak_m2m.validate",
        "keycloak_m2m.fetch_keys",
        "keycloak_m2m.introspect",
        "keycloak_m2m.validate",
        "keycloak_m2m.validate",
    ]
    assert realm.request_count("introspect") == 1
    assert outcomes(telemetry) == {"active": 1}


def test_a_revoked_token_is_an_inactive_answer_not_a_failed_request(
    telemetry: Telemetry, realm: LocalRealm, make_validator: MakeValidator, validate: Validate
) -> None:
    validator = introspecting(make_validator)
    token = realm.mint(CLIENT)
    realm.revoke(token)
    with pytest.raises(TokenRevoked):
        validate(validator, token)

    (validation,) = telemetry.spans("keycloak_m2m.validate")
    (introspection,) = telemetry.spans("keycloak_m2m.introspect")
    assert child_of(introspection, validation)
    assert attributes(introspection) == {
        "url.full": realm.introspection_url,
        "keycloak_m2m.client_id": AUDIENCE,
        "http.response.status_code": 200,
        "keycloak_m2m.outcome": "inactive",
    }
    assert introspection.status.status_code is StatusCode.UNSET
    assert attributes(validation)["error.type"] == "TokenRevoked"
    assert validation.status.status_code is StatusCode.ERROR
    assert outcomes(telemetry) == {"inactive": 1}


def forget(telemetry: Telemetry) -> None:
    """Drop what was recorded so far: the spans, and the metric deltas (read and discarded)."""
    telemetry.exporter.clear()
    telemetry.metrics()


def closed_port() -> int:
    """A port on loopback where nothing listens (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@pytest.mark.parametrize("down", ["answers-500", "not-listening", "garbage-answer"])
def test_an_endpoint_that_gives_no_verdict_is_a_failed_introspection(
    telemetry: Telemetry,
    realm: LocalRealm,
    make_validator: MakeValidator,
    validate: Validate,
    down: str,
) -> None:
    endpoint = realm.introspection_url
    if down == "answers-500":
        realm.fail_introspection(500)
    elif down == "garbage-answer":
        realm.fail_introspection(200, body=b"<html>maintenance</html>")
    else:
        endpoint = f"http://127.0.0.1:{closed_port()}/introspect"
    validator = introspecting(make_validator, endpoint=endpoint)
    with pytest.raises(IntrospectionUnavailable):
        validate(validator, realm.mint(CLIENT))

    (validation,) = telemetry.spans("keycloak_m2m.validate")
    (introspection,) = telemetry.spans("keycloak_m2m.introspect")
    assert child_of(introspection, validation)
    expected: dict[str, Any] = {
        "url.full": endpoint,
        "keycloak_m2m.client_id": AUDIENCE,
        "keycloak_m2m.outcome": "failed",
    }
    if down == "answers-500":
        expected |= {"http.response.status_code": 500, "error.type": "HTTP status 500"}
    elif down == "garbage-answer":
        expected |= {"http.response.status_code": 200, "error.type": "not JSON"}
    else:  # no answer came: no status
        expected |= {"error.type": "ConnectError"}
    assert attributes(introspection) == expected
    assert introspection.status.status_code is StatusCode.ERROR
    assert attributes(validation)["error.type"] == "IntrospectionUnavailable"
    assert outcomes(telemetry) == {"failed": 1}


async def test_a_cancelled_validation_leaves_its_introspection_to_end_its_own_span(
    telemetry: Telemetry, realm: LocalRealm, make_validator: MakeValidator
) -> None:
    """The introspection is shared with the checks of the same token queued behind it: it runs
    on to its deadline after the validation that started it was cancelled, then ends its span."""
    timeout = 0.5
    validator = introspecting(make_validator, timeout=timeout)
    token = realm.mint(CLIENT)
    await validator.validate_async(realm.mint(CLIENT))  # the keys, fetched beforehand
    forget(telemetry)
    realm.slow_introspection(30)
    task = asyncio.create_task(validator.validate_async(token))
    while realm.request_count("introspect") < 2:  # this token's request is under way
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    (validation,) = telemetry.spans("keycloak_m2m.validate")
    assert attributes(validation)["error.type"] == "CancelledError"
    assert not trace.get_current_span().is_recording()  # the span left the context
    deadline = asyncio.get_running_loop().time() + timeout + GRACE + 5  # a wide margin
    while not telemetry.spans("keycloak_m2m.introspect"):
        assert asyncio.get_running_loop().time() < deadline, "the shared request never ended"
        await asyncio.sleep(0.05)
    (introspection,) = telemetry.spans("keycloak_m2m.introspect")
    assert child_of(introspection, validation)
    assert attributes(introspection) == {
        "url.full": realm.introspection_url,
        "keycloak_m2m.client_id": AUDIENCE,
        "keycloak_m2m.outcome": "failed",
        "error.type": "timed out",
    }
    assert outcomes(telemetry) == {"failed": 1}


def test_an_introspection_cancelled_itself_ends_its_span(
    telemetry: Telemetry, realm: LocalRealm, make_validator: MakeValidator
) -> None:
    """The shared request task cancelled with its event loop (``asyncio.run`` returning while it
    is in flight) ends its span as failed, with the cancellation as the error."""
    validator = introspecting(make_validator, timeout=30)
    validator.validate(realm.mint(CLIENT))  # the keys, fetched beforehand
    forget(telemetry)
    realm.slow_introspection(30)
    token = realm.mint(CLIENT)

    async def leave_in_flight() -> None:
        task = asyncio.create_task(validator.validate_async(token))
        while realm.request_count("introspect") < 2:
            await asyncio.sleep(0.01)
        assert not task.done()

    asyncio.run(leave_in_flight())  # cancels what is left running, the shared request too

    (introspection,) = telemetry.spans("keycloak_m2m.introspect")
    assert attributes(introspection) == {
        "url.full": realm.introspection_url,
        "keycloak_m2m.client_id": AUDIENCE,
        "keycloak_m2m.outcome": "failed",
        "error.type": "CancelledError",
    }
    assert introspection.status.status_code is StatusCode.ERROR
    assert outcomes(telemetry) == {"failed": 1}


def test_no_token_or_secret_in_any_attribute(
    telemetry: Telemetry, realm: LocalRealm, make_validator: MakeValidator, validate: Validate
) -> None:
    validator = introspecting(make_validator)
    active, revoked, opaque = realm.mint(CLIENT), realm.mint(CLIENT), realm.opaque_token(CLIENT)
    realm.revoke(revoked)
    validate(validator, active)
    validate(validator, opaque)
    with pytest.raises(TokenRevoked):
        validate(validator, revoked)
    realm.fail_introspection(500)
    with pytest.raises(IntrospectionUnavailable):
        validate(validator, realm.mint(CLIENT))

    spans = telemetry.spans()
    assert len(telemetry.spans("keycloak_m2m.introspect")) == 4
    claims = realm.token_claims(CLIENT)
    secrets = {SECRET, "shop-api-secret", opaque, claims["sub"], claims["jti"]}
    for token in (active, revoked):
        secrets |= {token, *token.split(".")}
    for span in spans:
        for name, value in attributes(span).items():
            for secret in secrets:
                assert secret not in str(value), f"{span.name} {name}"


def test_a_fastapi_route_that_asks_for_introspection_traces_it(
    telemetry: Telemetry, realm: LocalRealm, make_validator: MakeValidator
) -> None:
    validator = introspecting(make_validator, when="on_request")
    auth = TokenAuth(validator)
    app = FastAPI()
    auth.install(app)

    @app.get("/read")
    async def read(caller: Principal = Depends(auth)) -> str:  # noqa: B008
        return caller.client_id

    @app.post("/pay")
    async def pay(caller: Principal = Depends(auth.require(introspect=True))) -> str:  # noqa: B008
        return caller.client_id

    token = realm.mint(CLIENT)
    revoked = realm.mint(CLIENT)
    realm.revoke(revoked)
    with serve_asgi(app) as base_url, httpx.Client(base_url=base_url) as client:
        statuses = [
            client.get("/read", headers={"Authorization": f"Bearer {token}"}).status_code,
            client.post("/pay", headers={"Authorization": f"Bearer {token}"}).status_code,
            client.post("/pay", headers={"Authorization": f"Bearer {token}"}).status_code,
            client.post("/pay", headers={"Authorization": f"Bearer {revoked}"}).status_code,
        ]
    assert statuses == [200, 200, 200, 401]

    read_once, paid, paid_from_cache, refused = telemetry.spans("keycloak_m2m.validate")
    active, inactive = telemetry.spans("keycloak_m2m.introspect")
    # Only the routes that ask introspect, and a verified-token cache hit asks no more.
    assert child_of(active, paid)
    assert child_of(inactive, refused)
    assert attributes(paid_from_cache)["keycloak_m2m.cache_hit"] is True
    assert attributes(active)["keycloak_m2m.outcome"] == "active"
    assert attributes(inactive)["keycloak_m2m.outcome"] == "inactive"
    assert attributes(refused)["error.type"] == "TokenRevoked"
    assert attributes(read_once)["keycloak_m2m.outcome"] == "accepted"
    assert outcomes(telemetry) == {"active": 1, "inactive": 1}
