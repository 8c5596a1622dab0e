"""Quickstart: start a local Keycloak-compatible realm, get a token over HTTP, validate it.

Everything runs on 127.0.0.1; no Keycloak and no network needed.
"""

from __future__ import annotations

import secrets

import httpx

from keycloak_m2m import InvalidAudience, TokenValidator
from keycloak_m2m.testing import LocalRealm


def main() -> None:
    with LocalRealm("shop") as realm:
        # A made-up secret for a throwaway local realm; real secrets come from the environment.
        secret = secrets.token_urlsafe(16)
        realm.add_client(
            "shop-api",
            secret,
            realm_roles=["notifications:send"],
            audience=["notification-service"],
        )
        print(f"local realm up: issuer {realm.issuer}")

        response = httpx.post(
            realm.token_url, data={"grant_type": "client_credentials"}, auth=("shop-api", secret)
        )
        response.raise_for_status()
        token = response.json()["access_token"]
        print(f"token obtained over HTTP from {realm.token_url}")

        validator = TokenValidator(realm.issuer, "notification-service")
        principal = validator.validate(token)
        print(
            f"validated: client={principal.client_id} "
            f"service_account={principal.is_service_account} "
            f"realm_roles={sorted(principal.realm_roles)} scopes={sorted(principal.scopes)}"
        )

        other_api = TokenValidator(realm.issuer, "billing-service")
        try:
            other_api.validate(token)
        except InvalidAudience as error:
            print(f"billing-service refuses it: {error.status_code} {error.description}")


if __name__ == "__main__":
    main()
