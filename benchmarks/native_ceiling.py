"""What a native piece could buy (issue 16): three rows that take the one-function bound
(``inlined_bound.py``) apart at the payload, to measure the stage no Python arrangement removes.

- ``ceiling``: the bound with the payload's strict JSON and every claim check taken out. The
  ``Principal`` is looked up, made beforehand by the bound from the same token. What is left is
  the size and shape checks, strict base64url, the header, the signature and the cache entry,
  so no native pass over the payload can be faster than this row.
- ``typed_parse_only``: the ceiling, and the payload parsed as ``typed_parse`` (next) parses
  it, the result unused: what a native parse costs where the signature check has just run.
- ``typed_parse``: the payload parsed by msgspec into a typed struct of the claims the rules
  read (native code), and the rules then applied in Python to its fields: the design where the
  native piece is only a parser and the claim rules keep one copy, in Python. It is a stand-in
  and is not strict: msgspec takes the last of two members that have the same name and skips the
  claims it was not asked for without checking their numbers, which a native parser of our own
  would still have to refuse, at some extra cost.

None is a validator. Each knows one key and the benchmark's two token shapes, and refuses with
a bare ``ValueError``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

import msgspec
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from inlined_bound import decoded_segments, inlined_validator  # beside this script

from keycloak_m2m import _claims, _jose
from keycloak_m2m._principal import Principal, verified_principal
from keycloak_m2m._token_cache import Verified

_LEEWAY = 30.0


class _Access(msgspec.Struct):
    roles: list[str] = []


class _Claims(msgspec.Struct):
    iss: str
    exp: int
    typ: str
    aud: str | list[str]
    scope: str
    nbf: int = 0
    iat: int = 0
    azp: str | None = None
    preferred_username: str | None = None
    sub: str | None = None
    realm_access: _Access | None = None
    resource_access: dict[str, _Access] = {}
    cnf: dict[str, Any] | None = None


def signed_payload(public_key: rsa.RSAPublicKey) -> Callable[[str], tuple[bytes, bytes]]:
    """The bound's checks but the payload's JSON, and its signature check: the token's bytes
    and its payload, base64url-decoded."""
    decoded = decoded_segments({}, _jose.JsonParser(accept_duplicate_members=False))
    scheme, digest = padding.PKCS1v15(), hashes.SHA256()
    verify = public_key.verify

    def checked(token: str) -> tuple[bytes, bytes]:
        raw, signing_input, payload, signature = decoded(token)
        verify(signature, signing_input, scheme, digest)
        return raw, payload

    return checked


def cache_entry(raw: bytes, principal: Principal, now: float) -> Verified:
    valid_until = time.monotonic() + principal.expires_at + _LEEWAY - now
    return Verified(raw, principal, None, valid_until, None, False, None, True, None)


def checked_now(
    *,
    issuer: str,
    audience: str,
    iss: str,
    typ: str | None,
    azp: str | None,
    bound: bool,
    times: tuple[float, float, float],
    aud: str | Sequence[str],
) -> float:
    """The claim rules both native rows apply in Python to what their parse read, with the
    bound's refusal (a bare ``ValueError``); the time they were checked at."""
    if bound or iss != issuer or typ != "Bearer" or not azp:
        raise ValueError("claims")
    now = time.time()
    exp, nbf, iat = times
    if now >= exp + _LEEWAY or nbf > now + _LEEWAY or iat > now + _LEEWAY:
        raise ValueError("times")
    if not (aud == audience if type(aud) is str else audience in aud):
        raise ValueError("aud")
    return now


def _principals(
    issuer: str, public_key: rsa.RSAPublicKey, audience: str, tokens: Sequence[str]
) -> Mapping[bytes, Principal]:
    """The bound's principal of each of ``tokens``, by the token's decoded payload."""
    bound = inlined_validator(issuer, public_key, audience)
    signed = signed_payload(public_key)
    return {signed(token)[1]: bound(token).principal for token in tokens}


def ceiling(
    issuer: str, public_key: rsa.RSAPublicKey, audience: str, tokens: Sequence[str]
) -> Callable[[str], Verified]:
    """The bound without the payload's JSON and claim checks, for ``tokens`` only."""
    signed = signed_payload(public_key)
    principals = _principals(issuer, public_key, audience, tokens)

    def validate(token: str) -> Verified:
        raw, payload = signed(token)
        return cache_entry(raw, principals[payload], time.time())

    return validate


def typed_parse_only(
    issuer: str, public_key: rsa.RSAPublicKey, audience: str, tokens: Sequence[str]
) -> Callable[[str], Verified]:
    """The ceiling and the typed native parse, its result unused: what the parse costs."""
    signed = signed_payload(public_key)
    decode = msgspec.json.Decoder(_Claims).decode
    principals = _principals(issuer, public_key, audience, tokens)

    def validate(token: str) -> Verified:
        raw, payload = signed(token)
        decode(payload)
        return cache_entry(raw, principals[payload], time.time())

    return validate


def typed_parse(
    issuer: str, public_key: rsa.RSAPublicKey, audience: str
) -> Callable[[str], Verified]:
    """The bound with the payload parsed natively into typed fields and the rules in Python."""
    signed = signed_payload(public_key)
    decode = msgspec.json.Decoder(_Claims).decode
    parse = _jose.JsonParser(accept_duplicate_members=False)
    shared, sets, client_role_maps = (
        _claims._shared,
        _claims._shared_sets,
        _claims._shared_client_roles,
    )
    set_of, client_roles_of = _claims._set_of, _claims._client_roles_of

    def validate(token: str) -> Verified:
        raw, payload = signed(token)
        try:
            claims = decode(payload)
        except msgspec.DecodeError as error:
            raise ValueError("payload") from error
        now = checked_now(
            issuer=issuer,
            audience=audience,
            iss=claims.iss,
            typ=claims.typ,
            azp=claims.azp,
            bound=claims.cnf is not None,
            times=(claims.exp, claims.nbf, claims.iat),
            aud=claims.aud,
        )
        client_id = cast(str, claims.azp)  # checked_now refused a token without one
        access = claims.realm_access
        pairs = tuple(
            (client, shared(sets, tuple(roles.roles), set_of))
            for client, roles in claims.resource_access.items()
        )
        principal = verified_principal(
            issuer=issuer,
            client_id=client_id,
            subject=claims.sub,
            is_service_account=claims.preferred_username == "service-account-" + client_id,
            realm_roles=shared(sets, tuple(access.roles) if access else (), set_of),
            client_roles=shared(client_role_maps, pairs, client_roles_of),
            scopes=shared(sets, claims.scope, set_of),
            read_claims=_claims.VerifiedClaims(token, parse),
            expires_at=float(claims.exp),
        )
        return cache_entry(raw, principal, now)

    return validate
