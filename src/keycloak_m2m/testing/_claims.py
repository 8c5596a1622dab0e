"""What the realm's tokens and answers contain: clients, client scopes, and Keycloak's claim layout
for each version where Keycloak changed it. No I/O and no HTTP here.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from ._assertions import AssertionKey

CURRENT_KEYCLOAK: Final = 26

_ACCOUNT_ROLES: Final = ("manage-account", "manage-account-links", "view-profile")
# Keycloak's built-in default client scopes that put nothing in the token's ``scope`` claim
# ("Include in token scope" is off): a request may name them, they are always granted.
_SILENT_DEFAULT_SCOPES: Final = frozenset({"acr", "basic", "roles", "web-origins"})
DEFAULT_SCOPES: Final = ("profile", "email")
_OPTIONAL_SCOPES: Final = ("address", "phone", "offline_access", "microprofile-jwt")
# Claims a lightweight access token keeps (Keycloak 24+): the ones TokenManager sets itself,
# plus ``sub`` from the basic scope. Everything else is left for introspection.
_LIGHTWEIGHT_CLAIMS: Final = ("exp", "iat", "jti", "iss", "sub", "typ", "azp", "scope", "cnf")


# ---------------------------------------------------------------------------------------------
# Versions


@dataclass(frozen=True)
class Layout:
    """Where a Keycloak major version differs in what it publishes and issues."""

    version: int

    def __post_init__(self) -> None:
        if type(self.version) is not int or self.version < 1:
            raise ValueError("keycloak_version must be a Keycloak major version, e.g. 26")

    @property
    def auth_prefix(self) -> bool:
        # The Quarkus distribution (17) dropped the /auth context path.
        return self.version < 17

    @property
    def client_id_claim(self) -> str:
        # The service account's "Client ID" mapper wrote ``clientId`` until Keycloak 22.
        return "client_id" if self.version >= 22 else "clientId"

    @property
    def lightweight_tokens(self) -> bool:
        return self.version >= 24

    @property
    def userinfo_needs_openid(self) -> bool:
        # Keycloak 19.0.2 started refusing userinfo for tokens without the openid scope.
        return self.version >= 19

    @property
    def optional_scopes(self) -> tuple[str, ...]:
        return (*_OPTIONAL_SCOPES, "organization") if self.version >= 26 else _OPTIONAL_SCOPES

    def realm_roles(self, realm: str, extra: Iterable[str]) -> list[str]:
        # Keycloak 13 put the realm's defaults into one composite role, default-roles-<realm>,
        # and tokens carry it next to the roles it contains.
        defaults = ["offline_access", "uma_authorization"]
        if self.version >= 13:
            defaults.insert(0, f"default-roles-{realm.lower()}")
        return unique([*defaults, *extra])

    def token_id(self, prefix: str) -> str:
        # Keycloak 26 prefixes a jti with the kind of token (trtcc: client credentials); the
        # earlier versions seen in real tokens use a bare UUID.
        return f"{prefix}:{uuid.uuid4()}" if self.version >= 26 else str(uuid.uuid4())

    def builtin_scopes(self) -> list[str]:
        return sorted({*DEFAULT_SCOPES, *_SILENT_DEFAULT_SCOPES, *self.optional_scopes})


# ---------------------------------------------------------------------------------------------
# Clients and their scopes


@dataclass(frozen=True)
class ScopeRule:
    """Which client scopes a token request gets.

    Keycloak's rule: ``default`` scopes always, plus the ``optional`` ones the request names;
    naming any other scope is ``invalid_scope``. With ``narrowing`` (``add_client(scopes=...)``,
    kept from earlier releases) the request instead picks among ``default``, and a request that
    names none gets them all.
    """

    default: tuple[str, ...] = DEFAULT_SCOPES
    optional: tuple[str, ...] = ()
    narrowing: bool = False

    def granted(self, requested: str | None) -> tuple[str, ...] | None:
        """The token's scopes in order (``openid`` first when asked), or None if invalid."""
        words = list(dict.fromkeys((requested or "").split()))
        asked = [word for word in words if word != "openid"]
        if self.narrowing:
            if not set(asked) <= set(self.default):
                return None
            chosen = [s for s in self.default if s in asked] if asked else list(self.default)
        else:
            if not set(asked) <= {*self.default, *self.optional, *_SILENT_DEFAULT_SCOPES}:
                return None
            chosen = [*self.default, *(s for s in self.optional if s in asked)]
        return tuple(dict.fromkeys([*(["openid"] if "openid" in words else []), *chosen]))

    def names(self) -> tuple[str, ...]:
        return (*self.default, *self.optional)


