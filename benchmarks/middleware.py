"""Requests per second through uvicorn: no authentication, keycloak_m2m, and the usual peers.

Every server is a Starlette or FastAPI app with one endpoint, alone in a uvicorn process on
127.0.0.1. wrk (Debian's ``wrk`` package) drives each from another process for a fixed number of
requests, all carrying one valid service-account token from a local Keycloak-compatible realm.
Rounds are interleaved across the servers so machine noise hits them alike, each round starting
one server later; each server's result is its median over the rounds, and its ratio to the same
framework without authentication (what the target is about). The "per round" column is the
median of each round's ratio to the server without authentication in that round, which a slow
stretch of the machine moves less. ``--servers`` runs a few servers (each with its framework's
server without authentication) for many short rounds, e.g.
``--servers starlette-middleware,starlette-floor --rounds 100 --requests 3000``.
With two CPUs or more the servers run on one and wrk on another (``cpu_plan``).

    python benchmarks/middleware.py [--rounds N] [--requests N] [--quick] [--servers A,B]
                                    [--uninstrumented REV]

The package's servers run with the OpenTelemetry API installed and no SDK configured; one more
runs the middleware with the SDK and in-memory exporters, and one in a process where the API
cannot be imported, which the idle instrumentation's cost is measured against. With
``--uninstrumented REV`` the package as of git revision REV (one without telemetry) serves one
more, and the idle instrumentation's cost is printed against it too.

A measurement, not a test: it always exits 0 once the numbers are printed.
"""

# No ``from __future__ import annotations``: FastAPI reads the routes' annotations at runtime,
# and the dependencies below are local to the functions that build the apps.
import argparse
import os
import platform
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from importlib import metadata
from importlib.util import find_spec
from pathlib import Path
from typing import Annotated, Any, Literal

import httpx

from keycloak_m2m.testing import LocalRealm

CLIENT_ID = "shop-api"
AUDIENCE = "notification-service"
OTHER_AUDIENCE = "billing-service"
REALM = "shop"
# Longer than any run: a token expiring mid-run would turn into a stream of 401s.
TOKEN_LIFETIME = 3600
TARGET = 0.95
CONNECTIONS = 32
WARMUP_REQUESTS = 2000
DISTRIBUTIONS = (
    "keycloak-m2m",
    "uvicorn",
    "starlette",
    "fastapi",
    "fastapi-keycloak-middleware",
    "python-keycloak",
    "PyJWT",
    "opentelemetry-api",
    "opentelemetry-sdk",
)
# The idle instrumentation (API installed, no SDK) against the package without it.
OVERHEAD_TARGET = 0.02
UNINSTRUMENTED = "fastapi-middleware-uninstrumented"
# The same package in a process where the OpenTelemetry API cannot be imported: what the idle
# instrumentation is measured against in every run.
API_HIDDEN = "fastapi-middleware-api-hidden"
# wrk runs for a duration, not a request count: this script times the first ``BENCH_REQUESTS``
# answers itself (monotonic clock through LuaJIT's FFI), prints them on a FIXED line, and stops;
# the driver then ends wrk. It runs with one wrk thread, so one Lua state counts everything.
WRK_SCRIPT = """
local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clock, bench_timespec *ts);
]]
local CLOCK_MONOTONIC = 1
local ts = ffi.new("bench_timespec")
local function now()
  ffi.C.clock_gettime(CLOCK_MONOTONIC, ts)
  return tonumber(ts.tv_sec) + tonumber(ts.tv_nsec) / 1e9
end
local limit = tonumber(os.getenv("BENCH_REQUESTS"))
local answered, failed, started = 0, 0, nil
wrk.headers["Authorization"] = os.getenv("BENCH_AUTHORIZATION")
function init(args) started = now() end
function response(status, headers, body)
  answered = answered + 1
  if status ~= 200 then failed = failed + 1 end
  if answered == limit then
    io.write(string.format("FIXED %d %d %.6f\\n", answered, failed, now() - started))
    io.flush()
    wrk.thread:stop()
  end
end
"""


