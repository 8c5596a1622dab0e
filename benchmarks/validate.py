"""Median time per validation of a Keycloak service-account token: keycloak_m2m and its peers.

The floor is the bare RSA-2048 PKCS#1 v1.5 SHA-256 signature check (``cryptography``): no
validator can skip it, so every row is also given as a multiple of it. The DPoP row (a cached
bound token and its proof's full check, replay cache included) is given as a multiple of its own
floor, the bare ES256 check of the proof's signature, which no proof check can skip. All
contenders run in one process, on the same tokens from one local Keycloak-compatible realm,
interleaved round by round so that machine noise hits them alike.

    python benchmarks/validate.py [--rounds N] [--quick] [--uninstrumented REV]

It measures the package as installed: pure Python (``pip install -e .``), or the compiled build
(``HATCH_BUILD_HOOKS_ENABLE=1 pip install .``), which the header names. In the compiled build
the pure-Python source of this checkout runs beside it, in the same rounds, as
``..., pure Python`` rows.

The package's rows run with the OpenTelemetry API installed and no SDK configured. With
``--uninstrumented REV`` the package as of git revision REV (one without telemetry) runs in the
same rounds, and the overhead of the idle instrumentation is printed against it. A second table
then configures the SDK (in-memory span exporter and metric reader) and times the package again.

A measurement, not a test: it always exits 0 once the numbers are printed.
"""

from __future__ import annotations

import argparse
import gc
import importlib.machinery
import importlib.util
import itertools
import os
import platform
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import tracemalloc
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from types import ModuleType
from typing import Any, cast

import httpx
import jwt
from cryptography.exceptions import InvalidSignature as CryptoInvalidSignature
from cryptography.hazmat.backends.openssl import backend as openssl_backend
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from inlined_bound import inlined_validator  # beside this script
from jwt.utils import base64url_decode, raw_to_der_signature
from native_ceiling import ceiling, typed_parse, typed_parse_only  # beside this script

from keycloak_m2m import (
    Introspection,
    InvalidAudience,
    InvalidDPoPProof,
    InvalidSignature,
    TokenValidator,
)
from keycloak_m2m._client_dpop import DPoPKey
from keycloak_m2m._replay import MemoryReplayCache
from keycloak_m2m.testing import LocalRealm

CLIENT_ID = "shop-api"
AUDIENCE = "notification-service"
OTHER_AUDIENCE = "billing-service"
LEEWAY = 30
# Distinct tokens cycled through wherever a cache must not help: nothing may cache by token.
TOKEN_COUNT = 50
CACHE_OFF = "keycloak_m2m, cache off"
CACHE_ON = "keycloak_m2m, cache hit"
FRESH = "keycloak_m2m, fresh, cache on"
# A fresh token per call with the cache on: more distinct tokens than the cache holds, cycled, so
# that every call misses and its insert evicts the least recently used entry, as in a full cache.
# The cache is emptied before each timed batch: a batch is longer than one pass when calls are
# fast, and the next one would otherwise start on tokens the last one left in the cache.
FRESH_TOKEN_COUNT = 5000
FRESH_CACHE_SIZE = 4096
# The second token shape: a Keycloak service-account token with 20 claims, aud a list of two,
# three realm roles and roles for two clients.
WIDE = " [20 claims]"
WIDE_CLIENT = "reporting-job"
MEMORY_ENTRIES = 4096
MEMORY_TARGET = 1536  # bytes per verified-token cache entry, beyond the token it holds
INTROSPECTED = "keycloak_m2m, introspected"
INLINED = "bound: every check in one function"
CEILING = "ceiling: bound without payload JSON and claims"
TYPED_PARSE_ONLY = "ceiling + native typed parse, result unused"
TYPED_PARSE = "stand-in: native typed parse, rules in Python"
# The resource server's own client, which introspects (RFC 7662).
SERVICE_SECRET = "notification-service-secret"
UNINSTRUMENTED = "uninstrumented"
API_HIDDEN = "OpenTelemetry API hidden"
PURE = "pure Python"
DISTRIBUTIONS = (
    "keycloak-m2m", "cryptography", "PyJWT", "joserfc", "Authlib", "opentelemetry-api",
    "opentelemetry-sdk", "msgspec",
)  # fmt: skip
# The idle instrumentation (API installed, no SDK) against the package without it.
OVERHEAD_TARGET = 0.02
ES256_FLOOR = "floor: ES256 verify"
DPOP_CACHED = "keycloak_m2m, DPoP cached"
DPOP_URL = "https://api.example.com/notifications"
# Proofs are single-use: enough distinct ones that no batch repeats one.
PROOF_COUNT = 20_000

