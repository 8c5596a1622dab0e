"""The audit log: one record per refusal (INFO) and per admission (DEBUG), from the one request
step, the same through every adapter, and never a token, secret or claim value beyond the
client id and issuer."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any

import httpx
import pytest

from keycloak_m2m import TokenValidator
from keycloak_m2m.testing import LocalRealm

from ..adapters.apps import fastapi_dependency, fastapi_middleware, flask_sync
from ..adapters.servers import serve_asgi, serve_wsgi
from ..support import CLIENT, TLS, FakeClock

FIELDS = ("outcome", "reason", "client_id", "issuer", "method", "path", "status")
SERVED: dict[str, tuple[Callable[[TokenValidator], Any], Callable[[Any], Any]]] = {
    "asgi-middleware": (fastapi_middleware, serve_asgi),
    "fastapi-dependency": (fastapi_dependency, serve_asgi),
    "flask": (flask_sync, serve_wsgi),
}


@pytest.fixture(params=sorted(SERVED))
def base_url(
    request: pytest.FixtureRequest, make_validator: Callable[..., TokenValidator]
) -> Iterator[str]:
    factory, serve = SERVED[request.param]
    server: AbstractContextManager[str] = serve(factory(make_validator()))
    with server as url:
        yield url


def audit_records(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return [
        {name: getattr(record, name) for name in ("levelname", *FIELDS)}
        for record in caplog.records
        if record.name == "keycloak_m2m.audit"
    ]


def test_every_refusal_kind_and_every_admission(
    caplog: pytest.LogCaptureFixture, realm: LocalRealm, clock: FakeClock, base_url: str
) -> None:
    caplog.set_level(logging.DEBUG, logger="keycloak_m2m.audit")
    token = realm.mint(CLIENT)
    expired = realm.mint(CLIENT, claims={"exp": int(clock()) - 600, "iat": int(clock()) - 900})
    cases: list[tuple[str, str, dict[str, str]]] = [
        ("/any", "", {"Authorization": f"Bearer {token}"}),
        ("/optional", "", {}),
        ("/any", "", {}),
        ("/any", "", {"Authorization": "Bearer not-a-token"}),
        ("/any", "", {"Authorization": f"Bearer {expired}"}),
        ("/any", "?access_token=secret-in-the-query", {}),
        ("/role", "", {"Authorization": f"Bearer {token}"}),
    ]
    with httpx.Client(base_url=base_url, verify=TLS) as client:
        statuses = [
            client.get(path + query, headers=headers).status_code for path, query, headers in cases
        ]
    assert statuses == [200, 200, 401, 401, 401, 400, 403]

    records = audit_records(caplog)
    assert {record["issuer"] for record in records} == {realm.issuer}
    assert {record["method"] for record in records} == {"GET"}
    columns = ("levelname", "outcome", "reason", "client_id", "path", "status")
    assert [tuple(record[name] for name in columns) for record in records] == [
        ("DEBUG", "accepted", None, CLIENT, "/any", None),
        ("DEBUG", "anonymous", None, None, "/optional", None),
        ("INFO", "refused", "MissingToken", None, "/any", 401),
        ("INFO", "refused", "MalformedToken", None, "/any", 401),
        ("INFO", "refused", "ExpiredToken", None, "/any", 401),
        ("INFO", "refused", "InvalidRequest", None, "/any", 400),
        ("INFO", "refused", "InsufficientScope", CLIENT, "/role", 403),
    ]
    secrets = {token, expired, *token.split("."), "secret-in-the-query", "not-a-token"}
    secrets.add(realm.token_claims(CLIENT)["sub"])
    for record in caplog.records:
        if record.name == "keycloak_m2m.audit":
            text = record.getMessage() + repr(record.__dict__)
            assert not any(secret in text for secret in secrets)


def test_keys_unavailable_is_audited_as_a_503(
    caplog: pytest.LogCaptureFixture, realm: LocalRealm, base_url: str
) -> None:
    caplog.set_level(logging.INFO, logger="keycloak_m2m.audit")
    realm.fail_keys(503)
    response = httpx.get(
        base_url + "/any", headers={"Authorization": f"Bearer {realm.mint(CLIENT)}"}, verify=TLS
    )
    assert response.status_code == 503
    (record,) = audit_records(caplog)
    assert (record["reason"], record["status"]) == ("KeysUnavailable", 503)


def test_admissions_are_not_logged_at_info(
    caplog: pytest.LogCaptureFixture, realm: LocalRealm, base_url: str
) -> None:
    caplog.set_level(logging.INFO, logger="keycloak_m2m.audit")
    response = httpx.get(
        base_url + "/any", headers={"Authorization": f"Bearer {realm.mint(CLIENT)}"}, verify=TLS
    )
    assert response.status_code == 200
    assert audit_records(caplog) == []


def test_admissions_follow_the_log_level_as_it_changes(
    caplog: pytest.LogCaptureFixture, realm: LocalRealm, base_url: str
) -> None:
    # The step reads logging's memo of the level (it runs on every request): each change of
    # level, logging.disable and a logger disabled by logging.config must show on the next one.
    caplog.set_level(logging.DEBUG, logger="keycloak_m2m.audit")
    audit = logging.getLogger("keycloak_m2m.audit")
    headers = {"Authorization": f"Bearer {realm.mint(CLIENT)}"}
    changes: list[Callable[[], None]] = [
        lambda: audit.setLevel(logging.INFO),
        lambda: audit.setLevel(logging.DEBUG),
        lambda: logging.disable(logging.DEBUG),
        lambda: logging.disable(logging.NOTSET),
        lambda: setattr(audit, "disabled", True),
        lambda: setattr(audit, "disabled", False),
    ]
    counts = []
    try:
        with httpx.Client(base_url=base_url, verify=TLS) as client:
            for change in [lambda: None, *changes]:
                change()
                assert client.get("/any", headers=headers).status_code == 200
                counts.append(len(audit_records(caplog)))
    finally:
        logging.disable(logging.NOTSET)
        audit.disabled = False
    assert counts == [1, 1, 2, 2, 3, 3, 4]
