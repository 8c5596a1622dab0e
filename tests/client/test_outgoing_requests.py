"""ClientCredentials attached to outgoing calls: httpx (sync and async) and the requests adapter,
against a small resource server that validates with TokenValidator and answers 401 on failure."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import requests

from keycloak_m2m._client import ClientCredentials
from keycloak_m2m.requests import BearerAuth
from keycloak_m2m.testing import LocalRealm

from ..support import CLIENT
from .conftest import ResourceServer

MakeServer = Callable[..., ResourceServer]


# --- httpx -------------------------------------------------------------------------------------


def test_httpx_client_attaches_the_bearer_token(
    realm: LocalRealm, credentials: ClientCredentials, make_resource_server: MakeServer
) -> None:
    server = make_resource_server()

    with httpx.Client(auth=credentials) as client:
        answers = [client.get(server.url) for _ in range(5)]

    assert [answer.status_code for answer in answers] == [200] * 5
    assert answers[0].json()["client"] == CLIENT
    assert realm.request_count("token") == 1


async def test_httpx_async_client_attaches_the_bearer_token(
    realm: LocalRealm, credentials: ClientCredentials, make_resource_server: MakeServer
) -> None:
    server = make_resource_server()

    async with httpx.AsyncClient(auth=credentials) as client:
        answers = [await client.get(server.url) for _ in range(5)]

    assert [answer.status_code for answer in answers] == [200] * 5
    assert realm.request_count("token") == 1


def test_401_after_key_rotation_renews_once_and_retries(
    realm: LocalRealm, credentials: ClientCredentials, make_resource_server: MakeServer
) -> None:
    stale = credentials.get_token()
    realm.rotate_keys(keep_old=False)  # the cached token's key is gone
    server = make_resource_server()

    with httpx.Client(auth=credentials) as client:
        answer = client.post(server.url, content=b"order 42")

    assert answer.status_code == 200
    assert answer.json()["echo"] == "order 42"  # the body went out again with the retry
    assert [response.status_code for response in answer.history] == [401]
    assert server.presented[0] == stale
    assert server.presented[1] == credentials.get_token() != stale
    assert realm.request_count("token") == 2


async def test_401_after_key_rotation_async(
    realm: LocalRealm, credentials: ClientCredentials, make_resource_server: MakeServer
) -> None:
    await credentials.get_token_async()
    realm.rotate_keys(keep_old=False)
    server = make_resource_server()

    async with httpx.AsyncClient(auth=credentials) as client:
        answer = await client.post(server.url, content=b"order 43")

    assert answer.status_code == 200
    assert answer.json()["echo"] == "order 43"
    assert realm.request_count("token") == 2


def test_a_lasting_401_is_returned_after_one_retry(
    realm: LocalRealm, credentials: ClientCredentials, make_resource_server: MakeServer
) -> None:
    server = make_resource_server(audience="billing-service")  # never in the token's audience

    with httpx.Client(auth=credentials) as client:
        answer = client.get(server.url)

    assert answer.status_code == 401
    assert len(server.presented) == 2
    assert realm.request_count("token") == 2


def test_concurrent_401s_share_one_renewal(
    realm: LocalRealm, credentials: ClientCredentials
) -> None:
    stale = credentials.get_token()

    fresh = {credentials.renew_token(stale) for _ in range(10)}

    assert len(fresh) == 1
    assert stale not in fresh
    assert realm.request_count("token") == 2


# --- requests ----------------------------------------------------------------------------------


def test_requests_adapter_attaches_the_bearer_token(
    realm: LocalRealm, credentials: ClientCredentials, make_resource_server: MakeServer
) -> None:
    server = make_resource_server()

    with requests.Session() as session:
        session.auth = BearerAuth(credentials)
        answers = [session.get(server.url, timeout=5) for _ in range(3)]

    assert [answer.status_code for answer in answers] == [200] * 3
    assert answers[0].json()["client"] == CLIENT
    assert realm.request_count("token") == 1


def test_requests_adapter_retries_once_after_key_rotation(
    realm: LocalRealm, credentials: ClientCredentials, make_resource_server: MakeServer
) -> None:
    credentials.get_token()
    realm.rotate_keys(keep_old=False)
    server = make_resource_server()

    with requests.Session() as session:
        answer = session.post(server.url, data=b"order 44", auth=BearerAuth(credentials), timeout=5)

    assert answer.status_code == 200
    assert answer.json()["echo"] == "order 44"
    assert [response.status_code for response in answer.history] == [401]
    assert realm.request_count("token") == 2


def test_requests_adapter_returns_a_lasting_401(
    realm: LocalRealm, credentials: ClientCredentials, make_resource_server: MakeServer
) -> None:
    server = make_resource_server(audience="billing-service")

    with requests.Session() as session:
        answer = session.get(server.url, auth=BearerAuth(credentials), timeout=5)

    assert answer.status_code == 401
    assert len(server.presented) == 2


def test_requests_adapter_repr_hides_the_secret(credentials: ClientCredentials) -> None:
    assert "secret" not in repr(BearerAuth(credentials)).lower()