@dataclass(frozen=True)
class Settings:
    rounds: int
    requests: int
    # The servers to run (``--servers``): a few, for many short rounds.
    servers: tuple[str, ...]


@dataclass(frozen=True)
class Server:
    framework: str
    name: str
    # Whether the ratio to the framework's unauthenticated server has to meet TARGET.
    targeted: bool = False


SERVERS = {
    "starlette-none": Server("starlette", "no authentication"),
    "starlette-middleware": Server("starlette", "keycloak_m2m TokenAuthMiddleware", True),
    "starlette-floor": Server("starlette", "floor: header lookup in a dict, no checks"),
    "fastapi-none": Server("fastapi", "no authentication"),
    "fastapi-middleware": Server("fastapi", "keycloak_m2m TokenAuthMiddleware", True),
    "fastapi-middleware-nocache": Server("fastapi", "keycloak_m2m middleware, token cache off"),
    "fastapi-middleware-sdk": Server("fastapi", "keycloak_m2m middleware, OpenTelemetry SDK"),
    UNINSTRUMENTED: Server("fastapi", "keycloak_m2m middleware, uninstrumented"),
    API_HIDDEN: Server("fastapi", "keycloak_m2m middleware, OpenTelemetry API hidden"),
    "fastapi-dependency": Server("fastapi", "keycloak_m2m TokenAuth dependency"),
    "fastapi-keycloak-middleware": Server("fastapi", "fastapi-keycloak-middleware"),
    "fastapi-pyjwt": Server("fastapi", "PyJWT PyJWKClient dependency"),
}


# --- the apps, built inside the server process ------------------------------------------------


def starlette_app(variant: str, issuer: str) -> Any:
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from keycloak_m2m import TokenValidator
    from keycloak_m2m.asgi import TokenAuthMiddleware

    async def hello(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    middleware = []
    validator = TokenValidator(issuer, AUDIENCE)
    if variant == "starlette-middleware":
        middleware.append(Middleware(TokenAuthMiddleware, validator=validator))
    elif variant == "starlette-floor":
        middleware.append(Middleware(header_lookup_floor(), validator=validator))
    return Starlette(routes=[Route("/hello", hello)], middleware=middleware)


def header_lookup_floor() -> type:
    """The least a token middleware can do per request, as a floor to read the real rows against.

    It finds the Authorization header and looks its raw value up in a dict of verified ones,
    then sets ``scope["auth"]`` and ``scope["user"]``. It skips what the real middleware must
    do: RFC 6750's rules (one header, the scheme, no token in the query or form), the key set's
    freshness and key removal, per-route requirements. Not a middleware to use.
    """
    import time

    from starlette.responses import PlainTextResponse

    from keycloak_m2m import AuthError
    from keycloak_m2m.asgi import ServiceUser

    class HeaderLookupFloor:
        def __init__(self, app: Any, validator: Any) -> None:
            self.app = app
            self.validator = validator
            self.verified: dict[bytes, tuple[bytes, Any, ServiceUser, float]] = {}

        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] != "http":
                await self.app(scope, receive, send)
                return
            authorization = b""
            for name, value in scope["headers"]:
                if name == b"authorization":
                    authorization = value
            entry = self.verified.get(authorization[-32:])
            if entry is None or entry[0] != authorization or time.time() >= entry[3]:
                token = authorization[len(b"Bearer ") :].decode("latin-1")
                try:
                    principal = await self.validator.validate_async(token)
                except AuthError:
                    await PlainTextResponse("refused", 401)(scope, receive, send)
                    return
                entry = (authorization, principal, ServiceUser(principal), principal.expires_at)
                self.verified[authorization[-32:]] = entry
            scope["auth"] = entry[1]
            scope["user"] = entry[2]
            await self.app(scope, receive, send)

    return HeaderLookupFloor


