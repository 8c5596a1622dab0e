"""MultiIssuerValidator: two realms, each on its own LocalRealm over HTTP, in one service."""

from __future__ import annotations

import asyncio
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import httpx
import pytest

from keycloak_m2m import (
    InvalidIssuer,
    KeysUnavailable,
    MultiIssuerValidator,
    TokenValidator,
    UnknownKey,
)
from keycloak_m2m.testing import LocalRealm

from ..adapters.apps import ADAPTERS, ASGI_ADAPTERS
from ..adapters.servers import serve_asgi, serve_wsgi
from ..support import AUDIENCE, CLIENT, TLS, FakeClock, Validate, add_shop_client
from .servers import one_keycloak


@pytest.fixture
def shop() -> Iterator[LocalRealm]:
    with LocalRealm("shop") as realm:
        add_shop_client(realm)
        yield realm


@pytest.fixture
def billing() -> Iterator[LocalRealm]:
    with LocalRealm("billing") as realm:
        add_shop_client(realm)
        yield realm


@pytest.fixture
def multi(shop: LocalRealm, billing: LocalRealm) -> MultiIssuerValidator:
    return MultiIssuerValidator(
        [TokenValidator(shop.issuer, AUDIENCE), TokenValidator(billing.issuer, AUDIENCE)]
    )


def random_kid_token(realm: LocalRealm) -> str:
    return realm.mint(
        CLIENT, kid=secrets.token_urlsafe(8), signing_key=realm.private_key(realm.active_kid)
    )


def test_each_realms_tokens_pass_and_name_their_realm(
    multi: MultiIssuerValidator, shop: LocalRealm, billing: LocalRealm, validate: Validate
) -> None:
    from_shop = validate(multi, shop.mint(CLIENT))  # type: ignore[arg-type]
    from_billing = validate(multi, billing.mint(CLIENT))  # type: ignore[arg-type]

    assert (from_shop.issuer, from_billing.issuer) == (shop.issuer, billing.issuer)
    assert shop.request_count("certs") == billing.request_count("certs") == 1


def test_a_verified_token_is_answered_from_its_validators_cache(
    multi: MultiIssuerValidator, shop: LocalRealm
) -> None:
    token = shop.mint(CLIENT)

    assert multi.cached(token) is None
    principal = multi.validate(token)

    assert multi.cached(token) is principal
    assert multi.validate(token) is principal


@pytest.mark.parametrize(
    "claims",
    [
        {"iss": "http://127.0.0.1:1/realms/elsewhere"},
        {"iss": None},  # removed
        {"iss": ["http://x/realms/shop"]},
        {"iss": 7},
    ],
)
def test_an_unknown_or_missing_issuer_costs_no_key_fetch(
    multi: MultiIssuerValidator,
    shop: LocalRealm,
    billing: LocalRealm,
    validate: Validate,
    claims: dict[str, Any],
) -> None:
    remove = [name for name, value in claims.items() if value is None]
    token = shop.mint(
        CLIENT, claims={k: v for k, v in claims.items() if v is not None}, remove=remove
    )

    with pytest.raises(InvalidIssuer):
        validate(multi, token)  # type: ignore[arg-type]

    assert shop.request_count("certs") == billing.request_count("certs") == 0


def test_iss_only_chooses_whose_keys_must_have_signed(
    multi: MultiIssuerValidator, shop: LocalRealm, billing: LocalRealm
) -> None:
    # Signed by shop's key, claiming billing: billing's keys decide, and refuse it.
    forged = shop.mint(CLIENT, claims={"iss": billing.issuer})

    with pytest.raises(UnknownKey):
        multi.validate(forged)

    assert shop.request_count("certs") == 0


def test_issuers_are_compared_exactly(multi: MultiIssuerValidator, shop: LocalRealm) -> None:
    with pytest.raises(InvalidIssuer):
        multi.validate(shop.mint(CLIENT, claims={"iss": shop.issuer + "/"}))


def test_construction_rules(shop: LocalRealm) -> None:
    with pytest.raises(ValueError, match="two validators for the issuer"):
        MultiIssuerValidator(
            [TokenValidator(shop.issuer, AUDIENCE), TokenValidator(shop.issuer, "other")]
        )
    with pytest.raises(ValueError, match="at least one"):
        MultiIssuerValidator([])
    with pytest.raises(ValueError, match="TokenValidator instances"):
        MultiIssuerValidator([shop.issuer])  # type: ignore[list-item]


def test_for_realms_builds_one_validator_per_realm_of_one_keycloak(
    shop: LocalRealm, billing: LocalRealm
) -> None:
    upstreams = {"/realms/shop": shop.base_url, "/realms/billing": billing.base_url}
    with one_keycloak(upstreams) as keycloak:
        multi = MultiIssuerValidator.for_realms(
            keycloak.url + "/", ["shop", "billing"], AUDIENCE, leeway=5
        )
        principals = [
            multi.validate(
                realm.mint(CLIENT, claims={"iss": f"{keycloak.url}/realms/{realm.name}"})
            )
            for realm in (shop, billing)
        ]

    assert multi.issuers == (keycloak.url + "/realms/shop", keycloak.url + "/realms/billing")
    assert [p.issuer for p in principals] == list(multi.issuers)
    assert sorted(keycloak.targets) == sorted([shop.jwks_url, billing.jwks_url])


