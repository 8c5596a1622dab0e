"""The command line, in-process through ``main([...])`` and once as a real subprocess.

These tests use realms on the real clock: the commands read the time themselves.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from importlib.metadata import version

import pytest

from keycloak_m2m.cli import main
from keycloak_m2m.testing import LocalRealm

from ..support import AUDIENCE, CLIENT
from .conftest import SECRET


@pytest.fixture
def live_realm() -> Iterator[LocalRealm]:
    with LocalRealm("shop") as realm:
        realm.add_client(CLIENT, SECRET, realm_roles=["notifications:send"], audience=[AUDIENCE])
        yield realm


@pytest.fixture
def dead_url() -> str:
    """A base URL where nothing listens any more."""
    with LocalRealm("gone") as realm:
        return realm.base_url


@pytest.fixture
def environment(live_realm: LocalRealm, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    settings = {
        "KEYCLOAK_URL": live_realm.base_url,
        "KEYCLOAK_REALM": "shop",
        "KEYCLOAK_CLIENT_ID": CLIENT,
        "KEYCLOAK_CLIENT_SECRET": SECRET,
    }
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    return settings


def one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


# --- inspect -----------------------------------------------------------------------------------


def test_inspect_explains_a_service_account_token(
    live_realm: LocalRealm, capsys: pytest.CaptureFixture[str]
) -> None:
    token = live_realm.mint(CLIENT)

    assert main(["inspect", token, "--audience", AUDIENCE]) == 0

    out = capsys.readouterr().out
    assert out.startswith("UNVERIFIED")
    assert '"azp": "shop-api"' in out
    for fact in (
        "access token (Keycloak typ Bearer)",
        "Keycloak realm shop",
        "service account of client shop-api",
        "notifications:send",
        "(in 4 minutes)",
        "Warnings: none",
    ):
        assert fact in out


def test_inspect_reads_stdin(
    live_realm: LocalRealm, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(live_realm.mint(CLIENT) + "\n"))

    assert main(["inspect"]) == 0
    assert "service account of client shop-api" in capsys.readouterr().out


def test_inspect_warns(live_realm: LocalRealm, capsys: pytest.CaptureFixture[str]) -> None:
    token = live_realm.mint(
        CLIENT,
        claims={"typ": "ID", "exp": int(time.time()) - 190},
        remove_header=["kid"],
    )

    assert main(["inspect", token, "--audience", "billing-service"]) == 0

    warnings = capsys.readouterr().out.split("Warnings:")[1]
    assert "expired 3 minutes ago" in warnings
    assert "typ is 'ID' (ID token)" in warnings
    assert "no kid in the header" in warnings
    assert "audience lacks 'billing-service'" in warnings


def test_inspect_warns_about_a_user_token_and_default_audience(
    live_realm: LocalRealm, capsys: pytest.CaptureFixture[str]
) -> None:
    # A user's token: no client_id (Keycloak writes it for service accounts only), and a
    # username of its own. aud is only "account".
    token = live_realm.mint(
        claims={"preferred_username": "alice"}, remove=["client_id", "clientId"]
    )

    assert main(["inspect", token]) == 0

    out = capsys.readouterr().out
    assert "user alice" in out
    assert "not a service-account token" in out
    assert "no API in the audience" in out


@pytest.mark.parametrize("token", ["not-a-token", "a.b", "e30.!!!.sig"])
def test_inspect_of_garbage_is_one_line(token: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inspect", token]) == 2
    assert one_error_line(capsys).startswith("keycloak-m2m: error: not a readable JWT: ")


def test_inspect_without_token_on_a_terminal(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr(sys, "stdin", Terminal())

    assert main(["inspect"]) == 2
    assert "give a TOKEN, or pipe one on stdin" in one_error_line(capsys)


# --- verify ------------------------------------------------------------------------------------


def test_verify_prints_the_principal(
    live_realm: LocalRealm, capsys: pytest.CaptureFixture[str]
) -> None:
    token = live_realm.mint(CLIENT)

    code = main(["verify", token, "--issuer", live_realm.issuer, "--audience", AUDIENCE])

    out = capsys.readouterr().out
    assert code == 0
    assert out.startswith("valid token\n")
    assert "Client           shop-api" in out
    assert "Service account  yes" in out


def test_verify_with_jwks_url_and_stdin(
    live_realm: LocalRealm, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(live_realm.mint(CLIENT)))
    argv = ["verify", "-", "--issuer", live_realm.issuer, "--audience", "other", "--audience"]

    assert main([*argv, AUDIENCE, "--jwks-url", live_realm.jwks_url]) == 0
    assert "valid token" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (
            {"claims": {"aud": "billing-service"}},
            "audience mismatch (InvalidAudience): "
            "expected 'notification-service', found ['billing-service']",
        ),
        ({"expires_in": -120}, "token expired (ExpiredToken)"),
        ({"signature": b"\x00" * 256}, "signature verification failed (InvalidSignature)"),
    ],
)
def test_verify_refusal_is_one_line_on_stderr(
    live_realm: LocalRealm,
    capsys: pytest.CaptureFixture[str],
    change: dict[str, object],
    reason: str,
) -> None:
    token = live_realm.mint(CLIENT, **change)  # type: ignore[arg-type]

    code = main(["verify", token, "--issuer", live_realm.issuer, "--audience", AUDIENCE])

    assert code == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == f"keycloak-m2m: error: invalid token: {reason}\n"


def test_verify_refuses_garbage_in_one_line(
    live_realm: LocalRealm, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["verify", "e30.!!!.sig", "--issuer", live_realm.issuer, "--audience", AUDIENCE])

    captured = capsys.readouterr()
    assert (code, captured.out) == (1, "")
    assert captured.err.startswith("keycloak-m2m: error: invalid token: ")
    assert captured.err.endswith("(MalformedToken)\n")
    assert captured.err.count("\n") == 1, captured.err


def assert_token_not_shown(token: str, text: str) -> None:
    for segment in token.split("."):
        assert segment not in text


def test_verify_explains_a_token_meant_only_for_account(
    live_realm: LocalRealm, capsys: pytest.CaptureFixture[str]
) -> None:
    token = live_realm.mint(CLIENT, claims={"aud": "account"})  # Keycloak's default audience

    assert main(["verify", token, "--issuer", live_realm.issuer, "--audience", AUDIENCE]) == 1

    line = one_error_line(capsys)
    assert "expected 'notification-service', found ['account']" in line
    assert "an Audience mapper for 'notification-service' (Clients > shop-api > " in line
    assert "--azp-as-audience fits only a token issued to the API's own client" in line
    assert_token_not_shown(token, line)


def test_verify_points_at_azp_as_audience_for_the_apis_own_token(
    live_realm: LocalRealm, capsys: pytest.CaptureFixture[str]
) -> None:
    live_realm.add_client(AUDIENCE, SECRET)  # the API's own client, with a service account
    token = live_realm.mint(AUDIENCE)  # aud: "account" only
    argv = ["verify", token, "--issuer", live_realm.issuer, "--audience", AUDIENCE]

    assert main(argv) == 1
    line = one_error_line(capsys)
    assert "it was issued to 'notification-service' (azp): --azp-as-audience accepts" in line

    assert main([*argv, "--azp-as-audience"]) == 0


@pytest.mark.parametrize(
    ("expected", "hint"),
    [
        ("{issuer}/", "only a trailing slash differs"),
        ("{base}/auth/realms/shop", "only /auth differs"),
        ("{base}/realms/other", ""),
    ],
)
def test_verify_explains_an_issuer_mismatch(
    live_realm: LocalRealm, capsys: pytest.CaptureFixture[str], expected: str, hint: str
) -> None:
    token = live_realm.mint(CLIENT)
    issuer = expected.format(issuer=live_realm.issuer, base=live_realm.base_url)
    argv = ["verify", token, "--issuer", issuer, "--audience", AUDIENCE]

    assert main([*argv, "--jwks-url", live_realm.jwks_url]) == 1

    line = one_error_line(capsys)
    assert line.startswith(
        "keycloak-m2m: error: invalid token: issuer mismatch (InvalidIssuer): "
        f"expected {issuer!r}, found {live_realm.issuer!r}"
    )
    assert hint in line
    assert_token_not_shown(token, line)


def test_verify_with_a_realm_url_as_keycloak_url(
    live_realm: LocalRealm, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["verify", "x.y.z", "--issuer", live_realm.issuer, "--audience", AUDIENCE]

    assert main([*argv, "--keycloak-url", live_realm.issuer]) == 2
    assert one_error_line(capsys) == (
        "keycloak-m2m: error: --keycloak-url must be Keycloak's base URL without /realms/...: "
        "the realm comes from --issuer"
    )
    assert live_realm.request_count("certs") == 0


def test_verify_with_unreachable_keys(
    live_realm: LocalRealm, dead_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    token = live_realm.mint(CLIENT)
    argv = ["verify", token, "--issuer", live_realm.issuer, "--audience", AUDIENCE]

    assert main([*argv, "--keycloak-url", dead_url]) == 1
    assert one_error_line(capsys).startswith(
        f"keycloak-m2m: error: cannot get the signing keys from {dead_url}/realms/shop/"
    )


def test_verify_with_a_bad_url(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify", "x.y.z", "--issuer", "realms/shop", "--audience", AUDIENCE]) == 2
    assert one_error_line(capsys) == "keycloak-m2m: error: issuer must be an absolute http(s) URL"


# --- token -------------------------------------------------------------------------------------


def test_token_prints_a_fresh_token(
    live_realm: LocalRealm, environment: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["token"]) == 0

    token = capsys.readouterr().out.strip()
    assert live_realm.request_count("token") == 1
    assert main(["verify", token, "--issuer", live_realm.issuer, "--audience", AUDIENCE]) == 0


def test_token_with_missing_settings(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("KEYCLOAK_URL", "KEYCLOAK_REALM", "KEYCLOAK_CLIENT_ID", "KEYCLOAK_CLIENT_SECRET"):
        monkeypatch.delenv(name, raising=False)

    assert main(["token"]) == 2
    assert one_error_line(capsys) == (
        "keycloak-m2m: error: missing environment variables: KEYCLOAK_URL, KEYCLOAK_REALM, "
        "KEYCLOAK_CLIENT_ID, KEYCLOAK_CLIENT_SECRET"
    )


@pytest.mark.parametrize("suffix", ["/realms/shop", "/auth/realms/shop/"])
def test_token_with_a_realm_url_as_keycloak_url(
    live_realm: LocalRealm,
    environment: dict[str, str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    suffix: str,
) -> None:
    monkeypatch.setenv("KEYCLOAK_URL", live_realm.base_url + suffix)

    assert main(["token"]) == 2
    assert one_error_line(capsys) == (
        "keycloak-m2m: error: KEYCLOAK_URL must be Keycloak's base URL without /realms/...: "
        "name the realm in KEYCLOAK_REALM"
    )
    assert live_realm.request_count("token") == 0


def test_token_with_a_wrong_secret(
    environment: dict[str, str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KEYCLOAK_CLIENT_SECRET", "wrong-secret")

    assert main(["token"]) == 1
    line = one_error_line(capsys)
    assert "HTTP 401 invalid_client" in line
    assert "wrong-secret" not in line


def test_token_with_an_unreachable_server(
    environment: dict[str, str],
    dead_url: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KEYCLOAK_URL", dead_url)

    assert main(["token", "--retries", "0"]) == 1
    assert "unavailable after 1 attempt: ConnectError" in one_error_line(capsys)
    assert capsys.readouterr().out == ""


# --- usage errors ------------------------------------------------------------------------------


BOTH_KEY_SOURCES = ["--jwks-url", "http://k", "--keycloak-url", "http://k"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "the following arguments are required: COMMAND"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
        (["verify", "x.y.z", "--audience", "a"], "the following arguments are required: --issuer"),
        (["token", "--retries", "-1"], "expected a whole number >= 0, got '-1'"),
        (
            ["verify", "t", "--issuer", "http://kc", "--audience", "a", *BOTH_KEY_SOURCES],
            "not allowed with argument",
        ),
    ],
)
def test_a_bad_argument_is_one_line(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    line = one_error_line(capsys)
    assert line.startswith("keycloak-m2m")
    assert message in line
    assert line.endswith("(see --help)")


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"keycloak-m2m {version('keycloak-m2m')}\n"


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for command in ("inspect", "verify", "token"):
        assert command in out


# --- as a real process -------------------------------------------------------------------------


def run_module(*argv: str, environment: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "keycloak_m2m", *argv],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **environment},
        check=False,
    )


def test_python_m_token_in_a_subprocess(
    live_realm: LocalRealm, environment: dict[str, str]
) -> None:
    done = run_module("token", environment=environment)

    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.count(".") == 2
    assert live_realm.request_count("token") == 1


def test_python_m_failure_in_a_subprocess_is_one_line(
    environment: dict[str, str], dead_url: str
) -> None:
    done = run_module(
        "token", "--retries", "0", environment={**environment, "KEYCLOAK_URL": dead_url}
    )

    assert done.returncode == 1
    assert done.stdout == ""
    assert len(done.stderr.strip().splitlines()) == 1
    assert "Traceback" not in done.stderr


def test_verify_failure_in_a_subprocess_is_one_line(live_realm: LocalRealm, dead_url: str) -> None:
    token = live_realm.mint(CLIENT)
    argv = ["verify", token, "--issuer", live_realm.issuer, "--audience", AUDIENCE]

    done = run_module(*argv, "--keycloak-url", dead_url, environment={})

    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr.startswith("keycloak-m2m: error: cannot get the signing keys from ")
    assert len(done.stderr.splitlines()) == 1, done.stderr  # no "key set fetch failed" record


def test_token_retries_are_logged_only_with_verbose(
    environment: dict[str, str], dead_url: str
) -> None:
    settings = {**environment, "KEYCLOAK_URL": dead_url}

    quiet = run_module("token", "--retries", "2", environment=settings)
    verbose = run_module("token", "-v", "--retries", "2", environment=settings)

    assert quiet.returncode == verbose.returncode == 1
    assert len(quiet.stderr.splitlines()) == 1, quiet.stderr
    assert "unavailable after 3 attempts" in quiet.stderr
    retries = [line for line in verbose.stderr.splitlines() if "retrying in" in line]
    assert len(retries) == 2, verbose.stderr
    assert verbose.stderr.splitlines()[-1] == quiet.stderr.strip()
