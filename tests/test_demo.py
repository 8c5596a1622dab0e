"""The README's first command: ``keycloak-m2m demo`` walks the whole scenario and exits 0."""

from __future__ import annotations

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
    assert result.stderr == ""


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
