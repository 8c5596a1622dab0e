"""npm clients nobody on this project wrote, against LocalRealm over real HTTP: openid-client,
jose, and Keycloak's own Node adapter keycloak-connect (bearer-only). Each runs in Node from the
scripts beside this file; the realm runs in this process. See docs/testing.md.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from keycloak_m2m.testing import LocalRealm

HERE = Path(__file__).parent
NODE_MODULES = HERE / "node_modules"
SECRET = "compat-secret"
RUN_TIMEOUT = 60.0
# Only against a hang: a start takes about a second, but a shared CI host can stall for more
# than 20 s (a CI run of the whole suite once did, at the oidc-provider's start).
START_TIMEOUT = 120.0


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _unavailable() -> str | None:
    if shutil.which("node") is None:
        return "node is not on PATH: the npm compatibility suite needs Node.js"
    for package in ("openid-client", "jose", "keycloak-connect", "express"):
        if not (NODE_MODULES / package).is_dir():
            return f"{package} is not installed: run `npm ci --prefix tests/compat`"
    return None


@pytest.fixture(scope="module", autouse=True)
def _node() -> None:
    reason = _unavailable()
    if reason is None:
        return
    if _in_ci():
        pytest.fail(f"{reason} (CI is set: the compatibility suite must run, not be skipped)")
    pytest.skip(reason)


def run_script(script: str, config: dict[str, Any]) -> dict[str, Any]:
    completed = subprocess.run(
        ["node", str(HERE / script), json.dumps(config)],
        cwd=HERE,
        capture_output=True,
        timeout=RUN_TIMEOUT,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr.decode(errors="replace")
    result: dict[str, Any] = json.loads(completed.stdout.decode().strip().splitlines()[-1])
    return result


# ---------------------------------------------------------------------------------------------
# openid-client and jose


@pytest.mark.parametrize("auth", ["basic", "post"])
def test_openid_client_and_jose(local_realm: LocalRealm, auth: str) -> None:
    local_realm.add_client("orders", SECRET, realm_roles=["reporter"])
    config = {
        "issuer": local_realm.issuer,
        "clientId": "orders",
        "secret": SECRET,
        "auth": auth,
        "audience": "account",
        "expiredToken": local_realm.mint("orders", expires_in=-120),
    }

    result = run_script("clients.mjs", config)

    assert result["discovery"] == {
        "issuer": local_realm.issuer,
        "revocation_endpoint": local_realm.revocation_url,
        "introspection_endpoint": local_realm.introspection_url,
    }
    # oauth4webapi lower-cases token_type; it also checked the ID token (aud, azp, iss, alg).
    assert result["token"] == {
        "token_type": "bearer",
        "scope": "openid profile email",
        "has_id_token": True,
    }
    assert result["id_token_claims"]["aud"] == "orders"
    assert result["userinfo"]["ok"], result["userinfo"]
    assert result["userinfo"]["value"]["preferred_username"] == "service-account-orders"
    assert result["introspection"]["ok"], result["introspection"]
    assert result["introspection"]["value"]["active"] is True
    assert result["introspection"]["value"]["client_id"] == "orders"
    assert result["verified"] == {
        "ok": True,
        "value": {"azp": "orders", "alg": "RS256", "kid": local_realm.active_kid},
    }
    assert result["expired"]["code"] == "ERR_JWT_EXPIRED"
    assert result["wrong_audience"]["code"] == "ERR_JWT_CLAIM_VALIDATION_FAILED"
    assert result["revocation"]["ok"], result["revocation"]
    assert result["after_revocation"] == {"ok": True, "value": {"active": False}}
    assert local_realm.request_count("revoke") == 1


# ---------------------------------------------------------------------------------------------
# keycloak-connect, bearer-only


@dataclass
class Adapter:
    base_url: str
    realm: LocalRealm
    http: httpx.Client

    def get(self, path: str, token: str | None) -> int:
        headers = {} if token is None else {"Authorization": f"Bearer {token}"}
        response = self.http.get(self.base_url + path, headers=headers)
        if response.status_code == 200:
            assert response.json()["via"] == "/" + path.split("/")[1]
        return response.status_code

    def token(self, client_id: str) -> str:
        response = self.http.post(
            self.realm.token_url,
            data={"grant_type": "client_credentials"},
            auth=(client_id, SECRET),
        )
        assert response.status_code == 200, response.text
        token: str = response.json()["access_token"]
        return token


def _wait_until_ready(process: subprocess.Popen[bytes], stdout: Path, stderr: Path) -> int:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        for line in stdout.read_text(errors="replace").splitlines():
            message = json.loads(line) if line.startswith("{") else {}
            if message.get("ready") is True:
                port: int = message["port"]
                return port
        if process.poll() is not None:
            pytest.fail(f"connect.mjs exited with {process.returncode}:\n{stderr.read_text()}")
        time.sleep(0.02)
    pytest.fail(f"connect.mjs not ready in {START_TIMEOUT} s:\n{stderr.read_text()}")


@pytest.fixture(scope="module", params=[26, 16], ids=["keycloak-26", "keycloak-16"])
def adapter(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Adapter]:
    version: int = request.param
    with LocalRealm("shop", keycloak_version=version) as realm, httpx.Client(timeout=10) as http:
        realm.add_client("reporter-svc", SECRET, realm_roles=["reporter"])
        realm.add_client("reader-svc", SECRET, client_roles={"orders-api": ["read"]})
        realm.add_client("payer-svc", SECRET, client_roles={"billing": ["pay"]})
        config = {
            # keycloak-connect adds /realms/<realm>; before Keycloak 17 the base has /auth.
            "authServerUrl": realm.base_url + ("/auth" if version < 17 else ""),
            "realm": "shop",
            "resource": "orders-api",
            "publicKey": http.get(realm.issuer).json()["public_key"],
        }
        logs = tmp_path_factory.mktemp("keycloak-connect")
        stdout, stderr = logs / "stdout.log", logs / "stderr.log"
        with (
            stdout.open("wb") as out,
            stderr.open("wb") as err,
            subprocess.Popen(
                ["node", str(HERE / "connect.mjs"), json.dumps(config), "--exit-with-stdin"],
                cwd=HERE,
                stdin=subprocess.PIPE,
                stdout=out,
                stderr=err,
            ) as process,
        ):
            try:
                port = _wait_until_ready(process, stdout, stderr)
                yield Adapter(f"http://127.0.0.1:{port}", realm, http)
            finally:
                process.terminate()
                process.wait(timeout=10)


@pytest.mark.parametrize(
    ("client_id", "allowed"),
    [
        ("reporter-svc", {"/any", "/realm-role"}),
        ("reader-svc", {"/any", "/own-role"}),
        ("payer-svc", {"/any", "/billing-role"}),
    ],
)
def test_keycloak_connect_protects_routes_by_role(
    adapter: Adapter, client_id: str, allowed: set[str]
) -> None:
    token = adapter.token(client_id)
    routes = ("/any", "/realm-role", "/own-role", "/billing-role")
    assert {route: adapter.get("/jwks" + route, token) for route in routes} == {
        route: 200 if route in allowed else 403 for route in routes
    }


def test_keycloak_connect_with_the_realm_public_key_and_audience(adapter: Adapter) -> None:
    # Under /pem the adapter verifies with the realm page's public_key and wants its own client
    # (orders-api) in aud, which Keycloak puts there for a token with orders-api roles.
    assert adapter.get("/pem/own-role", adapter.token("reader-svc")) == 200
    assert adapter.get("/pem/any", adapter.token("reporter-svc")) == 403


def test_keycloak_connect_refuses_bad_tokens(adapter: Adapter) -> None:
    realm = adapter.realm
    with LocalRealm("shop", keycloak_version=realm.keycloak_version) as impostor:
        impostor.add_client("reporter-svc", SECRET)
        foreign = impostor.mint("reporter-svc", claims={"iss": realm.issuer})
    refused = {
        "none": None,
        "expired": realm.mint("reporter-svc", expires_in=-60),
        "id-token": realm.mint("reporter-svc", claims={"typ": "ID"}),
        "other-issuer": realm.mint("reporter-svc", claims={"iss": realm.issuer + "x"}),
        "foreign-key": foreign,
    }
    for prefix in ("/jwks", "/pem"):
        statuses = {name: adapter.get(prefix + "/any", token) for name, token in refused.items()}
        assert statuses == dict.fromkeys(refused, 403), prefix
    assert adapter.get("/jwks/any", realm.mint("reporter-svc")) == 200