@dataclass(frozen=True)
class Client:
    client_id: str
    # None for a client that authenticates otherwise (a signed JWT, its TLS certificate).
    secret: str | None = field(repr=False)
    realm_roles: tuple[str, ...]
    client_roles: tuple[tuple[str, tuple[str, ...]], ...]
    audience: tuple[str, ...]
    scopes: ScopeRule
    # Keycloak puts the service-account *user's* id in ``sub``, never the client id.
    service_account_id: str
    web_origins: tuple[str, ...] = ()
    redirect_uris: tuple[str, ...] = ()
    lightweight_tokens: bool = False
    # Keycloak's "Require DPoP bound tokens": token requests without a proof are refused.
    dpop_bound: bool = False
    enabled: bool = True
    # Authenticates with its TLS certificate (tls_client_auth) and gets tokens bound to it.
    certificate_bound: bool = False
    # The x5t#S256 of the certificate this request authenticated with, for its token's cnf.
    bound_to: str | None = None
    # Authenticates with RFC 7523 assertions signed by this key (Keycloak's "Signed JWT").
    assertion_key: AssertionKey | None = None

    def allowed_origins(self) -> tuple[str, ...]:
        """The Web Origins as Keycloak resolves them: "+" stands for the origins of the
        absolute redirect URIs, "*" for any origin, anything else for itself."""
        origins = [origin for origin in self.web_origins if origin != "+"]
        if "+" in self.web_origins:
            origins += [origin_of(uri) for uri in self.redirect_uris if uri.startswith("http")]
        return tuple(unique(origins))

    def allows_origin(self, origin: str) -> bool:
        allowed = self.allowed_origins()
        return origin in allowed or "*" in allowed


def make_client(
    layout: Layout,
    client_id: str,
    secret: str | None,
    *,
    realm_roles: Iterable[str],
    client_roles: Mapping[str, Iterable[str]],
    audience: Iterable[str],
    scopes: Iterable[str] | None,
    default_scopes: Iterable[str] | None,
    optional_scopes: Iterable[str] | None,
    web_origins: Iterable[str],
    redirect_uris: Iterable[str],
    lightweight_tokens: bool,
    certificate_bound: bool = False,
    dpop_bound: bool = False,
    assertion_key: AssertionKey | None = None,
) -> Client:
    """A client from ``add_client``'s arguments, each checked."""
    if not client_id:
        raise ValueError("client_id must not be empty")
    _check_credentials(secret, assertion_key, certificate_bound)
    if lightweight_tokens and not layout.lightweight_tokens:
        raise ValueError("lightweight access tokens need keycloak_version 24 or later")
    origins = strings(web_origins, "web_origins")
    for origin in origins:
        _check_web_origin(origin)
    return Client(
        client_id=client_id,
        secret=secret,
        realm_roles=strings(realm_roles, "realm_roles"),
        client_roles=tuple(
            (name, strings(roles, f"client_roles[{name!r}]"))
            for name, roles in client_roles.items()
        ),
        audience=strings(audience, "audience"),
        scopes=_scope_rule(layout, scopes, default_scopes, optional_scopes),
        service_account_id=str(uuid.uuid4()),
        web_origins=origins,
        redirect_uris=strings(redirect_uris, "redirect_uris"),
        lightweight_tokens=lightweight_tokens,
        certificate_bound=certificate_bound,
        dpop_bound=dpop_bound,
        assertion_key=assertion_key,
    )


def _check_credentials(
    secret: str | None, assertion_key: AssertionKey | None, certificate_bound: bool
) -> None:
    # A Keycloak client has one Client Authenticator: a secret, a signed JWT or X509.
    if assertion_key is None and secret is None and not certificate_bound:
        raise ValueError("a client needs a secret, a public_key or jwks_url, or certificate_bound")
    if assertion_key is not None and (secret is not None or certificate_bound):
        raise ValueError(
            "a client signing JWTs (public_key, jwks_url) has no secret and is not "
            "certificate_bound: a Keycloak client has one Client Authenticator"
        )


