"""``from_env``: the Web Echo seed's variables configure the validator and the client.

Every validator built here fetches its keys from a LocalRealm over HTTP.
"""

from __future__ import annotations

from collections.abc import Iterator

import flask
import httpx
import pytest

from keycloak_m2m import ClientCredentials, ClientNotAllowed, InvalidAudience, TokenValidator
from keycloak_m2m.flask import TokenAuth, current_principal
from keycloak_m2m.testing import LocalRealm

from ..adapters.servers import serve_wsgi
from ..support import AUDIENCE, CLIENT, TLS, add_shop_client

SECRET = "shop-api-secret"
PUBLIC_URL = "https://sso.example.com"
VARIABLES = (
    "KEYCLOAK_URL",
    "KEYCLOAK_PUBLIC_URL",
    "KEYCLOAK_REALM",
    "KEYCLOAK_AUTH_PATH",
    "KEYCLOAK_AUDIENCE",
    "KEYCLOAK_ALLOWED_CLIENTS",
    "KEYCLOAK_AZP_AS_AUDIENCE",
    "KEYCLOAK_CA_BUNDLE",
    "KEYCLOAK_CLIENT_ID",
    "KEYCLOAK_CLIENT_SECRET",
    "KEYCLOAK_SCOPES",
)


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.fixture
def realm() -> Iterator[LocalRealm]:
    with LocalRealm("shop") as realm:
        add_shop_client(realm)
        yield realm


@pytest.fixture
def seed(realm: LocalRealm, env: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """The three required variables, pointing at the realm."""
    env.setenv("KEYCLOAK_URL", realm.base_url)
    env.setenv("KEYCLOAK_REALM", "shop")
    env.setenv("KEYCLOAK_AUDIENCE", AUDIENCE)
    return env


def issued(realm: LocalRealm, client_id: str = CLIENT, secret: str = SECRET) -> str:
    return ClientCredentials(client_id, secret, token_url=realm.token_url).get_token()


def test_the_required_variables_make_a_working_validator(
    realm: LocalRealm, seed: pytest.MonkeyPatch
) -> None:
    validator = TokenValidator.from_env()

    assert validator.issuer == realm.issuer
    assert validator.jwks_url == realm.jwks_url
    assert validator.validate(issued(realm)).client_id == CLIENT


def test_audiences_are_separated_by_commas_or_spaces(seed: pytest.MonkeyPatch) -> None:
    seed.setenv("KEYCLOAK_AUDIENCE", f"billing, web-echo  {AUDIENCE},")

    assert TokenValidator.from_env().audiences == {"billing", "web-echo", AUDIENCE}


def test_the_issuer_names_the_public_url_and_keys_come_from_the_internal_one(
    realm: LocalRealm, seed: pytest.MonkeyPatch
) -> None:
    seed.setenv("KEYCLOAK_PUBLIC_URL", PUBLIC_URL + "/")
    validator = TokenValidator.from_env()
    token = realm.mint(CLIENT, claims={"iss": PUBLIC_URL + "/realms/shop"})

    assert validator.issuer == PUBLIC_URL + "/realms/shop"
    assert validator.jwks_url == realm.jwks_url
    assert validator.validate(token).issuer == PUBLIC_URL + "/realms/shop"
    assert realm.request_count("certs") == 1


def test_auth_path_serves_keycloak_before_17(env: pytest.MonkeyPatch) -> None:
    with LocalRealm("shop", legacy_auth_prefix=True) as legacy:
        add_shop_client(legacy)
        env.setenv("KEYCLOAK_URL", legacy.base_url)
        env.setenv("KEYCLOAK_REALM", "shop")
        env.setenv("KEYCLOAK_AUTH_PATH", "/auth")
        env.setenv("KEYCLOAK_AUDIENCE", AUDIENCE)
        env.setenv("KEYCLOAK_CLIENT_ID", CLIENT)
        env.setenv("KEYCLOAK_CLIENT_SECRET", SECRET)

        credentials = ClientCredentials.from_env()
        validator = TokenValidator.from_env()

        assert credentials.token_url == legacy.token_url
        assert validator.issuer == legacy.issuer == legacy.base_url + "/auth/realms/shop"
        assert validator.validate(credentials.get_token()).client_id == CLIENT


def test_allowed_clients_and_azp_as_audience(realm: LocalRealm, seed: pytest.MonkeyPatch) -> None:
    realm.add_client("web-echo", "echo-secret")  # aud: account only
    seed.setenv("KEYCLOAK_AUDIENCE", "web-echo")
    seed.setenv("KEYCLOAK_ALLOWED_CLIENTS", "web-echo other")
    seed.setenv("KEYCLOAK_AZP_AS_AUDIENCE", "TRUE")
    validator = TokenValidator.from_env()

    assert validator.validate(issued(realm, "web-echo", "echo-secret")).client_id == "web-echo"
    with pytest.raises(ClientNotAllowed):
        validator.validate(realm.mint(CLIENT, claims={"aud": "web-echo"}))


@pytest.mark.parametrize(("value", "accepted"), [("1", True), ("0", False), ("false", False)])
def test_azp_as_audience_flag_values(
    realm: LocalRealm, seed: pytest.MonkeyPatch, value: str, accepted: bool
) -> None:
    realm.add_client("web-echo", "echo-secret")
    seed.setenv("KEYCLOAK_AUDIENCE", "web-echo")
    seed.setenv("KEYCLOAK_AZP_AS_AUDIENCE", value)
    token = issued(realm, "web-echo", "echo-secret")

    validator = TokenValidator.from_env()

    if accepted:
        assert validator.validate(token).client_id == "web-echo"
    else:
        with pytest.raises(InvalidAudience):
            validator.validate(token)


def test_missing_variables_are_named_together(env: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match=r"KEYCLOAK_URL, KEYCLOAK_REALM, KEYCLOAK_AUDIENCE$"):
        TokenValidator.from_env()
    env.setenv("KEYCLOAK_REALM", "shop")
    with pytest.raises(ValueError, match=r"missing environment variables: KEYCLOAK_URL$"):
        TokenValidator.from_env(audience=AUDIENCE)  # overridden: not required


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("KEYCLOAK_URL", "keycloak:8080", "KEYCLOAK_URL must be an absolute http"),
        ("KEYCLOAK_URL", "http://kc:8080/realms/shop", "KEYCLOAK_URL .*without /realms/"),
        ("KEYCLOAK_URL", "http://kc:8080/auth/realms/", "KEYCLOAK_URL .*KEYCLOAK_REALM"),
        ("KEYCLOAK_PUBLIC_URL", "sso.example.com", "KEYCLOAK_PUBLIC_URL must be an absolute"),
        ("KEYCLOAK_AUTH_PATH", "auth", "KEYCLOAK_AUTH_PATH must be empty or a path"),
        ("KEYCLOAK_AUDIENCE", " , ", "KEYCLOAK_AUDIENCE names nothing"),
        ("KEYCLOAK_ALLOWED_CLIENTS", ",", "KEYCLOAK_ALLOWED_CLIENTS names nothing"),
        ("KEYCLOAK_AZP_AS_AUDIENCE", "yes", "KEYCLOAK_AZP_AS_AUDIENCE must be true, false"),
        ("KEYCLOAK_CA_BUNDLE", "/nonexistent/ca.pem", "KEYCLOAK_CA_BUNDLE: no file at"),
    ],
)
def test_a_malformed_variable_is_named(
    seed: pytest.MonkeyPatch, name: str, value: str, message: str
) -> None:
    seed.setenv(name, value)

    with pytest.raises(ValueError, match=message):
        TokenValidator.from_env()


