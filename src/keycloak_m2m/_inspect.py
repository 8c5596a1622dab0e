"""Explaining a token to a person, without verifying it: what ``keycloak-m2m inspect`` prints.

No I/O: ``explain`` turns the token text into a report, ``render`` into lines. Nothing here is a
security decision; the report says so at the top.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from ._claims import CLIENT_ID_CLAIMS, service_account
from ._jose import JsonParser, b64url_decode, decode_json_object, split_token
from ._principal import Principal

__all__ = [
    "TokenReport",
    "audience_mismatch",
    "describe_principal",
    "explain",
    "issuer_mismatch",
    "relative_time",
    "render",
]

# Larger than any validator accepts, so inspect can still explain why a big token is refused.
_MAX_INSPECTED_SIZE = 1024 * 1024
_SERVICE_ACCOUNT_PREFIX = "service-account-"
_KEYCLOAK_DEFAULT_AUDIENCE = "account"
# A clock a little ahead of the issuer's is normal; beyond this an iat in the future is suspect.
_CLOCK_SKEW = 60
_TOKEN_TYPES = {
    "Bearer": "access token",
    "ID": "ID token",
    "Refresh": "refresh token",
    "Offline": "offline refresh token",
    "Logout": "logout token",
}
_UNITS = (("day", 86400), ("hour", 3600), ("minute", 60))
_UNVERIFIED = "UNVERIFIED: decoded without checking the signature; do not trust these values."


@dataclass(frozen=True, slots=True)
class TokenReport:
    header: Mapping[str, Any]
    claims: Mapping[str, Any]
    facts: tuple[tuple[str, str], ...]
    warnings: tuple[str, ...]


def explain(token: str, *, now: float, audience: str | None = None) -> TokenReport:
    """Decode ``token`` and describe it; raises MalformedToken if it is not a readable JWT.

    ``audience`` is the API the token is meant for, to warn when the token does not name it.
    """
    header_segment, payload_segment, _, signature_segment = split_token(token, _MAX_INSPECTED_SIZE)
    b64url_decode(signature_segment)  # unverified, but a readable JWT all the same
    # Duplicate members are refused by validators; accepting them here would hide that.
    parse = JsonParser(accept_duplicate_members=False)
    header = decode_json_object(header_segment, parse)
    claims = decode_json_object(payload_segment, parse)
    client = _client_id(claims)
    facts = (
        ("Token type", _token_type(header, claims)),
        ("Signed with", f"{header.get('alg')} key {header.get('kid', '(no kid)')}"),
        ("Issuer", _issuer(claims.get("iss"))),
        ("Client", client or "(none: no azp or client_id claim)"),
        ("Caller", _caller(claims, client)),
        ("Audience", _names(_audiences(claims.get("aud")))),
        ("Realm roles", _names(_roles(claims.get("realm_access")))),
        ("Client roles", _client_roles(claims.get("resource_access"))),
        ("Scopes", _names(str(claims.get("scope", "")).split())),
        ("Issued", _moment(claims.get("iat"), now)),
        ("Expires", _moment(claims.get("exp"), now)),
    )
    warnings = (
        *_time_warnings(claims, now),
        *_header_warnings(header),
        *_type_warnings(claims),
        *_audience_warnings(_audiences(claims.get("aud")), audience),
        *_caller_warnings(claims, client),
    )
    return TokenReport(header, claims, facts, warnings)


def render(report: TokenReport) -> list[str]:
    width = max(len(label) for label, _ in report.facts)
    lines = [_UNVERIFIED, "", "Header:", *_indented_json(report.header), "", "Claims:"]
    lines += [*_indented_json(report.claims), "", "Summary:"]
    lines += [f"  {label.ljust(width)}  {value}" for label, value in report.facts]
    lines += ["", "Warnings:" if report.warnings else "Warnings: none"]
    lines += [f"  - {warning}" for warning in report.warnings]
    return lines


def describe_principal(principal: Principal, now: float) -> list[str]:
    """What ``keycloak-m2m verify`` prints for a token that passed every check."""
    facts = (
        ("Client", principal.client_id),
        ("Service account", "yes" if principal.is_service_account else "no (a user's token)"),
        ("Subject", principal.subject or "(none)"),
        ("Realm roles", _names(sorted(principal.realm_roles))),
        ("Client roles", _client_role_text(principal.client_roles)),
        ("Scopes", _names(sorted(principal.scopes))),
        ("Expires", _moment(principal.expires_at, now)),
    )
    width = max(len(label) for label, _ in facts)
    return [f"  {label.ljust(width)}  {value}" for label, value in facts]


# --- time --------------------------------------------------------------------------------------


def _duration(seconds: float) -> str:
    """The largest whole unit ('3 minutes', not '3 minutes 12 seconds'): read at a glance."""
    whole = int(abs(seconds))
    unit, size = next(((unit, size) for unit, size in _UNITS if whole >= size), ("second", 1))
    count = whole // size
    return f"{count} {unit}{'' if count == 1 else 's'}"


def relative_time(moment: float, now: float) -> str:
    """'in 5 minutes', '3 minutes ago' or 'now'."""
    if abs(moment - now) < 1:
        return "now"
    return f"in {_duration(moment - now)}" if moment > now else f"{_duration(now - moment)} ago"


def _number(value: object) -> float | None:
    # bool is an int subclass and no time; an int too large for a float is no time either.
    if type(value) not in (int, float):
        return None
    try:
        return float(value)  # type: ignore[arg-type]
    except OverflowError:
        return None


def _moment(value: object, now: float) -> str:
    value = _number(value)
    if value is None:
        return "(not given)"
    try:
        stamp = datetime.datetime.fromtimestamp(value, tz=datetime.timezone.utc)
    except (OverflowError, ValueError, OSError):
        return f"{value} (not a representable time)"
    return f"{stamp:%Y-%m-%d %H:%M:%S} UTC ({relative_time(value, now)})"


def _time_warnings(claims: Mapping[str, Any], now: float) -> list[str]:
    warnings = []
    exp, nbf, iat = (_number(claims.get(name)) for name in ("exp", "nbf", "iat"))
    if exp is None:
        warnings.append("no valid exp claim: validators refuse a token that never expires")
    elif exp <= now:
        warnings.append(f"expired {_duration(now - exp)} ago")
    if nbf is not None and nbf > now:
        warnings.append(f"not valid before {_moment(nbf, now)}")
    if iat is not None and iat > now + _CLOCK_SKEW:
        warnings.append(f"issued in the future ({relative_time(iat, now)}): check the clocks")
    return warnings


# --- header, type, audience, caller -----------------------------------------------------------


def _header_warnings(header: Mapping[str, Any]) -> list[str]:
    warnings = []
    alg = header.get("alg")
    if not isinstance(alg, str) or alg.lower() == "none":
        warnings.append(f"alg is {alg!r}: an unsigned token, every validator must refuse it")
    elif alg.startswith("HS"):
        warnings.append(
            f"alg is {alg}: signed with a shared secret, not the realm's public keys; "
            "resource servers refuse it"
        )
    if "kid" not in header:
        warnings.append("no kid in the header: Keycloak always names its signing key")
    return warnings


def _token_type(header: Mapping[str, Any], claims: Mapping[str, Any]) -> str:
    typ = claims.get("typ")
    if isinstance(typ, str) and typ in _TOKEN_TYPES:
        return f"{_TOKEN_TYPES[typ]} (Keycloak typ {typ})"
    if str(header.get("typ", "")).lower() in ("at+jwt", "application/at+jwt"):
        return "access token (RFC 9068, header typ at+jwt)"
    return f"unknown (typ claim {typ!r})"


def _type_warnings(claims: Mapping[str, Any]) -> list[str]:
    typ = claims.get("typ")
    if typ is None or typ == "Bearer":
        return []
    kind = _TOKEN_TYPES.get(typ, "not an access token") if isinstance(typ, str) else "unknown"
    return [f"typ is {typ!r} ({kind}): APIs accept only access tokens (typ Bearer)"]


def _audiences(aud: object) -> list[str]:
    if isinstance(aud, str):
        return [aud]
    return [str(name) for name in aud] if isinstance(aud, list) else []


def _audience_warnings(audiences: list[str], expected: str | None) -> list[str]:
    if expected is not None and expected not in audiences:
        return [
            f"audience lacks {expected!r}: that API refuses this token; "
            f"give the client an audience mapper for {expected!r}"
        ]
    if expected is None and set(audiences) <= {_KEYCLOAK_DEFAULT_AUDIENCE}:
        return [
            "no API in the audience (only Keycloak's default 'account' or none): "
            "an API that checks its own name refuses this token"
        ]
    return []


def issuer_mismatch(expected: str, found: object) -> str:
    """The expected and the found issuer of a refused token, and the usual cause if it is one."""
    text = f"expected {expected!r}, found {found!r}"
    if not isinstance(found, str):
        return text
    if found.rstrip("/") == expected.rstrip("/"):
        return f"{text}; issuers are compared exactly: only a trailing slash differs"
    if found.replace("/auth/realms/", "/realms/") == expected.replace("/auth/realms/", "/realms/"):
        return f"{text}; only /auth differs (Keycloak before 17 serves realms under /auth)"
    return text


def audience_mismatch(expected: list[str], aud: object, azp: object) -> str:
    """The accepted and the found audiences of a refused token, and the usual fix."""
    text = f"expected {' or '.join(map(repr, expected))}, found {_audiences(aud)!r}"
    if azp in expected:
        return (
            f"{text}; it was issued to {azp!r} (azp): --azp-as-audience accepts a token "
            "issued to the API's own client"
        )
    if _audiences(aud) != [_KEYCLOAK_DEFAULT_AUDIENCE]:
        return text
    caller = azp if isinstance(azp, str) else "the caller"
    return (
        f"{text}; Keycloak puts only 'account' in aud unless told otherwise: give the calling "
        f"client an Audience mapper for {expected[0]!r} (Clients > {caller} > Client scopes > "
        "dedicated scope > Add mapper > Audience); --azp-as-audience fits only a token issued "
        "to the API's own client"
    )


def _client_id(claims: Mapping[str, Any]) -> str | None:
    for name in CLIENT_ID_CLAIMS:
        value = claims.get(name)
        if isinstance(value, str) and value:
            return value
    return None


def _is_service_account(claims: Mapping[str, Any], client: str | None) -> bool:
    # The validator's rule, for a Keycloak token: inspect must not tell another story.
    return client is not None and service_account(claims, client, "keycloak")


def _caller(claims: Mapping[str, Any], client: str | None) -> str:
    subject = f"sub {claims.get('sub')}" if "sub" in claims else "no sub"
    if _is_service_account(claims, client):
        return f"service account of client {client} ({subject})"
    username = claims.get("preferred_username")
    if isinstance(username, str) and username.startswith(_SERVICE_ACCOUNT_PREFIX):
        # Token exchange: another client's service account speaks through this client.
        return f"{username}, through client {client} ({subject})"
    if isinstance(username, str):
        return f"user {username} ({subject})"
    return f"unknown ({subject}, no preferred_username)"


def _caller_warnings(claims: Mapping[str, Any], client: str | None) -> list[str]:
    warnings = []
    named = {name: claims[name] for name in CLIENT_ID_CLAIMS if name in claims}
    if len(set(map(str, named.values()))) > 1:
        warnings.append(f"client claims disagree ({named}): validators refuse this token")
    if client is not None and not _is_service_account(claims, client):
        warnings.append(
            "not a service-account token: machine-to-machine APIs refuse a user's token by default"
        )
    return warnings


# --- formatting --------------------------------------------------------------------------------


def _issuer(iss: object) -> str:
    if not isinstance(iss, str):
        return "(none)"
    path = urlsplit(iss).path.rstrip("/")
    _, marker, realm = path.rpartition("/realms/")
    return f"{iss} (Keycloak realm {unquote(realm)})" if marker and "/" not in realm else iss


def _roles(access: object) -> list[str]:
    roles = access.get("roles") if isinstance(access, dict) else None
    return [str(role) for role in roles] if isinstance(roles, list) else []


def _client_roles(resource_access: object) -> str:
    if not isinstance(resource_access, dict):
        return "(none)"
    return _client_role_text({client: _roles(access) for client, access in resource_access.items()})


def _client_role_text(roles_by_client: Mapping[str, Iterable[str]]) -> str:
    described = [
        f"{client}: {', '.join(sorted(roles)) or '(none)'}"
        for client, roles in roles_by_client.items()
    ]
    return "; ".join(described) or "(none)"


def _names(names: list[str]) -> str:
    return ", ".join(names) if names else "(none)"


def _indented_json(value: Mapping[str, Any]) -> list[str]:
    return ["  " + line for line in json.dumps(value, indent=2, ensure_ascii=False).splitlines()]