def _scope_rule(
    layout: Layout,
    scopes: Iterable[str] | None,
    default_scopes: Iterable[str] | None,
    optional_scopes: Iterable[str] | None,
) -> ScopeRule:
    if scopes is not None:
        if default_scopes is not None or optional_scopes is not None:
            raise TypeError("scopes= cannot be combined with default_scopes=/optional_scopes=")
        names = strings(scopes, "scopes")
        _check_scope_names(names)
        return ScopeRule(names, narrowing=True)
    default = DEFAULT_SCOPES if default_scopes is None else strings(default_scopes, "scopes")
    optional = (
        layout.optional_scopes
        if optional_scopes is None
        else strings(optional_scopes, "optional_scopes")
    )
    _check_scope_names((*default, *optional))
    if "openid" in (*default, *optional):
        raise ValueError("openid is not a client scope: every request may ask for it")
    if set(default) & set(optional):
        raise ValueError("a scope cannot be both a default and an optional scope")
    return ScopeRule(default, optional)


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")


def _check_web_origin(origin: str) -> None:
    if origin in ("+", "*"):
        return
    parts = urlsplit(origin)
    if parts.scheme not in ("http", "https") or not parts.hostname or origin_of(origin) != origin:
        raise ValueError(f"web origin {origin!r} must be '+', '*' or scheme://host[:port]")


def _check_scope_names(names: Iterable[str]) -> None:
    if any(not name or any(c.isspace() for c in name) for name in names):
        raise ValueError("scope names must be non-empty and contain no whitespace")


def strings(values: Iterable[str], what: str) -> tuple[str, ...]:
    # A bare string is iterable too; catching it here saves a confusing token full of letters.
    if isinstance(values, str):
        raise TypeError(f"{what} must be an iterable of strings, not a single string")
    return tuple(dict.fromkeys(values))


def unique(values: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(values))


def made_up_client(subject: str, client_id: str = "test-client") -> Client:
    """The client ``mint()`` speaks for when given none: no roles, default scopes."""
    return Client(client_id, "", (), (), (), ScopeRule(), subject)


# ---------------------------------------------------------------------------------------------
# Token contents


@dataclass(frozen=True)
class Issue:
    """What every token of one issuance shares."""

    issuer: str
    realm: str
    layout: Layout
    issued_at: int
    lifetime: int


def service_account_claims(issue: Issue, client: Client, scopes: Iterable[str]) -> dict[str, Any]:
    """The full payload of a client-credentials access token, in Keycloak's order."""
    scopes = tuple(scopes)
    client_roles = [(name, roles) for name, roles in client.client_roles if roles]
    audience = unique([*client.audience, *(name for name, _ in client_roles), "account"])
    claims: dict[str, Any] = {
        "exp": issue.issued_at + issue.lifetime,
        "iat": issue.issued_at,
        "jti": issue.layout.token_id("trtcc"),
        "iss": issue.issuer,
        "aud": audience[0] if len(audience) == 1 else audience,
        "sub": client.service_account_id,
        "typ": "Bearer",
        "azp": client.client_id,
        "acr": "1",
    }
    # The web-origins scope's mapper: only for a client with Web Origins.
    if client.allowed_origins():
        claims["allowed-origins"] = list(client.allowed_origins())
    claims["realm_access"] = {"roles": issue.layout.realm_roles(issue.realm, client.realm_roles)}
    claims["resource_access"] = _resource_access(client_roles)
    claims["scope"] = " ".join(scopes)
    claims.update(_service_account_mappers(issue.layout, client, scopes))
    return claims


def dpop_bound(claims: Mapping[str, Any], jkt: str) -> dict[str, Any]:
    """A payload bound to the DPoP key ``jkt`` as Keycloak binds it: ``typ`` "DPoP" and
    ``cnf.jkt`` (RFC 9449 section 6.1)."""
    # Other confirmation members (a certificate thumbprint) stay: a token may carry both.
    return {**claims, "typ": "DPoP", "cnf": {**(claims.get("cnf") or {}), "jkt": jkt}}