def test_overrides_win(realm: LocalRealm, seed: pytest.MonkeyPatch) -> None:
    seed.setenv("KEYCLOAK_ALLOWED_CLIENTS", "nobody")
    validator = TokenValidator.from_env(allowed_clients=None, audience=["other", AUDIENCE])

    assert validator.audiences == {"other", AUDIENCE}
    assert validator.validate(issued(realm)).client_id == CLIENT


def test_client_from_env_names_a_realms_url_in_keycloak_url(
    realm: LocalRealm, env: pytest.MonkeyPatch
) -> None:
    env.setenv("KEYCLOAK_URL", realm.issuer)
    env.setenv("KEYCLOAK_REALM", "shop")
    env.setenv("KEYCLOAK_CLIENT_ID", CLIENT)
    env.setenv("KEYCLOAK_CLIENT_SECRET", SECRET)

    with pytest.raises(ValueError, match=r"KEYCLOAK_URL .*without /realms/"):
        ClientCredentials.from_env()


def test_flask_init_app_falls_back_to_the_environment(
    realm: LocalRealm, seed: pytest.MonkeyPatch
) -> None:
    app = flask.Flask(__name__)
    app.config["KEYCLOAK_M2M_LEEWAY"] = 10  # other settings still apply on top
    auth = TokenAuth()

    @app.get("/whoami")
    @auth.require(roles=["notifications:send"])
    def whoami() -> dict[str, str]:
        principal = current_principal()
        assert principal is not None
        return {"client": principal.client_id, "issuer": principal.issuer}

    auth.init_app(app)
    with serve_wsgi(app) as url:
        token = issued(realm)
        answer = httpx.get(
            url + "/whoami", headers={"Authorization": f"Bearer {token}"}, verify=TLS
        )
        refused = httpx.get(url + "/whoami", verify=TLS)

    assert answer.json() == {"client": CLIENT, "issuer": realm.issuer}
    assert refused.status_code == 401


def test_flask_init_app_without_config_or_environment_says_both(env: pytest.MonkeyPatch) -> None:
    with pytest.raises(RuntimeError, match=r"KEYCLOAK_M2M_ISSUER.*KEYCLOAK_URL, KEYCLOAK_REALM"):
        TokenAuth().init_app(flask.Flask(__name__))
