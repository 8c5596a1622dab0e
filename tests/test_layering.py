"""The one-way import rule: the sans-I/O core imports no HTTP client and no framework, and no
adapter imports another; an adapter without its extra says which extra to install."""

from __future__ import annotations

import ast
import subprocess
import sys
from importlib.resources import files
from pathlib import Path

import pytest

PACKAGE = Path(str(files("keycloak_m2m")))
SANS_IO = (
    "_request", "_audit", "_asgi_scope", "_jose", "_claims", "_keyset", "_errors", "_principal",
    "_binding", "_introspection", "_dpop", "_attempt", "_options", "_client_auth", "_signing",
    "_b64token", "_requirement",
)  # fmt: skip
ADAPTERS = ("asgi", "fastapi", "flask", "requests")
FORBIDDEN = {
    "httpx", "anyio", "fastapi", "starlette", "flask", "werkzeug", "litestar", "quart", "requests",
    "opentelemetry",
}  # fmt: skip


def imports_of(module: str) -> set[str]:
    """Absolute names a module of the package imports, its own modules as ``keycloak_m2m.x``;
    for the native payload reader, those its stub imports."""
    source = PACKAGE / f"{module}.py"
    tree = ast.parse((source if source.exists() else source.with_suffix(".pyi")).read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                names.add(f"keycloak_m2m.{node.module}" if node.module else "keycloak_m2m")
            elif node.module:
                names.add(node.module)
    return names


def reachable_from(module: str) -> set[str]:
    """Every top-level package that ``module`` imports, following the package's own modules."""
    seen: set[str] = set()
    outside: set[str] = set()
    pending = [module]
    while pending:
        current = pending.pop()
        if current in seen:
            continue
        seen.add(current)
        for name in imports_of(current):
            if name.startswith("keycloak_m2m."):
                pending.append(name.removeprefix("keycloak_m2m."))
            else:
                outside.add(name.split(".")[0])
    return outside


@pytest.mark.parametrize("module", SANS_IO)
def test_the_sans_io_core_imports_no_http_client_or_framework(module: str) -> None:
    assert reachable_from(module) & FORBIDDEN == set()


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_no_adapter_imports_another(adapter: str) -> None:
    others = {f"keycloak_m2m.{other}" for other in ADAPTERS if other != adapter}
    assert imports_of(adapter) & others == set()


@pytest.mark.parametrize(
    ("adapter", "framework"), [("fastapi", "fastapi"), ("flask", "flask"), ("redis", "redis")]
)
def test_an_adapter_without_its_extra_names_the_extra(adapter: str, framework: str) -> None:
    probe = f"""
import sys
class Absent:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == {framework!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}")
sys.meta_path.insert(0, Absent())
try:
    import keycloak_m2m.{adapter}
except ImportError as error:
    print(error)
"""
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    assert f'pip install "keycloak-m2m[{adapter}]"' in result.stdout


def test_only_the_telemetry_module_imports_opentelemetry() -> None:
    modules = [path.stem for path in PACKAGE.glob("*.py")]
    users = {
        module
        for module in modules
        if any(name.startswith("opentelemetry") for name in imports_of(module))
    }
    assert users == {"_telemetry"}
