"""The examples, and every ```python snippet of README.md and docs/*.md, run as a newcomer runs
them: in a fresh interpreter, with warnings as errors.

How a page's snippets run:

* Its ```python blocks run in order, in one interpreter and one namespace: a page is read top to
  bottom, so a block may use what an earlier block of the same page defined. Each block is
  compiled alone (a ``from __future__`` import stays legal), with top-level ``await`` allowed as
  in ``python -m asyncio``; ``__name__`` is ``"__main__"``, so a whole example file shown on a
  page runs as ``python file.py`` would run it.
* The only change made to a snippet is the realm's URL: ``https://sso.example.com`` becomes the
  base URL of a ``LocalRealm`` whose realm ``shop`` has the client ``shop-api`` (realm role
  ``notifications:send``, audience ``notification-service``). The environment names that client
  (``KEYCLOAK_URL``, ``KEYCLOAK_REALM``, ``KEYCLOAK_CLIENT_ID``, ``KEYCLOAK_CLIENT_SECRET``), as
  ``ClientCredentials.from_env()`` expects.
* ``GIVEN`` lists, per page, the names its snippets use but the page's prose supplies: ``token``
  is "the token a caller sent"; here one the realm issued to ``shop-api``. Keep it short: prefer a
  snippet that defines what it uses.
* A block whose first line is ``# not run: <why>`` is not run, visibly so on the page: it needs
  what the test machines lack (a real service at ``notifications.internal``, a framework that is
  no test dependency). Use it sparingly.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

import keycloak_m2m
from keycloak_m2m.testing import LocalRealm

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

PLACEHOLDER_URL = "https://sso.example.com"
NOT_RUN = re.compile(r"# not run: \S")
GIVEN = {"README.md": ["token"], "validator.md": ["token"]}

# Runs in the fresh interpreter: the blocks come as JSON on stdin, the given names in argv.
RUNNER = """
import ast, asyncio, inspect, json, sys

namespace = {"__name__": "__main__", **json.loads(sys.argv[1])}
for block in json.load(sys.stdin):
    # Leading newlines: a traceback names the page's own line numbers.
    source = "\\n" * (block["line"] - 1) + block["source"]
    code = compile(source, block["page"], "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    if code.co_flags & inspect.CO_COROUTINE:
        asyncio.run(eval(code, namespace))
    else:
        exec(code, namespace)
"""


@dataclass(frozen=True)
class Snippet:
    page: str
    line: int  # of the snippet's first line in the page
    source: str

    @property
    def runs(self) -> bool:
        return not NOT_RUN.match(self.source)


def snippets(page: Path) -> list[Snippet]:
    found, lines, start = [], page.read_text().splitlines(), None
    for number, line in enumerate(lines, start=1):
        if start is None and line == "```python":
            start = number + 1
        elif start is not None and line == "```":
            source = "\n".join(lines[start - 1 : number - 1]) + "\n"
            found.append(Snippet(page.relative_to(ROOT).as_posix(), start, source))
            start = None
    return found


PAGES_WITH_SNIPPETS = [page for page in PAGES if any(snippet.runs for snippet in snippets(page))]


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


def without_keycloak_variables() -> dict[str, str]:
    return {name: value for name, value in os.environ.items() if not name.startswith("KEYCLOAK_")}


def test_environment_example_configures_everything_from_keycloak_variables() -> None:
    environment = without_keycloak_variables()
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


@pytest.mark.parametrize("page", PAGES_WITH_SNIPPETS, ids=lambda page: page.name)
def test_the_snippets_of_a_page_run(page: Path) -> None:
    secret = "a-made-up-secret"
    with LocalRealm("shop") as realm:
        realm.add_client(
            "shop-api",
            secret,
            realm_roles=["notifications:send"],
            audience=["notification-service"],
        )
        blocks = [
            {**vars(snippet), "source": snippet.source.replace(PLACEHOLDER_URL, realm.base_url)}
            for snippet in snippets(page)
            if snippet.runs
        ]
        given = {name: realm.mint("shop-api") for name in GIVEN.get(page.name, [])}
        environment = {
            "KEYCLOAK_URL": realm.base_url,
            "KEYCLOAK_REALM": "shop",
            "KEYCLOAK_CLIENT_ID": "shop-api",
            "KEYCLOAK_CLIENT_SECRET": secret,
        }
        result = subprocess.run(
            [sys.executable, "-W", "error", "-c", RUNNER, json.dumps(given)],
            input=json.dumps(blocks),
            capture_output=True,
            text=True,
            timeout=120,
            cwd=ROOT,
            env={**without_keycloak_variables(), **environment},
            check=False,
        )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


def test_a_snippet_not_run_says_why() -> None:
    every = [snippet for page in PAGES for snippet in snippets(page)]
    marked = [snippet for snippet in every if "# not run" in snippet.source]
    for snippet in marked:
        assert NOT_RUN.match(snippet.source), f"{snippet.page}:{snippet.line}: first line, a reason"
    assert marked  # the convention is in use: the check above can fail


def test_troubleshooting_quotes_each_error_as_it_reads() -> None:
    # "## "audience mismatch" (`InvalidAudience`)": the phrase is what that error says.
    page = (ROOT / "docs" / "troubleshooting.md").read_text()
    headings = re.findall(r"^## (.*)$", page, re.MULTILINE)
    quoted = [
        (re.findall(r'"([^"]+)"', heading), re.findall(r"`(\w+)`", heading)) for heading in headings
    ]
    assert len(quoted) == 5
    for phrases, names in quoted:
        assert phrases, names
        for phrase, name in zip(phrases, names, strict=True):
            assert getattr(keycloak_m2m, name).default_description == phrase
