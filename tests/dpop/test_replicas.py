"""Two validators sharing one real Redis model two replicas: a proof is accepted once across
both. And what a Redis outage does, as the cache is set."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from keycloak_m2m import InvalidDPoPProof, ReplayCacheUnavailable, TokenValidator
from keycloak_m2m.testing import LocalRealm

from ..support import CLIENT, FakeClock
from .conftest import RedisServer, free_port
from .support import URL, new_key, proof

pytest.importorskip("redis", reason="redis-py is not installed (the [redis] extra)")

import redis

from keycloak_m2m.redis import RedisReplayCache


def material(p: str) -> dict[str, Any]:
    return {"dpop_proof": p, "method": "GET", "url": URL}


@pytest.fixture(params=["sync", "async"])
def driver(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def run(driver: str, validator: TokenValidator, token: str, p: str) -> None:
    if driver == "sync":
        validator.validate(token, **material(p))
        return
    cache = validator._replay

    async def validate() -> None:
        try:
            await validator.validate_async(token, **material(p))
        finally:
            # Each asyncio.run is a new loop: close the client this one opened.
            if isinstance(cache, RedisReplayCache):
                await cache.aclose()

    asyncio.run(validate())


def test_a_proof_replayed_to_another_replica_is_refused(
    realm: LocalRealm,
    make_validator: Callable[..., TokenValidator],
    clock: FakeClock,
    redis_server: RedisServer,
    driver: str,
) -> None:
    key = new_key()
    token = realm.mint(CLIENT, dpop_jkt=key.thumbprint)
    first = make_validator(replay_cache=RedisReplayCache(redis_server.url))
    second = make_validator(replay_cache=RedisReplayCache(redis_server.url))
    honest = proof(key, token=token, iat=clock())
    run(driver, first, token, honest)
    with pytest.raises(InvalidDPoPProof, match="replayed"):
        run(driver, second, token, honest)
    with pytest.raises(InvalidDPoPProof, match="replayed"):
        run(driver, first, token, honest)
    # Each replica still takes fresh proofs.
    run(driver, second, token, proof(key, token=token, iat=clock()))


def test_built_from_a_client(
    realm: LocalRealm,
    make_validator: Callable[..., TokenValidator],
    clock: FakeClock,
    redis_server: RedisServer,
    driver: str,
) -> None:
    key = new_key()
    token = realm.mint(CLIENT, dpop_jkt=key.thumbprint)
    client = redis.Redis.from_url(redis_server.url)
    try:
        validator = make_validator(replay_cache=RedisReplayCache(client, prefix="svc:"))
        honest = proof(key, token=token, iat=clock())
        run(driver, validator, token, honest)
        assert any(
            name.startswith(b"svc:" + key.thumbprint.encode()) for name in client.scan_iter()
        )
        ttl = max(client.ttl(name) for name in client.scan_iter())
        assert 60 <= ttl <= 60 + 2 * 30 + 1  # dpop_max_age plus twice the leeway
        with pytest.raises(InvalidDPoPProof, match="replayed"):
            run(driver, validator, token, honest)
    finally:
        client.close()


def test_async_client_serves_validate_async(
    realm: LocalRealm,
    make_validator: Callable[..., TokenValidator],
    clock: FakeClock,
    redis_server: RedisServer,
) -> None:
    key = new_key()
    token = realm.mint(CLIENT, dpop_jkt=key.thumbprint)
    honest = proof(key, token=token, iat=clock())

    async def scenario() -> None:
        client = redis.asyncio.Redis.from_url(redis_server.url)
        try:
            validator = make_validator(replay_cache=RedisReplayCache(client))
            await validator.validate_async(token, **material(honest))
            with pytest.raises(InvalidDPoPProof, match="replayed"):
                await validator.validate_async(token, **material(honest))
            with pytest.raises(TypeError, match="validate_async"):
                validator.validate(token, **material(proof(key, token=token, iat=clock())))
        finally:
            await client.aclose()

    asyncio.run(scenario())


@pytest.mark.parametrize("on_error", ["refuse", "allow"])
def test_redis_down(
    realm: LocalRealm,
    make_validator: Callable[..., TokenValidator],
    clock: FakeClock,
    redis_server: RedisServer,
    driver: str,
    on_error: Any,
) -> None:
    key = new_key()
    token = realm.mint(CLIENT, dpop_jkt=key.thumbprint)
    validator = make_validator(
        replay_cache=RedisReplayCache(redis_server.url, on_error=on_error, timeout=2.0)
    )
    run(driver, validator, token, proof(key, token=token, iat=clock()))
    redis_server.stop()
    honest = proof(key, token=token, iat=clock())
    if on_error == "allow":
        run(driver, validator, token, honest)
        return
    with pytest.raises(ReplayCacheUnavailable) as refused:
        run(driver, validator, token, honest)
    assert refused.value.status_code == 503
    assert refused.value.response_body()["error"] == "temporarily_unavailable"


def test_nothing_listening_is_an_outage_too(
    realm: LocalRealm, make_validator: Callable[..., TokenValidator], clock: FakeClock
) -> None:
    key = new_key()
    token = realm.mint(CLIENT, dpop_jkt=key.thumbprint)
    cache = RedisReplayCache(f"redis://127.0.0.1:{free_port()}/0")
    with pytest.raises(ReplayCacheUnavailable):
        make_validator(replay_cache=cache).validate(
            token, **material(proof(key, token=token, iat=clock()))
        )


def test_options_are_checked() -> None:
    with pytest.raises(ValueError, match="on_error"):
        RedisReplayCache("redis://127.0.0.1:1/0", on_error="ignore")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="source"):
        RedisReplayCache(42)  # type: ignore[arg-type]
