"""Each framework's example runs as a newcomer runs it, and its docs page shows it verbatim."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

EXPECTED = {
    "asgi": [
        "GET /health as anonymous -> 200 ok",
        'GET /notifications as anonymous -> 401 {"error":"unauthorized"',
        'GET /notifications as shop-api -> 200 {"caller":"shop-api","user":"shop-api"}',
        'GET /profile as shop-api -> 200 {"client_id":"shop-api","scopes":["email","profile"]}',
        'DELETE /notifications as shop-api -> 403 {"error":"insufficient_scope"',
        "websocket /feed as shop-api -> hello shop-api",
        "websocket /feed as anonymous -> 401",
    ],
    "fastapi": [
        'GET /notifications as anonymous -> 401 {"error":"unauthorized"',
        'GET /notifications as shop-api -> 200 {"caller":"shop-api"}',
        'POST /notifications as shop-api -> 201 {"sent_by":"shop-api"}',
        'DELETE /notifications as shop-api -> 403 {"error":"insufficient_scope"',
        "OpenAPI security schemes: bearerAuth, clientCredentials",
    ],
    "flask": [
        'GET /notifications as anonymous -> 401 {"error":"unauthorized"',
        'GET /notifications as shop-api -> 200 {"caller":"shop-api"}',
        'POST /notifications as shop-api -> 201 {"sent_by":"shop-api"}',
        'DELETE /notifications as shop-api -> 403 {"error":"insufficient_scope"',
    ],
}


@pytest.mark.parametrize("framework", sorted(EXPECTED))
def test_example_runs(framework: str) -> None:
    script = ROOT / "examples" / f"{framework}_app.py"
    result = subprocess.run(
        [sys.executable, "-W", "error", str(script)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # no server error logged along the way
    lines = result.stdout.splitlines()
    assert len(lines) == len(EXPECTED[framework]), result.stdout
    for line, expected in zip(lines, EXPECTED[framework], strict=True):
        assert line.startswith(expected)


@pytest.mark.parametrize("framework", sorted(EXPECTED))
def test_docs_page_shows_the_example(framework: str) -> None:
    example = (ROOT / "examples" / f"{framework}_app.py").read_text()
    page = (ROOT / "docs" / f"{framework}.md").read_text()
    assert f"```python\n{example}```\n" in page
