"""``python -m keycloak_m2m``: the ``keycloak-m2m`` command line."""

from __future__ import annotations

from .cli import main

raise SystemExit(main())
