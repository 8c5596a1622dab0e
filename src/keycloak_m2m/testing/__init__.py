"""Test helpers: a Keycloak-compatible realm served over real HTTP.

``LocalRealm`` runs on 127.0.0.1 from a background thread; the pytest plugin of this package
provides it as the ``local_realm`` fixture.
"""

from __future__ import annotations

from ._realm import LocalRealm
from ._tls import CertificateAuthority, IssuedCertificate

__all__ = ["CertificateAuthority", "IssuedCertificate", "LocalRealm"]
