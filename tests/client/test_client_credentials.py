"""ClientCredentials against the local realm over real HTTP: caching, renewal, sharing, failures."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import parse_qs, quote, quote_plus, unquote_plus

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from keycloak_m2m._client import ClientCredentials, TokenRequestError
from keycloak_m2m.testing import LocalRealm
from keycloak_m2m.testing._server import HttpServer, Request, Response

from ..support import CLIENT, FakeClock
from .conftest import FAST_RETRIES, SECRET, MakeCredentials

ENVIRONMENT = ("KEYCLOAK_URL", "KEYCLOAK_REALM", "KEYCLOAK_CLIENT_ID", "KEYCLOAK_CLIENT_SECRET")


def claims_of(token: str) -> dict[str, object]:
    payload = token.split(".")[1]
    result: dict[str, object] = json.loads(base64.urlsafe_b64decode(payload + "==="))
    return result


# --- caching and renewal -----------------------------------------------------------------------


def test_a_thousand_calls_make_one_token_request(
    realm: LocalRealm, credentials: ClientCredentials
) -> None:
    tokens = {credentials.get_token() for _ in range(1000)}

    assert len(tokens) == 1
    assert realm.request_count("token") == 1
    assert claims_of(tokens.pop())["azp"] == CLIENT


async def test_a_thousand_async_calls_make_one_token_request(
    realm: LocalRealm, credentials: ClientCredentials
) -> None:
    tokens = {await credentials.get_token_async() for _ in range(1000)}

    assert len(tokens) == 1
    assert realm.request_count("token") == 1


def test_token_is_renewed_when_the_clock_passes_the_margin(
    realm: LocalRealm, credentials: ClientCredentials, clock: FakeClock
) -> None:
    first = credentials.get_token()  # lifetime 300 s, default margin 30 s: renewed at 270 s

    clock.advance(269)
    assert credentials.get_token() == first
    clock.advance(1)
    second = credentials.get_token()

    assert second != first
    assert realm.request_count("token") == 2


async def test_async_renewal_follows_the_same_policy(
    realm: LocalRealm, make_credentials: MakeCredentials, clock: FakeClock
) -> None:
    credentials = make_credentials(renewal_margin=100)
    first = await credentials.get_token_async()

    clock.advance(199)
    assert await credentials.get_token_async() == first
    clock.advance(1)

    assert await credentials.get_token_async() != first
    assert realm.request_count("token") == 2


def test_margin_is_at_most_half_the_lifetime(clock: FakeClock) -> None:
    with LocalRealm("short", token_lifetime=40, clock=clock) as realm:
        realm.add_client(CLIENT, SECRET)
        credentials = ClientCredentials(CLIENT, SECRET, token_url=realm.token_url, clock=clock)
        first = credentials.get_token()  # margin min(30, 40 / 2) = 20: renewed at 20 s

        clock.advance(19)
        assert credentials.get_token() == first
        clock.advance(1)
        assert credentials.get_token() != first
        assert realm.request_count("token") == 2


# --- concurrent first callers ------------------------------------------------------------------


def test_a_hundred_concurrent_threads_share_one_request(
    realm: LocalRealm, credentials: ClientCredentials
) -> None:
    realm.slow_token(0.2)  # every caller arrives while the first request is in flight
    start = threading.Barrier(100)

    def call() -> str:
        start.wait()
        return credentials.get_token()

    with ThreadPoolExecutor(100) as pool:
        tokens = set(pool.map(lambda _: call(), range(100)))

    assert len(tokens) == 1
    assert realm.request_count("token") == 1


async def test_a_hundred_concurrent_tasks_share_one_request(
    realm: LocalRealm, credentials: ClientCredentials
) -> None:
    realm.slow_token(0.2)

    tokens = await asyncio.gather(*(credentials.get_token_async() for _ in range(100)))

    assert len(set(tokens)) == 1
    assert realm.request_count("token") == 1


def test_concurrent_callers_share_a_failure_too(
    realm: LocalRealm, make_credentials: MakeCredentials
) -> None:
    realm.fail_token(503, delay=0.05)
    credentials = make_credentials(max_retries=2)
    start = threading.Barrier(20)

    def call() -> TokenRequestError:
        start.wait()
        with pytest.raises(TokenRequestError) as caught:
            credentials.get_token()
        return caught.value

    with ThreadPoolExecutor(20) as pool:
        failures = list(pool.map(lambda _: call(), range(20)))

    assert {failure.status_code for failure in failures} == {503}
    assert realm.request_count("token") == 3  # one schedule of 1 + 2 retries, not twenty


# --- failures ----------------------------------------------------------------------------------


def test_wrong_secret_is_a_clear_error(
    realm: LocalRealm, make_credentials: MakeCredentials
) -> None:
    credentials = make_credentials(secret="not-the-secret")

    with pytest.raises(TokenRequestError) as caught:
        credentials.get_token()

    error = caught.value
    assert (error.status_code, error.error) == (401, "invalid_client")
    assert error.error_description == "Invalid client or Invalid client credentials"
    assert "HTTP 401 invalid_client" in str(error)
    assert CLIENT in str(error)
    assert "not-the-secret" not in str(error) + repr(error)
    assert realm.request_count("token") == 1  # a 4xx is not retried


async def test_wrong_secret_async(realm: LocalRealm, make_credentials: MakeCredentials) -> None:
    credentials = make_credentials(secret="not-the-secret")

    with pytest.raises(TokenRequestError) as caught:
        await credentials.get_token_async()

    assert (caught.value.status_code, caught.value.error) == (401, "invalid_client")


def test_failure_leaves_the_cache_as_it_was(
    realm: LocalRealm, credentials: ClientCredentials, clock: FakeClock
) -> None:
    first = credentials.get_token()
    clock.advance(280)  # past the renewal point, before expiry
    realm.fail_token(400, body=b'{"error":"invalid_request","error_description":"nope"}')

    with pytest.raises(TokenRequestError) as caught:
        credentials.get_token()
    realm.heal_token()

    assert (caught.value.error, caught.value.error_description) == ("invalid_request", "nope")
    assert credentials.get_token() != first
    assert realm.request_count("token") == 3


def test_realm_down_is_retried_then_a_clear_error(
    make_credentials: MakeCredentials, realm: LocalRealm, caplog: pytest.LogCaptureFixture
) -> None:
    credentials = make_credentials(max_retries=2)
    realm.stop()

    with caplog.at_level(logging.WARNING), pytest.raises(TokenRequestError) as caught:
        credentials.get_token()

    message = str(caught.value)
    assert "unavailable after 3 attempts: ConnectError" in message
    assert realm.token_url in message
    assert caught.value.status_code is None
    retries = [record for record in caplog.records if "retrying" in record.getMessage()]
    assert len(retries) == 2
    assert all(SECRET not in record.getMessage() for record in caplog.records)


async def test_realm_down_async(make_credentials: MakeCredentials, realm: LocalRealm) -> None:
    credentials = make_credentials(max_retries=1)
    realm.stop()

    with pytest.raises(TokenRequestError, match="unavailable after 2 attempts: ConnectError"):
        await credentials.get_token_async()


def test_backoff_is_bounded(
    make_credentials: MakeCredentials, realm: LocalRealm, caplog: pytest.LogCaptureFixture
) -> None:
    credentials = make_credentials(max_retries=6, backoff=0.01, max_backoff=0.02)
    realm.stop()

    with caplog.at_level(logging.WARNING), pytest.raises(TokenRequestError):
        credentials.get_token()

    # Uncapped, the sixth pause would be 0.16 to 0.32 s.
    pauses = [float(m) for m in re.findall(r"retrying in ([0-9.]+) s", caplog.text)]
    assert len(pauses) == 6
    assert max(pauses) <= 0.02, pauses


def test_5xx_is_retried_and_keycloak_error_surfaced(
    realm: LocalRealm, make_credentials: MakeCredentials
) -> None:
    body = b'{"error":"unknown_error","error_description":"database down"}'
    realm.fail_token(500, body=body, content_type="application/json")

    with pytest.raises(TokenRequestError) as caught:
        make_credentials(max_retries=2).get_token()

    assert realm.request_count("token") == 3
    assert caught.value.status_code == 500
    assert caught.value.error == "unknown_error"
    assert "unavailable after 3 attempts: HTTP 500" in str(caught.value)


class _HealOnRetry(logging.Handler):
    """Heals the realm when the client announces a retry: recovery without timing races."""

    def __init__(self, realm: LocalRealm) -> None:
        super().__init__()
        self._realm = realm

    def emit(self, record: logging.LogRecord) -> None:
        self._realm.heal_token()


def test_a_transient_5xx_recovers(realm: LocalRealm, credentials: ClientCredentials) -> None:
    realm.fail_token(502)
    logger = logging.getLogger("keycloak_m2m._client")
    handler = _HealOnRetry(realm)
    logger.addHandler(handler)
    try:
        token = credentials.get_token()
    finally:
        logger.removeHandler(handler)

    assert claims_of(token)["azp"] == CLIENT
    assert realm.request_count("token") == 2


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"<html>Welcome to our proxy</html>", "the body is not a JSON object"),
        (b'["access_token"]', "the body is not a JSON object"),
        (b'{"expires_in": 300, "token_type": "Bearer"}', "no valid access_token"),
        (b'{"access_token": "a b", "expires_in": 300, "token_type": "Bearer"}', "access_token"),
        (b'{"access_token": "abc", "expires_in": -1, "token_type": "Bearer"}', "expires_in"),
        (b'{"access_token": "abc", "expires_in": true, "token_type": "Bearer"}', "expires_in"),
        (b'{"access_token": "abc", "expires_in": 300, "token_type": "mac"}', "not Bearer"),
    ],
)
def test_garbage_response_is_a_clear_error(
    realm: LocalRealm, credentials: ClientCredentials, body: bytes, reason: str
) -> None:
    realm.fail_token(200, body=body, content_type="application/json")

    with pytest.raises(TokenRequestError, match="HTTP 200 without a usable token") as caught:
        credentials.get_token()

    assert reason in str(caught.value)
    assert caught.value.status_code == 200
    assert realm.request_count("token") == 1  # not retried: a misconfiguration, not a blip


def test_garbage_error_body(realm: LocalRealm, credentials: ClientCredentials) -> None:
    realm.fail_token(404, body=b"<html>not here</html>", content_type="text/html")

    with pytest.raises(TokenRequestError) as caught:
        credentials.get_token()

    assert (caught.value.status_code, caught.value.error) == (404, None)
    assert str(caught.value).endswith("token request refused: HTTP 404")


def test_redirect_is_not_followed(realm: LocalRealm, make_credentials: MakeCredentials) -> None:
    redirect = Response(307, b"", None, (("Location", realm.token_url),))
    server = HttpServer(lambda request: redirect)
    try:
        credentials = make_credentials(token_url=f"http://127.0.0.1:{server.port}/token")
        with pytest.raises(TokenRequestError, match="refused: HTTP 307"):
            credentials.get_token()
    finally:
        server.close()

    assert realm.request_count("token") == 0


# --- the two client authentication methods, URLs -----------------------------------------------


@pytest.mark.parametrize("auth_method", ["client_secret_basic", "client_secret_post"])
def test_both_client_authentication_methods(
    make_credentials: MakeCredentials, auth_method: str
) -> None:
    token = make_credentials(auth_method=auth_method).get_token()
    assert claims_of(token)["azp"] == CLIENT


def test_special_characters_in_basic_credentials(clock: FakeClock) -> None:
    with LocalRealm("odd", clock=clock) as realm:
        realm.add_client("odd:id", "p@ss w+rd:%")
        credentials = ClientCredentials("odd:id", "p@ss w+rd:%", token_url=realm.token_url)
        assert claims_of(credentials.get_token())["azp"] == "odd:id"


def test_keycloak_url_and_realm(realm: LocalRealm, make_credentials: MakeCredentials) -> None:
    credentials = make_credentials(keycloak_url=realm.base_url + "/", realm="shop")
    assert credentials.token_url == realm.token_url
    assert claims_of(credentials.get_token())["iss"] == realm.issuer


def test_legacy_auth_prefix(clock: FakeClock) -> None:
    with LocalRealm("old", legacy_auth_prefix=True, clock=clock) as realm:
        realm.add_client(CLIENT, SECRET)
        credentials = ClientCredentials(
            CLIENT, SECRET, keycloak_url=realm.base_url, realm="old", legacy_auth_prefix=True
        )
        assert credentials.token_url == realm.token_url
        assert "/auth/realms/old/" in credentials.token_url
        assert claims_of(credentials.get_token())["azp"] == CLIENT


def test_scopes_are_requested(clock: FakeClock) -> None:
    with LocalRealm("scoped", clock=clock) as realm:
        realm.add_client(CLIENT, SECRET, scopes=["orders:read", "orders:write", "profile"])
        credentials = ClientCredentials(
            CLIENT, SECRET, token_url=realm.token_url, scopes=["orders:read"]
        )
        assert claims_of(credentials.get_token())["scope"] == "orders:read"

        unknown = ClientCredentials(CLIENT, SECRET, token_url=realm.token_url, scopes="admin")
        with pytest.raises(TokenRequestError) as caught:
            unknown.get_token()
        assert caught.value.error == "invalid_scope"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({}, "give token_url, or keycloak_url and realm"),
        ({"keycloak_url": "http://kc"}, "give token_url, or keycloak_url and realm"),
        ({"token_url": "http://kc/t", "realm": "r"}, "not both"),
        ({"token_url": "kc/token"}, "token_url must be an absolute http(s) URL"),
        ({"token_url": "http://kc/t", "auth_method": "private_key_jwt"}, "auth_method"),
        ({"token_url": "http://kc/t", "scopes": ["a b"]}, "scopes"),
        ({"token_url": "http://kc/t", "max_retries": -1}, "max_retries"),
        ({"token_url": "http://kc/t", "timeout": 0}, "timeout"),
        ({"token_url": "http://kc/t", "backoff": 2, "max_backoff": 1}, "max_backoff"),
    ],
)
def test_configuration_errors(options: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)) as caught:
        ClientCredentials(CLIENT, "a-secret-value", **options)  # type: ignore[arg-type]
    assert "a-secret-value" not in str(caught.value)


def test_empty_secret_is_refused() -> None:
    with pytest.raises(ValueError, match="client_secret must be a non-empty string"):
        ClientCredentials(CLIENT, "", token_url="http://kc/token")


# --- from_env ----------------------------------------------------------------------------------


def test_from_env(realm: LocalRealm, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEYCLOAK_URL", realm.base_url)
    monkeypatch.setenv("KEYCLOAK_REALM", "shop")
    monkeypatch.setenv("KEYCLOAK_CLIENT_ID", CLIENT)
    monkeypatch.setenv("KEYCLOAK_CLIENT_SECRET", SECRET)
    monkeypatch.setenv("KEYCLOAK_SCOPES", "email, profile")

    credentials = ClientCredentials.from_env(**FAST_RETRIES)

    assert credentials.token_url == realm.token_url
    assert claims_of(credentials.get_token())["scope"] == "profile email"


def test_from_env_names_every_missing_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("KEYCLOAK_REALM", "shop")
    monkeypatch.setenv("KEYCLOAK_CLIENT_SECRET", "")  # empty counts as missing

    expected = (
        "missing environment variables: KEYCLOAK_URL, KEYCLOAK_CLIENT_ID, KEYCLOAK_CLIENT_SECRET"
    )
    with pytest.raises(ValueError, match=f"^{re.escape(expected)}$"):
        ClientCredentials.from_env()


# --- the secret stays secret -------------------------------------------------------------------


def test_secret_is_not_in_repr(credentials: ClientCredentials) -> None:
    assert SECRET not in repr(credentials)
    assert SECRET not in repr(vars(credentials))
    assert repr(credentials).startswith("ClientCredentials(client_id='shop-api', token_url=")


def test_secret_echoed_by_the_server_is_redacted(
    realm: LocalRealm, make_credentials: MakeCredentials
) -> None:
    echo = json.dumps({"error": "invalid_client", "error_description": f"bad secret {SECRET}"})
    realm.fail_token(401, body=echo.encode(), content_type="application/json")

    with pytest.raises(TokenRequestError) as caught:
        make_credentials(auth_method="client_secret_post").get_token()

    assert SECRET not in str(caught.value)
    assert caught.value.error_description == "bad secret [redacted]"


def test_token_and_secret_never_logged(
    realm: LocalRealm, credentials: ClientCredentials, caplog: pytest.LogCaptureFixture
) -> None:
    realm.fail_token(503)
    with caplog.at_level(logging.DEBUG, logger="keycloak_m2m"), pytest.raises(TokenRequestError):
        credentials.get_token()
    realm.heal_token()
    with caplog.at_level(logging.DEBUG, logger="keycloak_m2m"):
        token = credentials.get_token()

    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "retrying" in logged
    assert "obtained" in logged
    assert SECRET not in logged
    assert token not in logged


# --- a token endpoint that echoes the request -----------------------------------------------------

ODD_SECRET = "s3cr+t/ é~&=%:ü"  # every character that an encoding changes


def echoing_endpoint(status: int, bodies: list[str] | None = None) -> HttpServer:
    """Refuses every token request, echoing back in ``error`` and ``error_description`` what it
    received: the form as sent, the Basic credentials, and both decoded. Each body received is
    added to ``bodies``."""

    def handle(request: Request) -> Response:
        if bodies is not None:
            bodies.append(request.body.decode())
        authorization = request.headers.get("authorization", "")
        pair = (
            base64.b64decode(authorization.removeprefix("Basic ")).decode() if authorization else ""
        )
        body = request.body.decode()
        echo = f"got {authorization} ({pair}) {body} ({unquote_plus(body)})"
        answer = {"error": echo, "error_description": echo}
        return Response(status, json.dumps(answer).encode())

    return HttpServer(handle)


@pytest.mark.parametrize("auth_method", ["client_secret_basic", "client_secret_post"])
@pytest.mark.parametrize("status", [400, 503])
def test_an_echoed_secret_is_redacted_in_every_encoding(
    auth_method: str, status: int, caplog: pytest.LogCaptureFixture
) -> None:
    server = echoing_endpoint(status)
    try:
        credentials = ClientCredentials(
            CLIENT,
            ODD_SECRET,
            token_url=f"http://127.0.0.1:{server.port}/token",
            auth_method=auth_method,  # type: ignore[arg-type]
            max_retries=1,
            **FAST_RETRIES,
        )
        with caplog.at_level(logging.DEBUG), pytest.raises(TokenRequestError) as caught:
            credentials.get_token()
    finally:
        server.close()

    error = caught.value
    assert error.error_description is not None
    assert error.error_description.startswith("got ")
    assert "[redacted]" in error.error_description
    pair = f"{quote_plus(CLIENT)}:{quote_plus(ODD_SECRET)}"
    forms = [
        ODD_SECRET,
        quote_plus(ODD_SECRET),
        quote(ODD_SECRET, safe=""),
        base64.b64encode(pair.encode()).decode(),
    ]
    logged = [record.getMessage() for record in caplog.records]
    for text in [str(error), repr(error), error.error, error.error_description, *logged]:
        for form in forms:
            assert form not in text, (form, text)


def test_an_echoed_subject_token_is_redacted(realm: LocalRealm, clock: FakeClock) -> None:
    server = echoing_endpoint(400)
    subject = realm.mint(CLIENT)
    try:
        credentials = ClientCredentials(
            CLIENT, SECRET, token_url=f"http://127.0.0.1:{server.port}/token", clock=clock
        )
        with pytest.raises(TokenRequestError) as caught:
            credentials.exchange(subject, audience="billing")
    finally:
        server.close()
    assert "[redacted]" in str(caught.value)
    for part in subject.split("."):
        assert part not in str(caught.value) + repr(caught.value)


@pytest.mark.parametrize("status", [400, 503])
def test_an_echoed_client_assertion_is_redacted(
    status: int, caplog: pytest.LogCaptureFixture
) -> None:
    bodies: list[str] = []
    server = echoing_endpoint(status, bodies)
    try:
        credentials = ClientCredentials(
            CLIENT,
            private_key=ec.generate_private_key(ec.SECP256R1()),
            auth_method="private_key_jwt",
            token_url=f"http://127.0.0.1:{server.port}/token",
            max_retries=1,
            **FAST_RETRIES,
        )
        with caplog.at_level(logging.DEBUG), pytest.raises(TokenRequestError) as caught:
            credentials.get_token()
    finally:
        server.close()

    error = caught.value
    assert error.error_description is not None
    assert "[redacted]" in error.error_description
    assertions = [parse_qs(body)["client_assertion"][0] for body in bodies]
    assert len(assertions) == (2 if status == 503 else 1)
    logged = [record.getMessage() for record in caplog.records]
    for text in [str(error), repr(error), error.error, error.error_description, *logged]:
        for assertion in assertions:
            for form in (assertion, quote_plus(assertion), assertion.split(".")[2]):
                assert form not in text, (form, text)
