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
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Final, TypeVar, cast

try:
    from flask import Flask, Response, current_app, g, request
except ImportError as missing:  # pragma: no cover - depends on the environment
    raise ImportError(
        'keycloak_m2m.flask needs Flask: pip install "keycloak-m2m[flask]"'
    ) from missing

from ._binding import ForwardedCertificate
from ._errors import AuthError
from ._principal import Principal
from ._request import Gate, Presented, TokenVerifier
from ._requirement import Requirement, RequirementOptions
from ._token_cache import HEADER_ENCODING

if TYPE_CHECKING:  # typing.Unpack for keyword arguments needs Python 3.12
    from typing_extensions import Unpack
from ._validator import TokenValidator

__all__ = ["CONFIG_PREFIX", "TokenAuth", "current_principal"]

View = TypeVar("View", bound=Callable[..., Any])

# app.config names: KEYCLOAK_M2M_ISSUER, KEYCLOAK_M2M_AUDIENCE, KEYCLOAK_M2M_REALM, and
# KEYCLOAK_M2M_<NAME> for every keyword option of TokenValidator (KEYCLOAK_M2M_JWKS_URL, ...).
CONFIG_PREFIX: Final = "KEYCLOAK_M2M_"
_REQUIRED_SETTINGS: Final = ("ISSUER", "AUDIENCE")
_REALM_SETTING: Final = "REALM"
_EXTENSION: Final = "keycloak_m2m"


def current_principal() -> Principal | None:
    """The caller of the current request (None if anonymous); the same as ``flask.g.principal``."""
    principal: Principal | None = g.get("principal")
    return principal


class TokenAuth:
    """Guards Flask views with ``@auth.require(...)``, answering refusals per RFC 6750.

    Give the validator here, or call ``init_app(app)`` to build it from ``app.config``.
    ``realm`` names the protection space in ``WWW-Authenticate`` (default: the issuer);
    ``public_url`` is the address clients call, for a service behind a proxy (DPoP proofs
    name it). ``client_cert_header`` (``"ssl-client-cert"`` or ``"x-forwarded-client-cert"``)
    names the header in which the TLS-terminating proxy in front passes the client certificate;
    set it only behind such a proxy, which must overwrite the header.
    """

    def __init__(
        self,
        validator: TokenVerifier | None = None,
        *,
        realm: str | None = None,
        client_cert_header: str | None = None,
        public_url: str | None = None,
    ) -> None:
        self._realm = realm
        self._client_cert_header = client_cert_header
        self._public_url = public_url
        self._gate = (
            None if validator is None else Gate(validator, realm, client_cert_header, public_url)
        )
        # The views this instance guards, as they were before wrapping: one of them registered
        # as is means @auth.require(...) was placed above @app.route(...).
        self._unguarded: dict[Callable[..., Any], str] = {}

    def init_app(self, app: Flask) -> None:
        """Use this app's ``KEYCLOAK_M2M_*`` settings, unless a validator was given.

        Also checks, now and before the first request, that no view was registered without
        its guard.
        """
        gate = self._gate
        if gate is None:
            validator = _validator_from_config(app.config)
            realm = self._realm or app.config.get(CONFIG_PREFIX + _REALM_SETTING)
            gate = Gate(validator, realm, self._client_cert_header, self._public_url)
        app.extensions.setdefault(_EXTENSION, {})[self] = gate
        self._check_order(app, settled=False)
        app.before_request(lambda: self._check_order(current_app))

    def require(self, **requirement: Unpack[RequirementOptions]) -> Callable[[View], View]:
        """Decorate a view so it runs only for a valid token meeting the requirement, with the
        keywords of ``Principal.require``: ``roles``, ``client_roles``, ``scopes`` (all held),
        ``any_roles``, ``any_scopes`` (one of each held), ``allow`` (the application's check).

        With ``optional`` a request without a token runs the view as anonymous (the principal is
        None); a bad token is still refused. ``introspect`` asks the issuer whether the token
        is still active, for a validator with ``Introspection(when="on_request")``.
        """
        checked = Requirement.of(**requirement)

        def decorate(view: View) -> View:
            self._unguarded[view] = getattr(view, "__qualname__", repr(view))
            if inspect.iscoroutinefunction(view):

                @functools.wraps(view)
                async def guarded_async(*args: Any, **kwargs: Any) -> Any:
                    refusal = self._admit(checked)
                    if refusal is not None:
                        return refusal
                    return await view(*args, **kwargs)

                return cast(View, guarded_async)

            @functools.wraps(view)
            def guarded(*args: Any, **kwargs: Any) -> Any:
                refusal = self._admit(checked)
                if refusal is not None:
                    return refusal
                return view(*args, **kwargs)

            return cast(View, guarded)

        return decorate

    def _admit(self, requirement: Requirement) -> Response | None:
        """Put the caller on ``g`` and return None, or return the refusal to send."""
        gate = self._current_gate()
        asked = _presented(gate)
        try:
            g.principal = gate.run(asked, requirement, _read_body)
        except AuthError as error:
            answer = gate.answer(error, asked)
            return Response(answer.body, answer.status_code, answer.headers)
        return None

    def _current_gate(self) -> Gate:
        self._check_order(current_app)
        if self._gate is not None:
            return self._gate
        gate: Gate | None = current_app.extensions.get(_EXTENSION, {}).get(self)
        if gate is None:
            raise RuntimeError("TokenAuth() without a validator needs init_app(app) first")
        return gate

    def _check_order(self, app: Flask, *, settled: bool = True) -> None:
        """Refuse to serve if a view this instance wraps was registered unwrapped.

        ``settled``: called while serving, when Flask allows no more routes, so one pass is
        enough per app.
        """
        checked = app.extensions.setdefault(_EXTENSION + ".checked", set())
        if self in checked:
            return
        for endpoint, view in app.view_functions.items():
            name = self._unguarded.get(view)
            if name is not None:
                raise RuntimeError(
                    f"view {name!r} (endpoint {endpoint!r}) is registered unguarded: put "
                    "@auth.require(...) below @app.route(...), so the route gets the guarded view"
                )
        if settled:
            checked.add(self)


