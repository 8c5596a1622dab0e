"""The examples run as a newcomer runs them, in a fresh interpreter."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_quickstart() -> None:
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "quickstart.py")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "validated: client=shop-api service_account=True" in result.stdout
    assert "billing-service refuses it: 401 audience mismatch" in result.stdout


def test_environment_example_configures_everything_from_keycloak_variables() -> None:
    environment = {
        name: value for name, value in os.environ.items() if not name.startswith("KEYCLOAK_")
    }
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "environment.py")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=environment,
    )
    assert result.returncode == 0, result.stderr
    assert "KEYCLOAK_REALM=shop" in result.stdout
    assert "validated: client=shop-api issuer=http://127.0.0.1:" in result.stdout
    assert "SECRET" not in result.stdout
