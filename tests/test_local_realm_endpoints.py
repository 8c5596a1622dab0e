"""LocalRealm's Keycloak endpoints beyond certs and token: the realm page, discovery, token
introspection (RFC 7662), revocation (RFC 7009), userinfo, and CORS for a client's Web Origins.
Over real HTTP with httpx; keys are checked with ``cryptography`` directly.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization

from keycloak_m2m.testing import LocalRealm

from .support import TLS, SharedRealm

SECRET = "s3cret-value"
UI = "http://ui.example:3000"


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10, verify=TLS) as client:
        yield client


def realm_with_clients() -> LocalRealm:
    realm = LocalRealm().start()
    realm.add_client("svc", SECRET)
    realm.add_client("caller", SECRET, web_origins=[UI])
    return realm


@pytest.fixture(scope="module")
def shared() -> Iterator[SharedRealm]:
    with SharedRealm(realm_with_clients) as shared:
        yield shared


@pytest.fixture
def realm(shared: SharedRealm) -> Iterator[LocalRealm]:
    """ "svc" is a resource server that introspects; "caller" gets tokens from a browser page.
    One realm for the module (see SharedRealm): the tests revoke only tokens they got."""
    with shared.lent() as realm:
        yield realm


def get_token(realm: LocalRealm, http: httpx.Client, client_id: str = "caller", **form: str) -> str:
    data = {"grant_type": "client_credentials", **form}
    response = http.post(realm.token_url, data=data, auth=(client_id, SECRET))
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


def introspect(realm: LocalRealm, http: httpx.Client, token: str, **form: str) -> httpx.Response:
    return http.post(realm.introspection_url, data={"token": token, **form}, auth=("svc", SECRET))


def spki(realm: LocalRealm, kid: str) -> bytes:
    return (
        realm.private_key(kid)
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )


def userinfo(realm: LocalRealm, http: httpx.Client, token: str) -> httpx.Response:
    return http.get(realm.userinfo_url, headers={"Authorization": f"Bearer {token}"})


def revoke(realm: LocalRealm, http: httpx.Client, token: str, **form: str) -> httpx.Response:
    return http.post(realm.revocation_url, data={"token": token, **form}, auth=("caller", SECRET))


def assert_oauth_error(response: httpx.Response, status: int, error: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"] == error
    description: str = body["error_description"]
    return description


# ---------------------------------------------------------------------------------------------
# The realm page and discovery


def test_realm_page_is_keycloaks(realm: LocalRealm, http: httpx.Client) -> None:
    response = http.get(realm.issuer)

    assert response.status_code == 200
    page = response.json()
    assert list(page) == [
        "realm",
        "public_key",
        "token-service",
        "account-service",
        "tokens-not-before",
    ]
    assert page["realm"] == "test"
    assert page["token-service"] == realm.issuer + "/protocol/openid-connect"
    assert page["account-service"] == realm.issuer + "/account"
    assert page["tokens-not-before"] == 0
    assert base64.b64decode(page["public_key"]) == spki(realm, realm.active_kid)


def test_realm_page_has_no_public_key_without_an_rs256_key(http: httpx.Client) -> None:
    with LocalRealm(algorithm="ES256") as realm:
        page = http.get(realm.issuer).json()
        assert "public_key" not in page
        rsa_kid = realm.rotate_keys(algorithm="RS256")
        realm.rotate_keys(algorithm="ES256")  # the RS256 key is passive now, still published
        page = http.get(realm.issuer).json()
    assert base64.b64decode(page["public_key"]) == spki(realm, rsa_kid)


def test_discovery_lists_exactly_the_endpoints_that_answer(
    realm: LocalRealm, http: httpx.Client
) -> None:
    document = http.get(realm.discovery_url).json()
    endpoints = {
        name: url for name, url in document.items() if name.endswith(("_endpoint", "_uri"))
    }

    assert endpoints == {
        "token_endpoint": realm.token_url,
        "introspection_endpoint": realm.introspection_url,
        "userinfo_endpoint": realm.userinfo_url,
        "jwks_uri": realm.jwks_url,
        "revocation_endpoint": realm.revocation_url,
    }
    token = get_token(realm, http)
    statuses = {
        "token_endpoint": http.post(
            realm.token_url, data={"grant_type": "client_credentials"}, auth=("svc", SECRET)
        ).status_code,
        "introspection_endpoint": introspect(realm, http, token).status_code,
        # 403: the token lacks the openid scope, and userinfo says so.
        "userinfo_endpoint": userinfo(realm, http, token).status_code,
        "jwks_uri": http.get(realm.jwks_url).status_code,
        "revocation_endpoint": revoke(realm, http, token).status_code,
    }
    assert statuses == {name: 403 if name == "userinfo_endpoint" else 200 for name in endpoints}
    for methods in ("token_endpoint", "introspection_endpoint", "revocation_endpoint"):
        assert document[methods.replace("endpoint", "endpoint_auth_methods_supported")] == [
            "client_secret_basic",
            "client_secret_post",
            "private_key_jwt",
        ]


def test_discovery_scopes_include_every_client_scope(
    local_realm: LocalRealm, http: httpx.Client
) -> None:
    local_realm.add_client("svc", SECRET, default_scopes=["orders:read"], optional_scopes=["x"])
    scopes = http.get(local_realm.discovery_url).json()["scopes_supported"]
    assert scopes[0] == "openid"
    assert {"orders:read", "x", "profile", "email", "roles", "offline_access"} <= set(scopes)
    assert len(scopes) == len(set(scopes))


# ---------------------------------------------------------------------------------------------
# Introspection


def test_introspection_of_an_active_token(realm: LocalRealm, http: httpx.Client) -> None:
    token = get_token(realm, http)

    response = introspect(realm, http, token)

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    answer = response.json()
    claims = realm.token_claims("caller")
    assert list(answer) == [*claims, "username", "token_type", "active"]
    assert answer["client_id"] == "caller"
    assert answer["username"] == "service-account-caller"
    assert answer["token_type"] == "Bearer"
    assert answer["active"] is True


def test_introspection_with_client_secret_post(realm: LocalRealm, http: httpx.Client) -> None:
    token = get_token(realm, http)
    form = {"token": token, "client_id": "svc", "client_secret": SECRET}
    assert http.post(realm.introspection_url, data=form).json()["active"] is True


def test_dpop_bound_tokens_introspect_as_dpop(realm: LocalRealm, http: httpx.Client) -> None:
    token = realm.mint("caller", claims={"typ": "DPoP", "cnf": {"jkt": "abc"}})
    answer = introspect(realm, http, token).json()
    assert answer["token_type"] == "DPoP"
    assert answer["cnf"] == {"jkt": "abc"}


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda realm: realm.mint("caller", expires_in=-1), id="expired"),
        pytest.param(lambda realm: realm.mint("caller", claims={"typ": "ID"}), id="id-token"),
        pytest.param(lambda realm: realm.mint("caller", claims={"iss": "x"}), id="other-issuer"),
        pytest.param(lambda realm: realm.mint(), id="unknown-client"),
        pytest.param(lambda realm: realm.mint("caller", alg="RS512"), id="wrong-alg"),
        pytest.param(lambda realm: realm.mint("caller", kid=realm.encryption_kid), id="enc-key"),
        pytest.param(lambda realm: "not-a-token", id="garbage"),
        pytest.param(lambda realm: realm.mint("caller", signature=b"\0" * 256), id="forged"),
    ],
)
def test_introspection_says_inactive(realm: LocalRealm, http: httpx.Client, make: Any) -> None:
    response = introspect(realm, http, make(realm))
    assert response.status_code == 200
    assert response.json() == {"active": False}


def test_introspection_needs_client_authentication(realm: LocalRealm, http: httpx.Client) -> None:
    token = get_token(realm, http)
    anonymous = http.post(realm.introspection_url, data={"token": token})
    wrong = http.post(realm.introspection_url, data={"token": token}, auth=("svc", "wrong"))

    assert_oauth_error(anonymous, 401, "invalid_client")
    assert_oauth_error(wrong, 401, "invalid_client")
    assert token not in anonymous.text + wrong.text


def test_introspection_request_errors(realm: LocalRealm, http: httpx.Client) -> None:
    no_token = http.post(realm.introspection_url, data={}, auth=("svc", SECRET))
    assert assert_oauth_error(no_token, 400, "invalid_request") == "Token not provided."
    token = get_token(realm, http)
    odd_hint = introspect(realm, http, token, token_type_hint="id_token")
    assert assert_oauth_error(odd_hint, 400, "invalid_request") == "Unsupported token type."
    assert introspect(realm, http, token, token_type_hint="refresh_token").json() == {
        "active": False
    }
    assert http.get(realm.introspection_url).status_code == 405


def test_introspection_faults_and_counts(realm: LocalRealm, http: httpx.Client) -> None:
    token = get_token(realm, http)
    realm.fail_introspection(503)
    assert introspect(realm, http, token).status_code == 503
    realm.heal_introspection()
    realm.slow_introspection(0.05)
    assert introspect(realm, http, token).json()["active"] is True
    realm.heal_introspection()
    assert realm.request_count("introspect") == 2


# ---------------------------------------------------------------------------------------------
# Revocation


def test_revocation_makes_the_token_inactive(realm: LocalRealm, http: httpx.Client) -> None:
    token = get_token(realm, http)

    response = revoke(realm, http, token, token_type_hint="access_token")

    assert response.status_code == 200
    assert response.content == b""
    assert introspect(realm, http, token).json() == {"active": False}
    assert realm.request_count("revoke") == 1


def test_revoking_an_invalid_token_is_not_an_error(realm: LocalRealm, http: httpx.Client) -> None:
    # RFC 7009 2.2: invalid tokens do not cause an error response.
    for token in ("not-a-token", realm.mint("caller", expires_in=-5)):
        assert revoke(realm, http, token).status_code == 200


def test_revocation_refuses_another_clients_token(realm: LocalRealm, http: httpx.Client) -> None:
    token = get_token(realm, http, "svc")
    description = assert_oauth_error(revoke(realm, http, token), 400, "invalid_request")
    assert description == "Unmatching clients"
    assert introspect(realm, http, token).json()["active"] is True


def test_revocation_request_errors(realm: LocalRealm, http: httpx.Client) -> None:
    token = get_token(realm, http)
    assert_oauth_error(
        revoke(realm, http, token, token_type_hint="id"), 400, "unsupported_token_type"
    )
    missing = http.post(realm.revocation_url, data={}, auth=("caller", SECRET))
    assert_oauth_error(missing, 400, "invalid_request")
    anonymous = http.post(realm.revocation_url, data={"token": token})
    assert_oauth_error(anonymous, 401, "invalid_client")


# ---------------------------------------------------------------------------------------------
# Userinfo


def test_userinfo_of_a_service_account(realm: LocalRealm, http: httpx.Client) -> None:
    token = get_token(realm, http, scope="openid")
    claims = realm.token_claims("caller")

    for response in (
        http.get(realm.userinfo_url, headers={"Authorization": f"Bearer {token}"}),
        http.post(realm.userinfo_url, data={"access_token": token}),
    ):
        assert response.status_code == 200
        assert response.json() == {
            "sub": claims["sub"],
            "email_verified": False,
            "preferred_username": "service-account-caller",
        }


def test_userinfo_needs_the_openid_scope(realm: LocalRealm, http: httpx.Client) -> None:
    response = userinfo(realm, http, get_token(realm, http))
    assert assert_oauth_error(response, 403, "insufficient_scope") == "Missing openid scope"
    assert response.headers["www-authenticate"] == (
        'Bearer realm="test", error="insufficient_scope", error_description="Missing openid scope"'
    )


def test_userinfo_before_keycloak_19_needs_no_openid(http: httpx.Client) -> None:
    with LocalRealm(keycloak_version=18) as realm:
        realm.add_client("svc", SECRET)
        assert userinfo(realm, http, get_token(realm, http, "svc")).status_code == 200


def test_userinfo_refuses_inactive_tokens(realm: LocalRealm, http: httpx.Client) -> None:
    revoked = get_token(realm, http, scope="openid")
    realm.revoke(revoked)
    for token in (revoked, realm.mint("caller", claims={"scope": "openid"}, expires_in=-1)):
        response = userinfo(realm, http, token)
        assert assert_oauth_error(response, 401, "invalid_token") == "Token verification failed"
        assert response.headers["www-authenticate"].startswith('Bearer realm="test", error=')
    missing = http.get(realm.userinfo_url)
    assert assert_oauth_error(missing, 400, "invalid_request") == "Token not provided"


# ---------------------------------------------------------------------------------------------
# CORS


def cors_headers(response: httpx.Response) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k.startswith("access-control-")}


@pytest.mark.parametrize("url", ["token_url", "introspection_url", "revocation_url"])
def test_preflight_is_answered_for_any_origin(
    realm: LocalRealm, http: httpx.Client, url: str
) -> None:
    # Keycloak cannot know the client at preflight time; the actual answer decides.
    response = http.options(
        getattr(realm, url),
        headers={"Origin": "http://anywhere.example", "Access-Control-Request-Method": "POST"},
    )
    assert response.status_code == 200
    assert cors_headers(response) == {
        "access-control-allow-origin": "http://anywhere.example",
        "access-control-allow-methods": "POST, OPTIONS",
        "access-control-allow-credentials": "true",
        "access-control-allow-headers": (
            "Origin, Accept, X-Requested-With, Content-Type, Access-Control-Request-Method, "
            "Access-Control-Request-Headers, Authorization"
        ),
        "access-control-max-age": "3600",
    }
    assert cors_headers(http.options(getattr(realm, url))) == {}


def test_token_answer_is_readable_only_by_listed_origins(
    realm: LocalRealm, http: httpx.Client
) -> None:
    form = {"grant_type": "client_credentials"}

    def from_origin(origin: str, client_id: str = "caller") -> httpx.Response:
        return http.post(
            realm.token_url, data=form, auth=(client_id, SECRET), headers={"Origin": origin}
        )

    listed = from_origin(UI)
    assert listed.status_code == 200
    assert cors_headers(listed) == {
        "access-control-allow-origin": UI,
        "access-control-allow-credentials": "true",
    }
    assert cors_headers(from_origin("http://evil.example")) == {}
    assert cors_headers(from_origin(UI, "svc")) == {}  # svc has no Web Origins
    assert cors_headers(http.post(realm.token_url, data=form, auth=("caller", SECRET))) == {}


def test_errors_and_cors(realm: LocalRealm, http: httpx.Client) -> None:
    origin = {"Origin": "http://evil.example"}
    # A failed client authentication is readable from anywhere, as Keycloak answers it.
    refused = http.post(
        realm.token_url,
        data={"grant_type": "client_credentials"},
        auth=("caller", "x"),
        headers=origin,
    )
    assert refused.status_code == 401
    assert refused.headers["access-control-allow-origin"] == "http://evil.example"
    # After authentication the client's Web Origins apply, to errors too.
    bad_scope = {"grant_type": "client_credentials", "scope": "admin"}
    for headers, readable in (({"Origin": UI}, True), (origin, False)):
        response = http.post(
            realm.token_url, data=bad_scope, auth=("caller", SECRET), headers=headers
        )
        assert response.status_code == 400
        assert ("access-control-allow-origin" in response.headers) is readable


@pytest.mark.parametrize(
    ("web_origins", "redirect_uris", "origin", "readable"),
    [
        (["*"], [], "http://anything.example", True),
        (["+"], ["http://app.example:8000/callback/*"], "http://app.example:8000", True),
        (["+"], ["http://app.example:8000/callback/*"], "http://app.example", False),
        (["+"], ["/relative/*"], "http://127.0.0.1", False),
        (["https://a.example"], [], "https://a.example", True),
        (["https://a.example"], [], "http://a.example", False),
    ],
)
def test_web_origins_as_keycloak_reads_them(
    local_realm: LocalRealm,
    http: httpx.Client,
    web_origins: list[str],
    redirect_uris: list[str],
    origin: str,
    readable: bool,
) -> None:
    local_realm.add_client("ui", SECRET, web_origins=web_origins, redirect_uris=redirect_uris)
    response = http.post(
        local_realm.token_url,
        data={"grant_type": "client_credentials"},
        auth=("ui", SECRET),
        headers={"Origin": origin},
    )
    assert response.status_code == 200
    assert response.headers.get("access-control-allow-origin") == (origin if readable else None)


def test_introspection_cors_follows_the_introspecting_client(
    realm: LocalRealm, http: httpx.Client
) -> None:
    token = get_token(realm, http)
    for client_id, readable in (("caller", True), ("svc", False)):
        response = http.post(
            realm.introspection_url,
            data={"token": token},
            auth=(client_id, SECRET),
            headers={"Origin": UI},
        )
        assert response.json()["active"] is True
        assert ("access-control-allow-origin" in response.headers) is readable


@pytest.mark.parametrize("url", ["discovery_url", "jwks_url", "issuer"])
def test_public_documents_are_readable_from_any_origin(
    realm: LocalRealm, http: httpx.Client, url: str
) -> None:
    # A browser page discovers the realm and fetches its keys, whatever its origin.
    origin = {"Origin": "http://anywhere.example"}
    response = http.get(getattr(realm, url), headers=origin)
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "http://anywhere.example"
    preflight = http.options(getattr(realm, url), headers=origin)
    assert preflight.headers["access-control-allow-methods"] == "GET, OPTIONS"
    assert "access-control-allow-origin" not in http.get(getattr(realm, url)).headers
