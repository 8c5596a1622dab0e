"""Claim checks for a payload whose signature has already been verified, and the two profiles."""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal, TypeGuard, TypeVar

from ._errors import (
    ClientNotAllowed,
    ExpiredToken,
    InvalidAudience,
    InvalidClaim,
    InvalidIssuer,
    InvalidTokenType,
    NotServiceAccount,
    TokenNotYetValid,
)
from ._jose import JsonParser, decode_json_object, read_only_object, refuse_non_finite
from ._principal import Principal, verified_principal

Profile = Literal["keycloak", "rfc9068"]
PROFILES: tuple[Profile, ...] = ("keycloak", "rfc9068")

_SERVICE_ACCOUNT_PREFIX = "service-account-"
_EMPTY: frozenset[str] = frozenset()
_NO_CLIENT_ROLES: Mapping[str, frozenset[str]] = MappingProxyType({})
# azp names the client in Keycloak; client_id (Keycloak 22+, RFC 9068) and clientId (older
# Keycloak) repeat it.
CLIENT_ID_CLAIMS = ("azp", "client_id", "clientId")


@dataclass(frozen=True, slots=True)
class ClaimPolicy:
    """What a validator expects of a token's claims."""

    issuer: str
    audiences: frozenset[str]
    leeway: float
    profile: Profile
    allowed_clients: frozenset[str] | None
    service_accounts_only: bool
    # Keycloak names the client a token was issued to in azp; a service that is itself that
    # client (the Web Echo pattern) may count azp as an audience.
    azp_as_audience: bool = False


class VerifiedClaims:
    """What ``Principal.claims`` reads, on first use: the payload of a verified token (read
    again from the token, which the verified-token cache holds anyway), or claims put together
    from an introspection answer. Equal when what they read is."""

    __slots__ = ("_parse", "_source")

    def __init__(self, source: str | dict[str, Any], parse: JsonParser | None = None) -> None:
        self._source = source
        self._parse = parse

    def __call__(self) -> Mapping[str, Any]:
        source = self._source
        if isinstance(source, str):
            assert self._parse is not None  # a token comes with the parser that read it
            return read_only_object(
                decode_json_object(source.split(".", 2)[1].encode(), self._parse)
            )
        return read_only_object(source)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, VerifiedClaims) and self() == other()

    __hash__ = None  # type: ignore[assignment]


# The realm roles, the client roles and the scopes, as a Principal holds them.
PrincipalParts = tuple[frozenset[str], Mapping[str, frozenset[str]], frozenset[str]]
# A payload segment's members the rules below read and its PrincipalParts, or None to have the
# pure path read it.
NativeReader = Callable[[bytes], tuple[dict[str, Any], PrincipalParts] | None]


def _native_reader() -> NativeReader | None:
    """The native payload reader (docs/performance.md), in a build that has it."""
    try:
        from ._native_payload import PayloadReader
    except ImportError:  # the pure build, or one made where no Rust compiler was at hand
        return None
    return PayloadReader(MappingProxyType).read


read_native_payload = _native_reader()