@pytest.mark.parametrize(
    ("url", "realms", "message"),
    [
        ("keycloak:8080", ["shop"], "absolute http"),
        ("http://kc/realms/shop", ["shop"], "without /realms/"),
        ("http://kc", [], "at least one realm"),
        ("http://kc", ["shop", ""], "at least one realm"),
    ],
)
def test_for_realms_refuses_bad_settings(url: str, realms: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        MultiIssuerValidator.for_realms(url, realms, AUDIENCE)


# --- isolation ----------------------------------------------------------------------------------


def test_a_storm_against_one_realm_never_delays_another(
    shop: LocalRealm, billing: LocalRealm
) -> None:
    # shop's key endpoint hangs until the realm stops; jwks_timeout far beyond the test.
    multi = MultiIssuerValidator(
        [
            TokenValidator(shop.issuer, AUDIENCE, jwks_timeout=60),
            TokenValidator(billing.issuer, AUDIENCE, jwks_timeout=60),
        ]
    )
    shop.slow_keys(60)
    outcomes: list[BaseException] = []

    def storm() -> None:
        try:
            multi.validate(random_kid_token(shop))
        except (KeysUnavailable, UnknownKey) as refused:
            outcomes.append(refused)

    storm_threads = [threading.Thread(target=storm) for _ in range(8)]
    for thread in storm_threads:
        thread.start()
    wait_until(lambda: shop.request_count("certs") >= 1)

    principal = multi.validate(billing.mint(CLIENT))  # billing's own fetch, its own lock

    assert principal.issuer == billing.issuer
    assert all(thread.is_alive() for thread in storm_threads)  # shop is still waiting
    assert shop.request_count("certs") == 1  # the storm shares one fetch
    shop.stop()  # cuts the hanging fetch
    for thread in storm_threads:
        thread.join()
    assert len(outcomes) == len(storm_threads)


def test_async_a_storm_against_one_realm_never_delays_another(
    shop: LocalRealm, billing: LocalRealm
) -> None:
    multi = MultiIssuerValidator(
        [
            TokenValidator(shop.issuer, AUDIENCE, jwks_timeout=60),
            TokenValidator(billing.issuer, AUDIENCE, jwks_timeout=60),
        ]
    )
    shop.slow_keys(60)

    async def scenario() -> None:
        storm = [
            asyncio.ensure_future(multi.validate_async(random_kid_token(shop))) for _ in range(8)
        ]
        while shop.request_count("certs") < 1:
            await asyncio.sleep(0.01)
        principal = await multi.validate_async(billing.mint(CLIENT))
        assert principal.issuer == billing.issuer
        assert not any(task.done() for task in storm)
        await asyncio.to_thread(shop.stop)
        results = await asyncio.gather(*storm, return_exceptions=True)
        assert all(isinstance(r, (KeysUnavailable, UnknownKey)) for r in results)

    asyncio.run(scenario())


def test_each_realm_keeps_its_own_refetch_limit(shop: LocalRealm, billing: LocalRealm) -> None:
    clock = FakeClock(time.time())
    multi = MultiIssuerValidator(
        TokenValidator(realm.issuer, AUDIENCE, clock=clock) for realm in (shop, billing)
    )
    multi.validate(shop.mint(CLIENT))
    multi.validate(billing.mint(CLIENT))
    clock.advance(31)  # past the refetch interval, within the TTL
    for _ in range(20):  # random kids: one refetch for shop, then refused from memory
        with pytest.raises(UnknownKey):
            multi.validate(random_kid_token(shop))
    assert shop.request_count("certs") == 2

    billing.rotate_keys()  # billing's new key is fetched: shop's spent limit is not billing's
    assert multi.validate(billing.mint(CLIENT)).issuer == billing.issuer
    assert billing.request_count("certs") == 2


def wait_until(condition: Callable[[], bool]) -> None:
    event = threading.Event()
    for _ in range(1000):
        if condition():
            return
        event.wait(0.01)
    raise AssertionError("condition never became true")


# --- every adapter accepts it -------------------------------------------------------------------


@pytest.mark.parametrize("adapter", sorted(ADAPTERS))
def test_every_adapter_accepts_it(
    adapter: str, multi: MultiIssuerValidator, shop: LocalRealm, billing: LocalRealm
) -> None:
    serve: Callable[[Any], Any] = serve_asgi if adapter in ASGI_ADAPTERS else serve_wsgi
    with ExitStack() as stack:
        url = stack.enter_context(serve(ADAPTERS[adapter](multi)))
        answers = [
            httpx.get(url + "/any", headers={"Authorization": f"Bearer {token}"}, verify=TLS)
            for token in (
                shop.mint(CLIENT),
                billing.mint(CLIENT),
                shop.mint(CLIENT, claims={"iss": "http://127.0.0.1:1/realms/other"}),
            )
        ]

    assert [answer.status_code for answer in answers] == [200, 200, 401]
    assert [answer.json()["client_id"] for answer in answers[:2]] == [CLIENT, CLIENT]
    assert 'error_description="issuer mismatch"' in answers[2].headers["WWW-Authenticate"]