def fastapi_app(variant: str, issuer: str) -> Any:
    from fastapi import Depends, FastAPI

    app = FastAPI()
    dependencies = []
    if variant.startswith("fastapi-middleware"):
        from keycloak_m2m import TokenValidator
        from keycloak_m2m.asgi import TokenAuthMiddleware

        cache_size = 0 if variant == "fastapi-middleware-nocache" else 4096
        validator = TokenValidator(issuer, AUDIENCE, token_cache_size=cache_size)
        app.add_middleware(TokenAuthMiddleware, validator=validator)
    elif variant == "fastapi-dependency":
        from keycloak_m2m import TokenValidator
        from keycloak_m2m.fastapi import TokenAuth

        auth = TokenAuth(TokenValidator(issuer, AUDIENCE))
        auth.install(app)
        dependencies.append(Depends(auth))
    elif variant == "fastapi-keycloak-middleware":
        keycloak_middleware(app, issuer)
    elif variant == "fastapi-pyjwt":
        dependencies.append(Depends(pyjwt_dependency(issuer)))

    @app.get("/hello", dependencies=dependencies)
    async def hello() -> dict[str, bool]:
        return {"ok": True}

    return app


def keycloak_middleware(app: Any, issuer: str) -> None:
    from fastapi_keycloak_middleware import (  # type: ignore[import-untyped]
        KeycloakConfiguration,
        setup_keycloak_middleware,
    )

    server_url = issuer.split("/realms/")[0]
    configuration = KeycloakConfiguration(
        url=server_url,
        realm=REALM,
        client_id=AUDIENCE,
        # The same checks as the others: issuer, audience and expiry besides the signature.
        validation_options={"check_claims": {"iss": issuer, "aud": AUDIENCE, "exp": None}},
    )
    setup_keycloak_middleware(app, keycloak_configuration=configuration)


def pyjwt_dependency(issuer: str) -> Callable[..., Any]:
    """The usual recipe: HTTPBearer, PyJWKClient for the key, jwt.decode for the claims."""
    import jwt
    from fastapi import Depends, HTTPException
    from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

    jwks = jwt.PyJWKClient(issuer + "/protocol/openid-connect/certs")
    bearer = HTTPBearer()

    async def verified_claims(
        credentials: Annotated[HTTPAuthorizationCredentials, Depends(bearer)],
    ) -> dict[str, Any]:
        token = credentials.credentials
        try:
            key = jwks.get_signing_key_from_jwt(token)
            claims: dict[str, Any] = jwt.decode(
                token, key.key, algorithms=["RS256"], audience=AUDIENCE, issuer=issuer, leeway=30
            )
        except jwt.PyJWTError:
            raise HTTPException(401, "invalid token") from None
        return claims

    return verified_claims


def serve(variant: str, issuer: str) -> None:
    """The server process: print the port, then serve until terminated."""
    import uvicorn

    cpus = cpu_plan()
    if cpus is not None:
        os.sched_setaffinity(0, {cpus.server})

    framework = SERVERS[variant].framework
    if variant == "fastapi-middleware-sdk":
        configure_sdk()
    app = (
        starlette_app(variant, issuer) if framework == "starlette" else fastapi_app(variant, issuer)
    )
    sock = socket.create_server(("127.0.0.1", 0), backlog=1024)
    print(sock.getsockname()[1], flush=True)
    http, loop = uvicorn_choices()
    config = uvicorn.Config(app, log_level="warning", access_log=False, http=http, loop=loop)
    uvicorn.Server(config).run(sockets=[sock])


def configure_sdk() -> None:
    """The OpenTelemetry SDK with in-memory exporters, emptied every second."""
    from opentelemetry import metrics, trace
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    metrics.set_meter_provider(MeterProvider(metric_readers=[InMemoryMetricReader()]))

    def empty() -> None:
        while True:
            time.sleep(1)
            exporter.clear()

    threading.Thread(target=empty, daemon=True).start()


