"""Flask decorator: views that need a valid bearer token, with per-view requirements.

::

    auth = TokenAuth(validator)          # or TokenAuth() and auth.init_app(app), from app.config

    @app.post("/notifications")
    @auth.require(roles=["notifications:send"])
    def send():
        caller = current_principal()     # also flask.g.principal
        ...

Works on plain views, ``async def`` views and class-based views. Tokens are checked with the
validator's sync driver (Flask serves each request on its own thread).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, TypeVar, cast

from flask import Flask, Response, current_app, g, request

from ._bearer import (
    Requirement,
    bearer_token,
    error_answer,
    is_form,
    refuse_access_token,
    single_authorization,
)
from ._errors import AuthError, MissingToken
from ._principal import Principal
from ._validator import TokenValidator

__all__ = ["CONFIG_PREFIX", "TokenAuth", "current_principal"]

View = TypeVar("View", bound=Callable[..., Any])

# app.config names: KEYCLOAK_M2M_ISSUER, KEYCLOAK_M2M_AUDIENCE, KEYCLOAK_M2M_REALM, and
# KEYCLOAK_M2M_<NAME> for every keyword option of TokenValidator (KEYCLOAK_M2M_JWKS_URL, ...).
CONFIG_PREFIX: Final = "KEYCLOAK_M2M_"
_REQUIRED_SETTINGS: Final = ("ISSUER", "AUDIENCE")
_REALM_SETTING: Final = "REALM"
_EXTENSION: Final = "keycloak_m2m"


@dataclass(frozen=True, slots=True)
class _Settings:
    validator: TokenValidator
    realm: str


def current_principal() -> Principal | None:
    """The caller of the current request (None if anonymous); the same as ``flask.g.principal``."""
    principal: Principal | None = g.get("principal")
    return principal


class TokenAuth:
    """Guards Flask views with ``@auth.require(...)``, answering refusals per RFC 6750.

    Give the validator here, or call ``init_app(app)`` to build it from ``app.config``.
    ``realm`` names the protection space in ``WWW-Authenticate`` (default: the issuer).
    """

    def __init__(
        self, validator: TokenValidator | None = None, *, realm: str | None = None
    ) -> None:
        self._realm = realm
        self._settings: _Settings | None = None
        if validator is not None:
            self._settings = _Settings(validator, validator.issuer if realm is None else realm)

    def init_app(self, app: Flask) -> None:
        """Use this app's ``KEYCLOAK_M2M_*`` settings, unless a validator was given."""
        settings = self._settings
        if settings is None:
            validator = _validator_from_config(app.config)
            realm = self._realm or app.config.get(CONFIG_PREFIX + _REALM_SETTING)
            settings = _Settings(validator, realm or validator.issuer)
        app.extensions.setdefault(_EXTENSION, {})[self] = settings

    def require(
        self,
        *,
        roles: Iterable[str] = (),
        client_roles: Mapping[str, Iterable[str]] | None = None,
        scopes: Iterable[str] = (),
        optional: bool = False,
    ) -> Callable[[View], View]:
        """Decorate a view so it runs only for a valid token holding everything named.

        With ``optional`` a request without a token runs the view as anonymous (the principal is
        None); a bad token is still refused.
        """
        requirement = Requirement.of(roles, client_roles, scopes, optional)

        def decorate(view: View) -> View:
            if inspect.iscoroutinefunction(view):

                @functools.wraps(view)
                async def guarded_async(*args: Any, **kwargs: Any) -> Any:
                    refusal = self._admit(requirement)
                    if refusal is not None:
                        return refusal
                    return await view(*args, **kwargs)

                return cast(View, guarded_async)

            @functools.wraps(view)
            def guarded(*args: Any, **kwargs: Any) -> Any:
                refusal = self._admit(requirement)
                if refusal is not None:
                    return refusal
                return view(*args, **kwargs)

            return cast(View, guarded)

        return decorate

    def _admit(self, requirement: Requirement) -> Response | None:
        """Put the caller on ``g`` and return None, or return the refusal to send."""
        settings = self._current_settings()
        try:
            g.principal = _principal(settings.validator, requirement)
        except AuthError as error:
            answer = error_answer(error, settings.realm)
            return Response(answer.body, answer.status_code, answer.headers)
        return None

    def _current_settings(self) -> _Settings:
        if self._settings is not None:
            return self._settings
        settings: _Settings | None = current_app.extensions.get(_EXTENSION, {}).get(self)
        if settings is None:
            raise RuntimeError("TokenAuth() without a validator needs init_app(app) first")
        return settings


def _principal(validator: TokenValidator, requirement: Requirement) -> Principal | None:
    refuse_access_token(request.query_string)
    if is_form(request.content_type):
        # cache=True: the view can still read the body, or request.form.
        refuse_access_token(request.get_data(cache=True))
    token = bearer_token(single_authorization(request.headers.getlist("Authorization")))
    if token is None:
        if requirement.optional:
            return None
        raise MissingToken()
    principal = validator.validate(token)
    requirement.check(principal)
    return principal


def _validator_from_config(config: Mapping[str, Any]) -> TokenValidator:
    missing = [
        CONFIG_PREFIX + name for name in _REQUIRED_SETTINGS if CONFIG_PREFIX + name not in config
    ]
    if missing:
        raise RuntimeError(f"set {' and '.join(missing)} in app.config, or pass a validator")
    options = _validator_options()
    known = {*_REQUIRED_SETTINGS, _REALM_SETTING, *(name.upper() for name in options)}
    # A misspelt setting (say KEYCLOAK_M2M_ALLOWED_CLIENT) would silently loosen the checks.
    unknown = sorted(
        key
        for key in config
        if key.startswith(CONFIG_PREFIX) and key[len(CONFIG_PREFIX) :] not in known
    )
    if unknown:
        raise RuntimeError(f"unknown app.config settings: {', '.join(unknown)}")
    chosen = {
        name: config[CONFIG_PREFIX + name.upper()]
        for name in options
        if CONFIG_PREFIX + name.upper() in config
    }
    return TokenValidator(
        config[CONFIG_PREFIX + "ISSUER"], config[CONFIG_PREFIX + "AUDIENCE"], **chosen
    )


def _validator_options() -> tuple[str, ...]:
    # Every keyword option of TokenValidator has a setting, so new options need no change here.
    parameters = inspect.signature(TokenValidator).parameters.values()
    return tuple(p.name for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY)
