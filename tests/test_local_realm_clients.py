"""LocalRealm's clients as Keycloak has them: client scopes, the ID token, the claim layout of each
Keycloak version, lightweight tokens, disabled clients. Over real HTTP with httpx.

ID tokens are checked with PyJWT against the published JWK, not with the realm's own helpers.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator
from typing import Any

import httpx
import jwt
import pytest

from keycloak_m2m.testing import LocalRealm

from .support import TLS, SharedRealm

SECRET = "s3cret-value"


def payload_of(token: str) -> dict[str, Any]:
    segment = token.split(".")[1]
    claims: dict[str, Any] = json.loads(
        base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    )
    return claims


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10, verify=TLS) as client:
        yield client


def token_request(
    realm: LocalRealm, http: httpx.Client, client_id: str = "svc", **form: str
) -> httpx.Response:
    data = {"grant_type": "client_credentials", **form}
    return http.post(realm.token_url, data=data, auth=(client_id, SECRET))


def granted(realm: LocalRealm, http: httpx.Client, scope: str | None = None) -> str:
    """The response's scope, after checking that the access token's claim says the same."""
    form = {} if scope is None else {"scope": scope}
    response = token_request(realm, http, **form)
    assert response.status_code == 200, response.text
    body = response.json()
    assert payload_of(body["access_token"])["scope"] == body["scope"]
    value: str = body["scope"]
    return value


def introspect(realm: LocalRealm, http: httpx.Client, token: str) -> dict[str, Any]:
    response = http.post(realm.introspection_url, data={"token": token}, auth=("svc", SECRET))
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


# ---------------------------------------------------------------------------------------------
# Client scopes


@pytest.fixture(scope="module")
def shared() -> Iterator[SharedRealm]:
    with SharedRealm(lambda: LocalRealm().start()) as shared:
        yield shared


@pytest.fixture
def local_realm(shared: SharedRealm) -> Iterator[LocalRealm]:
    """The plugin's default realm, one for the module (see SharedRealm): every test adds the
    clients it asks for, and ``add_client`` replaces a client of the same id."""
    with shared.lent() as realm:
        yield realm


def test_default_scopes_are_always_granted(local_realm: LocalRealm, http: httpx.Client) -> None:
    local_realm.add_client(
        "svc", SECRET, default_scopes=["orders:read", "profile"], optional_scopes=["orders:write"]
    )

    assert granted(local_realm, http) == "orders:read profile"
    # Naming a default scope does not narrow the grant to it, unlike an OAuth server that
    # treats scope as a filter.
    assert granted(local_realm, http, "profile") == "orders:read profile"
    assert granted(local_realm, http, "orders:write") == "orders:read profile orders:write"


def test_openid_is_accepted_and_comes_first(local_realm: LocalRealm, http: httpx.Client) -> None:
    local_realm.add_client("svc", SECRET)  # Keycloak's defaults: profile and email

    assert granted(local_realm, http, "openid") == "openid profile email"
    assert granted(local_realm, http, "phone openid") == "openid profile email phone"


def test_keycloak_26_optional_scopes_by_default(
    local_realm: LocalRealm, http: httpx.Client
) -> None:
    local_realm.add_client("svc", SECRET)
    requested = "address phone offline_access microprofile-jwt organization"
    assert granted(local_realm, http, requested) == f"profile email {requested}"


@pytest.mark.parametrize("scope", ["admin", "openid admin", "profile orders:write"])
def test_scopes_the_client_does_not_have_are_invalid(
    local_realm: LocalRealm, http: httpx.Client, scope: str
) -> None:
    local_realm.add_client("svc", SECRET, default_scopes=["profile"], optional_scopes=[])

    response = token_request(local_realm, http, scope=scope)

    assert response.status_code == 400
    assert response.json() == {
        "error": "invalid_scope",
        "error_description": f"Invalid scopes: {scope}",
    }


def test_silent_default_scopes_may_be_named(local_realm: LocalRealm, http: httpx.Client) -> None:
    # roles, web-origins, acr and basic are default scopes of every Keycloak client that put
    # nothing into the scope claim.
    local_realm.add_client("svc", SECRET)
    assert granted(local_realm, http, "roles web-origins acr basic") == "profile email"


def test_scope_decides_the_profile_and_email_claims(
    local_realm: LocalRealm, http: httpx.Client
) -> None:
    local_realm.add_client("svc", SECRET, default_scopes=["orders:read"])
    claims = payload_of(token_request(local_realm, http).json()["access_token"])

    assert claims["scope"] == "orders:read"
    assert "preferred_username" not in claims
    assert "email_verified" not in claims
    assert claims["client_id"] == claims["azp"] == "svc"


def test_scopes_keeps_its_narrowing_meaning(local_realm: LocalRealm, http: httpx.Client) -> None:
    local_realm.add_client("svc", SECRET, scopes=["orders:read", "orders:write"])

    assert granted(local_realm, http) == "orders:read orders:write"
    assert granted(local_realm, http, "orders:write") == "orders:write"
    assert granted(local_realm, http, "openid") == "openid orders:read orders:write"
    assert token_request(local_realm, http, scope="profile").status_code == 400


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"scopes": ["a"], "default_scopes": ["b"]}, TypeError, "cannot be combined"),
        ({"default_scopes": ["openid"]}, ValueError, "openid is not a client scope"),
        ({"default_scopes": ["a"], "optional_scopes": ["a"]}, ValueError, "both"),
        ({"optional_scopes": ["two words"]}, ValueError, "whitespace"),
        ({"default_scopes": "profile"}, TypeError, "single string"),
        ({"web_origins": ["http://ui.example/path"]}, ValueError, "web origin"),
        ({"web_origins": ["ui.example"]}, ValueError, "web origin"),
    ],
)
def test_add_client_checks_its_arguments(
    local_realm: LocalRealm, options: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        local_realm.add_client("svc", SECRET, **options)


# ---------------------------------------------------------------------------------------------
# The ID token


def test_openid_brings_an_id_token(local_realm: LocalRealm, http: httpx.Client) -> None:
    local_realm.add_client("svc", SECRET)
    body = token_request(local_realm, http, scope="openid").json()
    access = payload_of(body["access_token"])

    assert list(body) == [
        "access_token",
        "expires_in",
        "refresh_expires_in",
        "token_type",
        "id_token",
        "not-before-policy",
        "scope",
    ]
    header = jwt.get_unverified_header(body["id_token"])
    assert header["kid"] == local_realm.active_kid
    key = jwt.PyJWK(local_realm.public_jwk(header["kid"]))
    claims = jwt.decode(
        body["id_token"], key, algorithms=["RS256"], audience="svc", issuer=local_realm.issuer
    )
    assert claims["typ"] == "ID"
    assert claims["azp"] == "svc"
    assert claims["sub"] == access["sub"]
    assert (claims["iat"], claims["exp"]) == (access["iat"], access["exp"])
    digest = hashlib.sha256(body["access_token"].encode()).digest()
    assert claims["at_hash"] == base64.urlsafe_b64encode(digest[:16]).rstrip(b"=").decode()
    assert claims["preferred_username"] == "service-account-svc"


def test_no_id_token_without_openid(local_realm: LocalRealm, http: httpx.Client) -> None:
    local_realm.add_client("svc", SECRET)
    assert "id_token" not in token_request(local_realm, http, scope="profile").json()


# ---------------------------------------------------------------------------------------------
# Keycloak versions


@pytest.mark.parametrize(
    ("version", "prefix", "client_claim", "default_role"),
    [
        (26, "", "client_id", True),
        (22, "", "client_id", True),
        (21, "", "clientId", True),
        (17, "", "clientId", True),
        (16, "/auth", "clientId", True),
        (12, "/auth", "clientId", False),
    ],
)
def test_claim_layout_follows_the_keycloak_version(
    http: httpx.Client, version: int, prefix: str, client_claim: str, default_role: bool
) -> None:
    with LocalRealm("Shop", keycloak_version=version) as realm:
        realm.add_client("svc", SECRET)
        claims = payload_of(token_request(realm, http).json()["access_token"])
        assert realm.keycloak_version == version
        assert realm.issuer == f"{realm.base_url}{prefix}/realms/Shop"
        assert http.get(realm.discovery_url).json()["issuer"] == realm.issuer

    assert claims["iss"] == realm.issuer
    assert claims[client_claim] == "svc"
    (other_claim,) = {"client_id", "clientId"} - {client_claim}
    assert other_claim not in claims
    roles = claims["realm_access"]["roles"]
    assert ("default-roles-shop" in roles) is default_role
    assert roles[-2:] == ["offline_access", "uma_authorization"]


def test_before_22_the_layout_is_the_old_one(http: httpx.Client) -> None:
    with LocalRealm(keycloak_version=21) as realm:
        realm.add_client("svc", SECRET)
        claims = payload_of(token_request(realm, http).json()["access_token"])
    # The order real Keycloak 15-21 service-account tokens have.
    assert list(claims)[-6:] == [
        "scope",
        "clientHost",
        "clientId",
        "email_verified",
        "preferred_username",
        "clientAddress",
    ]
    assert "client_id" not in claims


def test_jti_has_the_26_prefix_only_from_26(local_realm: LocalRealm) -> None:
    local_realm.add_client("svc", SECRET)
    assert payload_of(local_realm.mint("svc"))["jti"].startswith("trtcc:")
    with LocalRealm(keycloak_version=25) as older:
        assert ":" not in payload_of(older.mint())["jti"]


def test_legacy_auth_prefix_overrides_the_version(http: httpx.Client) -> None:
    with LocalRealm("r", keycloak_version=12, legacy_auth_prefix=False) as realm:
        assert realm.issuer == realm.base_url + "/realms/r"
    with LocalRealm("r", keycloak_version=26, legacy_auth_prefix=True) as realm:
        assert realm.issuer == realm.base_url + "/auth/realms/r"


@pytest.mark.parametrize("version", [0, -1, True, 26.0, "26"])
def test_keycloak_version_is_a_major_version(version: Any) -> None:
    with pytest.raises(ValueError, match="keycloak_version"):
        LocalRealm(keycloak_version=version)


# ---------------------------------------------------------------------------------------------
# Lightweight access tokens


def test_lightweight_tokens_leave_claims_to_introspection(
    local_realm: LocalRealm, http: httpx.Client
) -> None:
    local_realm.add_client(
        "svc",
        SECRET,
        realm_roles=["reports:read"],
        client_roles={"api": ["read"]},
        audience=["api"],
    )
    local_realm.add_client(
        "light",
        SECRET,
        realm_roles=["orders:place"],
        audience=["api"],
        client_roles={"api": ["write"]},
        lightweight_tokens=True,
    )

    token = token_request(local_realm, http, "light").json()["access_token"]
    claims = payload_of(token)
    answer = introspect(local_realm, http, token)

    assert list(claims) == ["exp", "iat", "jti", "iss", "sub", "typ", "azp", "scope"]
    assert answer["active"] is True
    assert answer["aud"] == ["api", "account"]
    assert "orders:place" in answer["realm_access"]["roles"]
    assert answer["resource_access"]["api"] == {"roles": ["write"]}
    assert answer["client_id"] == answer["azp"] == "light"
    assert answer["jti"] == claims["jti"]
    assert local_realm.token_claims("light")["resource_access"]["api"] == {"roles": ["write"]}


def test_minted_lightweight_tokens_introspect_in_full(
    local_realm: LocalRealm, http: httpx.Client
) -> None:
    local_realm.add_client("svc", SECRET)
    local_realm.add_client("light", SECRET, realm_roles=["x"], lightweight_tokens=True)
    token = local_realm.mint("light")

    assert "realm_access" not in payload_of(token)
    assert "x" in introspect(local_realm, http, token)["realm_access"]["roles"]


def test_lightweight_tokens_need_keycloak_24() -> None:
    realm = LocalRealm(keycloak_version=23)
    with pytest.raises(ValueError, match="24"):
        realm.add_client("light", SECRET, lightweight_tokens=True)


# ---------------------------------------------------------------------------------------------
# Disabled clients and revoked tokens


def test_disabled_client_gets_no_tokens_and_its_tokens_are_inactive(
    local_realm: LocalRealm, http: httpx.Client
) -> None:
    local_realm.add_client("svc", SECRET)
    local_realm.add_client("other", SECRET)
    token = token_request(local_realm, http, "other").json()["access_token"]
    assert introspect(local_realm, http, token)["active"] is True

    local_realm.disable_client("other")

    refused = token_request(local_realm, http, "other")
    assert refused.status_code == 401
    assert refused.json() == {
        "error": "invalid_client",
        "error_description": "Invalid client or Invalid client credentials",
    }
    assert introspect(local_realm, http, token) == {"active": False}
    assert token_request(local_realm, http).status_code == 200  # other clients go on
    with pytest.raises(KeyError):
        local_realm.disable_client("nobody")


def test_revoke_makes_one_token_inactive(local_realm: LocalRealm, http: httpx.Client) -> None:
    local_realm.add_client("svc", SECRET)
    revoked, kept = (token_request(local_realm, http).json()["access_token"] for _ in range(2))

    local_realm.revoke(revoked)

    assert introspect(local_realm, http, revoked) == {"active": False}
    assert introspect(local_realm, http, kept)["active"] is True


def test_revoke_a_token_without_jti(local_realm: LocalRealm, http: httpx.Client) -> None:
    local_realm.add_client("svc", SECRET)
    first, second = (local_realm.mint("svc", remove=["jti"], expires_in=n) for n in (60, 61))
    local_realm.revoke(first)
    assert introspect(local_realm, http, first) == {"active": False}
    assert introspect(local_realm, http, second)["active"] is True


# ---------------------------------------------------------------------------------------------
# Web origins in the token


@pytest.mark.parametrize(
    ("web_origins", "redirect_uris", "expected"),
    [
        ((), (), None),
        (("http://ui.example",), (), ["http://ui.example"]),
        (("*",), (), ["*"]),
        (("+",), ("http://ui.example:8080/cb/*", "/relative/*"), ["http://ui.example:8080"]),
        (
            ("+", "https://b.example"),
            ("https://a.example/x",),
            ["https://b.example", "https://a.example"],
        ),
    ],
)
def test_allowed_origins_claim(
    local_realm: LocalRealm,
    web_origins: tuple[str, ...],
    redirect_uris: tuple[str, ...],
    expected: list[str] | None,
) -> None:
    local_realm.add_client("svc", SECRET, web_origins=web_origins, redirect_uris=redirect_uris)
    assert local_realm.token_claims("svc").get("allowed-origins") == expected