def uninstrumented_source(revision: str, directory: Path) -> Path:
    """The package's sources as of git ``revision``, for a server's PYTHONPATH."""
    archive = directory / "package.tar"
    subprocess.run(  # noqa: S603
        ["git", "archive", "--output", str(archive), revision, "src/keycloak_m2m"],  # noqa: S607
        check=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    with tarfile.open(archive) as tar:
        tar.extractall(directory, filter="data")
    return directory / "src"


def uvicorn_choices() -> tuple[Literal["httptools", "h11"], Literal["uvloop", "asyncio"]]:
    # The fastest implementations installed: "uvicorn[standard]" brings them, as in production.
    http: Literal["httptools", "h11"] = "httptools" if find_spec("httptools") else "h11"
    loop: Literal["uvloop", "asyncio"] = "uvloop" if find_spec("uvloop") else "asyncio"
    return http, loop


# --- the driver -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cpus:
    server: int
    load: int


def cpu_plan() -> Cpus | None:
    """Every server on one CPU and wrk on another; None with fewer than two CPUs.

    Left to the scheduler, wrk and the server it drives take turns on the same CPU some of the
    time, and the ratios then measure the scheduler as much as the servers. The servers share
    one CPU safely: rounds run one server at a time.
    """
    cpus = sorted(os.sched_getaffinity(0))
    return Cpus(server=cpus[0], load=cpus[1]) if len(cpus) >= 2 else None


@contextmanager
def server_process(variant: str, issuer: str, source: Path | None = None) -> Iterator[str]:
    """Start ``serve(variant)`` in a child process; yield its base URL; terminate it after.

    ``source``: a directory whose ``keycloak_m2m`` the child imports instead of the installed one.
    """
    arguments = ["--serve", variant, "--issuer", issuer]
    command = [sys.executable, __file__, *arguments]
    if variant == API_HIDDEN:
        # The package then runs as without the [otel] extra.
        command = [sys.executable, "-c", _HIDE_API_AND_RUN, __file__, *arguments]
    environment = dict(os.environ)
    if source is not None:
        environment["PYTHONPATH"] = str(source)
    child = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=environment)  # noqa: S603
    try:
        assert child.stdout is not None
        port = int(child.stdout.readline())
        base_url = f"http://127.0.0.1:{port}"
        wait_until_up(base_url)
        yield base_url
    finally:
        child.terminate()
        child.wait(10)


# The package is imported while the API is hidden, then the API comes back for FastAPI, which
# imports it itself (fastapi.telemetry).
_HIDE_API_AND_RUN = (
    "import runpy, sys; sys.modules['opentelemetry'] = None; import keycloak_m2m; "
    "del sys.modules['opentelemetry']; sys.argv = sys.argv[1:]; "
    "runpy.run_path(sys.argv[0], run_name='__main__')"
)


def wait_until_up(base_url: str) -> None:
    deadline = time.monotonic() + 20
    while True:
        try:
            httpx.get(base_url + "/hello", timeout=1)
            return
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def check_answers(variant: str, base_url: str, token: str, foreign_token: str) -> str:
    """Valid token 200; no token, garbage and another audience's token refused."""
    statuses = [
        httpx.get(base_url + "/hello", headers=headers).status_code
        for headers in (
            {"Authorization": f"Bearer {token}"},
            {},
            {"Authorization": "Bearer garbage"},
            {"Authorization": f"Bearer {foreign_token}"},
        )
    ]
    if SERVERS[variant].name == "no authentication":
        return "ok" if statuses[0] == 200 else f"FAILED {statuses}"
    refused = all(status in (401, 403) for status in statuses[1:])
    return "ok" if statuses[0] == 200 and refused else f"FAILED {statuses}"


