"""FastAPI dependency: the verified caller as a Principal, with per-route requirements.

::

    auth = TokenAuth(validator, token_url=token_url)
    app = FastAPI()
    auth.install(app)

    @app.get("/notifications")
    async def list_notifications(caller: Principal = Depends(auth)): ...

    @app.post("/notifications")
    async def send(caller: Principal = Depends(auth.require(roles=["notifications:send"]))): ...

    @app.delete("/notifications")
    async def purge(caller: Principal = Security(auth, scopes=["notifications:admin"])): ...

The dependency registers its security schemes in the OpenAPI document: HTTP bearer, and OAuth2
client credentials when ``token_url`` is given, so Swagger UI's Authorize button works.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from contextlib import aclosing
from typing import TYPE_CHECKING, Final
from urllib.parse import urlencode

try:
    from fastapi import FastAPI, HTTPException, Request, Security
except ImportError as missing:  # pragma: no cover - depends on the environment
    raise ImportError(
        'keycloak_m2m.fastapi needs FastAPI: pip install "keycloak-m2m[fastapi]"'
    ) from missing
from fastapi.openapi.models import HTTPBearer as HTTPBearerModel
from fastapi.openapi.models import OAuth2 as OAuth2Model
from fastapi.openapi.models import OAuthFlowClientCredentials, OAuthFlows, SecuritySchemeType
from fastapi.security import SecurityScopes
from fastapi.security.base import SecurityBase
from starlette.responses import Response

from ._asgi_scope import presented
from ._errors import AuthError
from ._principal import Principal
from ._request import ErrorAnswer, Gate, TokenVerifier
from ._requirement import ANY_CALLER, Requirement, RequirementOptions

if TYPE_CHECKING:  # typing.Unpack for keyword arguments needs Python 3.12
    from typing_extensions import Unpack

__all__ = ["TokenAuth"]

_BEARER_SCHEME: Final = "bearerAuth"
_CLIENT_CREDENTIALS_SCHEME: Final = "clientCredentials"


class _Refused(HTTPException):
    """An AuthError on its way to the handler that ``TokenAuth.install`` registers.

    Without that handler FastAPI still answers with the right status and headers, and the body
    under ``detail``.
    """

    def __init__(self, answer: ErrorAnswer, error: AuthError) -> None:
        super().__init__(answer.status_code, detail=error.response_body(), headers=answer.headers)
        self.answer = answer


async def _answer_refusal(request: Request, refusal: Exception) -> Response:
    assert isinstance(refusal, _Refused)
    answer = refusal.answer
    return Response(answer.body, answer.status_code, headers=answer.headers)


class _Scheme(SecurityBase):
    """Puts one security scheme in the OpenAPI document; reading the token is TokenAuth's job."""

    def __init__(self, model: HTTPBearerModel | OAuth2Model, scheme_name: str) -> None:
        self.model = model
        self.scheme_name = scheme_name

    async def __call__(self) -> None:
        return None


# The dependencies are HTTP bearer schemes themselves: FastAPI lists them in the OpenAPI
# document at no cost per request, where a sub-dependency per scheme would cost a dependency
# resolution (~10 µs) on every request.
_BEARER_MODEL: Final = HTTPBearerModel(type=SecuritySchemeType.http, bearerFormat="JWT")


