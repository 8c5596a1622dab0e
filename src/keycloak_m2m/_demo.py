"""``keycloak-m2m demo``: a local realm, a protected service and its caller, step by step.

Everything runs on 127.0.0.1 in this process: the local realm, a ``notification-service``
(FastAPI behind ``TokenAuthMiddleware``, served by uvicorn) that requires the realm role
``notifications:send``, and a ``shop-api`` caller using ``ClientCredentials``. Needs the ``demo``
extra (FastAPI and uvicorn). With the OpenTelemetry SDK installed (the ``demo`` extra brings it)
it ends with a timeline of the first call, drawn from the spans it recorded.
"""

from __future__ import annotations

import secrets
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any, TextIO

import httpx
import uvicorn
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import FastAPI, Request

from . import _telemetry
from ._client import ClientCredentials
from ._validator import TokenValidator
from .asgi import TokenAuthMiddleware
from .testing import LocalRealm

SERVICE = "notification-service"
CALLER = "shop-api"
OTHER_CLIENT = "reporting-job"
ROLE = "notifications:send"
# The default is 30 s; a demo that waits half a minute to show rotation would lose its reader.
DEMO_REFETCH_INTERVAL = 0.5
FIRST_CALL = f"{CALLER} POST /notifications"
# The spans the timeline shows: who does the work each measures, and how far it is nested.
_ROLES = {
    FIRST_CALL: ("caller", 0),
    "keycloak_m2m.token_request": ("token endpoint", 1),
    f"{SERVICE} POST /notifications": ("service", 1),
    "keycloak_m2m.validate": ("service", 2),
    "keycloak_m2m.fetch_keys": ("key endpoint", 3),
}
_BAR_WIDTH = 40


def notification_service(validator: TokenValidator) -> Any:
    """The protected service: every route but /health needs a token holding ROLE."""
    app = FastAPI(title=SERVICE)
    app.add_middleware(
        TokenAuthMiddleware,
        validator=validator,
        roles=[ROLE],
        exclude_paths=["/health"],
        realm=SERVICE,
    )

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/notifications")
    async def send(request: Request) -> dict[str, str]:
        return {"status": "queued", "sent_by": request.auth.client_id}

    return _traced_service(app)


def _traced_service(app: Any) -> Any:
    """The service's own span, continuing the caller's trace (what an ASGI instrumentation
    library would do in a real service)."""

    async def traced(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        carrier = {
            name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]
        }
        with _telemetry.traced(f"{SERVICE} {scope['method']} {scope['path']}", carrier):
            await app(scope, receive, send)

    return traced


