"""The audit log: one record per decision of the request step, and nothing secret in it.

Logger ``keycloak_m2m.audit``: one record per refusal at INFO, per admission at DEBUG, with
structured ``extra`` fields (outcome, reason, client id, issuer, method, path, status) and never
a token, a secret, the query string or a claim value other than the client id and issuer.
Standard ``logging`` only, so the sans-I/O request step can write it.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Final, Protocol

from ._errors import AuthError

if TYPE_CHECKING:
    from ._principal import Principal

__all__ = ["audit_acceptance", "audit_log", "audit_refusal"]

ACCEPTED: Final = "accepted"
REFUSED: Final = "refused"
ANONYMOUS: Final = "anonymous"

audit_log: Final = logging.getLogger("keycloak_m2m.audit")


class AuditedRequest(Protocol):
    """What the audit record takes from a request: its method and path, never its headers."""

    @property
    def method(self) -> str: ...

    @property
    def path(self) -> str: ...


def audit_refusal(error: AuthError, request: AuditedRequest, issuer: str) -> None:
    """One INFO record per refused request."""
    if audit_log.isEnabledFor(logging.INFO):
        audit_log.info(
            "refused %s %s: %s",
            request.method,
            request.path,
            error.description,
            extra={
                "outcome": REFUSED,
                "reason": type(error).__name__,
                "client_id": error.client_id,
                "issuer": issuer,
                "method": request.method,
                "path": request.path,
                "status": error.status_code,
            },
        )


def audit_acceptance(principal: Principal | None, request: AuditedRequest, issuer: str) -> None:
    """One DEBUG record per admitted request (an anonymous one on an optional route too).

    The caller asks whether DEBUG is enabled first (the request step reads logging's memo of
    it): this runs per request.
    """
    audit_log.debug(
        "admitted %s %s for %s",
        request.method,
        request.path,
        "anonymous" if principal is None else principal.client_id,
        extra={
            "outcome": ANONYMOUS if principal is None else ACCEPTED,
            "reason": None,
            "client_id": None if principal is None else principal.client_id,
            # The realm that vouched for the caller (one of several behind a MultiIssuerValidator).
            "issuer": issuer if principal is None else principal.issuer,
            "method": request.method,
            "path": request.path,
            "status": None,
        },
    )
