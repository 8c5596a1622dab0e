"""MultiIssuerValidator: one service, several realms, each realm its own TokenValidator.

A token goes to the validator whose issuer equals its ``iss`` exactly. The payload is read
unverified for that one purpose: the chosen validator then checks everything, ``iss`` included,
so a forged ``iss`` can only pick which realm's keys must have signed the token.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from urllib.parse import quote, urlsplit

from ._binding import ClientCertificate
from ._errors import InvalidIssuer
from ._jose import JsonParser, decode_json_object, split_token
from ._options import http_url
from ._principal import Principal
from ._token_cache import raw_token
from ._validator import DPoPMode, TokenValidator

__all__ = ["MultiIssuerValidator"]

# Routing only: the chosen validator applies its own duplicate-member rule afterwards, and on
# duplicates it reads the last value, as this does.
_ROUTING_PARSER = JsonParser(accept_duplicate_members=True)


class MultiIssuerValidator:
    """Validates tokens of several issuers; accepted wherever a TokenValidator is.

    Each validator keeps its own key cache, refetch limit, lock and verified-token cache, so a
    flood of bad tokens naming one realm never delays another. ``Principal.issuer`` says which
    realm vouched for the caller.
    """

    def __init__(self, validators: Iterable[TokenValidator]) -> None:
        by_issuer: dict[str, TokenValidator] = {}
        for validator in validators:
            if not isinstance(validator, TokenValidator):
                raise ValueError("validators must be TokenValidator instances")
            if validator.issuer in by_issuer:
                raise ValueError(f"two validators for the issuer {validator.issuer}")
            by_issuer[validator.issuer] = validator
        if not by_issuer:
            raise ValueError("validators must hold at least one TokenValidator")
        # One route accepts one set of schemes, and its challenges name them.
        modes = {validator.dpop for validator in by_issuer.values()}
        if len(modes) > 1:
            raise ValueError("validators must share one dpop mode")
        self._dpop = modes.pop()
        self._by_issuer = by_issuer
        self._validators = tuple(by_issuer.values())
        # Size is checked before routing; each validator checks its own limit again.
        self._max_token_size = max(validator.max_token_size for validator in self._validators)

    @classmethod
    def for_realms(
        cls,
        keycloak_url: str,
        realms: str | Iterable[str],
        audience: str | Iterable[str],
        **options: Any,
    ) -> MultiIssuerValidator:
        """One validator per realm of one Keycloak: issuer ``<keycloak_url>/realms/<realm>``
        (put ``/auth`` in ``keycloak_url`` for Keycloak before 17); ``options`` go to each."""
        http_url("keycloak_url", keycloak_url)
        if "/realms/" in urlsplit(keycloak_url).path + "/":
            raise ValueError("keycloak_url must be Keycloak's base URL, without /realms/...")
        names = (realms,) if isinstance(realms, str) else tuple(realms)
        if not names or not all(isinstance(name, str) and name for name in names):
            raise ValueError("realms must name at least one realm")
        base = keycloak_url.rstrip("/")
        return cls(
            TokenValidator(f"{base}/realms/{quote(name, safe='')}", audience, **options)
            for name in names
        )

    @property
    def issuer(self) -> str:
        """Every issuer, space-separated: what a challenge names as its realm by default."""
        return " ".join(self._by_issuer)

    @property
    def issuers(self) -> tuple[str, ...]:
        return tuple(self._by_issuer)

    @property
    def dpop(self) -> DPoPMode:
        return self._dpop

    def __repr__(self) -> str:
        return f"MultiIssuerValidator({list(self._by_issuer)!r})"

    def cached(
        self,
        token: str | bytes,
        client_certificate: ClientCertificate | None = None,
        introspect: bool = False,
        start: int = 0,
    ) -> Principal | None:
        """The principal of a token one of the validators verified, while that holds; the
        token is ``token[start:]``, as for ``TokenValidator.cached``."""
        raw = raw_token(token)  # once, not by each validator
        if raw is None:
            return None
        for validator in self._validators:
            principal = validator.cached(raw, client_certificate, introspect, start)
            if principal is not None:
                return principal
        return None

    def validate(
        self,
        token: str,
        *,
        client_certificate: ClientCertificate | None = None,
        introspect: bool = False,
        dpop_proof: str | None = None,
        method: str | None = None,
        url: str | None = None,
    ) -> Principal:
        """Validate with the validator of the token's issuer; may block to fetch its keys.
        The DPoP keywords are ``TokenValidator.validate``'s."""
        if dpop_proof is None:
            principal = self.cached(token, client_certificate, introspect)
            if principal is not None:
                return principal
        return self._route(token).validate(
            token,
            client_certificate=client_certificate,
            introspect=introspect,
            dpop_proof=dpop_proof,
            method=method,
            url=url,
        )

    async def validate_async(
        self,
        token: str,
        *,
        client_certificate: ClientCertificate | None = None,
        introspect: bool = False,
        dpop_proof: str | None = None,
        method: str | None = None,
        url: str | None = None,
    ) -> Principal:
        """Validate with the validator of the token's issuer, without blocking the loop."""
        if dpop_proof is None:
            principal = self.cached(token, client_certificate, introspect)
            if principal is not None:
                return principal
        return await self._route(token).validate_async(
            token,
            client_certificate=client_certificate,
            introspect=introspect,
            dpop_proof=dpop_proof,
            method=method,
            url=url,
        )

    def _route(self, token: str) -> TokenValidator:
        """The validator named by ``iss``; an unknown or missing one costs no key fetch."""
        payload = split_token(token, self._max_token_size)[1]
        issuer = decode_json_object(payload, _ROUTING_PARSER).get("iss")
        validator = self._by_issuer.get(issuer) if type(issuer) is str else None
        if validator is None:
            raise InvalidIssuer()
        return validator
