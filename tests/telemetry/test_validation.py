"""Spans and metrics of validations and key-set fetches, through each adapter and each driver.

Every request goes over real HTTP to a real server; the SDK's in-memory exporter and metric
reader show what was recorded.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.trace import StatusCode

from keycloak_m2m import ClientCredentials, Introspection, KeysUnavailable, TokenValidator
from keycloak_m2m.testing import LocalRealm

from ..adapters.apps import fastapi_dependency, fastapi_middleware, flask_sync
from ..adapters.servers import serve_asgi, serve_wsgi
from ..otel_sdk import Telemetry, attributes
from ..support import AUDIENCE, CLIENT, GRACE, FakeClock, Validate

SERVED: dict[str, tuple[Callable[[TokenValidator], Any], Callable[[Any], Any]]] = {
    "asgi-middleware": (fastapi_middleware, serve_asgi),
    "fastapi-dependency": (fastapi_dependency, serve_asgi),
    "flask": (flask_sync, serve_wsgi),
}


@pytest.fixture(params=sorted(SERVED))
def service(
    request: pytest.FixtureRequest, make_validator: Callable[..., TokenValidator]
) -> Iterator[tuple[str, TokenValidator]]:
    factory, serve = SERVED[request.param]
    validator = make_validator()
    server: AbstractContextManager[str] = serve(factory(validator))
    with server as base_url:
        yield base_url, validator


def test_each_adapter_traces_and_counts_every_validation(
    telemetry: Telemetry,
    realm: LocalRealm,
    clock: FakeClock,
    service: tuple[str, TokenValidator],
) -> None:
    base_url, validator = service
    token = realm.mint(CLIENT)
    expired = realm.mint(CLIENT, claims={"exp": int(clock()) - 600, "iat": int(clock()) - 900})
    with httpx.Client(base_url=base_url) as client:
        statuses = [
            client.get("/any", headers={"Authorization": f"Bearer {token}"}).status_code,
            client.get("/any", headers={"Authorization": f"Bearer {token}"}).status_code,
            client.get("/role", headers={"Authorization": f"Bearer {token}"}).status_code,
            client.get("/any", headers={"Authorization": f"Bearer {expired}"}).status_code,
            client.get("/any").status_code,  # no token: refused before any validation
        ]
    assert statuses == [200, 200, 403, 401, 401]
    clock.advance(12)

    first, hit, role, refused = telemetry.spans("keycloak_m2m.validate")
    issuer = realm.issuer
    assert attributes(first) == {
        "keycloak_m2m.issuer": issuer,
        "keycloak_m2m.outcome": "accepted",
        "keycloak_m2m.client_id": CLIENT,
        "keycloak_m2m.cache_hit": False,
        "keycloak_m2m.waited_for_keys": True,
    }
    accepted_from_cache = {**attributes(first), "keycloak_m2m.cache_hit": True}
    accepted_from_cache["keycloak_m2m.waited_for_keys"] = False
    assert attributes(hit) == attributes(role) == accepted_from_cache
    assert attributes(refused) == {
        "keycloak_m2m.issuer": issuer,
        "keycloak_m2m.outcome": "refused",
        "error.type": "ExpiredToken",
        "keycloak_m2m.cache_hit": False,
        "keycloak_m2m.waited_for_keys": False,
    }
    assert refused.status.status_code is StatusCode.ERROR
    assert first.status.status_code is StatusCode.UNSET

    (fetch,) = telemetry.spans("keycloak_m2m.fetch_keys")
    assert fetch.parent is not None
    assert fetch.parent.span_id == first.context.span_id
    assert attributes(fetch) == {
        "url.full": validator.jwks_url,
        "http.response.status_code": 200,
        "keycloak_m2m.outcome": "fetched",
        "keycloak_m2m.key_count": len(realm.signing_kids),
    }
    assert first.start_time <= fetch.start_time  # type: ignore[operator]
    assert fetch.end_time <= first.end_time  # type: ignore[operator]

    found = telemetry.metrics()
    accepted = frozenset({("keycloak_m2m.outcome", "accepted")})
    expired_refusal = frozenset(
        {("keycloak_m2m.outcome", "refused"), ("error.type", "ExpiredToken")}
    )
    # Validations that ran the checks; the cache hits are counted apart.
    assert found["keycloak_m2m.validations"] == {accepted: 1, expired_refusal: 1}
    durations = found["keycloak_m2m.validation.duration"]
    assert durations[accepted][0] == 1
    assert durations[expired_refusal][0] == 1
    assert durations[accepted][1] > 0
    fetched = frozenset({("keycloak_m2m.outcome", "fetched")})
    assert found["keycloak_m2m.key_set.fetches"] == {fetched: 1}
    assert found["keycloak_m2m.key_set.fetch.duration"][fetched][0] == 1
    of_issuer = frozenset({("keycloak_m2m.issuer", issuer)})
    assert found["keycloak_m2m.token_cache.hits"][of_issuer] == 2
    assert found["keycloak_m2m.token_cache.misses"][of_issuer] == 2
    assert found["keycloak_m2m.key_set.age"][of_issuer] == 12.0


def test_names_and_units_follow_the_conventions(
    telemetry: Telemetry, realm: LocalRealm, make_validator: Callable[..., TokenValidator]
) -> None:
    caller = ClientCredentials(CLIENT, "shop-api-secret", token_url=realm.token_url)
    realm.add_client(AUDIENCE, "rs-secret")
    introspecting = make_validator(introspection=Introspection(AUDIENCE, "rs-secret"))
    introspecting.validate(caller.get_token())
    telemetry.metrics()
    units = telemetry.units()
    assert {name: unit for name, unit in units.items() if name.startswith("keycloak_m2m.")} == {
        "keycloak_m2m.validations": "{validation}",
        "keycloak_m2m.validation.duration": "s",
        "keycloak_m2m.key_set.fetches": "{fetch}",
        "keycloak_m2m.key_set.fetch.duration": "s",
        "keycloak_m2m.token_cache.hits": "{lookup}",
        "keycloak_m2m.token_cache.misses": "{lookup}",
        "keycloak_m2m.key_set.age": "s",
        "keycloak_m2m.token_requests": "{request}",
        "keycloak_m2m.token_request.duration": "s",
        "keycloak_m2m.introspections": "{request}",
        "keycloak_m2m.introspection.duration": "s",
    }


def test_a_failed_key_fetch_on_either_driver(
    telemetry: Telemetry,
    realm: LocalRealm,
    make_validator: Callable[..., TokenValidator],
    validate: Validate,
) -> None:
    realm.fail_keys(503)
    validator = make_validator()
    with pytest.raises(KeysUnavailable):
        validate(validator, realm.mint(CLIENT))

    (validation,) = telemetry.spans("keycloak_m2m.validate")
    (fetch,) = telemetry.spans("keycloak_m2m.fetch_keys")
    assert attributes(validation)["error.type"] == "KeysUnavailable"
    assert attributes(validation)["keycloak_m2m.waited_for_keys"] is True
    assert attributes(fetch) == {
        "url.full": validator.jwks_url,
        "http.response.status_code": 503,
        "keycloak_m2m.outcome": "failed",
        "error.type": "HTTP status 503",
    }
    assert fetch.status.status_code is StatusCode.ERROR
    found = telemetry.metrics()
    assert found["keycloak_m2m.key_set.fetches"] == {
        frozenset({("keycloak_m2m.outcome", "failed")}): 1
    }
    # No key set was ever in use: no age to report.
    assert frozenset({("keycloak_m2m.issuer", realm.issuer)}) not in found.get(
        "keycloak_m2m.key_set.age", {}
    )


def test_a_direct_validate_call_is_traced_and_never_records_the_token(
    telemetry: Telemetry,
    realm: LocalRealm,
    make_validator: Callable[..., TokenValidator],
    validate: Validate,
) -> None:
    token = realm.mint(CLIENT)
    validator = make_validator()
    validate(validator, token)
    validate(validator, token)
    spans = telemetry.spans()
    assert [span.name for span in spans] == [
        "keycloak_m2m.validate",
        "keycloak_m2m.fetch_keys",
        "keycloak_m2m.validate",
    ]
    claims = realm.token_claims(CLIENT)
    secrets = {token, *token.split("."), claims["sub"]}
    for span in spans:
        for value in attributes(span).values():
            assert str(value) not in secrets


async def test_a_cancelled_validation_ends_its_spans(
    telemetry: Telemetry, realm: LocalRealm, make_validator: Callable[..., TokenValidator]
) -> None:
    """The validation's span ends with the cancellation; its key fetch is shared with whoever
    waits for the keys, so it runs on to its deadline and then ends its own span."""
    realm.slow_keys(30)
    timeout = 0.5
    validator = make_validator(jwks_timeout=timeout)
    task = asyncio.create_task(validator.validate_async(realm.mint(CLIENT)))
    while realm.request_count("certs") == 0:  # the fetch is under way
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    (validation,) = telemetry.spans("keycloak_m2m.validate")
    assert attributes(validation)["error.type"] == "CancelledError"
    assert not trace.get_current_span().is_recording()  # the span left the context
    deadline = asyncio.get_running_loop().time() + timeout + GRACE + 5  # a wide margin
    while not telemetry.spans("keycloak_m2m.fetch_keys"):
        assert asyncio.get_running_loop().time() < deadline, "the shared fetch never ended"
        await asyncio.sleep(0.05)
    (fetch,) = telemetry.spans("keycloak_m2m.fetch_keys")
    assert attributes(fetch)["keycloak_m2m.outcome"] == "failed"
    assert attributes(fetch)["error.type"] == "timed out"


def test_dpop_bound_tokens_validate_and_are_traced_with_an_sdk(
    telemetry: Telemetry,
    realm: LocalRealm,
    clock: FakeClock,
    make_validator: Callable[..., TokenValidator],
) -> None:
    from ..dpop.support import URL, new_key, proof

    key = new_key()
    bound = realm.mint(CLIENT, dpop_jkt=key.thumbprint)
    validator = make_validator()

    def material() -> dict[str, str]:  # a fresh proof each time: proofs are single-use
        return {"dpop_proof": proof(key, token=bound, iat=clock()), "method": "GET", "url": URL}

    for _ in range(2):  # the second: the token's verdict cached, a fresh proof checked
        assert validator.validate(bound, **material()).client_id == CLIENT
        assert asyncio.run(validator.validate_async(bound, **material())).client_id == CLIENT
    spans = list(telemetry.exporter.get_finished_spans())
    assert [span.name for span in spans].count("keycloak_m2m.validate") >= 4
