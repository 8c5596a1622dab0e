"""Who called: the verified caller's identity, roles and scopes."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ._errors import InsufficientScope

__all__ = ["Principal"]


@dataclass(frozen=True)
class Principal:
    """The caller behind a token that passed every check."""

    client_id: str
    subject: str | None
    is_service_account: bool
    realm_roles: frozenset[str]
    client_roles: Mapping[str, frozenset[str]]
    scopes: frozenset[str]
    claims: Mapping[str, Any]
    expires_at: float
    # The issuer (realm URL) that vouched for the caller: which realm, when a service trusts
    # several.
    issuer: str

    def require(
        self,
        roles: Iterable[str] = (),
        client_roles: Mapping[str, Iterable[str]] | None = None,
        scopes: Iterable[str] = (),
    ) -> None:
        """Raise InsufficientScope naming every required role and scope the caller lacks."""
        missing_roles = [role for role in as_names(roles) if role not in self.realm_roles]
        missing_client_roles = [
            (client, role)
            for client, wanted in (client_roles or {}).items()
            for role in as_names(wanted)
            if role not in self.client_roles.get(client, frozenset())
        ]
        missing_scopes = [scope for scope in as_names(scopes) if scope not in self.scopes]
        if missing_roles or missing_client_roles or missing_scopes:
            raise InsufficientScope(
                missing_roles=missing_roles,
                missing_client_roles=missing_client_roles,
                missing_scopes=missing_scopes,
            )


def verified_principal(
    issuer: str,
    client_id: str,
    subject: str | None,
    is_service_account: bool,
    realm_roles: frozenset[str],
    client_roles: Mapping[str, frozenset[str]],
    scopes: frozenset[str],
    claims: Mapping[str, Any],
    expires_at: float,
) -> Principal:
    """Principal(...) for the validation hot path.

    A frozen dataclass's __init__ sets each field through object.__setattr__, which is a
    measurable share of a whole validation; filling the instance dict in one call is not.
    """
    principal = object.__new__(Principal)
    principal.__dict__.update(
        issuer=issuer,
        client_id=client_id,
        subject=subject,
        is_service_account=is_service_account,
        realm_roles=realm_roles,
        client_roles=client_roles,
        scopes=scopes,
        claims=claims,
        expires_at=expires_at,
    )
    return principal


def as_names(names: Iterable[str]) -> tuple[str, ...]:
    """Role or scope names as a tuple; a lone string is one name, not one name per letter."""
    return (names,) if isinstance(names, str) else tuple(names)