class TokenAuth(SecurityBase):
    """``Depends(auth)`` gives the Principal of a valid token, or refuses per RFC 6750.

    ``Security(auth, scopes=[...])`` also requires those token scopes; ``auth.require(...)``
    makes a dependency with roles, client roles, scopes and optional authentication. Call
    ``install(app)`` once so refusals get the RFC 6750 JSON body. ``realm`` names the protection
    space in ``WWW-Authenticate`` (default: the validator's issuer); ``public_url`` is the
    address clients call, for a service behind a proxy (DPoP proofs name it).
    ``client_cert_header`` (``"ssl-client-cert"`` or ``"x-forwarded-client-cert"``) names
    the header in which the TLS-terminating proxy in front passes the client certificate, for
    certificate-bound tokens; set it only behind such a proxy, which must overwrite the header.
    """

    __signature__: inspect.Signature

    def __init__(
        self,
        validator: TokenVerifier,
        *,
        token_url: str | None = None,
        realm: str | None = None,
        client_cert_header: str | None = None,
        public_url: str | None = None,
    ) -> None:
        self.model = _BEARER_MODEL
        self.scheme_name = _BEARER_SCHEME
        self._gate = Gate(validator, realm, client_cert_header, public_url)
        self._client_credentials = None if token_url is None else _client_credentials(token_url)
        # FastAPI reads a dependency's parameters from its signature; a client-credentials
        # parameter makes it list that scheme in the OpenAPI document too.
        self.__signature__ = _dependency_signature(self._client_credentials, ())

    def install(self, app: FastAPI) -> None:
        """Answer refusals with the RFC 6750 JSON body instead of FastAPI's ``detail``.

        Call it before the app starts: the handler is part of the middleware stack that Starlette
        builds once, at startup or on the first request, and a late one would silently do nothing.
        """
        if app.middleware_stack is not None:
            raise RuntimeError(
                "TokenAuth.install(app) must be called before the app starts serving: "
                "its exception handlers are fixed once it has started"
            )
        app.add_exception_handler(_Refused, _answer_refusal)

    async def __call__(
        self, request: Request, security_scopes: SecurityScopes, **_schemes: None
    ) -> Principal:
        principal = await self._authenticate(request, ANY_CALLER, security_scopes.scopes)
        assert principal is not None  # not optional: a missing token was refused
        return principal

    def require(self, **requirement: Unpack[RequirementOptions]) -> _Dependency:
        """A dependency that also checks a requirement, with the keywords of
        ``Principal.require``: ``roles``, ``client_roles``, ``scopes`` (all held), ``any_roles``,
        ``any_scopes`` (one of each held), ``allow`` (the application's check).

        With ``optional`` a request without a token gets None; a bad token is still refused.
        ``introspect`` asks the issuer whether the token is still active, for a validator with
        ``Introspection(when="on_request")``.
        """
        return _Dependency(self, Requirement.of(**requirement))

    async def _authenticate(
        self, request: Request, requirement: Requirement, security_scopes: Sequence[str]
    ) -> Principal | None:
        gate = self._gate
        asked = presented(request.scope, gate.certificate_header)
        try:
            return await gate.run_async(
                asked, requirement, _BodyReader(request).read, security_scopes
            )
        except AuthError as error:
            raise _Refused(gate.answer(error, asked), error) from error

    def _signature_for(self, scopes: Sequence[str]) -> inspect.Signature:
        return _dependency_signature(self._client_credentials, scopes)


class _Dependency(SecurityBase):
    """A dependency made by ``TokenAuth.require``: authenticate, then check a requirement."""

    __signature__: inspect.Signature

    def __init__(self, auth: TokenAuth, requirement: Requirement) -> None:
        self.model = _BEARER_MODEL
        self.scheme_name = _BEARER_SCHEME
        self._auth = auth
        self._requirement = requirement
        self.__signature__ = auth._signature_for(requirement.scopes)

    async def __call__(
        self, request: Request, security_scopes: SecurityScopes, **_schemes: None
    ) -> Principal | None:
        return await self._auth._authenticate(request, self._requirement, security_scopes.scopes)


class _BodyReader:
    """Reads the body for the request step through Starlette, stopping past the step's limit."""

    def __init__(self, request: Request) -> None:
        self._request = request

    async def read(self, limit: int) -> bytes:
        request = self._request
        form = getattr(request, "_form", None)
        if form is not None:
            # A route with form fields: FastAPI parsed the body before any dependency ran.
            return urlencode([(name, "") for name in form]).encode("latin-1")
        chunks: list[bytes] = []
        size = 0
        async with aclosing(request.stream()) as stream:
            async for chunk in stream:
                chunks.append(chunk)
                size += len(chunk)
                if size > limit:
                    return b"".join(chunks)  # the step refuses: read no further
        body = b"".join(chunks)
        request._body = body  # Starlette's cache: the route can still read the body
        return body


def _client_credentials(token_url: str) -> _Scheme:
    flows = OAuthFlows(clientCredentials=OAuthFlowClientCredentials(tokenUrl=token_url, scopes={}))
    model = OAuth2Model(type=SecuritySchemeType.oauth2, flows=flows)
    return _Scheme(model, _CLIENT_CREDENTIALS_SCHEME)


def _dependency_signature(
    client_credentials: _Scheme | None, scopes: Sequence[str]
) -> inspect.Signature:
    """``(request, security_scopes[, *, _clientCredentials=Security(scheme, scopes)])``."""
    positional = inspect.Parameter.POSITIONAL_OR_KEYWORD
    parameters = [
        inspect.Parameter("request", positional, annotation=Request),
        inspect.Parameter("security_scopes", positional, annotation=SecurityScopes),
    ]
    if client_credentials is not None:
        parameters.append(
            inspect.Parameter(
                f"_{client_credentials.scheme_name}",
                inspect.Parameter.KEYWORD_ONLY,
                default=Security(client_credentials, scopes=list(scopes)),
                annotation=None,
            )
        )
    return inspect.Signature(parameters)
