"""One validation attempt: the verdict on a token from what is at hand, or what is missing.

No I/O and no locks: the drivers in ``_validator`` fetch what an attempt asks for (the key set,
``FetchDue``; an introspection answer, ``Introspect``), record it, and attempt again, saying
what they got. This module, with the rules it calls, is the validation hot path, which the
compiled build (docs/performance.md) compiles with mypyc.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from ._binding import CertificateBound, ClientCertificate, bound_thumbprint, check_certificate
from ._claims import (
    ClaimPolicy,
    PrincipalParts,
    VerifiedClaims,
    check_claims,
    dpop_thumbprint,
    read_native_payload,
)
from ._dpop import access_token_hash
from ._errors import CertificateMismatch, InvalidSignature
from ._introspection import Answer, Introspect, IntrospectionClient, is_opaque, merged_claims
from ._jose import (
    Header,
    JsonParser,
    VerificationKey,
    b64url_decode,
    decode_canonical_object,
    parse_header,
    split_token,
    verifying_key,
)
from ._keyset import FetchDue, KeySet
from ._principal import Principal
from ._token_cache import Verified

# Distinct header segments seen in practice are a handful per issuer; the bound only stops a
# flood of crafted headers from growing memory.
_HEADER_CACHE_SIZE = 64


class Attempt:
    """A validator's attempt, with the state it reads: called as ``attempt(token, ...)``."""

    def __init__(
        self,
        policy: ClaimPolicy,
        parse_json: JsonParser,
        algorithms: frozenset[str],
        max_token_size: int,
        keys: KeySet,
        clock: Callable[[], float],
        steady: Callable[[], float],
        certificate_bound: CertificateBound,
        introspection: IntrospectionClient | None,
        bearer_allowed: bool,
    ) -> None:
        self._policy = policy
        self._parse_json = parse_json
        self._algorithms = algorithms
        self._max_token_size = max_token_size
        self._keys = keys
        self._clock = clock
        self._steady = steady
        self._certificate_bound = certificate_bound
        self._introspection = introspection
        self._bearer_allowed = bearer_allowed
        self._headers: dict[bytes, Header] = {}
        # A lightweight token's claims are merged with the introspection answer's, and the
        # native reader hands over only those the rules read.
        self._read_native = read_native_payload if introspection is None else None

    def __call__(
        self,
        token: object,
        certificate: ClientCertificate | None,
        introspect: bool,
        fetched: bool = False,
        introspected: bool = False,
    ) -> Verified | FetchDue | Introspect:
        """The verdict on ``token`` from what is at hand, or what is missing for one.

        ``fetched`` and ``introspected`` say what the driver got since the first attempt: it is
        not asked for again, so a validation takes at most three attempts. ``token`` is any
        object a caller passed: what is not a string is refused as malformed.
        """
        introspecting = self._introspecting(introspect)
        if self._introspection is not None and is_opaque(token, self._max_token_size):
            return self._opaque_attempt(cast(str, token), certificate, introspected)
        header_segment, payload_segment, signing_input, signature_segment = split_token(
            token, self._max_token_size
        )
        text = cast(str, token)  # split_token refuses anything else
        header = self._headers.get(header_segment) or self._parse_header(header_segment)
        claims, finite, parts = self._read_payload(payload_segment)
        signature = b64url_decode(signature_segment)
        if fetched:
            keys = self._keys.select_settled(header.kid, header.alg, self._steady())
        else:
            selected = self._keys.select(header.kid, header.alg, self._steady())
            if isinstance(selected, FetchDue):
                return selected
            keys = selected
        key = verifying_key(keys, header.alg, signing_input, signature)
        if key is None:
            raise InvalidSignature()
        bound = self._check_binding(claims, certificate)
        introspected_until: float | None = None
        read = VerifiedClaims(text, self._parse_json)
        if self._introspection is not None and "aud" not in claims:
            # A lightweight token (Keycloak 24+): its audience, roles and scopes are in the
            # introspection answer, and the claim checks need them.
            found = self._introspected(text, claims.get("exp"), True, introspected)
            if isinstance(found, Introspect):
                return found
            answer, introspected_until = found
            assert answer is not None  # needed: no answer was refused
            claims = merged_claims(claims, answer)
            read = VerifiedClaims(claims)
            finite = False  # the answer's numbers were not parsed here
        principal = check_claims(claims, self._policy, self._clock(), read, finite, parts)
        if introspecting and introspected_until is None:
            found = self._introspected(text, principal.expires_at, False, introspected)
            if isinstance(found, Introspect):
                return found
            introspected_until = found[1]
        return self._verdict(text, principal, key, bound, introspected_until, claims)

    def _read_payload(self, segment: bytes) -> tuple[dict[str, Any], bool, PrincipalParts | None]:
        """The payload's claims, whether their numbers are all finite, and the Principal's
        parts if the native reader took them (then the claims are only those the rules read)."""
        read_native = self._read_native
        if read_native is not None:
            native = read_native(segment)
            if native is not None:
                return native[0], True, native[1]
        claims, finite = decode_canonical_object(segment, self._parse_json)
        return claims, finite, None

    def _opaque_attempt(
        self, token: str, certificate: ClientCertificate | None, introspected: bool
    ) -> Verified | Introspect:
        """A token that is not a JWT: only the issuer can say what it is, and its answer's
        claims go through the same checks as a JWT's."""
        found = self._introspected(token, None, True, introspected)
        if isinstance(found, Introspect):
            return found
        answer, until = found
        assert answer is not None  # needed: no answer was refused
        claims = merged_claims({}, answer)
        bound = self._check_binding(claims, certificate)
        principal = check_claims(claims, self._policy, self._clock(), VerifiedClaims(claims), False)
        return self._verdict(token, principal, None, bound, until, claims)

    def _introspecting(self, introspect: bool) -> bool:
        client = self._introspection
        if client is None:
            if introspect:
                raise ValueError("introspect=True needs TokenValidator(introspection=...)")
            return False
        return introspect or client.config.when == "always"

    def _introspected(
        self, token: str, expires_at: object, needed: bool, asked: bool
    ) -> Introspect | tuple[Answer | None, float]:
        """The answer on ``token`` and until when it stands (None for no answer that
        ``on_failure="accept"`` lets pass), or Introspect when a fresh one must be asked for:
        never once ``asked``, after which whatever the driver recorded stands."""
        client = self._introspection
        assert client is not None
        entry = client.entry(token) if asked else client.fresh(token, self._steady())
        if entry is None and not asked:
            exp = float(expires_at) if type(expires_at) in (int, float) else None  # type: ignore[arg-type]
            return Introspect(token, client.entry(token), exp)
        answer = client.verdict(entry, needed=needed)
        return answer, 0.0 if entry is None else entry.valid_until

    def _check_binding(
        self, claims: dict[str, Any], certificate: ClientCertificate | None
    ) -> str | None:
        """The thumbprint the token is bound to, once the certificate matched it (RFC 8705)."""
        bound = bound_thumbprint(claims)
        if bound is None:
            if self._certificate_bound == "required":
                raise CertificateMismatch("certificate-bound token required")
            return None
        check_certificate(bound, certificate)
        return bound

    def _parse_header(self, segment: bytes) -> Header:
        header = parse_header(
            segment, self._parse_json, self._algorithms, self._policy.profile == "rfc9068"
        )
        if len(self._headers) >= _HEADER_CACHE_SIZE:
            self._headers.clear()
        self._headers[segment] = header
        return header

    def _verdict(
        self,
        token: str,
        principal: Principal,
        key: VerificationKey | None,
        certificate: str | None,
        introspected_until: float | None,
        claims: dict[str, Any],
    ) -> Verified:
        # For what is left of the token's life, in elapsed time, and until the key set is due for
        # a refresh: then the full path checks both again. An introspected token, until the
        # introspection's outcome goes stale.
        lifetime = principal.expires_at + self._policy.leeway - self._clock()
        valid_until = min(self._steady() + lifetime, self._keys.fresh_until)
        if introspected_until is not None:
            valid_until = min(valid_until, introspected_until)
        jkt = dpop_thumbprint(claims)
        return Verified(
            # split_token and is_opaque admit ASCII only: these are the bytes of its header.
            token.encode("ascii"),
            principal,
            key,
            valid_until,
            certificate,
            introspected_until is not None,
            jkt,
            jkt is None and self._bearer_allowed,
            None if jkt is None else access_token_hash(token),
        )
