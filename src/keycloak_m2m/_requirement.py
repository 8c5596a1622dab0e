"""What a route asks of its caller, beyond a valid token: roles, client roles, scopes, the
application's own check, whether an anonymous caller may pass, whether to introspect.

Each adapter takes these as keywords (``RequirementOptions``) and turns them into a
``Requirement`` once, at setup; the request step checks it on every request.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, TypedDict

from ._errors import InsufficientScope
from ._principal import Principal, as_names

__all__ = ["ANY_CALLER", "Requirement", "RequirementOptions"]


class RequirementOptions(TypedDict, total=False):
    """The requirement keywords of every adapter (``**requirement``); ``Requirement.of`` reads
    them, so each adapter's signature need not repeat the list."""

    roles: Iterable[str]
    client_roles: Mapping[str, Iterable[str]] | None
    scopes: Iterable[str]
    any_roles: Iterable[str]
    any_scopes: Iterable[str]
    allow: Callable[[Principal], bool] | None
    optional: bool
    introspect: bool


@dataclass(frozen=True, slots=True)
class Requirement:
    """What a route asks of its caller: roles, client roles and scopes (all required), at least
    one of ``any_roles`` and of ``any_scopes``, the application's own ``allow`` check, whether a
    request without a token may pass as anonymous, and whether the token must be introspected
    (for ``Introspection(when="on_request")``)."""

    roles: tuple[str, ...] = ()
    client_roles: Mapping[str, tuple[str, ...]] | None = None
    scopes: tuple[str, ...] = ()
    any_roles: tuple[str, ...] = ()
    any_scopes: tuple[str, ...] = ()
    allow: Callable[[Principal], bool] | None = None
    optional: bool = False
    introspect: bool = False
    # Whether there is anything to check once the caller is known; read on every request.
    grants: bool = field(init=False)

    def __post_init__(self) -> None:
        checks = (self.roles, self.client_roles, self.scopes, self.any_roles, self.any_scopes)
        object.__setattr__(self, "grants", any(checks) or self.allow is not None)

    @classmethod
    def of(
        cls,
        *,
        roles: Iterable[str] = (),
        client_roles: Mapping[str, Iterable[str]] | None = None,
        scopes: Iterable[str] = (),
        any_roles: Iterable[str] = (),
        any_scopes: Iterable[str] = (),
        allow: Callable[[Principal], bool] | None = None,
        optional: bool = False,
        introspect: bool = False,
    ) -> Requirement:
        """The requirement from an adapter's keywords; a misspelt one is a TypeError here."""
        if allow is not None and not callable(allow):
            raise ValueError("allow must be a callable taking the Principal and returning bool")
        # Read the names once, at setup: a generator passed in would be empty on the next request.
        return cls(
            roles=as_names(roles),
            client_roles=(
                None
                if client_roles is None
                else {client: as_names(names) for client, names in client_roles.items()}
            ),
            scopes=as_names(scopes),
            any_roles=as_names(any_roles),
            any_scopes=as_names(any_scopes),
            allow=allow,
            optional=optional,
            introspect=introspect,
        )

    def check(self, principal: Principal, extra_scopes: Sequence[str] = ()) -> None:
        """Raise InsufficientScope naming whatever the caller lacks."""
        try:
            principal.require(
                self.roles,
                self.client_roles,
                (*self.scopes, *extra_scopes),
                any_roles=self.any_roles,
                any_scopes=self.any_scopes,
                allow=self.allow,
            )
        except InsufficientScope as refusal:
            refusal.client_id = principal.client_id  # the audit log names who was refused
            raise


ANY_CALLER: Final = Requirement()
