"""Tokens issued by real Keycloak servers (versions 1.9 to 26), with their realms' published keys.

Each realm's key set is served from 127.0.0.1 by the local realm and the validator's clock is
frozen at the token's ``iat``. The corpus lives beside the repository in ``shared/``.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from keycloak_m2m import (
    InvalidAudience,
    InvalidSignature,
    InvalidTokenType,
    MalformedToken,
    NotServiceAccount,
    TokenValidator,
    UnknownKey,
)
from keycloak_m2m.testing import LocalRealm

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "keycloak-real"


def _cases() -> list[dict[str, Any]]:
    if not (CORPUS / "cases.json").is_file():
        return []
    cases: list[dict[str, Any]] = json.loads((CORPUS / "cases.json").read_text())["cases"]
    return cases


CASES = _cases()

if not CASES:
    if os.environ.get("CI"):
        raise RuntimeError(f"the real Keycloak corpus is missing at {CORPUS}; CI must have it")
    pytest.skip(
        f"real Keycloak corpus not found at {CORPUS} (it sits beside the repository "
        "in shared/; a fresh clone of the repository alone does not have it)",
        allow_module_level=True,
    )


@pytest.fixture(scope="module")
def key_server() -> Iterator[LocalRealm]:
    with LocalRealm("corpus") as realm:
        yield realm


def _payload(token: str) -> dict[str, Any]:
    segment = token.split(".")[1]
    decoded: dict[str, Any] = json.loads(
        base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    )
    return decoded


def _validator(case: dict[str, Any], key_server: LocalRealm, **options: Any) -> TokenValidator:
    aud = case["aud"]
    audience = aud if isinstance(aud, str) else (aud[0] if aud else "any-api")
    return TokenValidator(
        case["iss"],
        audience,
        jwks_url=key_server.jwks_url,
        clock=lambda: float(case["iat"]),
        **options,
    )


@pytest.mark.parametrize("case", CASES, ids=[case["id"] for case in CASES])
def test_real_keycloak_token_gets_the_right_verdict(
    case: dict[str, Any], key_server: LocalRealm
) -> None:
    key_server.serve_keys_document((CORPUS / case["jwks"]).read_bytes())
    token = (CORPUS / case["token"]).read_text().strip()
    options: dict[str, Any] = {}
    validator = _validator(case, key_server)

    if not case["signature_valid"]:
        with pytest.raises((InvalidSignature, UnknownKey)):
            validator.validate(token)
        return
    if case["typ"] != "Bearer":
        with pytest.raises(InvalidTokenType):
            validator.validate(token)
        return
    if case["id"].startswith("vertx-hcl/"):
        # A custom mapper there sends "sub" twice: refused unless duplicates are allowed.
        with pytest.raises(MalformedToken):
            validator.validate(token)
        options["accept_duplicate_members"] = True
        validator = _validator(case, key_server, **options)
    if case["aud"] is None:
        # Reaching the audience check proves the signature was accepted.
        with pytest.raises(InvalidAudience):
            validator.validate(token)
        return
    if not case["service_account"]:
        with pytest.raises(NotServiceAccount):
            validator.validate(token)
        options["service_accounts_only"] = False
        validator = _validator(case, key_server, **options)

    principal = validator.validate(token)
    claims = _payload(token)
    assert principal.client_id == case["azp"]
    assert principal.is_service_account == case["service_account"]
    assert principal.realm_roles == frozenset(claims.get("realm_access", {}).get("roles", []))
    for client, access in claims.get("resource_access", {}).items():
        assert principal.client_roles[client] == frozenset(access["roles"])


def test_every_algorithm_of_the_keyfunc_realm_passes(key_server: LocalRealm) -> None:
    cases = [c for c in CASES if c["id"].startswith("keyfunc-") and c["signature_valid"]]
    assert {case["alg"] for case in cases} == {
        "RS256",
        "RS384",
        "RS512",
        "PS256",
        "PS384",
        "PS512",
        "ES256",
        "ES384",
        "ES512",
    }
    for case in cases:
        key_server.serve_keys_document((CORPUS / case["jwks"]).read_bytes())
        token = (CORPUS / case["token"]).read_text().strip()
        assert _validator(case, key_server).validate(token).client_id == "tokendelme"


def test_keycloak_12_short_p521_coordinates_are_read(key_server: LocalRealm) -> None:
    # PyJWT refuses this key ("Coords should be 66 bytes"); Keycloak itself accepts it.
    es512 = next(c for c in CASES if c["id"].endswith("access_token_ES512"))
    jwks = json.loads((CORPUS / es512["jwks"]).read_text())
    key = next(k for k in jwks["keys"] if k.get("kid") == es512["kid"])
    assert len(base64.urlsafe_b64decode(key["x"] + "==")) == 65
    key_server.serve_keys_document(jwks)
    token = (CORPUS / es512["token"]).read_text().strip()
    assert _validator(es512, key_server).validate(token).is_service_account
