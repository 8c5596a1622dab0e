"""Token introspection (RFC 7662): the configuration, the request, the answer and its cache.

No I/O here. The validator's flow asks for an answer the way it asks for keys: it yields an
``Introspect`` step, the driver sends the request that ``IntrospectionClient.request`` describes
(once for all concurrent checks of one token), hands the outcome to ``record``, and the flow
reads the cached answer. The answer is cached per token for ``min(cache_ttl, time to exp)``.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import KW_ONLY, dataclass, field
from pathlib import Path
from typing import Any, Final, Literal, TypeAlias

from ._b64token import is_b64token
from ._client_auth import (
    ASSERTION_TYPE,
    AssertionKey,
    basic_credentials,
    client_assertion,
    read_secret,
    signing_key,
)
from ._errors import IntrospectionUnavailable, TokenRevoked
from ._options import is_http_url, is_number, require
from ._token_cache import token_key

__all__ = [
    "Answer",
    "Failed",
    "Introspect",
    "Introspection",
    "IntrospectionClient",
    "endpoint_for",
    "is_opaque",
    "merged_claims",
]

OnFailure: TypeAlias = Literal["refuse", "accept"]
When: TypeAlias = Literal["always", "on_request"]

_log = logging.getLogger("keycloak_m2m.introspection")
# Keycloak's path under the realm: the key set lives at .../protocol/openid-connect/certs.
INTROSPECTION_PATH: Final = "/protocol/openid-connect/token/introspect"
# How long a failed introspection stands for every check of that token: the concurrent checks
# that waited for it share it, and a token checked a thousand times a second while the endpoint
# is down costs it one request a second, not a thousand.
_FAILURE_HOLD: Final = 1.0
_CACHE_SIZE: Final = 4096
# Answer members that describe the answer rather than the token.
_NOT_CLAIMS: Final = frozenset({"active"})


@dataclass(frozen=True)
class Introspection:
    """How a TokenValidator asks the issuer whether a token is still active (RFC 7662).

    The resource server authenticates as its own client: with ``client_secret`` (or
    ``client_secret_file``, read once here) or ``private_key`` (RFC 7523 ``private_key_jwt``).
    ``endpoint`` defaults to Keycloak's, under the validator's key set URL. Answers are cached
    per token for ``min(cache_ttl, time to exp)``. ``on_failure``: ``"refuse"`` answers 503 while
    the endpoint cannot be reached, ``"accept"`` accepts the locally verified token and logs it.
    ``when``: ``"always"``, or ``"on_request"`` for only the routes that ask
    (``require(..., introspect=True)``).
    """

    client_id: str
    client_secret: str | None = field(default=None, repr=False)
    _: KW_ONLY
    private_key: Any = field(default=None, repr=False)
    client_secret_file: str | Path | None = None
    endpoint: str | None = None
    cache_ttl: float = 30.0
    timeout: float = 5.0
    on_failure: OnFailure = "refuse"
    when: When = "always"
    # The key checked and its kid worked out, once, for the introspection client.
    _assertion_key: AssertionKey | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        require(
            isinstance(self.client_id, str) and self.client_id != "",
            "client_id must be a non-empty string",
        )
        given = [
            name
            for name in ("client_secret", "private_key", "client_secret_file")
            if getattr(self, name) is not None
        ]
        require(
            len(given) == 1,
            "give one of client_secret, client_secret_file and private_key",
        )
        if self.client_secret is not None:
            require(
                isinstance(self.client_secret, str) and self.client_secret != "",
                "client_secret must be a non-empty string",
            )
        if self.client_secret_file is not None:
            secret = read_secret(os.fspath(self.client_secret_file))
            object.__setattr__(self, "client_secret", secret)
        if self.private_key is not None:
            prepared = signing_key(self.private_key)
            object.__setattr__(self, "private_key", prepared.signer.key)
            object.__setattr__(self, "_assertion_key", prepared)
        require(
            self.endpoint is None or is_http_url(self.endpoint),
            "endpoint must be an absolute http(s) URL",
        )
        for name in ("cache_ttl", "timeout"):
            value = getattr(self, name)
            require(
                is_number(value) and value > 0,
                f"{name} must be a number > 0",
            )
        require(self.on_failure in ("refuse", "accept"), "on_failure must be refuse or accept")
        require(self.when in ("always", "on_request"), "when must be always or on_request")


# --- the cache ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Answer:
    """The endpoint's verdict on one token: its claims when active, None when not."""

    token: str = field(repr=False)
    claims: Mapping[str, Any] | None
    valid_until: float


@dataclass(frozen=True, slots=True)
class Failed:
    """No verdict: the endpoint could not be reached or gave no usable answer."""

    token: str = field(repr=False)
    reason: str
    valid_until: float


Entry: TypeAlias = Answer | Failed


@dataclass(frozen=True, slots=True)
class Introspect:
    """The flow's step: introspect ``token`` unless the cache moved on from ``seen`` meanwhile;
    the answer is not kept past ``expires_at``, the token's exp when known."""

    token: str = field(repr=False)
    seen: Entry | None
    expires_at: float | None


