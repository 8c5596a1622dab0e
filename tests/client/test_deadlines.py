"""Token requests against a hostile or slow endpoint: ``timeout`` bounds each whole request (with
its thread and socket), and callers cancelled while a request is in flight neither abort it for
the others nor make it again."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest

from keycloak_m2m import ClientCredentials, TokenRequestError
from keycloak_m2m.testing import LocalRealm

from ..faults.support import DrippingServer, threads_end
from ..support import CLIENT
from .conftest import SECRET, MakeCredentials

TIMEOUT = 0.5
TOKEN_PATH = "/realms/shop/protocol/openid-connect/token"


def dripping_credentials(server: DrippingServer, **options: float) -> ClientCredentials:
    return ClientCredentials(
        CLIENT, SECRET, token_url=server.url(TOKEN_PATH), timeout=TIMEOUT, **options
    )


def check_everything_ended(server: DrippingServer, threads: set[threading.Thread]) -> None:
    """Each exchange ended by the client, before the server's limit: a client that never gives
    up meets that limit instead; and no thread of the request lives on."""
    server.wait_for_ends()
    assert all(exchange.by_client for exchange in server.exchanges), (
        "a socket outlived the deadline"
    )
    assert threads_end(threads, waiting_at_most=server.limit), "a thread outlived the deadline"


# --- headers dripping for ever --------------------------------------------------------------------


def test_get_token_ends_at_the_deadline_with_its_thread_and_socket() -> None:
    with DrippingServer() as server:
        credentials = dripping_credentials(server, max_retries=0)
        threads = set(threading.enumerate())
        with pytest.raises(TokenRequestError, match="TimeoutException"):
            credentials.get_token()
        check_everything_ended(server, threads)
        assert len(server.exchanges) == 1


async def test_get_token_async_ends_at_the_deadline_with_its_socket() -> None:
    with DrippingServer() as server:
        credentials = dripping_credentials(server, max_retries=0)
        threads = set(threading.enumerate())
        with pytest.raises(TokenRequestError, match="TimeoutException"):
            await credentials.get_token_async()
        check_everything_ended(server, threads)


def test_each_retry_has_its_own_deadline() -> None:
    with DrippingServer() as server:
        credentials = dripping_credentials(server, max_retries=1, backoff=0.01, max_backoff=0.01)
        threads = set(threading.enumerate())
        with pytest.raises(TokenRequestError, match="after 2 attempts"):
            credentials.get_token()
        check_everything_ended(server, threads)
        assert len(server.exchanges) == 2


def test_callers_queued_behind_a_dripping_request_are_not_held_past_its_deadline() -> None:
    """The lock is held for one bounded request; the queued callers share its failure rather
    than wait for requests of their own (or for a request that never ends)."""
    with DrippingServer() as server:
        credentials = dripping_credentials(server, max_retries=0)

        def failure(_: int) -> str:
            with pytest.raises(TokenRequestError) as raised:
                credentials.get_token()
            return str(raised.value)

        with ThreadPoolExecutor(10) as pool:
            failures = list(pool.map(failure, range(10)))
        assert len(failures) == 10
        assert all("TimeoutException" in message for message in failures)
        [exchange] = server.exchanges
        server.wait_for_ends()
        assert exchange.by_client


# --- callers cancelled while a request is in flight ---------------------------------------------


async def until(condition: Callable[[], bool], within: float) -> None:
    """Wait for ``condition``, at most ``within`` seconds; the test's assertions judge the rest."""
    deadline = time.monotonic() + within
    while not condition() and time.monotonic() < deadline:
        await asyncio.sleep(0.005)


async def test_six_callers_cancelled_during_the_request_make_one_token_request(
    realm: LocalRealm, make_credentials: MakeCredentials
) -> None:
    # Every cancellation below happens while the one request is in flight: the loop pauses up to
    # 0.1 s per caller, 0.6 s in all; the delay is five times that, for a loaded machine.
    realm.slow_token(3.0)
    credentials = make_credentials()
    for number in range(1, 7):
        task = asyncio.create_task(credentials.get_token_async())
        await until(lambda n=number: realm.request_count("token") >= n, within=0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    # The request ran on, and its token serves the next callers: no request of their own.
    tokens = await asyncio.gather(*(credentials.get_token_async() for _ in range(10)))
    assert len(set(tokens)) == 1
    assert credentials.get_token() == tokens[0]
    assert realm.request_count("token") == 1
