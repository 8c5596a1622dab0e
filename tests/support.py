"""Helpers shared by the test modules."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Any

import httpx
import pytest

from keycloak_m2m import Principal, TokenValidator
from keycloak_m2m.testing import LocalRealm

START = 1_750_000_000.0
# httpx's default TLS settings, made once per process: a client made without ``verify=`` loads
# the system CA certificates again, tens of milliseconds of CPU each time. The tests' own
# clients pass ``verify=TLS``; tests of TLS settings make theirs.
TLS = httpx.create_ssl_context()
AUDIENCE = "notification-service"
CLIENT = "shop-api"


class FakeClock:
    """A clock the test moves by hand; the realm and the validator both read it."""

    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


Validate = Callable[[TokenValidator, Any], Principal]


def validate_sync(validator: TokenValidator, token: Any) -> Principal:
    return validator.validate(token)


def validate_async(validator: TokenValidator, token: Any) -> Principal:
    return asyncio.run(validator.validate_async(token))


def asgi_messages(app: Any, scope: dict[str, Any]) -> list[dict[str, Any]]:
    """What ``app`` sends for one request with an empty body, called as a server calls it."""
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return sent


def add_shop_client(realm: LocalRealm) -> None:
    """The caller most tests use: shop-api, allowed to send notifications."""
    realm.add_client(
        CLIENT,
        "shop-api-secret",
        realm_roles=["notifications:send"],
        client_roles={AUDIENCE: ["send"]},
        audience=[AUDIENCE],
    )


class SharedRealm:
    """One realm for a whole module, replaced only when a test changed its keys.

    Starting a realm costs an RSA key generation, most of the time of a short test. Between
    tests the realm's endpoints are healed and its request counts zeroed; a test that rotated
    its keys leaves it to be stopped and the next test gets a new one from ``make``. Clients
    added by a test stay, so only modules whose tests add none (or only under names no other
    test of the module uses) opt in.
    """

    def __init__(self, make: Callable[[], LocalRealm]) -> None:
        self._make = make
        self._realm: LocalRealm | None = None
        self._kids: tuple[str, ...] = ()

    @contextmanager
    def lent(self) -> Iterator[LocalRealm]:
        """The realm for one test, healed and with zeroed counts after it."""
        if self._realm is None:
            self._realm = self._make()
            self._kids = self._realm.signing_kids
        realm = self._realm
        try:
            yield realm
        finally:
            realm.heal_keys()
            realm.heal_token()
            realm.heal_introspection()
            realm.reset_counts()
            if realm.signing_kids != self._kids:
                self.close()

    def close(self) -> None:
        realm, self._realm = self._realm, None
        if realm is not None:
            realm.stop()

    def __enter__(self) -> SharedRealm:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def shop_realm(clock: Callable[[], float]) -> LocalRealm:
    """The realm most tests use: ``shop`` with the shop-api client, started."""
    realm = LocalRealm("shop", clock=clock).start()
    add_shop_client(realm)
    return realm


def shared_realm() -> tuple[Any, Any]:
    """``clock, realm = shared_realm()`` at the top of a test module: the ``clock`` and
    ``realm`` fixtures of tests/conftest.py, but one realm for the module (see SharedRealm).
    Each test still gets the clock at START and a healed realm with zeroed counts."""

    @pytest.fixture(name="clock")
    def shared_clock(module_clock: FakeClock) -> FakeClock:
        module_clock.now = START
        return module_clock

    @pytest.fixture(name="realm")
    def realm_of_the_module(module_realm: SharedRealm, clock: FakeClock) -> Iterator[LocalRealm]:
        with module_realm.lent() as realm:
            yield realm

    return shared_clock, realm_of_the_module


# The promise of every deadline (jwks_timeout, ClientCredentials' timeout): the exchange, its
# thread and its socket end within it plus this.
GRACE = 0.5
# Ticks of a Ticker that prove an event loop ran: it ticks about every 10 ms while it runs and
# not at all while blocked, so a few suffice on a machine of any speed.
PROGRESS = 3


class Ticker:
    """Counts the 10 ms sleeps a concurrent task completes while ``during()`` holds (a fetch is
    in flight, say). Run it with ``asyncio.create_task(ticker.run())``; cancel it the moment the
    awaited work returns."""

    def __init__(self, during: Callable[[], bool] = lambda: True) -> None:
        self.ticks = 0
        self._during = during

    async def run(self) -> None:
        while True:
            await asyncio.sleep(0.01)
            if self._during():
                self.ticks += 1


# The kinds of private key a caller may hand the package to sign with (client assertions, DPoP
# proofs), by name, and the names of those it must refuse.
REFUSED_KEYS = frozenset({"RSA 1024", "secp256k1", "Ed448"})


@functools.cache
def private_keys() -> dict[str, Any]:
    """One private key of each kind, made once per test process (RSA keys are slow to make)."""
    from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

    weak_rsa = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505
    return {
        "RSA 2048": rsa.generate_private_key(public_exponent=65537, key_size=2048),
        "RSA 1024": weak_rsa,
        "P-256": ec.generate_private_key(ec.SECP256R1()),
        "P-384": ec.generate_private_key(ec.SECP384R1()),
        "P-521": ec.generate_private_key(ec.SECP521R1()),
        "secp256k1": ec.generate_private_key(ec.SECP256K1()),
        "Ed25519": ed25519.Ed25519PrivateKey.generate(),
        "Ed448": ed448.Ed448PrivateKey.generate(),
    }


def refusal(make: Callable[[], object], option: str) -> str:
    """The ValueError ``make`` raises, with ``option`` (the option the message names) written
    as ``<option>`` so that two options' refusals compare; "accepted" when it raises none."""
    try:
        make()
    except ValueError as error:
        return str(error).replace(option, "<option>")
    return "accepted"