class IntrospectionClient:
    """One validator's introspection: its endpoint, its answer cache, the request it sends."""

    def __init__(self, config: Introspection, endpoint: str, issuer: str) -> None:
        self.config = config
        self.endpoint = endpoint
        self._issuer = issuer
        self._signer = config._assertion_key
        self._entries: OrderedDict[str, Entry] = OrderedDict()
        self.requests = 0  # sent, for tests and metrics

    # -- the cache, read by the flow --------------------------------------------------------

    def entry(self, token: str) -> Entry | None:
        entry = self._entries.get(token_key(token))
        return entry if entry is not None and entry.token == token else None

    def fresh(self, token: str, now: float) -> Entry | None:
        """The cached entry of ``token`` while it stands (``now`` on the steady clock), else
        None."""
        entry = self.entry(token)
        return entry if entry is not None and now < entry.valid_until else None

    def verdict(self, entry: Entry | None, *, needed: bool) -> Answer | None:
        """The answer to act on, or raise the refusal. None: no answer came, and the locally
        verified token is accepted (``on_failure="accept"``), unless the claims ``needed`` it
        (a lightweight or opaque token cannot be checked without)."""
        if isinstance(entry, Answer):
            if entry.claims is None:
                raise TokenRevoked()
            return entry
        reason = "no answer" if entry is None else entry.reason
        if self.config.on_failure == "accept" and not needed:
            _log.warning(
                "token introspection failed (%s); accepting a locally verified token", reason
            )
            return None
        raise IntrospectionUnavailable(retry_after=_FAILURE_HOLD)

    # -- the request and its outcome, for the drivers ---------------------------------------

    def request(self, token: str) -> tuple[dict[str, str], dict[str, str]]:
        """The form and headers of one introspection request."""
        config = self.config
        form = {"token": token, "token_type_hint": "access_token"}
        headers: dict[str, str] = {}
        if self._signer is not None:
            form["client_id"] = config.client_id
            form["client_assertion_type"] = ASSERTION_TYPE
            # The wall clock: the realm checks the assertion's times against its own.
            form["client_assertion"] = client_assertion(
                self._signer, config.client_id, self._issuer, time.time()
            )
        else:
            assert config.client_secret is not None
            credentials = basic_credentials(config.client_id, config.client_secret)
            headers["Authorization"] = f"Basic {credentials}"
        return form, headers

    def record(
        self, token: str, outcome: bytes | str, now: float, wall: float, expires_at: float | None
    ) -> Entry:
        """Cache the outcome of a request, the body or why there is none; the entry cached.

        ``now`` is on the steady clock, which the cache's lifetimes are measured on; ``wall`` on
        the wall clock, which the answer's and the token's ``exp`` name instants of.
        """
        self.requests += 1
        entry: Entry
        if isinstance(outcome, str):
            _log.warning("token introspection failed (%s)", outcome)
            entry = Failed(token, outcome, now + min(_FAILURE_HOLD, self.config.cache_ttl))
        else:
            claims = _active_claims(outcome)
            if isinstance(claims, str):
                _log.warning("token introspection answer refused (%s)", claims)
                entry = Failed(token, claims, now + min(_FAILURE_HOLD, self.config.cache_ttl))
            else:
                until = now + self.config.cache_ttl
                exp = claims.get("exp") if claims is not None else None
                for limit in (expires_at, exp if type(exp) in (int, float) else None):
                    if limit is not None:
                        until = min(until, now + float(limit) - wall)
                entry = Answer(token, claims, until)
        key = token_key(token)
        self._entries.pop(key, None)  # so that the newest entry is the last one evicted
        self._entries[key] = entry
        if len(self._entries) > _CACHE_SIZE:
            try:
                self._entries.popitem(last=False)
            except KeyError:  # emptied by another thread meanwhile
                pass
        return entry


def endpoint_for(config: Introspection, jwks_url: str, certs_path: str) -> str:
    """The endpoint given, else Keycloak's beside the key set (``.../protocol/openid-connect``)."""
    if config.endpoint is not None:
        return config.endpoint
    require(
        jwks_url.endswith(certs_path),
        "Introspection(endpoint=...) is needed when the key set is not at Keycloak's path",
    )
    return jwks_url[: -len(certs_path)] + INTROSPECTION_PATH


def is_opaque(token: object, max_size: int) -> bool:
    """A bearer token that is not a JWT: no dots, b64token characters only (RFC 6750)."""
    return type(token) is str and "." not in token and len(token) <= max_size and is_b64token(token)


def merged_claims(jwt_claims: Mapping[str, Any], answer: Answer) -> dict[str, Any]:
    """The JWT's claims, completed by the answer's for what the JWT leaves out (a lightweight
    token's audience, roles and scopes): the signed claims win where both have one."""
    assert answer.claims is not None
    merged = {name: value for name, value in answer.claims.items() if name not in _NOT_CLAIMS}
    merged.update(jwt_claims)
    return merged


def _active_claims(body: bytes) -> dict[str, Any] | str | None:
    """The claims of an active answer, None for an inactive one, or why the body is unusable."""
    try:
        answer = json.loads(body)
    except (ValueError, RecursionError):
        return "not JSON"
    if not isinstance(answer, dict):
        return "not a JSON object"
    active = answer.get("active")
    if type(active) is not bool:
        return "no boolean active member"
    return answer if active else None
