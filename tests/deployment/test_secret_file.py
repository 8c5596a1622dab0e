"""``client_secret_file``: a rotated (Kubernetes-mounted) secret takes effect without a restart."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from keycloak_m2m import ClientCredentials, TokenRequestError, TokenValidator
from keycloak_m2m.testing import LocalRealm

from ..support import AUDIENCE, CLIENT

OLD, NEW = "secret-before-rotation", "secret-after-rotation"


@pytest.fixture
def realm() -> Iterator[LocalRealm]:
    with LocalRealm("shop") as realm:
        realm.add_client(CLIENT, OLD, audience=[AUDIENCE])
        yield realm


@pytest.fixture
def secret_file(tmp_path: Path) -> Path:
    path = tmp_path / "client-secret"
    path.write_text(OLD + "\n")  # kubectl create secret --from-file keeps the line end
    return path


def rotate(realm: LocalRealm, secret_file: Path, *, in_file: bool = True) -> None:
    realm.add_client(CLIENT, NEW, audience=[AUDIENCE])  # Keycloak now wants the new secret
    if in_file:
        secret_file.write_text(NEW)


def test_the_secret_comes_from_the_file(realm: LocalRealm, secret_file: Path) -> None:
    credentials = ClientCredentials(
        CLIENT, client_secret_file=secret_file, token_url=realm.token_url
    )

    token = credentials.get_token()

    assert TokenValidator(realm.issuer, AUDIENCE).validate(token).client_id == CLIENT
    assert OLD not in repr(credentials)


@pytest.mark.parametrize("driver", ["sync", "async"])
def test_a_rotated_secret_is_read_again_once_refused(
    realm: LocalRealm, secret_file: Path, driver: str
) -> None:
    credentials = ClientCredentials(
        CLIENT, client_secret_file=secret_file, token_url=realm.token_url
    )
    first = credentials.get_token()
    rotate(realm, secret_file)

    if driver == "sync":
        renewed = credentials.renew_token(first)
    else:
        renewed = asyncio.run(credentials.renew_token_async(first))

    assert renewed != first
    # Refused with the old secret, then sent once more with the new one.
    assert realm.request_count("token") == 3
    assert credentials.renew_token(renewed) != renewed  # the new secret is kept
    assert realm.request_count("token") == 4


def test_an_unchanged_file_is_not_retried(realm: LocalRealm, secret_file: Path) -> None:
    credentials = ClientCredentials(
        CLIENT, client_secret_file=secret_file, token_url=realm.token_url
    )
    first = credentials.get_token()
    rotate(realm, secret_file, in_file=False)  # Keycloak rotated, the mount not yet

    with pytest.raises(TokenRequestError) as refused:
        credentials.renew_token(first)

    assert refused.value.error == "invalid_client"
    assert realm.request_count("token") == 2  # no second send with the same secret
    secret_file.write_text(NEW)  # the mount catches up: the next request reads it again
    assert credentials.renew_token(first)
    assert realm.request_count("token") == 4


def test_a_secret_given_as_a_value_is_never_reread(realm: LocalRealm, secret_file: Path) -> None:
    credentials = ClientCredentials(CLIENT, OLD, token_url=realm.token_url)
    first = credentials.get_token()
    rotate(realm, secret_file)

    with pytest.raises(TokenRequestError):
        credentials.renew_token(first)
    assert realm.request_count("token") == 2


def test_the_environment_names_the_secret_file(
    realm: LocalRealm, secret_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KEYCLOAK_CLIENT_SECRET", raising=False)
    monkeypatch.setenv("KEYCLOAK_URL", realm.base_url)
    monkeypatch.setenv("KEYCLOAK_REALM", "shop")
    monkeypatch.setenv("KEYCLOAK_CLIENT_ID", CLIENT)
    monkeypatch.setenv("KEYCLOAK_CLIENT_SECRET_FILE", str(secret_file))

    credentials = ClientCredentials.from_env()
    first = credentials.get_token()
    rotate(realm, secret_file)

    assert credentials.renew_token(first) != first
    monkeypatch.setenv("KEYCLOAK_CLIENT_SECRET", OLD)
    with pytest.raises(ValueError, match="KEYCLOAK_CLIENT_SECRET or KEYCLOAK_CLIENT_SECRET_FILE"):
        ClientCredentials.from_env()
    monkeypatch.delenv("KEYCLOAK_CLIENT_SECRET")
    monkeypatch.setenv("KEYCLOAK_CLIENT_SECRET_FILE", str(secret_file) + ".missing")
    with pytest.raises(ValueError, match="KEYCLOAK_CLIENT_SECRET_FILE: no file at"):
        ClientCredentials.from_env()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({}, "give client_secret or client_secret_file"),
        (
            {"client_secret": OLD, "client_secret_file": "x"},
            "give client_secret or client_secret_file",
        ),
        ({"client_secret_file": "/nonexistent/secret"}, "cannot be read"),
    ],
)
def test_secret_settings_are_checked(options: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ClientCredentials(CLIENT, token_url="https://sso.example.com/t", **options)  # type: ignore[arg-type]


def test_an_empty_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "empty").write_text("\n")

    with pytest.raises(ValueError, match="is empty"):
        ClientCredentials(CLIENT, client_secret_file=tmp_path / "empty", token_url="https://x/t")