def check_claims(
    claims: dict[str, Any],
    policy: ClaimPolicy,
    now: float,
    read: VerifiedClaims,
    finite: bool,
    parts: PrincipalParts | None = None,
) -> Principal:
    """Apply every claim rule in order and describe the caller, or raise an InvalidToken.
    ``read`` reads ``claims`` again, read-only, for ``Principal.claims``; ``finite``: the parser
    vouched that no number in them is infinite (``JsonParser.parse``); ``parts``: what the
    native reader already took from the roles and scopes, which ``claims`` then lacks."""
    if claims.get("iss") != policy.issuer:
        raise InvalidIssuer()
    expires_at = _check_times(claims, policy.leeway, policy.profile, now)
    azp = claims.get("azp") if policy.azp_as_audience else None
    _check_audience(claims.get("aud"), policy.audiences, azp if type(azp) is str else None)
    if policy.profile == "keycloak":
        typ = claims.get("typ")
        # Keycloak types its DPoP-bound access tokens "DPoP" (and only those).
        if typ != "Bearer" and not (typ == "DPoP" and dpop_thumbprint(claims) is not None):
            raise InvalidTokenType()
    else:
        for name in ("sub", "jti", "client_id"):
            if type(claims.get(name)) is not str:
                raise InvalidClaim(f"missing or invalid {name}")
    client_id = _client_id(claims)
    if policy.allowed_clients is not None and client_id not in policy.allowed_clients:
        raise ClientNotAllowed()
    is_service_account = service_account(claims, client_id, policy.profile)
    if policy.service_accounts_only and not is_service_account:
        raise NotServiceAccount()
    subject = claims.get("sub")
    if subject is not None and type(subject) is not str:
        raise InvalidClaim("invalid sub")
    if not finite:
        refuse_non_finite(claims)  # last: the claims above say what is wrong more exactly
    realm_roles, client_roles, scopes = principal_parts(claims) if parts is None else parts
    return verified_principal(
        issuer=policy.issuer,
        client_id=client_id,
        subject=subject,
        is_service_account=is_service_account,
        realm_roles=realm_roles,
        client_roles=client_roles,
        scopes=scopes,
        read_claims=read,
        expires_at=expires_at,
    )


def principal_parts(claims: Mapping[str, Any]) -> PrincipalParts:
    """The roles and scopes ``claims`` grant, or InvalidClaim for a malformed one."""
    return (
        _role_list(claims.get("realm_access"), "realm_access"),
        _client_roles(claims.get("resource_access")),
        _scopes(claims.get("scope")),
    )


def dpop_thumbprint(claims: Mapping[str, Any]) -> str | None:
    """The RFC 7638 thumbprint a DPoP-bound token names in ``cnf.jkt`` (RFC 9449 section 6.1),
    or None for a token not bound to a DPoP key. Other ``cnf`` members (Keycloak may add some)
    are left alone."""
    cnf = claims.get("cnf")
    if cnf is None:
        return None
    if type(cnf) is not dict:
        raise InvalidClaim("invalid cnf")
    jkt = cnf.get("jkt")
    if jkt is not None and (type(jkt) is not str or not jkt):
        raise InvalidClaim("invalid cnf.jkt")
    return jkt


def _is_time(value: object) -> TypeGuard[float]:
    # bool is an int subclass and must not pass as a time; 1e400 parses as infinity.
    return type(value) is int or (type(value) is float and math.isfinite(value))


def _check_times(claims: Mapping[str, Any], leeway: float, profile: Profile, now: float) -> float:
    expires_at = claims.get("exp")
    not_before = claims.get("nbf", 0)
    issued_at = claims.get("iat", 0)
    if not type(expires_at) is type(not_before) is type(issued_at) is int:  # Keycloak's: all int
        if not _is_time(expires_at):
            raise InvalidClaim("missing or invalid exp")
        if not (_is_time(not_before) and _is_time(issued_at)):
            raise InvalidClaim("invalid nbf or iat")
    if profile == "rfc9068" and "iat" not in claims:
        raise InvalidClaim("missing iat")
    try:
        if now >= expires_at + leeway:
            raise ExpiredToken()
        if not_before > now + leeway:
            raise TokenNotYetValid()
        if issued_at > now + leeway:
            raise TokenNotYetValid("token issued in the future")
        return float(expires_at)
    except OverflowError:  # an integer beyond any float
        raise InvalidClaim("invalid time claim") from None


def _check_audience(aud: object, accepted: frozenset[str], azp: str | None) -> None:
    """``aud`` names an accepted audience, or ``azp`` does (given only when that counts).

    A malformed ``aud`` is refused even when ``azp`` would do: its shape is never optional.
    """
    if aud is None:
        named = False
    elif type(aud) is str:
        named = aud in accepted
    else:
        named = not accepted.isdisjoint(_strings(aud, "aud"))
    if not named and (azp is None or azp not in accepted):
        raise InvalidAudience()


