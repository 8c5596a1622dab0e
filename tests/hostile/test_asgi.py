"""The hostile corpus through the ASGI middleware: every case the HTTP wire can carry is refused
with the same error the core gives it, translated per RFC 6750 and leaking nothing.

Cases whose token cannot travel in an Authorization header as sent (not a string, control
characters, or surrounding whitespace that HTTP strips) are the core suite's alone; a comma is
read as two credentials and answered 400 by design (tests/adapters cover it).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from keycloak_m2m import AuthError
from keycloak_m2m.asgi import TokenAuthMiddleware

from ..support import FakeClock, asgi_messages
from .corpus import (
    CASES,
    Case,
    HostileRealms,
    ValidatorPool,
    check_challenge,
    leaked_fragments,
    open_realms,
)


def _header_value(token: object) -> bytes | None:
    """The Authorization header carrying ``token``, or None when HTTP cannot carry it as is."""
    if not isinstance(token, str) or token != token.strip() or "," in token or not token:
        return None
    if any(ord(char) < 0x20 or ord(char) == 0x7F or ord(char) > 0xFF for char in token):
        return None
    return b"Bearer " + token.encode("latin-1")


async def _endpoint(scope: Any, receive: Any, send: Any) -> None:
    raise AssertionError("a hostile token reached the application")


def _call(
    middleware: TokenAuthMiddleware, authorization: bytes
) -> tuple[int, dict[str, str], bytes]:
    """One GET through the middleware, as a server would hand it over."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/notifications",
        "raw_path": b"/notifications",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"api.test"), (b"authorization", authorization)],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }
    start, body = asgi_messages(middleware, scope)
    headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in start["headers"]}
    return start["status"], headers, body["body"]


@pytest.fixture(scope="module")
def realms() -> Iterator[HostileRealms]:
    with open_realms(FakeClock()) as realms:
        yield realms


@pytest.fixture(scope="module")
def pool(realms: HostileRealms) -> ValidatorPool:
    return ValidatorPool(realms)


def test_most_of_the_corpus_travels_over_http(realms: HostileRealms) -> None:
    carried = [case for case in CASES if _header_value(case.make(realms)) is not None]
    assert len(carried) >= 150


@pytest.mark.parametrize("case", [case.param() for case in CASES])
def test_hostile_token_is_refused_by_the_middleware(
    case: Case, realms: HostileRealms, pool: ValidatorPool
) -> None:
    token = case.make(realms)
    authorization = _header_value(token)
    if authorization is None:
        pytest.skip("HTTP cannot carry this token as is; the core suite covers it")
    validator = pool.get(case)
    with pytest.raises(AuthError) as caught:
        validator.validate(token)  # type: ignore[arg-type]
    core_error = caught.value
    before = realms.certs_counts()

    status, headers, body = _call(
        TokenAuthMiddleware(_endpoint, validator=validator, realm="api"), authorization
    )

    assert status == case.status == core_error.status_code
    check_challenge(headers["www-authenticate"], status)
    answer = json.loads(body)
    assert answer == core_error.response_body()
    assert headers["content-type"] == "application/json"
    if status == 503:
        assert headers["retry-after"] == str(core_error.retry_after)  # type: ignore[attr-defined]
    for text in (body.decode(), *headers.values()):
        assert not leaked_fragments(text, token, case), text
    assert realms.certs_counts() == before