def run_wrk(base_url: str, token: str, requests: int, script: Path) -> float:
    """Requests per second over ``requests`` requests; raises if any answer was not 200."""
    environment = {
        **os.environ,
        "BENCH_REQUESTS": str(requests),
        "BENCH_AUTHORIZATION": f"Bearer {token}",
    }
    # The duration only bounds a run that goes wrong; the FIXED line ends a normal one.
    command = ["wrk", "-t1", f"-c{CONNECTIONS}", "-d300s", "-s", str(script), base_url + "/hello"]
    cpus = cpu_plan()
    if cpus is not None:
        command = ["taskset", "--cpu-list", str(cpus.load), *command]
    with subprocess.Popen(  # noqa: S603
        command, env=environment, stdout=subprocess.PIPE, text=True
    ) as wrk:
        assert wrk.stdout is not None
        fixed = next((line for line in wrk.stdout if line.startswith("FIXED ")), None)
        wrk.terminate()
    if fixed is None:
        raise RuntimeError(f"wrk ended before {requests} answers")
    _, answered, failed, seconds = fixed.split()
    if int(failed):
        raise RuntimeError(f"{failed} of {answered} answers were not 200 from {base_url}")
    return int(answered) / float(seconds)


def obtain_token(realm: LocalRealm, client_id: str, secret: str) -> str:
    """A token from the realm's token endpoint, as a real client gets one."""
    grant = {"grant_type": "client_credentials"}
    response = httpx.post(realm.token_url, data=grant, auth=(client_id, secret))
    response.raise_for_status()
    token: str = response.json()["access_token"]
    return token


def measure(
    settings: Settings, revision: str | None
) -> tuple[dict[str, list[float]], dict[str, str]]:
    with LocalRealm(REALM, token_lifetime=TOKEN_LIFETIME) as realm, ExitStack() as stack:
        secret = "bench-secret"
        realm.add_client(CLIENT_ID, secret, audience=[AUDIENCE])
        realm.add_client("intruder", secret, audience=[OTHER_AUDIENCE])
        token = obtain_token(realm, CLIENT_ID, secret)
        foreign_token = obtain_token(realm, "intruder", secret)
        directory = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        script = directory / "fixed.lua"
        script.write_text(WRK_SCRIPT)
        source = None if revision is None else uninstrumented_source(revision, directory)
        urls = {
            v: stack.enter_context(
                server_process(v, realm.issuer, source if v == UNINSTRUMENTED else None)
            )
            for v in settings.servers
            if v != UNINSTRUMENTED or source is not None
        }
        checks = {v: check_answers(v, url, token, foreign_token) for v, url in urls.items()}
        for url in urls.values():
            run_wrk(url, token, WARMUP_REQUESTS, script)
        samples: dict[str, list[float]] = {variant: [] for variant in urls}
        order = list(urls)
        for round_number in range(settings.rounds):
            # Each round starts one server later, so none always runs right after another.
            shift = round_number % len(order)
            for variant in order[shift:] + order[:shift]:
                samples[variant].append(run_wrk(urls[variant], token, settings.requests, script))
    return samples, checks


# --- the report -------------------------------------------------------------------------------


def version_of(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "not installed"


def print_header(settings: Settings) -> None:
    wrk_version = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False)  # noqa: S607
    print(f"Python {platform.python_version()} ({platform.python_implementation()})")
    print(f"{os.cpu_count()} logical cores; {platform.platform()}")
    print(", ".join(f"{name} {version_of(name)}" for name in DISTRIBUTIONS))
    # Here, not at the top: a server process may import another revision of the package.
    from validate import build_name  # beside this script

    print(f"keycloak-m2m build: {build_name()}")
    http, loop = uvicorn_choices()
    print(f"uvicorn: one worker, http={http}, loop={loop}, no access log")
    print(f"load: {wrk_version.stdout.split(' [')[0].strip()}, 1 thread, {CONNECTIONS} connections")
    cpus = cpu_plan()
    print(
        "CPUs: shared, as the scheduler places them"
        if cpus is None
        else f"CPUs: every server on CPU {cpus.server}, wrk on CPU {cpus.load}"
    )
    print(
        f"{settings.rounds} rounds of {settings.requests} requests per server, interleaved, "
        "each round starting one server later; median req/s; one valid RS256 token on every "
        "request"
    )
    print()