def _strings(values: object, claim: str) -> list[str]:
    """A JSON list of strings; any other shape makes the claim invalid."""
    if type(values) is list:
        try:
            "".join(values)  # refuses anything but strings, in one C call
        except TypeError:
            pass
        else:
            return values
    raise InvalidClaim(f"invalid {claim}")


# The tokens of one client carry the same roles and scopes again and again: one immutable set
# (and one client-roles mapping) for all of them keeps a verified-token cache entry small, and
# costs no more than building a new one. Bounded, so crafted tokens cannot grow it without end.
_SHARED_LIMIT = 1024
_shared_sets: dict[tuple[str, ...] | str, frozenset[str]] = {}
_shared_client_roles: dict[
    tuple[tuple[str, frozenset[str]], ...], Mapping[str, frozenset[str]]
] = {}
_Key = TypeVar("_Key", bound=Hashable)
_Value = TypeVar("_Value")


def _shared(table: dict[_Key, _Value], key: _Key, make: Callable[[_Key], _Value]) -> _Value:
    """The one immutable value for ``key`` in ``table``, made on first sight."""
    found = table.get(key)
    if found is None:
        if len(table) >= _SHARED_LIMIT:
            table.clear()
        found = table[key] = make(key)
    return found


def _set_of(members: tuple[str, ...] | str) -> frozenset[str]:
    """The set of ``members`` (a scope string: its space-separated names)."""
    return frozenset(members.split() if type(members) is str else members)


def _client_roles_of(roles: tuple[tuple[str, frozenset[str]], ...]) -> Mapping[str, frozenset[str]]:
    return MappingProxyType(dict(roles))


def _client_id(claims: Mapping[str, Any]) -> str:
    # Disagreement means a confused or forged token.
    found: str | None = None
    for name in CLIENT_ID_CLAIMS:
        value = claims.get(name)
        if value is None:
            continue
        if type(value) is not str or not value:
            raise InvalidClaim(f"invalid {name}")
        if found is None:
            found = value
        elif value != found:
            raise InvalidClaim("azp and client_id disagree")
    if found is None:
        raise InvalidClaim("missing client id")
    return found


def service_account(claims: Mapping[str, Any], client_id: str, profile: Profile) -> bool:
    """Whether the token speaks for the client itself (its service account), not a user."""
    username = claims.get("preferred_username")
    if type(username) is str:
        own = _SERVICE_ACCOUNT_PREFIX + client_id
        # Keycloak lower-cases usernames, not client ids: compare without case, exactly first.
        if username == own or username.lower() == own.lower():
            return True
    azp = claims.get("azp")
    if azp is not None and (claims.get("client_id") == azp or claims.get("clientId") == azp):
        return True
    # RFC 9068 section 2.2: without a resource owner, sub identifies the client itself.
    return profile == "rfc9068" and claims.get("sub") == client_id


def _role_list(container: object, claim: str) -> frozenset[str]:
    if container is None:
        return _EMPTY
    roles = container.get("roles") if type(container) is dict else ()
    if roles is None:
        return _EMPTY
    return _shared(_shared_sets, tuple(_strings(roles, claim)), _set_of)


def _client_roles(resource_access: object) -> Mapping[str, frozenset[str]]:
    if resource_access is None:
        return _NO_CLIENT_ROLES
    if type(resource_access) is not dict:
        raise InvalidClaim("invalid resource_access")
    roles = tuple(
        [
            (client, _role_list(access, "resource_access"))
            for client, access in resource_access.items()
        ]
    )
    return _shared(_shared_client_roles, roles, _client_roles_of)


def _scopes(scope: object) -> frozenset[str]:
    if scope is None:
        return _EMPTY
    if type(scope) is not str:
        raise InvalidClaim("invalid scope")
    return _shared(_shared_sets, scope, _set_of)