def _presented(gate: Gate) -> Presented:
    """The request step's input from the current Flask request: the client certificate from
    the trusted proxy's header when one is configured, else from the WSGI server's
    ``SSL_CLIENT_CERT``."""
    headers = request.headers
    header = gate.certificate_header
    certificate = (
        request.environ.get("SSL_CLIENT_CERT") or None
        if header is None
        else ForwardedCertificate(header, tuple(headers.getlist(header)))
    )
    return Presented(
        request.method,
        request.scheme,
        request.host,
        request.root_path + request.path,
        # PEP 3333: header values are latin-1 text of the bytes that came, which is how the
        # verified-token cache maps a str token to the bytes it holds.
        [value.encode(HEADER_ENCODING) for value in headers.getlist("Authorization")],
        headers.getlist("DPoP"),
        request.query_string,
        request.content_type,
        certificate,
    )


def _read_body(limit: int) -> bytes:
    """At most ``limit + 1`` bytes of the body, kept for the view when they are all of it."""
    cached: bytes | None = getattr(request, "_cached_data", None)
    if cached is not None:
        return cached
    data = request.stream.read(limit + 1)
    if len(data) <= limit:
        # Werkzeug's own cache, which get_data() and request.form read from.
        request._cached_data = data
    return data


def _validator_from_config(config: Mapping[str, Any]) -> TokenValidator:
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
    given = [name for name in _REQUIRED_SETTINGS if CONFIG_PREFIX + name in config]
    if not given:
        return _validator_from_environment(chosen)
    if len(given) < len(_REQUIRED_SETTINGS):
        missing = [CONFIG_PREFIX + name for name in _REQUIRED_SETTINGS if name not in given]
        raise RuntimeError(f"set {' and '.join(missing)} in app.config, or pass a validator")
    return TokenValidator(
        config[CONFIG_PREFIX + "ISSUER"], config[CONFIG_PREFIX + "AUDIENCE"], **chosen
    )


def _validator_from_environment(options: Mapping[str, Any]) -> TokenValidator:
    """Neither issuer nor audience in app.config: the KEYCLOAK_* environment variables, with
    the other KEYCLOAK_M2M_* settings on top."""
    try:
        return TokenValidator.from_env(**options)
    except ValueError as error:
        raise RuntimeError(
            f"no {CONFIG_PREFIX}ISSUER and {CONFIG_PREFIX}AUDIENCE in app.config, and the "
            f"environment does not configure a validator either: {error}"
        ) from None


def _validator_options() -> tuple[str, ...]:
    # Every keyword option of TokenValidator has a setting, so new options need no change here.
    parameters = inspect.signature(TokenValidator).parameters.values()
    return tuple(p.name for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY)