def print_table(samples: dict[str, list[float]], checks: dict[str, str]) -> None:
    """Each server's median and its ratio to the median without authentication (what the
    target is about), and the median of its per-round ratios to the server without
    authentication in the same round: a slow stretch of the machine then slows both."""
    baselines = {
        server.framework: variant
        for variant, server in SERVERS.items()
        if server.name == "no authentication" and variant in samples
    }
    print(
        f"{'server':<52} {'req/s':>8} {'vs none':>8} {'per round':>9} {'spread':>7}  "
        f"{'answers':<8} target"
    )
    for variant, server in SERVERS.items():
        if variant not in samples:
            continue
        rates = samples[variant]
        base_rates = samples[baselines[server.framework]]
        median = statistics.median(rates)
        ratio = median / statistics.median(base_rates)
        per_round = statistics.median(a / b for a, b in zip(rates, base_rates, strict=True))
        spread = (max(rates) - min(rates)) / median
        target = ""
        if server.targeted:
            target = f">= {TARGET:.2f}x  {'PASS' if ratio >= TARGET else 'MISS'}"
        label = f"{server.framework}: {server.name}"
        print(
            f"{label:<52} {median:>8.0f} {ratio:>7.3f}x {per_round:>8.3f}x {spread:>6.1%}  "
            f"{checks[variant]:<8} {target}".rstrip()
        )


def print_overhead(samples: dict[str, list[float]]) -> None:
    """The idle instrumentation's cost: each round's rate against the server without the API,
    and against the uninstrumented revision's when one was served."""
    for baseline, name in ((API_HIDDEN, "the API hidden"), (UNINSTRUMENTED, "uninstrumented")):
        if baseline not in samples or "fastapi-middleware" not in samples:
            continue
        ratios = [
            base / ours
            for ours, base in zip(samples["fastapi-middleware"], samples[baseline], strict=True)
        ]
        overhead = statistics.median(ratios) - 1
        mark = "PASS" if overhead <= OVERHEAD_TARGET else "MISS"
        print(
            f"middleware, API installed and no SDK vs {name}: {overhead:+.1%} time per "
            f"request  target <= {OVERHEAD_TARGET:.0%}  {mark}"
        )


def server_names(text: str) -> tuple[str, ...]:
    """``--servers``: the named ones, with each one's framework without authentication."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in SERVERS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"not servers: {unknown}; choose from {sorted(SERVERS)}")
    frameworks = {SERVERS[name].framework for name in names}
    wanted = {f"{framework}-none" for framework in frameworks} | set(names)
    return tuple(name for name in SERVERS if name in wanted)


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7, help="rounds per server (default 7)")
    parser.add_argument(
        "--requests", type=int, default=20000, help="requests per server and round (default 20000)"
    )
    parser.add_argument("--quick", action="store_true", help="2 rounds of 3000, a smoke run")
    parser.add_argument(
        "--servers",
        type=server_names,
        default=tuple(SERVERS),
        help="comma-separated servers to run (default all; each framework's 'none' is added)",
    )
    parser.add_argument(
        "--uninstrumented", metavar="REV", help="also serve the package of this git revision"
    )
    parser.add_argument("--serve", choices=sorted(SERVERS), help=argparse.SUPPRESS)
    parser.add_argument("--issuer", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    if arguments.serve:
        serve(arguments.serve, arguments.issuer)
        return 0
    if arguments.quick:
        settings = Settings(rounds=2, requests=3000, servers=arguments.servers)
    else:
        settings = Settings(
            rounds=arguments.rounds, requests=arguments.requests, servers=arguments.servers
        )
    print_header(settings)
    samples, checks = measure(settings, arguments.uninstrumented)
    print_table(samples, checks)
    print()
    print_overhead(samples)
    return 0


if __name__ == "__main__":
    sys.exit(main())