# Made once: building them on every call would put allocation cost into the floor.
PKCS1V15 = padding.PKCS1v15()
SHA256 = hashes.SHA256()


@dataclass(frozen=True)
class Settings:
    rounds: int
    round_seconds: float


@dataclass(frozen=True)
class Contender:
    """One way to validate a token, and what it must raise for the two bad tokens."""

    name: str
    validate: Callable[[Any], object]
    tokens: Sequence[str]
    signature_error: type[Exception]
    # None for the floor, which checks no claims.
    audience_error: type[Exception] | None
    # Turns a token into what ``validate`` takes, outside the timed loop.
    prepare: Callable[[str], Any] = lambda token: token
    target: float | None = None
    # The row this one is a multiple of (None: the RSA floor, the first row).
    baseline: str | None = None
    # A forged input of its own (None: the fixture's token with a forged signature).
    bad_input: str | None = None
    # Run before each timed batch, untimed.
    before_batch: Callable[[], None] = lambda: None


@dataclass(frozen=True)
class Fixture:
    """What the realm hands out, gathered once before anything is timed."""

    issuer: str
    jwks_url: str
    jwks: dict[str, Any]
    public_key: rsa.RSAPublicKey
    tokens: tuple[str, ...]
    # Per shape ("" and WIDE): FRESH_TOKEN_COUNT distinct tokens.
    fresh: dict[str, tuple[str, ...]]
    wrong_audience: str
    bad_signature: str
    dpop_key: DPoPKey
    # The DPoP key's public half, for the ES256 floor.
    dpop_public_key: ec.EllipticCurvePublicKey
    bound_token: str


# --- the contenders -------------------------------------------------------------------------------


def split_for_floor(token: str) -> tuple[bytes, bytes]:
    signing_input, _, signature = token.rpartition(".")
    return base64url_decode(signature), signing_input.encode("ascii")


def floor(fixture: Fixture) -> Contender:
    verify = fixture.public_key.verify

    def check(prepared: tuple[bytes, bytes]) -> None:
        verify(prepared[0], prepared[1], PKCS1V15, SHA256)

    return Contender(
        "floor: cryptography verify",
        check,
        fixture.tokens,
        signature_error=CryptoInvalidSignature,
        audience_error=None,
        prepare=split_for_floor,
    )


def ours(
    fixture: Fixture, package: ModuleType | None = None, label: str = "", every_row: bool = False
) -> list[Contender]:
    """The package's rows for both token shapes; ``package``: another copy of it (the
    uninstrumented one), timed on the first shape's cache-off and cache-hit rows only unless
    ``every_row``."""
    validator = TokenValidator if package is None else package.TokenValidator
    errors = (InvalidSignature, InvalidAudience)
    if package is not None:
        errors = (package.InvalidSignature, package.InvalidAudience)
    rows: list[Contender] = []
    for shape in ("", WIDE):
        tokens = fixture.fresh[shape]
        without_cache = validator(fixture.issuer, AUDIENCE, token_cache_size=0)
        with_cache = validator(fixture.issuer, AUDIENCE)
        full = validator(fixture.issuer, AUDIENCE, token_cache_size=FRESH_CACHE_SIZE)
        rows += [
            Contender(
                CACHE_OFF + shape + label,
                without_cache.validate,
                tokens[:TOKEN_COUNT],
                *errors,
                target=None if label else 1.6,
            ),
            Contender(
                FRESH + shape + label,
                full.validate,
                tokens,
                *errors,
                target=None if label else 1.8,
                before_batch=emptied(full, tokens),
            ),
            # One token over and over: a service reuses its token until it nearly expires.
            Contender(
                CACHE_ON + shape + label,
                with_cache.validate,
                tokens[:1],
                *errors,
                target=None if label else 0.05,
            ),
        ]
    if package is not None:
        if every_row:
            return rows
        return [row for row in rows if WIDE not in row.name and FRESH not in row.name]
    if label:
        return rows  # the introspected row once, in the main table
    # Answers kept for the token's life: the row measures the cached path, not the realm.
    introspection = Introspection(AUDIENCE, SERVICE_SECRET, cache_ttl=3600)
    introspecting = TokenValidator(fixture.issuer, AUDIENCE, introspection=introspection)
    # The same, with every token checked active at the introspection endpoint: once, then
    # from the verified-token cache until the answer is cache_ttl old.
    introspected = Contender(
        INTROSPECTED,
        introspecting.validate,
        fixture.tokens[:1],
        InvalidSignature,
        InvalidAudience,
        target=0.1,
    )
    return [*rows, introspected]


