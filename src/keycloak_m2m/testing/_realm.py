"""LocalRealm: a Keycloak-compatible realm served over real HTTP, for tests and demos.

This module holds the realm object: its keys and clients, and ``mint()``. What the tokens
contain is in ``_claims``, what the realm remembers of the tokens it issued in ``_issued``, the
key material in ``_keys``, the endpoints in ``_endpoints`` (with the HTTP details in
``_protocol``), faults and counts in ``_faults``.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from types import MappingProxyType, TracebackType
from typing import Any, ClassVar, Final
from urllib.parse import quote

from .._dpop import ProofChecker, ProofPolicy
from .._jose import JsonParser
from .._replay import MemoryReplayCache
from ._assertions import assertion_key
from ._claims import (
    CURRENT_KEYCLOAK,
    Client,
    Issue,
    Layout,
    dpop_bound,
    exchanged_claims,
    id_token_claims,
    lightweight,
    made_up_client,
    make_client,
    service_account_claims,
    unique,
)
from ._endpoints import HANDLERS, Endpoint
from ._faults import Fault, FaultInjection
from ._issued import IssuedTokens
from ._keys import (
    SUPPORTED_ALGORITHMS,
    Key,
    KeyRing,
    PrivateKey,
    PublicKey,
    compact_json,
    composed,
    half_hash,
    natural_algorithm,
    overridden_header,
    signed_by_realm,
    signing_algorithm,
    verified_payload,
)
from ._protocol import NOT_FOUND
from ._server import HttpServer, Request, Response
from ._tls import IssuedCertificate, RealmTls

__all__ = ["Endpoint", "LocalRealm", "PrivateKey"]

_NO_CLIENT_ROLES: Final[Mapping[str, Iterable[str]]] = MappingProxyType({})
_ACCESS_TOKEN_TYPES: Final = ("Bearer", "DPoP")


class LocalRealm(FaultInjection):
    """A Keycloak-compatible realm on ``127.0.0.1`` for tests and demos.

    Use as a context manager (``with LocalRealm() as realm:``) or call ``start()``/``stop()``.
    The server, keys, clients and faults may be changed from any thread at any time.
    """

    SUPPORTED_ALGORITHMS: ClassVar[tuple[str, ...]] = SUPPORTED_ALGORITHMS

    def __init__(
        self,
        name: str = "test",
        *,
        algorithm: str = "RS256",
        token_lifetime: int = 300,
        legacy_auth_prefix: bool | None = None,
        keycloak_version: int = CURRENT_KEYCLOAK,
        clock: Callable[[], float] = time.time,
        tls: bool = False,
    ) -> None:
        if not name:
            raise ValueError("realm name must not be empty")
        if token_lifetime <= 0:
            raise ValueError("token_lifetime must be positive")
        self._layout = Layout(keycloak_version)
        if legacy_auth_prefix is None:
            legacy_auth_prefix = self._layout.auth_prefix
        self._name = name
        self._token_lifetime = token_lifetime
        self._path = ("/auth" if legacy_auth_prefix else "") + "/realms/" + quote(name, safe="")
        self._clock = clock
        self._lock = threading.Lock()
        # Set by stop(): wakes request threads sleeping in an injected delay.
        self._stopping = threading.Event()
        self._server: HttpServer | None = None
        self._port: int | None = None
        self._tls = RealmTls(name) if tls else None
        self._keys = KeyRing(algorithm, name)
        self._clients: dict[str, Client] = {}
        self._issued = IssuedTokens()
        self._faults: dict[Endpoint, Fault] = {}
        self._counts: Counter[Endpoint] = Counter()
        self._made_up_subject = str(uuid.uuid4())
        # DPoP proofs at the token endpoint, checked as Keycloak does (a minute's window).
        self._dpop_proofs = ProofChecker(
            ProofPolicy(max_age=60.0, leeway=10.0, nonce_secret=None),
            JsonParser(accept_duplicate_members=False),
        )
        self._dpop_replay = MemoryReplayCache()
        # The jti of every client assertion accepted, refused when seen again (realm-wide, as
        # Keycloak's single-use store: re-adding a client does not forget them).
        self._assertion_replay = MemoryReplayCache(clock=clock)
        oidc = f"{self._path}/protocol/openid-connect"
        self._routes: Mapping[str, Endpoint] = {
            self._path: "realm",
            f"{self._path}/.well-known/openid-configuration": "discovery",
            f"{oidc}/certs": "certs",
            f"{oidc}/token": "token",
            f"{oidc}/token/introspect": "introspect",
            f"{oidc}/revoke": "revoke",
            f"{oidc}/userinfo": "userinfo",
        }

    def __repr__(self) -> str:
        where = self.base_url if self._port is not None else "not started"
        return f"LocalRealm({self._name!r}, {where})"

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> LocalRealm:
        """Start serving on a free port; a realm can be started once."""
        with self._lock:
            if self._port is not None:
                raise RuntimeError("a LocalRealm can only be started once")
            self._server = HttpServer(
                self._handle, None if self._tls is None else self._tls.context
            )
            self._port = self._server.port
        return self

    def stop(self) -> None:
        """Stop serving, cut open connections and join every server thread. Idempotent."""
        with self._lock:
            server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()
        self._release_held()
        server.close()
        self._keys.retire()
        if self._tls is not None:
            self._tls.directory.cleanup()

    def __enter__(self) -> LocalRealm:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # -- addresses ----------------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self._name

    @property
    def token_lifetime(self) -> int:
        return self._token_lifetime

    @property
    def keycloak_version(self) -> int:
        return self._layout.version

    @property
    def base_url(self) -> str:
        if self._port is None:
            raise RuntimeError("the realm has not been started")
        scheme = "http" if self._tls is None else "https"
        return f"{scheme}://127.0.0.1:{self._port}"

    @property
    def ca_file(self) -> Path:
        """The PEM file of the CA behind a ``tls=True`` realm's certificates, to trust it."""
        if self._tls is None:
            raise RuntimeError("the realm serves plain HTTP; use LocalRealm(tls=True)")
        return self._tls.ca_file

    def client_certificate(self, client_id: str) -> IssuedCertificate:
        """A TLS client certificate (``CN=<client_id>``) from a ``tls=True`` realm's CA: what a
        client added with ``certificate_bound=True`` authenticates with."""
        if self._tls is None:
            raise RuntimeError("the realm serves plain HTTP; use LocalRealm(tls=True)")
        return self._tls.authority.client_certificate(client_id)

    @property
    def issuer(self) -> str:
        return self.base_url + self._path

    @property
    def jwks_url(self) -> str:
        return self.issuer + "/protocol/openid-connect/certs"

    @property
    def token_url(self) -> str:
        return self.issuer + "/protocol/openid-connect/token"

    @property
    def introspection_url(self) -> str:
        return self.token_url + "/introspect"

    @property
    def revocation_url(self) -> str:
        return self.issuer + "/protocol/openid-connect/revoke"

    @property
    def userinfo_url(self) -> str:
        return self.issuer + "/protocol/openid-connect/userinfo"

    @property
    def discovery_url(self) -> str:
        return self.issuer + "/.well-known/openid-configuration"

    # -- keys ---------------------------------------------------------------------------------

    @property
    def active_kid(self) -> str:
        return self._keys.active().kid

    @property
    def signing_kids(self) -> tuple[str, ...]:
        """Every published signing key, active first, then the passive ones newest first."""
        return tuple(key.kid for key in self._keys.signing_keys())

    @property
    def encryption_kid(self) -> str:
        return self._keys.encryption.kid

    def rotate_keys(self, *, keep_old: bool = True, algorithm: str | None = None) -> str:
        """Make a new active signing key and return its kid.

        ``algorithm`` defaults to the current active key's. Old keys stay published (passive)
        unless ``keep_old`` is false.
        """
        return self._keys.rotate(keep_old=keep_old, algorithm=algorithm)

    def private_key(self, kid: str) -> PrivateKey:
        return self._published_key(kid).private_key

    def public_jwk(self, kid: str) -> dict[str, Any]:
        return copy.deepcopy(dict(self._published_key(kid).jwk))

    def _published_key(self, kid: str) -> Key:
        key = self._keys.named(kid)
        if key is None:
            raise KeyError(f"no published key with kid {kid!r}")
        return key

    # -- clients ------------------------------------------------------------------------------

    def add_client(
        self,
        client_id: str,
        secret: str | None = None,
        *,
        realm_roles: Iterable[str] = (),
        client_roles: Mapping[str, Iterable[str]] = _NO_CLIENT_ROLES,
        audience: Iterable[str] = (),
        scopes: Iterable[str] | None = None,
        default_scopes: Iterable[str] | None = None,
        optional_scopes: Iterable[str] | None = None,
        web_origins: Iterable[str] = (),
        redirect_uris: Iterable[str] = (),
        lightweight_tokens: bool = False,
        certificate_bound: bool = False,
        dpop_bound: bool = False,
        public_key: PublicKey | str | bytes | None = None,
        jwks_url: str | None = None,
    ) -> None:
        """Register (or replace) a confidential client with a service account.

        The client authenticates with ``secret``, or with RFC 7523 assertions signed by the key
        registered as ``public_key`` (a key object, or PEM of a key or certificate) or
        published at ``jwks_url``, or with its TLS certificate (``certificate_bound``).
        See docs/testing.md for every option; ``scopes`` keeps its earlier meaning (the request
        picks among them, all when it names none) and cannot be combined with
        ``default_scopes``/``optional_scopes``, which follow Keycloak's rule.
        """
        client = make_client(
            self._layout,
            client_id,
            secret,
            realm_roles=realm_roles,
            client_roles=client_roles,
            audience=audience,
            scopes=scopes,
            default_scopes=default_scopes,
            optional_scopes=optional_scopes,
            web_origins=web_origins,
            redirect_uris=redirect_uris,
            lightweight_tokens=lightweight_tokens,
            certificate_bound=certificate_bound,
            dpop_bound=dpop_bound,
            assertion_key=assertion_key(public_key, jwks_url),
        )
        with self._lock:
            self._clients[client_id] = client

    def disable_client(self, client_id: str) -> None:
        """Disable a client as Keycloak's admin console does: its token requests get
        ``invalid_client``, and its tokens introspect inactive (userinfo refuses them)."""
        client = self._client(client_id)
        with self._lock:
            self._clients[client_id] = dataclasses.replace(client, enabled=False)

    def token_claims(self, client_id: str) -> dict[str, Any]:
        """The full payload the token endpoint would issue to ``client_id`` now, for a request
        without ``scope`` (a lightweight client's JWT carries only part of it)."""
        client = self._client(client_id)
        return self._claims_for(client, self._default_grant(client))

    def _client(self, client_id: str) -> Client:
        client = self._client_or_none(client_id)
        if client is None:
            raise KeyError(f"no client {client_id!r}; add it with add_client()")
        return client

    def _client_or_none(self, client_id: str) -> Client | None:
        with self._lock:
            return self._clients.get(client_id)

    def _has_client(self, client_id: str) -> bool:
        # A name used for client roles or as an audience is a client in Keycloak too, even if
        # this realm was never given its secret.
        with self._lock:
            clients = list(self._clients.values())
        return any(
            client_id == client.client_id
            or client_id in client.audience
            or any(client_id == name for name, _ in client.client_roles)
            for client in clients
        )

    def _scope_names(self) -> list[str]:
        with self._lock:
            clients = list(self._clients.values())
        names = [*self._layout.builtin_scopes(), *(s for c in clients for s in c.scopes.names())]
        return unique(names)

    @staticmethod
    def _default_grant(client: Client) -> tuple[str, ...]:
        scopes = client.scopes.granted(None)
        assert scopes is not None  # no request is always a valid request
        return scopes

    # -- tokens -------------------------------------------------------------------------------

    def _issue_context(self) -> Issue:
        return Issue(
            self.issuer, self._name, self._layout, int(self._clock()), self._token_lifetime
        )

    def _claims_for(self, client: Client, scopes: Iterable[str]) -> dict[str, Any]:
        return service_account_claims(self._issue_context(), client, scopes)

    def _jwt_claims(self, client: Client, claims: dict[str, Any]) -> dict[str, Any]:
        """What goes into the JWT: everything, or for a lightweight client the few claims
        Keycloak keeps, the rest being remembered for introspection."""
        if not client.lightweight_tokens:
            return claims
        self._issued.remember_full(claims)
        return lightweight(claims)

    def _issue(
        self, client: Client, scopes: Iterable[str], jkt: str | None = None
    ) -> tuple[str, dict[str, Any]]:
        """A token as the token endpoint signs it (bound to the DPoP key ``jkt`` if given), and
        its full claims."""
        claims = self._claims_for(client, scopes)
        if client.bound_to is not None:
            claims["cnf"] = {"x5t#S256": client.bound_to}  # RFC 8705 section 3
        if jkt is not None:
            claims = dpop_bound(claims, jkt)
        return signed_by_realm(self._keys.active(), self._jwt_claims(client, claims)), claims

    def _issue_id_token(self, client: Client, access_token: str, access: dict[str, Any]) -> str:
        key = self._keys.active()
        at_hash = half_hash(access_token, key.algorithm)
        return signed_by_realm(key, id_token_claims(self._issue_context(), client, access, at_hash))

    def _issue_exchanged(
        self,
        requester: Client,
        subject: Mapping[str, Any],
        target: str | None,
        scopes: Iterable[str],
    ) -> str:
        audience = [target] if target is not None else unique([*requester.audience, "account"])
        claims = exchanged_claims(self._issue_context(), requester, subject, audience, scopes)
        return signed_by_realm(self._keys.active(), claims)

    def _active_claims(self, token: str) -> dict[str, Any] | None:
        """The full claims of an access token as introspection sees it, or None if it is not
        active: not signed by a published key, another issuer, expired, not an access token,
        revoked, or of an unknown or disabled client."""
        claims = self._issued.opaque_claims(token) or verified_payload(token, self._keys.named)
        if (
            claims is None
            or claims.get("iss") != self.issuer
            or type(claims.get("exp")) is not int
            or claims["exp"] <= self._clock()
            or claims.get("typ") not in _ACCESS_TOKEN_TYPES
        ):
            return None
        client = self._client_or_none(str(claims.get("azp")))
        with self._lock:
            enabled = client is not None and client.enabled
        if not enabled or self._issued.revoked(token):
            return None
        return self._issued.full(claims)

    def opaque_token(self, client_id: str) -> str:
        """An opaque (non-JWT) access token for ``client_id``, such as a reference-token
        provider issues: only introspection tells what it stands for (the claims a JWT of
        this client would carry)."""
        client = self._client(client_id)
        return self._issued.opaque_token(self._claims_for(client, self._default_grant(client)))

    def revoke(self, token: str) -> None:
        """Revoke ``token`` as the revocation endpoint does: from now on it introspects
        inactive and userinfo and token exchange refuse it (its JWT stays valid)."""
        self._issued.revoke(token)

    def mint(
        self,
        client_id: str | None = None,
        *,
        claims: Mapping[str, Any] | None = None,
        remove: Iterable[str] = (),
        header: Mapping[str, Any] | None = None,
        remove_header: Iterable[str] = (),
        alg: str | None = None,
        kid: str | None = None,
        expires_in: float | None = None,
        raw_header: bytes | None = None,
        raw_payload: bytes | None = None,
        signing_key: PrivateKey | bytes | None = None,
        signature: bytes | None = None,
        dpop_jkt: str | None = None,
    ) -> str:
        """Make a token directly, with any override, including deliberately broken ones.

        Payload: what the token endpoint would issue to ``client_id`` for a request without
        ``scope`` (lightweight for a lightweight client), or for no client a service-account
        token of a made-up client "test-client" (audience "account"); then ``claims``
        overrides, then ``expires_in`` sets ``exp = iat + expires_in``, then ``remove`` drops
        claims. ``dpop_jkt`` binds the token to that DPoP key thumbprint as Keycloak does
        (``typ`` "DPoP", ``cnf.jkt``), before ``claims`` apply.

        Header: Keycloak's ``{"alg","typ","kid"}``, then ``header`` overrides, then
        ``remove_header`` drops members. ``kid`` (default: the active key) names the key in the
        header and, without ``signing_key``, the realm key (signing or enc) that signs.

        Signing: ``signing_key`` (a private key, or bytes as an HMAC secret) replaces the realm
        key; ``alg`` (default: the signing key's) is both the header's alg and the algorithm
        used, so ``header={"alg": ...}`` can make them disagree. ``signature`` replaces the
        signature bytes outright. ``raw_header``/``raw_payload`` are encoded as given.
        """
        header_kid = kid if kid is not None else self.active_kid
        realm_key = self._keys.named(header_kid)
        if signing_key is None and realm_key is None and signature is None:
            raise ValueError(f"no realm key with kid {header_kid!r}; pass signing_key=")
        algorithm = alg or self._default_mint_algorithm(signing_key, realm_key)
        if raw_header is None:
            members = {"alg": algorithm, "typ": "JWT", "kid": header_kid}
            raw_header = overridden_header(members, header or {}, remove_header)
        if raw_payload is None:
            payload = self._mint_payload(client_id, claims, expires_in, remove, dpop_jkt)
            raw_payload = compact_json(payload).encode("utf-8")
        key = signing_key
        if key is None and realm_key is not None:
            key = realm_key.private_key
        return composed(raw_header, raw_payload, algorithm, key, signature)

    def _default_mint_algorithm(
        self, signing_key: PrivateKey | bytes | None, realm_key: Key | None
    ) -> str:
        if signing_key is not None:
            return natural_algorithm(signing_key)
        if realm_key is not None:
            return signing_algorithm(realm_key)
        return self._keys.active().algorithm

    def _mint_payload(
        self,
        client_id: str | None,
        claims: Mapping[str, Any] | None,
        expires_in: float | None,
        remove: Iterable[str],
        dpop_jkt: str | None,
    ) -> dict[str, Any]:
        if client_id is None:
            client = made_up_client(self._made_up_subject)
        else:
            client = self._client(client_id)
        full = self._claims_for(client, self._default_grant(client))
        payload = dict(self._jwt_claims(client, full))
        if dpop_jkt is not None:
            payload = dpop_bound(payload, dpop_jkt)
        payload.update(claims or {})
        if expires_in is not None:
            payload["exp"] = math.floor(payload["iat"] + expires_in)
        for name in remove:
            payload.pop(name, None)
        return payload

    # -- HTTP ---------------------------------------------------------------------------------

    def _handle(self, request: Request) -> Response:
        endpoint = self._routes.get(request.path)
        if endpoint is None:
            return NOT_FOUND
        with self._lock:
            self._counts[endpoint] += 1
            fault = self._faults.get(endpoint)
        if fault is not None:
            if fault.delay > 0:
                # Sleeps only this request's thread; stop() cuts it short.
                self._stopping.wait(fault.delay)
            if fault.release is not None:
                fault.release.wait()  # stop() sets it too
            if fault.response is not None:
                return fault.response
        return HANDLERS[endpoint](self, request)
