"""Without an SDK configured, or without the API installed, the package records nothing and
its hot path is the uninstrumented one. Each case runs in a fresh interpreter: the providers of
this test session are set once and for good."""

from __future__ import annotations

import subprocess
import sys

import pytest

HIDE_OPENTELEMETRY = """
import sys
class Absent:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "opentelemetry":
            raise ModuleNotFoundError(f"No module named {name!r}")
sys.meta_path.insert(0, Absent())
"""

SCENARIO = """
import asyncio, httpx
from keycloak_m2m import ClientCredentials, Introspection, TokenValidator, _telemetry
from keycloak_m2m._token_cache import CachedPrincipals
from keycloak_m2m.testing import LocalRealm
from keycloak_m2m.testing._server import HttpServer, Response

seen = []
def handle(request):
    seen.append({name.lower() for name in request.headers})
    return Response(200, b"{}")

with LocalRealm("shop") as realm:
    realm.add_client("shop-api", "secret", audience=["svc"])
    validator = TokenValidator(realm.issuer, "svc")
    caller = ClientCredentials("shop-api", "secret", token_url=realm.token_url)
    token = caller.get_token()
    validator.validate(token)
    asyncio.run(validator.validate_async(token))
    validator.cached(token)
    realm.add_client("svc", "svc-secret")
    introspection = Introspection("svc", "svc-secret")
    introspecting = TokenValidator(realm.issuer, "svc", introspection=introspection)
    introspecting.validate(token)
    asyncio.run(introspecting.validate_async(realm.mint("shop-api")))
    assert realm.request_count("introspect") == 2
    server = HttpServer(handle)
    with httpx.Client(auth=caller) as client:
        client.get(f"http://127.0.0.1:{server.port}/")
    server.close()
    # The class's own methods and cache lookup, with no instrumented twin in front of them.
    assert not {"validate", "validate_async"} & set(vars(validator)), "instrumented"
    assert type(validator.cached) is CachedPrincipals, "instrumented"
    assert not _telemetry._state.on
    assert "traceparent" not in seen[0]
    print("api", _telemetry.API_INSTALLED)
"""


@pytest.mark.parametrize(
    ("prelude", "installed"), [("", True), (HIDE_OPENTELEMETRY, False)], ids=["no-sdk", "no-api"]
)
def test_nothing_is_recorded_or_wrapped(prelude: str, installed: bool) -> None:
    result = subprocess.run(
        [sys.executable, "-c", prelude + SCENARIO],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"api {installed}"


def test_an_sdk_configured_after_a_validator_was_made_is_seen_by_the_next_one() -> None:
    script = """
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from keycloak_m2m import TokenValidator
from keycloak_m2m.testing import LocalRealm

with LocalRealm("shop") as realm:
    realm.add_client("shop-api", "secret", audience=["svc"])
    validator = TokenValidator(realm.issuer, "svc")
    token = realm.mint("shop-api")
    validator.validate(token)
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    validator.validate(token)  # not traced yet: nothing looked for an SDK since
    TokenValidator(realm.issuer, "svc")  # looks, and switches every validator on
    validator.validate(realm.mint("shop-api"))  # a miss
    validator.validate(token)  # a hit
    spans = exporter.get_finished_spans()
    hits = [span.attributes["keycloak_m2m.cache_hit"] for span in spans]
    print(sorted(str(hit) for hit in hits))
"""
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "['False', 'True']"
