"""Who called: the verified caller's identity, roles and scopes."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
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
    expires_at: float
    # The issuer (realm URL) that vouched for the caller: which realm, when a service trusts
    # several.
    issuer: str
    # What reads the verified payload, on the first use of ``claims``: most requests never read
    # it, and a copy made for each verified token would be most of a cache entry's memory.
    _read_claims: Callable[[], Mapping[str, Any]] = field(repr=False)

    @cached_property
    def claims(self) -> Mapping[str, Any]:
        """The verified payload, read-only at every depth: JSON objects are read-only mappings,
        arrays tuples. Read on first use and kept."""
        return self._read_claims()

    def require(
        self,
        roles: Iterable[str] = (),
        client_roles: Mapping[str, Iterable[str]] | None = None,
        scopes: Iterable[str] = (),
        *,
        any_roles: Iterable[str] = (),
        any_scopes: Iterable[str] = (),
        allow: Callable[[Principal], bool] | None = None,
    ) -> None:
        """Raise InsufficientScope unless the caller holds every one of ``roles``,
        ``client_roles`` and ``scopes``, at least one of ``any_roles`` and of ``any_scopes``
        (when given), and then ``allow(self)`` returns True.

        The refusal names everything missing at once. ``allow`` runs only once the rest holds,
        so it may rely on it; anything but True refuses, with a fixed description.
        """
        missing_roles = [role for role in as_names(roles) if role not in self.realm_roles]
        missing_client_roles = [
            (client, role)
            for client, wanted in (client_roles or {}).items()
            for role in as_names(wanted)
            if role not in self.client_roles.get(client, frozenset())
        ]
        missing_scopes = [scope for scope in as_names(scopes) if scope not in self.scopes]
        one_of_roles = as_names(any_roles)
        one_of_scopes = as_names(any_scopes)
        lacks_roles = bool(one_of_roles) and self.realm_roles.isdisjoint(one_of_roles)
        lacks_scopes = bool(one_of_scopes) and self.scopes.isdisjoint(one_of_scopes)
        if missing_roles or missing_client_roles or missing_scopes or lacks_roles or lacks_scopes:
            raise InsufficientScope(
                missing_roles=missing_roles,
                missing_client_roles=missing_client_roles,
                missing_scopes=missing_scopes,
                wanted_any_roles=one_of_roles if lacks_roles else (),
                wanted_any_scopes=one_of_scopes if lacks_scopes else (),
            )
        if allow is not None and allow(self) is not True:
            raise InsufficientScope(refused_by_policy=True)


def verified_principal(
    issuer: str,
    client_id: str,
    subject: str | None,
    is_service_account: bool,
    realm_roles: frozenset[str],
    client_roles: Mapping[str, frozenset[str]],
    scopes: frozenset[str],
    read_claims: Callable[[], Mapping[str, Any]],
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
        _read_claims=read_claims,
        expires_at=expires_at,
    )
    return principal


def as_names(names: Iterable[str]) -> tuple[str, ...]:
    """Role or scope names as a tuple; a lone string is one name, not one name per letter."""
    return (names,) if isinstance(names, str) else tuple(names)