@contextmanager
def serving(app: Any) -> Iterator[str]:
    """Serve ``app`` with uvicorn on a free 127.0.0.1 port from a thread; yield its base URL."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the demo service did not start")
            time.sleep(0.01)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        listener.close()


class _Steps:
    """Prints each step with its outcome and remembers whether all went as expected."""

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self.count = 0
        self.failed = 0

    def say(self, text: str) -> None:
        print(f"   {text}", file=self._out)

    def check(self, title: str, response: httpx.Response, expected: int) -> None:
        self.count += 1
        ok = response.status_code == expected
        self.failed += not ok
        mark = "ok" if ok else f"UNEXPECTED (wanted {expected})"
        print(f"{self.count}. {title}: HTTP {response.status_code} -> {mark}", file=self._out)
        if response.status_code != 200:
            self.say(f"WWW-Authenticate: {response.headers.get('WWW-Authenticate', '-')}")
        self.say(f"body: {response.text}")


def run(out: TextIO) -> bool:
    """Walk the scenario, printing each step; True when every step went as expected."""
    print(
        "keycloak-m2m demo: a local realm, a notification-service and a shop-api caller,", file=out
    )
    print("all on 127.0.0.1 (no Keycloak, no network).\n", file=out)
    recorder: AbstractContextManager[list[_telemetry.RecordedSpan] | None] = (
        _telemetry.recording() if _telemetry.timeline_available() else nullcontext()
    )
    with recorder as spans, LocalRealm("shop") as realm:
        caller_secret = secrets.token_urlsafe(24)  # made up for this run only
        realm.add_client(CALLER, caller_secret, realm_roles=[ROLE], audience=[SERVICE])
        realm.add_client(OTHER_CLIENT, secrets.token_urlsafe(24), audience=[SERVICE])
        validator = TokenValidator(
            realm.issuer, SERVICE, jwks_refetch_interval=DEMO_REFETCH_INTERVAL
        )
        with serving(notification_service(validator)) as service_url:
            print(f"realm   {realm.issuer}", file=out)
            print(f"service {service_url} (requires realm role {ROLE!r})\n", file=out)
            steps = _Steps(out)
            caller = ClientCredentials(CALLER, caller_secret, token_url=realm.token_url)
            with httpx.Client(base_url=service_url, auth=caller) as shop_api:
                _walk(steps, realm, caller, shop_api, service_url, validator)
    verdict = "every step went as expected" if not steps.failed else f"{steps.failed} failed"
    print(f"\n{steps.count} steps: {verdict}", file=out)
    if spans:
        print("\nthe first call, from the spans it recorded:\n", file=out)
        for line in timeline(spans):
            print(line, file=out)
    return steps.failed == 0


def timeline(spans: Sequence[_telemetry.RecordedSpan]) -> list[str]:
    """The trace of the first call as a terminal timeline: who, what, when, how long."""
    root = next((span for span in spans if span.name == FIRST_CALL), None)
    if root is None:
        return []
    shown = [span for span in spans if span.trace_id == root.trace_id and span.name in _ROLES]
    total = max(root.end_ns - root.start_ns, 1)
    names = ["  " * _ROLES[span.name][1] + span.name for span in shown]
    name_width = max(len(name) for name in names)
    lines = []
    for span, name in zip(shown, names, strict=True):
        begin = round((span.start_ns - root.start_ns) / total * _BAR_WIDTH)
        length = max(1, round((span.end_ns - span.start_ns) / total * _BAR_WIDTH))
        bar = (" " * begin + "#" * length).ljust(_BAR_WIDTH)[:_BAR_WIDTH]
        milliseconds = (span.end_ns - span.start_ns) / 1e6
        role = _ROLES[span.name][0]
        lines.append(f"{role:<14} {name:<{name_width}} |{bar}| {milliseconds:6.1f} ms")
    return lines


def _walk(
    steps: _Steps,
    realm: LocalRealm,
    caller: ClientCredentials,
    shop_api: httpx.Client,
    service_url: str,
    validator: TokenValidator,
) -> None:
    with _telemetry.traced(FIRST_CALL):
        first = shop_api.post("/notifications")
    steps.check("shop-api obtains a token and sends a notification", first, 200)
    token = caller.get_token()
    principal = validator.validate(token)
    steps.say(
        f"token: client {principal.client_id}, service account {principal.is_service_account}, "
        f"roles {sorted(principal.realm_roles & {ROLE})}, audience {principal.claims['aud']}, "
        f"expires in {principal.expires_at - time.time():.0f} s"
    )

    with httpx.Client(base_url=service_url) as anonymous:
        steps.check("a call without a token", anonymous.post("/notifications"), 401)
        other = realm.mint(OTHER_CLIENT)
        steps.check(
            "reporting-job, a valid client without the role",
            anonymous.post("/notifications", headers={"Authorization": f"Bearer {other}"}),
            403,
        )
        stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        forged = realm.mint(CALLER, signing_key=stranger)  # claims the realm's kid
        steps.check(
            "a forged token (signed by a key the realm never had)",
            anonymous.post("/notifications", headers={"Authorization": f"Bearer {forged}"}),
            401,
        )
        now = int(time.time())
        expired = realm.mint(CALLER, claims={"iat": now - 900, "exp": now - 600})
        steps.check(
            "an expired token",
            anonymous.post("/notifications", headers={"Authorization": f"Bearer {expired}"}),
            401,
        )

    fetches = realm.request_count("certs")
    realm.rotate_keys(keep_old=True)
    steps.check(
        "keys rotated: the cached token (old key) still works", shop_api.post("/notifications"), 200
    )
    time.sleep(DEMO_REFETCH_INTERVAL)  # the service may look for the new key again by now
    caller.renew_token(token)
    steps.check(
        "shop-api renews its token, signed by the new key", shop_api.post("/notifications"), 200
    )
    statuses = [shop_api.post("/notifications").status_code for _ in range(20)]
    steps.failed += statuses.count(200) != len(statuses)
    steps.say(
        f"20 more calls: {statuses.count(200)} x 200; the service fetched the key set "
        f"{realm.request_count('certs') - fetches} more time(s) to learn the new key"
    )