def _service_account_mappers(
    layout: Layout, client: Client, scopes: tuple[str, ...]
) -> dict[str, Any]:
    """The claims of the service account's own mappers and of the profile and email scopes, in
    the order each version writes them."""
    profile = {"preferred_username": f"service-account-{client.client_id}"}
    if "profile" not in scopes:
        profile = {}
    email: dict[str, Any] = {"email_verified": False} if "email" in scopes else {}
    if layout.client_id_claim == "clientId":
        return {
            "clientHost": "127.0.0.1",
            "clientId": client.client_id,
            **email,
            **profile,
            "clientAddress": "127.0.0.1",
        }
    return {
        **email,
        "clientHost": "127.0.0.1",
        **profile,
        "clientAddress": "127.0.0.1",
        "client_id": client.client_id,
    }


def _resource_access(
    client_roles: Iterable[tuple[str, tuple[str, ...]]],
) -> dict[str, dict[str, list[str]]]:
    access = {name: {"roles": list(roles)} for name, roles in client_roles}
    # "account" always comes last, merged with any account roles the test asked for.
    extra_account_roles = access.pop("account", {"roles": []})["roles"]
    access["account"] = {"roles": unique([*_ACCOUNT_ROLES, *extra_account_roles])}
    return access


def lightweight(claims: Mapping[str, Any]) -> dict[str, Any]:
    """The JWT of a lightweight access token: no audience, roles or client id."""
    return {name: claims[name] for name in _LIGHTWEIGHT_CLAIMS if name in claims}


def id_token_claims(
    issue: Issue, client: Client, access: Mapping[str, Any], at_hash: str
) -> dict[str, Any]:
    """The ID token Keycloak adds when a client-credentials request asks for ``openid``."""
    scopes = tuple(str(access.get("scope", "")).split())
    return {
        "exp": access["exp"],
        "iat": access["iat"],
        "jti": str(uuid.uuid4()),
        "iss": issue.issuer,
        "aud": client.client_id,
        "sub": client.service_account_id,
        "typ": "ID",
        "azp": client.client_id,
        "at_hash": at_hash,
        "acr": "1",
        **_service_account_mappers(issue.layout, client, scopes),
    }


def exchanged_claims(
    issue: Issue,
    requester: Client,
    subject: Mapping[str, Any],
    audience: list[str],
    scopes: Iterable[str],
) -> dict[str, Any]:
    """The new token speaks for the subject, is held by the requester, and is meant for
    ``audience``: Keycloak keeps the subject's identity and roles, narrowed to the audience."""
    resource_access = subject.get("resource_access")
    narrowed = {
        name: roles
        for name, roles in (resource_access if isinstance(resource_access, dict) else {}).items()
        if name in audience
    }
    return {
        "exp": issue.issued_at + issue.lifetime,
        "iat": issue.issued_at,
        "jti": issue.layout.token_id("trte"),
        "iss": issue.issuer,
        "aud": audience[0] if len(audience) == 1 else audience,
        "sub": subject.get("sub"),
        "typ": "Bearer",
        "azp": requester.client_id,
        "acr": "1",
        "realm_access": subject.get("realm_access", {"roles": []}),
        "resource_access": narrowed,
        "scope": " ".join(scopes),
        "preferred_username": subject.get("preferred_username"),
    }


def userinfo(claims: Mapping[str, Any]) -> dict[str, Any]:
    """A service account's userinfo: its user id and what the profile and email scopes give."""
    answer = {"sub": claims.get("sub")}
    answer.update(
        {name: claims[name] for name in ("email_verified", "preferred_username") if name in claims}
    )
    return answer


def introspection(claims: Mapping[str, Any]) -> dict[str, Any]:
    """Keycloak's answer for an active access token: its claims, then client_id, username,
    token_type (the token's ``typ``: Bearer or DPoP) and active."""
    answer = dict(claims)
    answer["client_id"] = claims.get("azp")
    if not str(answer.get("scope", "x")).strip():
        answer.pop("scope")
    username = claims.get("preferred_username")
    if username is None and claims.get("azp") is not None:
        username = f"service-account-{claims['azp']}"
    if username is not None:
        answer["username"] = username
    answer["token_type"] = claims.get("typ")
    answer["active"] = True
    return answer
