"""The public surface: exactly these names, and no framework pulled in by the core."""

from __future__ import annotations

import subprocess
import sys

import keycloak_m2m

PUBLIC_CORE = [
    "AuthError",
    "CertificateMismatch",
    "ClientCredentials",
    "ClientNotAllowed",
    "DiscoveryError",
    "ExpiredToken",
    "InsufficientScope",
    "Introspection",
    "IntrospectionUnavailable",
    "InvalidAudience",
    "InvalidClaim",
    "InvalidDPoPProof",
    "InvalidIssuer",
    "InvalidRequest",
    "InvalidSignature",
    "InvalidToken",
    "InvalidTokenType",
    "KeysUnavailable",
    "MalformedToken",
    "MemoryReplayCache",
    "MissingToken",
    "MultiIssuerValidator",
    "NotServiceAccount",
    "Principal",
    "ReplayCache",
    "ReplayCacheUnavailable",
    "TokenNotYetValid",
    "TokenRequestError",
    "TokenRevoked",
    "TokenValidator",
    "UnknownKey",
    "UseDPoPNonce",
]


def test_all_lists_the_public_core() -> None:
    assert sorted(keycloak_m2m.__all__) == sorted(PUBLIC_CORE)
    for name in keycloak_m2m.__all__:
        assert getattr(keycloak_m2m, name).__module__.startswith("keycloak_m2m")


def test_importing_the_core_imports_no_adapter_or_framework() -> None:
    probe = (
        "import sys, keycloak_m2m; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'fastapi', 'starlette', 'flask', 'litestar', 'quart', 'requests'} "
        "or m in {'keycloak_m2m.asgi', 'keycloak_m2m.fastapi', 'keycloak_m2m.flask', "
        "'keycloak_m2m.requests', 'keycloak_m2m.testing'}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


def test_the_package_is_typed() -> None:
    from importlib.resources import files

    assert files("keycloak_m2m").joinpath("py.typed").is_file()
