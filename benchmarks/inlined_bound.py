"""A measured lower bound for a pure-Python validation (issue 16): what the package's checks cost
for the benchmark's token shapes when every one is written out in a single function (the checks
before the payload's JSON in a second one, which native_ceiling.py's rows share).

Not a validator: it knows one key, refuses with a bare ``ValueError``, handles only the Keycloak
profile, a bearer token with no ``cnf`` and the claim shapes the benchmark mints, and has no key
fetching, introspection, DPoP or cache. What it keeps is every check that the package makes on
those tokens, in the package's order where order matters: the token's size and shape, canonical
strict base64url for all three segments, strict JSON (duplicates refused), the header read once
per distinct header, the signature, issuer, the three times (types, finiteness, leeway),
audience shape, ``typ``, agreement of ``azp``/``client_id``/``clientId``, the service account,
``sub``, the walk that refuses numbers that parsed as infinity, the role and scope shapes with the
same shared sets, a ``Principal`` and the verified-token cache's entry tuple.

The distance between this row and the package's is what the package's structure costs (one
function per rule, two profiles, the hooks for keys, introspection and binding); the distance
between this row and the floor is what no restructuring in Python removes.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import pybase64
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from keycloak_m2m import _claims, _jose
from keycloak_m2m._principal import verified_principal
from keycloak_m2m._token_cache import Verified

_PADDING = (b"", b"", b"==", b"=")
_CANONICAL_LAST = _jose._CANONICAL_LAST
_PLUS, _SLASH, _PAD, _DOT = b"+/=."
_LEEWAY = 30.0
_MAX_SIZE = 16 * 1024


def _decode(segment: bytes) -> bytes:
    remainder = len(segment) % 4
    if remainder == 1 or (remainder and segment[-1] not in _CANONICAL_LAST[remainder]):
        raise ValueError("invalid base64url encoding")
    if _PLUS in segment or _SLASH in segment or _PAD in segment:
        raise ValueError("invalid base64url encoding")
    return pybase64.b64decode(segment + _PADDING[remainder], b"-_", True)


def decoded_segments(
    headers: dict[bytes, Any], parse: _jose.JsonParser
) -> Callable[[str], tuple[bytes, bytes, bytes, bytes]]:
    """The checks before the payload's JSON: the token's size and shape, canonical strict
    base64url, the header's (read once per distinct header, into ``headers``). What passes is
    the token's bytes, the signing input, the payload and the signature, decoded."""

    def decoded(token: str) -> tuple[bytes, bytes, bytes, bytes]:
        if type(token) is not str or len(token) > _MAX_SIZE:
            raise ValueError("token")
        raw = token.encode() if token.isascii() else b""
        signing_input, _, signature_segment = raw.rpartition(b".")
        header_segment, dot, payload_segment = signing_input.partition(b".")
        if not dot or _DOT in payload_segment:
            raise ValueError("not three segments")
        if not (header_segment and payload_segment and signature_segment):
            raise ValueError("empty segment")
        header = headers.get(header_segment)
        if header is None:
            header = headers[header_segment] = parse(_decode(header_segment))
            if header.get("alg") != "RS256":
                raise ValueError("alg")
        payload = _decode(payload_segment)
        signature = _decode(signature_segment)
        if len(signature) != 256:
            raise ValueError("signature size")
        return raw, signing_input, payload, signature

    return decoded


def inlined_validator(
    issuer: str, public_key: rsa.RSAPublicKey, audience: str
) -> Callable[[str], Verified]:
    """One function with every check, for ``issuer``'s RS256 tokens meant for ``audience``
    (and the one before it, shared with native_ceiling.py's rows)."""
    parse = _jose.JsonParser(accept_duplicate_members=False)
    decoded = decoded_segments({}, parse)
    scheme, digest = padding.PKCS1v15(), hashes.SHA256()
    verify = public_key.verify
    accepted = frozenset([audience])
    shared, sets, client_role_maps = (
        _claims._shared,
        _claims._shared_sets,
        _claims._shared_client_roles,
    )
    set_of, client_roles_of = _claims._set_of, _claims._client_roles_of
    refuse_non_finite, isfinite = _jose.refuse_non_finite, math.isfinite

    def validate(token: str) -> Verified:
        raw, signing_input, payload, signature = decoded(token)
        claims, finite = parse.parse(payload)
        if type(claims) is not dict:
            raise ValueError("payload")
        verify(signature, signing_input, scheme, digest)
        get = claims.get
        if get("cnf") is not None:
            raise ValueError("bound")
        if get("iss") != issuer:
            raise ValueError("iss")
        now = time.time()
        exp, nbf, iat = get("exp"), get("nbf", 0), get("iat", 0)
        for instant in (exp, nbf, iat):
            if type(instant) is not int and not (type(instant) is float and isfinite(instant)):
                raise ValueError("time")
        if now >= exp + _LEEWAY or nbf > now + _LEEWAY or iat > now + _LEEWAY:
            raise ValueError("times")
        aud = get("aud")
        if type(aud) is list:
            "".join(aud)
            named = not accepted.isdisjoint(aud)
        else:
            named = aud is not None and type(aud) is str and aud in accepted
        if not named:
            raise ValueError("aud")
        if get("typ") != "Bearer":
            raise ValueError("typ")
        client_id = None
        for name in ("azp", "client_id", "clientId"):
            value = get(name)
            if value is None:
                continue
            if type(value) is not str or not value or (client_id and value != client_id):
                raise ValueError(name)
            client_id = value
        if client_id is None:
            raise ValueError("client id")
        username = get("preferred_username")
        own = "service-account-" + client_id
        is_service_account = type(username) is str and (
            username == own or username.lower() == own.lower()
        )
        subject = get("sub")
        if subject is not None and type(subject) is not str:
            raise ValueError("sub")
        if not finite:
            refuse_non_finite(claims)
        realm_access = get("realm_access")
        roles = realm_access.get("roles") if type(realm_access) is dict else ()
        "".join(roles)
        realm_roles = shared(sets, tuple(roles), set_of)
        resource_access = get("resource_access")
        if type(resource_access) is not dict:
            raise ValueError("resource_access")
        pairs = []
        for client, access in resource_access.items():
            roles = access.get("roles") if type(access) is dict else ()
            "".join(roles)
            pairs.append((client, shared(sets, tuple(roles), set_of)))
        client_roles = shared(client_role_maps, tuple(pairs), client_roles_of)
        scope = get("scope")
        if type(scope) is not str:
            raise ValueError("scope")
        principal = verified_principal(
            issuer=issuer,
            client_id=client_id,
            subject=subject,
            is_service_account=is_service_account,
            realm_roles=realm_roles,
            client_roles=client_roles,
            scopes=shared(sets, scope, set_of),
            read_claims=_claims.VerifiedClaims(token, parse),
            expires_at=float(exp),
        )
        valid_until = time.monotonic() + exp + _LEEWAY - now
        return Verified(raw, principal, None, valid_until, None, False, None, True, None)

    return validate
