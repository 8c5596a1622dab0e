"""The examples run as a newcomer runs them, in a fresh interpreter."""

from __future__ import annotations

import os
import re
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


def test_prometheus_example_serves_the_metrics_of_its_calls() -> None:
    result = subprocess.run(
        [sys.executable, "-W", "error", str(EXAMPLES / "prometheus_app.py")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    first, *scraped = result.stdout.splitlines()
    assert first == "calls: [200, 200, 200] accepted, [401, 401] refused"
    series = {}
    for line in scraped:
        name, labels, value = re.fullmatch(r"(\w+)\{(.*)\} (\S+)", line).groups()  # type: ignore[union-attr]
        ours = ",".join(label for label in labels.split(",") if not label.startswith("otel_"))
        series[f"{name}{{{ours}}}"] = float(value)
    outcome = 'keycloak_m2m_outcome="{}"'
    assert (
        series['keycloak_m2m_validations_total{error_type="",' + outcome.format("accepted") + "}"]
        == 1  # the first call ran the checks; the two after it were cache hits
    )
    assert (
        series[
            'keycloak_m2m_validations_total{error_type="MalformedToken",'
            + outcome.format("refused")
            + "}"
        ]
        == 1
    )
    assert series["keycloak_m2m_key_set_fetches_total{" + outcome.format("fetched") + "}"] == 1
    grant = 'keycloak_m2m_grant_type="client_credentials",'
    assert (
        series["keycloak_m2m_token_requests_total{" + grant + outcome.format("issued") + "}"] == 1
    )
    by_issuer = {name.split("{")[0]: value for name, value in series.items() if "issuer" in name}
    assert by_issuer["keycloak_m2m_token_cache_hits_total"] == 2
    assert by_issuer["keycloak_m2m_token_cache_misses_total"] == 2
    assert by_issuer["keycloak_m2m_key_set_age_seconds"] >= 0
    for histogram in ("validation", "key_set_fetch", "token_request"):
        assert any(
            name.startswith(f"keycloak_m2m_{histogram}_duration_seconds_count") for name in series
        )
