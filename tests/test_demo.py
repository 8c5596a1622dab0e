"""The README's first command: ``keycloak-m2m demo`` walks the whole scenario and exits 0, then
draws the first call's trace from the spans it recorded."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from keycloak_m2m.cli import main


def test_demo_as_a_newcomer_runs_it() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "keycloak_m2m", "demo"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "7 steps: every step went as expected" in result.stdout
    assert "UNEXPECTED" not in result.stdout
    assert "the first call, from the spans it recorded:" in result.stdout
    assert result.stderr == ""


def test_without_the_opentelemetry_sdk_the_demo_ends_with_its_steps() -> None:
    # Only the SDK: recent FastAPI releases need the API themselves.
    hidden = """
import sys
class Absent:
    def find_spec(self, name, path=None, target=None):
        if name.startswith("opentelemetry.sdk"):
            raise ModuleNotFoundError(f"No module named {name!r}")
sys.meta_path.insert(0, Absent())
from keycloak_m2m.cli import main
sys.exit(main(["demo"]))
"""
    result = subprocess.run(
        [sys.executable, "-c", hidden], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.rstrip().endswith("7 steps: every step went as expected")
    assert result.stderr == ""


TIMELINE_ROW = re.compile(r"(?P<role>.{14}) (?P<name>.+?) +\|(?P<bar>[ #]{40})\| +[\d.]+ ms")


def test_the_timeline_shows_caller_token_endpoint_service_and_key_endpoint(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    rows = [TIMELINE_ROW.fullmatch(line) for line in out.split("recorded:\n\n", 1)[1].splitlines()]
    assert all(rows), out
    drawn = [(row["role"].strip(), row["name"].strip(), row["bar"]) for row in rows if row]
    assert [(role, name) for role, name, _ in drawn] == [
        ("caller", "shop-api POST /notifications"),
        ("token endpoint", "keycloak_m2m.token_request"),
        ("service", "notification-service POST /notifications"),
        ("service", "keycloak_m2m.validate"),
        ("key endpoint", "keycloak_m2m.fetch_keys"),
    ]
    starts = [len(bar) - len(bar.lstrip()) for _, _, bar in drawn]
    assert drawn[0][2] == "#" * 40  # the caller's span covers the whole call
    assert starts[1] < starts[2] <= starts[3] <= starts[4]  # token first, then the service


def test_demo_steps(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    for line in [
        "1. shop-api obtains a token and sends a notification: HTTP 200 -> ok",
        "2. a call without a token: HTTP 401 -> ok",
        "3. reporting-job, a valid client without the role: HTTP 403 -> ok",
        "4. a forged token (signed by a key the realm never had): HTTP 401 -> ok",
        "5. an expired token: HTTP 401 -> ok",
        "6. keys rotated: the cached token (old key) still works: HTTP 200 -> ok",
        "7. shop-api renews its token, signed by the new key: HTTP 200 -> ok",
        "20 more calls: 20 x 200; the service fetched the key set 1 more time(s)",
        'error="insufficient_scope", error_description="missing realm roles: notifications:send"',
    ]:
        assert line in out
