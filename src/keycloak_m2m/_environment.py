"""Settings from environment variables, under the names of the Web Echo seed (``KEYCLOAK_*``).

Each function turns the environment into constructor arguments; the constructors check values
again. Errors name the variable, not the Python argument: the person reading them set a variable.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import quote, urlsplit

from ._options import is_http_url

__all__ = ["client_settings", "validator_settings"]

_CERTS_PATH: Final = "/protocol/openid-connect/certs"
_TOKEN_PATH: Final = "/protocol/openid-connect/token"  # noqa: S105 - a path
_FLAGS: Final = {"true": True, "1": True, "false": False, "0": False}
_SEPARATORS: Final = re.compile(r"[,\s]+")


def validator_settings(environ: Mapping[str, str], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``TokenValidator`` arguments from ``KEYCLOAK_URL``, ``KEYCLOAK_PUBLIC_URL``,
    ``KEYCLOAK_REALM``, ``KEYCLOAK_AUTH_PATH``, ``KEYCLOAK_AUDIENCE``,
    ``KEYCLOAK_ALLOWED_CLIENTS``, ``KEYCLOAK_AZP_AS_AUDIENCE`` and ``KEYCLOAK_CA_BUNDLE``, then
    ``overrides`` on top. A variable is not required when the argument it feeds is overridden."""
    env = _Environment(environ)
    required = ["KEYCLOAK_URL", "KEYCLOAK_REALM"]
    if "audience" not in overrides:
        required.append("KEYCLOAK_AUDIENCE")
    env.require(*required)
    internal = env.base_url("KEYCLOAK_URL")
    public = env.base_url("KEYCLOAK_PUBLIC_URL") if env.get("KEYCLOAK_PUBLIC_URL") else internal
    realm_path = env.realm_path()
    settings: dict[str, Any] = {"issuer": public + realm_path}
    if "keycloak_url" not in overrides:
        # Keys come from the address this service reaches Keycloak on; iss names the public one.
        settings["jwks_url"] = internal + realm_path + _CERTS_PATH
    if env.get("KEYCLOAK_AUDIENCE"):
        settings["audience"] = env.names("KEYCLOAK_AUDIENCE")
    if env.get("KEYCLOAK_ALLOWED_CLIENTS"):
        settings["allowed_clients"] = env.names("KEYCLOAK_ALLOWED_CLIENTS")
    if env.get("KEYCLOAK_AZP_AS_AUDIENCE"):
        settings["azp_as_audience"] = env.flag("KEYCLOAK_AZP_AS_AUDIENCE")
    if env.get("KEYCLOAK_CA_BUNDLE"):
        settings["verify"] = env.file("KEYCLOAK_CA_BUNDLE")
    settings.update(overrides)
    return settings


def client_settings(environ: Mapping[str, str], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``ClientCredentials`` arguments from ``KEYCLOAK_URL``, ``KEYCLOAK_REALM``,
    ``KEYCLOAK_AUTH_PATH``, ``KEYCLOAK_CLIENT_ID``, ``KEYCLOAK_CLIENT_SECRET`` or
    ``KEYCLOAK_CLIENT_SECRET_FILE``, the optional ``KEYCLOAK_SCOPES`` and ``KEYCLOAK_CA_BUNDLE``,
    then ``overrides`` on top."""
    env = _Environment(environ)
    secret_variable = _secret_variable(env)
    env.require("KEYCLOAK_URL", "KEYCLOAK_REALM", "KEYCLOAK_CLIENT_ID", secret_variable)
    settings: dict[str, Any] = {
        "client_id": env.get("KEYCLOAK_CLIENT_ID"),
        "token_url": env.base_url("KEYCLOAK_URL") + env.realm_path() + _TOKEN_PATH,
    }
    if secret_variable.endswith("_FILE"):
        settings["client_secret_file"] = env.file(secret_variable)
    else:
        settings["client_secret"] = env.get(secret_variable)
    if env.get("KEYCLOAK_SCOPES"):
        settings["scopes"] = env.names("KEYCLOAK_SCOPES")
    if env.get("KEYCLOAK_CA_BUNDLE"):
        settings["verify"] = env.file("KEYCLOAK_CA_BUNDLE")
    settings.update(overrides)
    return settings


def _secret_variable(env: _Environment) -> str:
    """The variable holding the secret: the value, or (Kubernetes) the file it is mounted as."""
    if env.get("KEYCLOAK_CLIENT_SECRET") and env.get("KEYCLOAK_CLIENT_SECRET_FILE"):
        raise ValueError("set KEYCLOAK_CLIENT_SECRET or KEYCLOAK_CLIENT_SECRET_FILE, not both")
    if env.get("KEYCLOAK_CLIENT_SECRET_FILE"):
        return "KEYCLOAK_CLIENT_SECRET_FILE"
    return "KEYCLOAK_CLIENT_SECRET"


class _Environment:
    """Reads variables; an empty value counts as unset, as ``VAR=`` in a compose file means."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ

    def get(self, name: str) -> str:
        return self._environ.get(name, "").strip()

    def require(self, *names: str) -> None:
        missing = [name for name in names if not self.get(name)]
        if missing:
            raise ValueError("missing environment variables: " + ", ".join(missing))

    def base_url(self, name: str) -> str:
        value = self.get(name)
        if not is_http_url(value):
            raise ValueError(f"{name} must be an absolute http(s) URL, e.g. http://keycloak:8080")
        if "/realms/" in urlsplit(value).path + "/":
            raise ValueError(
                f"{name} must be Keycloak's base URL without /realms/...: "
                "name the realm in KEYCLOAK_REALM"
            )
        return value.rstrip("/")

    def realm_path(self) -> str:
        """``KEYCLOAK_AUTH_PATH`` (``/auth`` before Keycloak 17) + ``/realms/<KEYCLOAK_REALM>``."""
        auth_path = self.get("KEYCLOAK_AUTH_PATH").rstrip("/")
        if auth_path and not auth_path.startswith("/"):
            raise ValueError("KEYCLOAK_AUTH_PATH must be empty or a path such as /auth")
        return auth_path + "/realms/" + quote(self.get("KEYCLOAK_REALM"), safe="")

    def names(self, name: str) -> tuple[str, ...]:
        """A list separated by commas or spaces."""
        names = tuple(part for part in _SEPARATORS.split(self.get(name)) if part)
        if not names:
            raise ValueError(f"{name} names nothing: separate names with commas or spaces")
        return names

    def flag(self, name: str) -> bool:
        value = _FLAGS.get(self.get(name).lower())
        if value is None:
            raise ValueError(f"{name} must be true, false, 1 or 0")
        return value

    def file(self, name: str) -> str:
        path = self.get(name)
        if not os.path.isfile(path):
            raise ValueError(f"{name}: no file at {path}")
        return path