def emptied(validator: Any, tokens: Sequence[str]) -> Callable[[], None]:
    """What empties ``validator``'s verified-token cache of ``tokens`` (a reach into its
    internals, for the fresh rows: every call of theirs must miss)."""

    # The cache keeps a token as its header's bytes; a revision without telemetry, as
    # --uninstrumented takes, as the string.
    earlier = type(validator).__module__.startswith("keycloak_m2m_uninstrumented")
    keys = tokens if earlier else [token.encode("ascii") for token in tokens]

    def empty() -> None:
        for key in keys:
            validator._verified.drop(key)

    return empty


def uninstrumented_package(revision: str, directory: Path) -> ModuleType:
    """The package as of git ``revision``, imported as ``keycloak_m2m_uninstrumented``."""
    archive = directory / "package.tar"
    subprocess.run(  # noqa: S603
        ["git", "archive", "--output", str(archive), revision, "src/keycloak_m2m"],  # noqa: S607
        check=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    with tarfile.open(archive) as tar:
        tar.extractall(directory, filter="data")
    return imported_copy(directory / "src" / "keycloak_m2m", "keycloak_m2m_uninstrumented")


def beside(contenders: list[Contender], baseline_rows: list[Contender]) -> None:
    """Put each baseline row right after the row it is compared with (its name's prefix), so
    that both run back to back in every round."""
    for row in baseline_rows:
        position = next(i for i, c in enumerate(contenders) if row.name.startswith(c.name + ","))
        contenders.insert(position + 1, row)


def api_hidden_package() -> ModuleType:
    """This package again, imported as ``keycloak_m2m_api_hidden`` while the OpenTelemetry API
    cannot be imported: the same code, running as without the [otel] extra."""
    root = installed_package()
    hidden = {
        name: module for name, module in sys.modules.items() if name.startswith("opentelemetry")
    }
    for name in hidden:
        del sys.modules[name]
    sys.modules["opentelemetry"] = None  # type: ignore[assignment]
    try:
        return imported_copy(root, "keycloak_m2m_api_hidden")
    finally:
        del sys.modules["opentelemetry"]
        sys.modules.update(hidden)


def installed_package() -> Path:
    return Path(importlib.util.find_spec("keycloak_m2m").origin).parent  # type: ignore[arg-type,union-attr]


NATIVE_READER = "_native_payload"


def compiled_modules() -> list[str]:
    """The package's modules that the installed build compiled (none in a pure-Python one)."""
    suffixes = tuple(importlib.machinery.EXTENSION_SUFFIXES)
    return sorted(
        path.name.split(".")[0]
        for path in installed_package().iterdir()
        if path.name.endswith(suffixes)
    )


def build_name() -> str:
    """Which build of the package is installed, for a benchmark's header."""
    compiled = compiled_modules()
    if not compiled:
        return PURE
    mypyc = ", ".join(name for name in compiled if name != NATIVE_READER)
    reader = "with" if NATIVE_READER in compiled else "without"
    return f"compiled with mypyc: {mypyc}; {reader} the native payload reader"


def pure_package() -> ModuleType:
    """This checkout's source, pure Python, imported as ``keycloak_m2m_pure``."""
    source = Path(__file__).resolve().parents[1] / "src" / "keycloak_m2m"
    return imported_copy(source, "keycloak_m2m_pure")


def imported_copy(root: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        name, root / "__init__.py", submodule_search_locations=[str(root)]
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def pyjwt_with_key(fixture: Fixture) -> Contender:
    def check(token: str) -> object:
        return jwt.decode(
            token,
            fixture.public_key,
            algorithms=["RS256"],
            audience=AUDIENCE,
            issuer=fixture.issuer,
            leeway=LEEWAY,
        )

    return Contender(
        "PyJWT decode, key object",
        check,
        fixture.tokens,
        jwt.InvalidSignatureError,
        jwt.InvalidAudienceError,
    )


def pyjwt_jwks_client(fixture: Fixture) -> Contender:
    client = jwt.PyJWKClient(fixture.jwks_url)

    def check(token: str) -> object:
        signing_key = client.get_signing_key_from_jwt(token)
        return jwt.decode(
            token,
            signing_key.key,
            algorithms=["RS256"],
            audience=AUDIENCE,
            issuer=fixture.issuer,
            leeway=LEEWAY,
        )

    return Contender(
        "PyJWT PyJWKClient recipe",
        check,
        fixture.tokens,
        jwt.InvalidSignatureError,
        jwt.InvalidAudienceError,
    )


def joserfc_recipe(fixture: Fixture) -> Contender:
    from joserfc import jwt as jose_jwt
    from joserfc.errors import BadSignatureError, InvalidClaimError
    from joserfc.jwk import KeySet, KeySetSerialization

    keys = KeySet.import_key_set(cast(KeySetSerialization, fixture.jwks))
    registry = jose_jwt.JWTClaimsRegistry(
        leeway=LEEWAY,
        iss={"essential": True, "value": fixture.issuer},
        aud={"essential": True, "value": AUDIENCE},
    )

    def check(token: str) -> object:
        decoded = jose_jwt.decode(token, keys, algorithms=["RS256"])
        registry.validate(decoded.claims)  # exp, nbf and iat are checked when present
        return decoded.claims

    return Contender("joserfc", check, fixture.tokens, BadSignatureError, InvalidClaimError)


def authlib_recipe(fixture: Fixture) -> Contender:
    # authlib.jose announces its move to joserfc on import (it is still Authlib's JWT API), under
    # an "always" filter that authlib.deprecate installs: import that first, then mute it.
    from authlib.deprecate import AuthlibDeprecationWarning  # type: ignore[import-untyped]

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AuthlibDeprecationWarning)
        from authlib.jose import JsonWebKey, JsonWebToken  # type: ignore[import-untyped]
        from authlib.jose.errors import (  # type: ignore[import-untyped]
            BadSignatureError,
            InvalidClaimError,
        )

    keys = JsonWebKey.import_key_set(fixture.jwks)
    # authlib.jose.jwt restricted to RS256, as every other contender is.
    decoder = JsonWebToken(["RS256"])
    options = {
        "iss": {"essential": True, "value": fixture.issuer},
        "aud": {"essential": True, "value": AUDIENCE},
    }

    def check(token: str) -> object:
        claims = decoder.decode(token, keys, claims_options=options)
        claims.validate(leeway=LEEWAY)
        return claims

    return Contender("Authlib", check, fixture.tokens, BadSignatureError, InvalidClaimError)


def proofs(fixture: Fixture) -> list[str]:
    key, token = fixture.dpop_key, fixture.bound_token
    return [key.proof("GET", DPOP_URL, access_token=token) for _ in range(PROOF_COUNT)]


def es256_floor(fixture: Fixture, honest: list[str]) -> Contender:
    public_key = fixture.dpop_public_key
    verify, scheme = public_key.verify, ec.ECDSA(SHA256)

    def prepare(proof: str) -> tuple[bytes, bytes]:
        signing_input, _, signature = proof.rpartition(".")
        return raw_to_der_signature(base64url_decode(signature), public_key.curve), (
            signing_input.encode("ascii")
        )

    def check(prepared: tuple[bytes, bytes]) -> None:
        verify(prepared[0], prepared[1], scheme)

    forged = honest[0].rpartition(".")[0] + "." + honest[1].rpartition(".")[2]
    return Contender(
        ES256_FLOOR,
        check,
        honest,
        CryptoInvalidSignature,
        None,
        prepare=prepare,
        bad_input=forged,
    )


def dpop_cached(fixture: Fixture, honest: list[str]) -> Contender:
    """validate(token, dpop_proof=...) of a bound token whose verdict is cached: what every
    request of a DPoP caller costs. The replay cache is the default one; it is emptied when a
    batch starts over, since the timing loop must reuse its proofs from round to round."""
    replay = MemoryReplayCache()
    validator = TokenValidator(fixture.issuer, AUDIENCE, dpop_max_age=3600, replay_cache=replay)
    token, first = fixture.bound_token, honest[0]

    def check(proof: str) -> object:
        if proof is first:
            replay._expiry.clear()
        return validator.validate(token, dpop_proof=proof, method="GET", url=DPOP_URL)

    forged = honest[0].rpartition(".")[0] + "." + honest[1].rpartition(".")[2]
    return Contender(
        DPOP_CACHED,
        check,
        honest,
        InvalidDPoPProof,
        None,
        target=1.5,
        baseline=ES256_FLOOR,
        bad_input=forged,
    )


def inlined(fixture: Fixture) -> list[Contender]:
    """The pure-Python bound (inlined_bound.py) and what a native piece could buy
    (native_ceiling.py), per shape, placed after the shape's cache-off row."""
    issuer, key = fixture.issuer, fixture.public_key
    bound = inlined_validator(issuer, key, AUDIENCE)
    parsed = typed_parse(issuer, key, AUDIENCE)
    rows = []
    for shape in ("", WIDE):
        tokens = fixture.fresh[shape][:TOKEN_COUNT]
        looked_up = ceiling(issuer, key, AUDIENCE, tokens)
        parsed_only = typed_parse_only(issuer, key, AUDIENCE, tokens)
        rows += [
            Contender(INLINED + shape, bound, tokens, CryptoInvalidSignature, ValueError),
            Contender(CEILING + shape, looked_up, tokens, CryptoInvalidSignature, None),
            Contender(TYPED_PARSE_ONLY + shape, parsed_only, tokens, CryptoInvalidSignature, None),
            Contender(TYPED_PARSE + shape, parsed, tokens, CryptoInvalidSignature, ValueError),
        ]
    return rows


def shape_of(name: str) -> str:
    return WIDE if name.endswith(WIDE) else ""


def all_contenders(fixture: Fixture) -> list[Contender]:
    honest = proofs(fixture)
    package = ours(fixture)
    for shape, rows in itertools.groupby(inlined(fixture), key=lambda row: shape_of(row.name)):
        position = next(i for i, c in enumerate(package) if c.name == CACHE_OFF + shape)
        package[position + 1 : position + 1] = rows
    return [
        floor(fixture),
        *package,
        es256_floor(fixture, honest),
        dpop_cached(fixture, honest),
        pyjwt_with_key(fixture),
        pyjwt_jwks_client(fixture),
        joserfc_recipe(fixture),
        authlib_recipe(fixture),
    ]


# --- setup and correctness ------------------------------------------------------------------------


def mint_fixture(realm: LocalRealm) -> Fixture:
    realm.add_client(
        CLIENT_ID,
        "secret",
        realm_roles=["notifications:send"],
        client_roles={AUDIENCE: ["send"]},
        audience=[AUDIENCE],
    )
    realm.add_client(AUDIENCE, SERVICE_SECRET)
    realm.add_client(
        WIDE_CLIENT,
        "secret",
        realm_roles=["reports:read", "reports:write", "exports:run"],
        client_roles={AUDIENCE: ["send", "schedule"], OTHER_AUDIENCE: ["invoice:read"]},
        audience=[AUDIENCE, OTHER_AUDIENCE],
    )
    fresh = {
        "": tuple(realm.mint(CLIENT_ID, expires_in=3600) for _ in range(FRESH_TOKEN_COUNT)),
        WIDE: tuple(wide_token(realm) for _ in range(FRESH_TOKEN_COUNT)),
    }
    tokens = fresh[""][:TOKEN_COUNT]
    private_key = realm.private_key(realm.active_kid)
    assert isinstance(private_key, rsa.RSAPrivateKey)
    # The first token's header and payload under the second's signature: well formed, forged.
    forged = tokens[0].rpartition(".")[0] + "." + tokens[1].rpartition(".")[2]
    dpop_private_key = ec.generate_private_key(ec.SECP256R1())
    dpop_key = DPoPKey(dpop_private_key)
    return Fixture(
        issuer=realm.issuer,
        jwks_url=realm.jwks_url,
        # The realm's published key set, as the peers' users would load it (enc key included).
        jwks=httpx.get(realm.jwks_url).json(),
        public_key=private_key.public_key(),
        tokens=tokens,
        fresh=fresh,
        wrong_audience=realm.mint(CLIENT_ID, claims={"aud": OTHER_AUDIENCE}, expires_in=3600),
        bad_signature=forged,
        dpop_key=dpop_key,
        dpop_public_key=dpop_private_key.public_key(),
        bound_token=realm.mint(CLIENT_ID, expires_in=3600, dpop_jkt=dpop_key.thumbprint),
    )


def wide_token(realm: LocalRealm) -> str:
    """The second shape: exactly 20 claims; aud the two services (no ``account``), three realm
    roles (no default ones), roles for two clients."""
    token = realm.mint(
        WIDE_CLIENT,
        expires_in=3600,
        claims={
            "aud": [AUDIENCE, OTHER_AUDIENCE],
            "realm_access": {"roles": ["reports:read", "reports:write", "exports:run"]},
            "resource_access": {
                AUDIENCE: {"roles": ["send", "schedule"]},
                OTHER_AUDIENCE: {"roles": ["invoice:read"]},
            },
            "sid": "c0ffee00-0000-4000-8000-000000000000",
            "allowed-origins": ["/*"],
            "auth_time": int(time.time()),
        },
    )
    claims = jwt.decode(token, options={"verify_signature": False})
    if len(claims) != 20:
        raise AssertionError(f"the wide shape has {len(claims)} claims, not 20")
    return token


def rejects(contender: Contender, token: str, error: type[Exception]) -> bool:
    try:
        contender.validate(contender.prepare(token))
    except error:
        return True
    return False


def check_correctness(contender: Contender, fixture: Fixture) -> None:
    """Accept every token (this also warms key fetching), refuse the two bad ones."""
    for token in contender.tokens:
        contender.validate(contender.prepare(token))
    # Raised, not asserted: the comparison must hold under python -O too.
    bad = contender.bad_input or fixture.bad_signature
    if not rejects(contender, bad, contender.signature_error):
        raise AssertionError(f"{contender.name} accepted a forged signature")
    expected = contender.audience_error
    if expected is not None and not rejects(contender, fixture.wrong_audience, expected):
        raise AssertionError(f"{contender.name} accepted a token for {OTHER_AUDIENCE}")


# --- timing ---------------------------------------------------------------------------------------


def run_batch(validate: Callable[[Any], object], inputs: Sequence[Any]) -> int:
    """Nanoseconds to validate every input once, with the collector off."""
    gc.collect()
    gc.disable()
    try:
        start = time.perf_counter_ns()
        for item in inputs:
            validate(item)
        return time.perf_counter_ns() - start
    finally:
        gc.enable()


def cycled(contender: Contender, count: int) -> list[Any]:
    prepared = [contender.prepare(token) for token in contender.tokens]
    return list(itertools.islice(itertools.cycle(prepared), count))


def calibrate(contender: Contender, round_seconds: float) -> list[Any]:
    """The inputs for one round: enough validations to take about ``round_seconds``."""
    count = len(contender.tokens)
    elapsed = run_batch(contender.validate, cycled(contender, count))
    # Grow until a batch is long enough for the clock to give a usable per-call figure.
    while elapsed < 20_000_000:
        count *= 4
        elapsed = run_batch(contender.validate, cycled(contender, count))
    per_call = elapsed / count
    # Never fewer than one pass over the tokens, so each is validated in every round.
    return cycled(contender, max(len(contender.tokens), int(round_seconds * 1e9 / per_call)))


def measure(
    contenders: Sequence[Contender],
    settings: Settings,
    between_batches: Callable[[], None] = lambda: None,
) -> dict[str, list[float]]:
    """Microseconds per validation, one sample per round for each contender."""
    batches = {c.name: calibrate(c, settings.round_seconds) for c in contenders}
    samples: dict[str, list[float]] = {c.name: [] for c in contenders}
    for _ in range(settings.rounds):
        # Every contender once per round, so a noisy stretch of time hurts them all alike.
        for contender in contenders:
            inputs = batches[contender.name]
            between_batches()
            contender.before_batch()
            elapsed = run_batch(contender.validate, inputs)
            samples[contender.name].append(elapsed / len(inputs) / 1000)
    return samples


def with_sdk() -> Callable[[], None]:
    """Configure the OpenTelemetry SDK with in-memory exporters; return what empties them."""
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
    return exporter.clear


def entry_memory(fixture: Fixture, shape: str, read_claims: bool) -> float:
    """Bytes per verified-token cache entry, its copy of the token included (tracemalloc, at
    MEMORY_ENTRIES entries): what validating MEMORY_ENTRIES fresh tokens, which this process
    keeps as strings throughout, leaves allocated."""
    validator = TokenValidator(fixture.issuer, AUDIENCE, token_cache_size=MEMORY_ENTRIES)
    tokens = fixture.fresh[shape][:MEMORY_ENTRIES]
    validator.validate(tokens[0])  # keys fetched, parsers and shared sets warmed
    validator = TokenValidator(fixture.issuer, AUDIENCE, token_cache_size=MEMORY_ENTRIES)
    validator.validate(tokens[-1])
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    for token in tokens[:-1]:
        principal = validator.validate(token)
        if read_claims:
            principal.claims  # noqa: B018 (read once, as an application would)
    gc.collect()
    grown = sum(
        stat.size_diff for stat in tracemalloc.take_snapshot().compare_to(before, "filename")
    )
    tracemalloc.stop()
    return grown / (len(tokens) - 1)


def print_memory(fixture: Fixture) -> None:
    print(f"\nverified-token cache, bytes per entry beyond the token ({MEMORY_ENTRIES} entries):")
    for shape in ("", WIDE):
        # The entry holds the token as the bytes a header carries, its own copy: what a service
        # keeps per entry, whose token strings are gone once their request is answered.
        token_bytes = sys.getsizeof(fixture.fresh[shape][0].encode("ascii"))
        unread = entry_memory(fixture, shape, read_claims=False) - token_bytes
        read = entry_memory(fixture, shape, read_claims=True) - token_bytes
        mark = "PASS" if unread <= MEMORY_TARGET else "MISS"
        print(
            f"  {'Keycloak token' + shape:<28} {unread:>7.0f} B  target <= {MEMORY_TARGET} B  "
            f"{mark}; {read:.0f} B once principal.claims was read; token {token_bytes} B"
        )


# --- report ---------------------------------------------------------------------------------------


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def version_of(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "not installed"


def print_header(settings: Settings) -> None:
    print(f"Python {platform.python_version()} ({platform.python_implementation()})")
    print(f"CPU: {cpu_model()}, {os.cpu_count()} logical cores; {platform.platform()}")
    print(openssl_backend.openssl_version_text())
    print(", ".join(f"{name} {version_of(name)}" for name in DISTRIBUTIONS))
    print(f"keycloak-m2m build: {build_name()}")
    print(
        f"RS256, RSA-2048; {settings.rounds} rounds of ~{settings.round_seconds:g} s each, "
        f"median per validation; {TOKEN_COUNT} distinct tokens (cache on, introspected: "
        "one token reused)"
    )
    print()


def verdict(ratio: float, target: float | None) -> str:
    if target is None:
        return ""
    return f"<= {target:.2f}x  {'PASS' if ratio <= target else 'MISS'}"


def print_overhead(samples: dict[str, list[float]], baselines: Sequence[str]) -> None:
    """The idle instrumentation's cost: each round's ratio to the same rows of a baseline
    package (the API hidden, an uninstrumented revision), the median of those ratios."""
    print()
    for baseline in baselines:
        for row in (CACHE_OFF, CACHE_ON):
            ratios = [
                ours / base
                for ours, base in zip(samples[row], samples[f"{row}, {baseline}"], strict=True)
            ]
            overhead = statistics.median(ratios) - 1
            mark = "PASS" if overhead <= OVERHEAD_TARGET else "MISS"
            print(
                f"API installed, no SDK vs {baseline} ({row.split(', ')[1]}): "
                f"{overhead:+.1%}  target <= {OVERHEAD_TARGET:.0%}  {mark}"
            )


def print_table(contenders: Sequence[Contender], samples: dict[str, list[float]]) -> None:
    medians = {name: statistics.median(values) for name, values in samples.items()}
    floor_median = medians[contenders[0].name]
    print(f"{'contender':<42} {'median µs':>10} {'vs floor':>9} {'spread':>7}   target")
    print(f"(the DPoP row is a multiple of {ES256_FLOOR!r}, every other of the RSA floor)")
    for contender in contenders:
        values = samples[contender.name]
        median = medians[contender.name]
        baseline = floor_median if contender.baseline is None else medians[contender.baseline]
        ratio = median / baseline
        # Max minus min over the rounds, relative to the median: how much to trust the row.
        spread = (max(values) - min(values)) / median * 100
        print(
            f"{contender.name:<42} {median:>10.2f} {ratio:>8.2f}x {spread:>6.1f}%   "
            f"{verdict(ratio, contender.target)}".rstrip()
        )


# --- main -----------------------------------------------------------------------------------------


def parse_settings(argv: Sequence[str] | None) -> tuple[Settings, str | None]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, help="rounds to take the median over (default 7)")
    parser.add_argument("--quick", action="store_true", help="3 short rounds, for a smoke run")
    parser.add_argument(
        "--uninstrumented", metavar="REV", help="also time the package of this git revision"
    )
    arguments = parser.parse_args(argv)
    default_rounds, round_seconds = (3, 0.05) if arguments.quick else (7, 0.2)
    rounds = arguments.rounds if arguments.rounds is not None else default_rounds
    if rounds < 1:
        parser.error("--rounds must be at least 1")
    return Settings(rounds=rounds, round_seconds=round_seconds), arguments.uninstrumented


def main(argv: Sequence[str] | None = None) -> int:
    settings, revision = parse_settings(argv)
    print_header(settings)
    with LocalRealm("shop") as realm, tempfile.TemporaryDirectory() as directory:
        fixture = mint_fixture(realm)
        contenders = all_contenders(fixture)
        if compiled_modules():
            # A copy of a compiled build would load its compiled modules under a second name:
            # the API-hidden baseline is a pure-Python build's comparison.
            baselines = []
            beside(contenders, ours(fixture, pure_package(), f", {PURE}", every_row=True))
        else:
            baselines = [API_HIDDEN]
            beside(contenders, ours(fixture, api_hidden_package(), f", {API_HIDDEN}"))
        if revision is not None:
            package = uninstrumented_package(revision, Path(directory))
            beside(contenders, ours(fixture, package, f", {UNINSTRUMENTED}"))
            baselines.append(UNINSTRUMENTED)
        for contender in contenders:
            check_correctness(contender, fixture)
        samples = measure(contenders, settings)
        print_table(contenders, samples)
        print_overhead(samples, baselines)
        print_memory(fixture)

        print(
            "\nwith the OpenTelemetry SDK configured (in-memory span exporter and metric reader):"
        )
        empty_exporter = with_sdk()
        traced = [floor(fixture), *ours(fixture, label=" + SDK")]
        for contender in traced:
            check_correctness(contender, fixture)
        print_table(traced, measure(traced, settings, empty_exporter))
    return 0


if __name__ == "__main__":
    sys.exit(main())
