"""Configuration from the environment, with the Web Echo seed's variable names.

A service reads everything from ``KEYCLOAK_*`` variables (a compose file, a Kubernetes manifest)::

    KEYCLOAK_URL=http://keycloak:8080              # where this service reaches Keycloak
    KEYCLOAK_PUBLIC_URL=https://sso.example.com    # the base that iss names (default: KEYCLOAK_URL)
    KEYCLOAK_REALM=shop
    KEYCLOAK_AUDIENCE=notification-service         # several: commas or spaces
    KEYCLOAK_CLIENT_ID=shop-api                    # the caller side
    KEYCLOAK_CLIENT_SECRET=...

Run it as is and it starts a local realm on 127.0.0.1 and sets those variables itself; run it with
``KEYCLOAK_URL`` set and it uses your Keycloak.
"""

from __future__ import annotations

import os
import secrets

from keycloak_m2m import ClientCredentials, TokenValidator
from keycloak_m2m.testing import LocalRealm

SHOWN = ("KEYCLOAK_URL", "KEYCLOAK_REALM", "KEYCLOAK_AUDIENCE", "KEYCLOAK_CLIENT_ID")


def call_and_check() -> None:
    """What a deployed service does: every setting comes from the environment."""
    validator = TokenValidator.from_env()  # the API that receives calls
    credentials = ClientCredentials.from_env()  # the service that makes them
    principal = validator.validate(credentials.get_token())
    print(f"validator for {validator.issuer}, keys from {validator.jwks_url}")
    print(f"validated: client={principal.client_id} issuer={principal.issuer}")


def main() -> None:
    if os.environ.get("KEYCLOAK_URL"):
        call_and_check()
        return
    with LocalRealm("shop") as realm:
        # A made-up secret for a throwaway local realm; real secrets come from the environment.
        secret = secrets.token_urlsafe(16)
        realm.add_client("shop-api", secret, audience=["notification-service"])
        os.environ.update(
            KEYCLOAK_URL=realm.base_url,
            KEYCLOAK_REALM=realm.name,
            KEYCLOAK_AUDIENCE="notification-service",
            KEYCLOAK_CLIENT_ID="shop-api",
            KEYCLOAK_CLIENT_SECRET=secret,
        )
        for name in SHOWN:  # never the secret
            print(f"{name}={os.environ[name]}")
        call_and_check()


if __name__ == "__main__":
    main()
