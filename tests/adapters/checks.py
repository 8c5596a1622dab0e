"""Assertions shared by the adapter tests: the RFC 6750 shape of every refusal."""

from __future__ import annotations

import json
from typing import Any

from keycloak_m2m._errors import DPOP_ALGORITHMS


def bare_challenge(realm: str) -> str:
    """A 401 without a token, on a route accepting bearer and DPoP tokens: both challenges."""
    return f'Bearer realm="{realm}", DPoP realm="{realm}", algs="{" ".join(DPOP_ALGORITHMS)}"'


def body_of(response: Any) -> bytes:
    """The raw body of an httpx or a Werkzeug test response."""
    data = response.get_data() if hasattr(response, "get_data") else response.content
    assert isinstance(data, bytes)
    return data


def assert_refused(
    response: Any,
    status: int,
    error: str | None,
    *,
    realm: str,
    token: str = "",
    body_error: str | None = None,
) -> dict[str, str]:
    """Check status, challenge and JSON body of a refusal; return the body."""
    assert response.status_code == status
    challenge = response.headers["WWW-Authenticate"]
    if error is None:
        # A missing token: both challenges; an outage (503): the bare bearer one.
        assert challenge in (bare_challenge(realm), f'Bearer realm="{realm}"')
    else:
        assert challenge.startswith(f'Bearer realm="{realm}", error="{error}", error_description="')
    assert response.headers["Content-Type"].startswith("application/json")
    raw = body_of(response)
    body = json.loads(raw)
    assert set(body) == {"error", "error_description"}
    assert body["error"] == (body_error or error or "unauthorized")
    # Never the token, never a stack trace.
    if token:
        assert token.encode() not in raw
        assert token not in challenge
    assert b"Traceback" not in raw
    return dict(body)
