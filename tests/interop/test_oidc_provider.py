"""Interoperability with an independent issuer: panva's oidc-provider (Node), over real HTTP.

``provider.mjs`` runs oidc-provider on 127.0.0.1 with two confidential client-credentials clients
and a few resource servers whose access tokens are RFC 9068 JWTs. Tokens come from its token
endpoint through httpx; the validator learns the issuer only through discovery. See
docs/interop.md.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from jwt.utils import base64url_decode

from keycloak_m2m import (
    ClientCredentials,
    ExpiredToken,
    InvalidAudience,
    InvalidDPoPProof,
    InvalidToken,
    InvalidTokenType,
    MalformedToken,
    Principal,
    TokenValidator,
    UnknownKey,
)
from keycloak_m2m._client_dpop import DPoPKey

from ..support import FakeClock

HERE = Path(__file__).parent
SCRIPT = HERE / "provider.mjs"
NODE_MODULES = HERE / "node_modules"
# Only against a hang: a start takes about a second, but a shared CI host can stall for more
# than 20 s (a CI run of the whole suite once did, at the oidc-provider's start).
START_TIMEOUT = 120.0

AUDIENCE = "https://api.example.test"
OTHER_AUDIENCE = "https://other.example.test"
AUDIENCE_BY_ALG = {
    "RS256": AUDIENCE,
    "PS256": "https://ps256.api.example.test",
    "ES256": "https://es256.api.example.test",
    "EdDSA": "https://eddsa.api.example.test",
}
CLIENTS = ("m2m-basic", "m2m-post")  # client_secret_basic, client_secret_post
JWKS_PATH = "/jwks"
DRIVERS = ("sync", "async")


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _unavailable() -> str | None:
    if shutil.which("node") is None:
        return "node is not on PATH: the oidc-provider interop suite needs Node.js"
    if not (NODE_MODULES / "oidc-provider").is_dir():
        return "oidc-provider is not installed: run `npm ci --prefix tests/interop`"
    return None


# ---------------------------------------------------------------------------------------------
# The provider process


@dataclass
class OidcProvider:
    """The running provider: its issuer, a way to get tokens, and its test-only admin routes."""

    issuer: str
    token_endpoint: str
    secret: str
    http: httpx.Client

    def token(self, resource: str | None = AUDIENCE, client: str = "m2m-basic", **form: str) -> str:
        """A client-credentials access token for ``resource`` (None: no resource), over HTTP."""
        data = {"grant_type": "client_credentials", **form}
        if resource is not None:
            data["resource"] = resource
        if client == "m2m-basic":
            response = self.http.post(self.token_endpoint, data=data, auth=(client, self.secret))
        else:
            data |= {"client_id": client, "client_secret": self.secret}
            response = self.http.post(self.token_endpoint, data=data)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["token_type"] == "Bearer"
        token: str = body["access_token"]
        return token

    def state(self) -> dict[str, Any]:
        return self._admin("GET", "state")

    def rotate(self) -> dict[str, Any]:
        """New keys sign from now on; the previous signing keys stay published."""
        return self._admin("POST", "rotate")

    def retire(self) -> dict[str, Any]:
        """Unpublish every key but the current signing keys."""
        return self._admin("POST", "retire")

    def requests_to(self, path: str) -> int:
        """How many requests the provider has served on ``path`` since it started."""
        count: int = self.state()["counts"].get(path, 0)
        return count

    def _admin(self, method: str, action: str) -> dict[str, Any]:
        response = self.http.request(method, f"{self.issuer}/__interop/{action}")
        response.raise_for_status()
        document: dict[str, Any] = response.json()
        return document


def _wait_until_ready(process: subprocess.Popen[bytes], stdout: Path, stderr: Path) -> str:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        for line in stdout.read_text(errors="replace").splitlines():
            try:
                message = json.loads(line)
            except ValueError:
                continue
            if isinstance(message, dict) and message.get("ready") is True:
                issuer: str = message["issuer"]
                return issuer
        if process.poll() is not None:
            pytest.fail(
                f"oidc-provider exited with status {process.returncode}:\n"
                f"{stderr.read_text(errors='replace')}"
            )
        time.sleep(0.02)
    pytest.fail(f"oidc-provider not ready in {START_TIMEOUT} s:\n{stderr.read_text()}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OidcProvider]:
    reason = _unavailable()
    if reason is not None:
        if _in_ci():
            pytest.fail(f"{reason} (CI is set: the interop suite must run, not be skipped)")
        pytest.skip(reason)
    logs = tmp_path_factory.mktemp("oidc-provider")
    stdout, stderr = logs / "stdout.log", logs / "stderr.log"
    secret = secrets.token_urlsafe(32)
    environment = {**os.environ, "INTEROP_CLIENT_SECRET": secret}
    environment.pop("INTEROP_PORT", None)
    # Output goes to files, never to pipes nobody drains; stdin is a pipe so that the provider
    # exits on its own (--exit-with-stdin) if this process dies without tearing down.
    with (
        stdout.open("wb") as out,
        stderr.open("wb") as err,
        subprocess.Popen(
            ["node", str(SCRIPT), "0", "--exit-with-stdin"],
            cwd=HERE,
            env=environment,
            stdin=subprocess.PIPE,
            stdout=out,
            stderr=err,
        ) as process,
    ):
        try:
            issuer = _wait_until_ready(process, stdout, stderr)
            with httpx.Client(timeout=5.0, trust_env=False) as http:
                discovery = http.get(f"{issuer}/.well-known/openid-configuration").json()
                assert discovery["issuer"] == issuer
                yield OidcProvider(issuer, discovery["token_endpoint"], secret, http)
        finally:
            _stop(process)


def _segments(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    header, payload, _ = token.split(".")
    return json.loads(base64url_decode(header)), json.loads(base64url_decode(payload))


def _rfc9068(provider: OidcProvider, **options: Any) -> TokenValidator:
    options.setdefault("audience", AUDIENCE)
    return TokenValidator.from_discovery(provider.issuer, profile="rfc9068", **options)


async def _discover(provider: OidcProvider, driver: str, **options: Any) -> TokenValidator:
    """An rfc9068 validator for AUDIENCE, set up by the sync or the async discovery."""
    options = {"audience": AUDIENCE, "profile": "rfc9068", **options}
    if driver == "sync":
        return TokenValidator.from_discovery(provider.issuer, **options)
    return await TokenValidator.from_discovery_async(provider.issuer, **options)


async def _validate(validator: TokenValidator, token: str, driver: str) -> Principal:
    if driver == "sync":
        return validator.validate(token)
    return await validator.validate_async(token)


# ---------------------------------------------------------------------------------------------
# What oidc-provider issues


def test_tokens_are_rfc9068_jwts(provider: OidcProvider) -> None:
    state = provider.state()
    header, claims = _segments(provider.token(scope="notifications:send"))
    # Exactly these header members: nothing our header rules refuse (crit, jku, x5u, x5c, jwk, cty).
    assert header == {"alg": "RS256", "typ": "at+jwt", "kid": state["signing"]["RS256"]}
    assert set(claims) == {"jti", "sub", "iat", "exp", "scope", "client_id", "iss", "aud"}
    assert claims["iss"] == provider.issuer
    assert claims["aud"] == AUDIENCE
    # For client credentials oidc-provider has no account: sub is the client's id (RFC 9068 2.2).
    assert claims["sub"] == claims["client_id"] == "m2m-basic"
    assert claims["scope"] == "notifications:send"
    assert claims["exp"] - claims["iat"] == 300
    assert "azp" not in claims
    assert "typ" not in claims


# ---------------------------------------------------------------------------------------------
# Accepted


@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize("alg", sorted(AUDIENCE_BY_ALG))
def test_accepts_client_credentials_tokens(provider: OidcProvider, alg: str, client: str) -> None:
    audience = AUDIENCE_BY_ALG[alg]
    token = provider.token(audience, client, scope="notifications:send reports:read")
    assert _segments(token)[0]["alg"] == alg
    validator = _rfc9068(provider, audience=audience, service_accounts_only=True)
    assert validator.jwks_url == f"{provider.issuer}{JWKS_PATH}"

    principal = validator.validate(token)

    claims = _segments(token)[1]
    assert principal.client_id == client
    assert principal.subject == client
    assert principal.is_service_account is True
    assert principal.scopes == {"notifications:send", "reports:read"}
    assert principal.realm_roles == frozenset()
    assert dict(principal.client_roles) == {}
    assert principal.expires_at == claims["exp"]
    assert principal.claims["jti"] == claims["jti"]
    principal.require(scopes=["reports:read"])


@pytest.mark.parametrize("service_accounts_only", [True, False])
@pytest.mark.parametrize("client", CLIENTS)
async def test_accepts_client_credentials_tokens_async(
    provider: OidcProvider, client: str, service_accounts_only: bool
) -> None:
    token = provider.token(AUDIENCE, client)
    validator = await TokenValidator.from_discovery_async(
        provider.issuer,
        audience=AUDIENCE,
        profile="rfc9068",
        service_accounts_only=service_accounts_only,
    )

    principal = await validator.validate_async(token)

    assert principal.client_id == principal.subject == client
    assert principal.is_service_account is True
    assert principal.scopes == frozenset()  # no scope requested, none in the token
    assert (await validator.validate_async(token)) == principal


# ---------------------------------------------------------------------------------------------
# Rejected


@pytest.mark.parametrize("driver", DRIVERS)
async def test_rejects_a_token_for_another_audience(provider: OidcProvider, driver: str) -> None:
    token = provider.token(OTHER_AUDIENCE)
    assert _segments(token)[1]["aud"] == OTHER_AUDIENCE
    validator = await _discover(provider, driver)
    with pytest.raises(InvalidAudience):
        await _validate(validator, token, driver)


def test_keycloak_profile_rejects_rfc9068_tokens(provider: OidcProvider) -> None:
    # The header passes (the keycloak profile accepts typ at+jwt as well as JWT), the signature
    # verifies, and the claims fail on the Keycloak-only `typ: Bearer` claim, which RFC 9068
    # tokens do not carry.
    validator = TokenValidator.from_discovery(provider.issuer, audience=AUDIENCE)
    with pytest.raises(InvalidTokenType):
        validator.validate(provider.token())


def test_accepts_the_fully_specified_ed25519_algorithm(provider: OidcProvider) -> None:
    audience = "https://ed25519.api.example.test"
    token = provider.token(audience)
    assert _segments(token)[0]["alg"] == "Ed25519"
    assert _rfc9068(provider, audience=audience).validate(token).client_id == "m2m-basic"


def test_rejects_the_opaque_token_issued_without_a_resource(provider: OidcProvider) -> None:
    # Without a resource indicator oidc-provider issues an opaque (non-JWT) access token.
    token = provider.token(resource=None)
    assert "." not in token
    with pytest.raises(MalformedToken):
        _rfc9068(provider).validate(token)


@pytest.mark.parametrize("driver", DRIVERS)
async def test_rejects_an_expired_token(provider: OidcProvider, driver: str) -> None:
    token = provider.token()
    expires_at = _segments(token)[1]["exp"]
    clock = FakeClock(time.time())
    validator = await _discover(provider, driver, clock=clock)
    assert (await _validate(validator, token, driver)).expires_at == expires_at

    clock.now = expires_at + 29.9  # inside the default 30 s leeway
    assert (await _validate(validator, token, driver)).expires_at == expires_at
    clock.now = expires_at + 30
    with pytest.raises(ExpiredToken):
        await _validate(validator, token, driver)


# ---------------------------------------------------------------------------------------------
# Key rotation


@pytest.mark.parametrize("driver", DRIVERS)
async def test_follows_key_rotation(provider: OidcProvider, driver: str) -> None:
    clock = FakeClock(time.time())
    validator = await _discover(provider, driver, clock=clock, jwks_ttl=120.0)

    async def client_of(token: str) -> str:
        return (await _validate(validator, token, driver)).client_id

    fetches = provider.requests_to(JWKS_PATH)
    old_token = provider.token()
    old_kid = _segments(old_token)[0]["kid"]
    assert await client_of(old_token) == "m2m-basic"
    assert provider.requests_to(JWKS_PATH) == fetches + 1  # the first validation fetched keys

    # Rotate: new keys sign, the old ones stay published for tokens still in flight.
    rotated = provider.rotate()
    new_token = provider.token()
    new_kid = _segments(new_token)[0]["kid"]
    assert new_kid == rotated["signing"]["RS256"] != old_kid
    assert old_kid in rotated["published"]

    assert await client_of(old_token) == "m2m-basic"
    # The start-up fetch was routine, so it does not hold back the refetch the new kid sets off:
    # the first token signed by the new key is answered at once (docs/validator.md, the rule of
    # jwks_refetch_interval).
    assert await client_of(new_token) == "m2m-basic"
    assert provider.requests_to(JWKS_PATH) == fetches + 2  # the unknown kid made it refetch once
    assert await client_of(old_token) == "m2m-basic"
    assert await client_of(provider.token()) == "m2m-basic"
    assert provider.requests_to(JWKS_PATH) == fetches + 2

    # Retire the old keys; once its key set is stale (jwks_ttl), the validator drops them too.
    assert old_kid not in provider.retire()["published"]
    clock.advance(120)
    with pytest.raises(UnknownKey):
        await client_of(old_token)
    assert provider.requests_to(JWKS_PATH) == fetches + 3
    assert await client_of(new_token) == "m2m-basic"
    assert provider.requests_to(JWKS_PATH) == fetches + 3


# ---------------------------------------------------------------------------------------------
# DPoP-bound tokens (RFC 9449): oidc-provider binds, keycloak_m2m checks the proofs


def _bound_token(provider: OidcProvider, key: DPoPKey, resource: str = AUDIENCE) -> str:
    """A JWT access token for ``resource`` bound to ``key``: the token request carries a proof."""
    response = provider.http.post(
        provider.token_endpoint,
        data={"grant_type": "client_credentials", "resource": resource},
        auth=("m2m-basic", provider.secret),
        headers={"DPoP": key.proof("POST", provider.token_endpoint)},
    )
    assert response.status_code == 200, response.text
    assert response.json()["token_type"] == "DPoP"
    token: str = response.json()["access_token"]
    return token


@pytest.mark.parametrize("driver", DRIVERS)
async def test_accepts_dpop_bound_tokens_with_their_proofs(
    provider: OidcProvider, driver: str
) -> None:
    key = DPoPKey.generate()
    token = _bound_token(provider, key)
    claims = _segments(token)[1]
    assert claims["cnf"] == {"jkt": key.thumbprint}
    validator = await _discover(provider, driver)
    url = "https://api.example.test/reports"

    async def check(proof: str, method: str = "GET") -> Principal:
        material: dict[str, Any] = {"dpop_proof": proof, "method": method, "url": url}
        if driver == "sync":
            return validator.validate(token, **material)
        return await validator.validate_async(token, **material)

    principal = await check(key.proof("GET", url, access_token=token))
    assert principal.client_id == "m2m-basic"
    honest = key.proof("GET", url, access_token=token)
    await check(honest)
    with pytest.raises(InvalidDPoPProof, match="replayed"):
        await check(honest)
    with pytest.raises(InvalidDPoPProof, match="htm"):
        await check(key.proof("POST", url, access_token=token))
    with pytest.raises(InvalidDPoPProof, match="binding"):
        await check(DPoPKey.generate().proof("GET", url, access_token=token))
    with pytest.raises(InvalidToken, match="bearer"):
        await _validate(validator, token, driver)


def test_client_answers_the_token_endpoint_nonce_once(provider: OidcProvider) -> None:
    creds = ClientCredentials(
        "m2m-dpop-nonce", provider.secret, token_url=provider.token_endpoint, dpop_key=True
    )
    before = provider.requests_to("/token")
    assert creds.get_token()
    # The first request was answered use_dpop_nonce, the second carried the nonce.
    assert provider.requests_to("/token") - before == 2
