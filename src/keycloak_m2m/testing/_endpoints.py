"""The realm's endpoints, each a function from (realm, request) to a response.

Keycloak's paths under ``<issuer>``: ``/.well-known/openid-configuration``, the realm page itself
(``GET <issuer>``), and under ``/protocol/openid-connect``: ``certs``, ``token`` (client
credentials and standard token exchange), ``token/introspect``, ``revoke`` and ``userinfo``.
Everything else is a 404, like any path Keycloak does not know.
"""

from __future__ import annotations

import dataclasses
import hmac
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final, Literal, TypeAlias

from .._errors import InvalidDPoPProof
from ._assertions import assertion_client
from ._claims import Client, introspection, userinfo
from ._keys import SUPPORTED_ALGORITHMS, public_key_base64
from ._protocol import (
    NO_STORE,
    ClientAuthenticationFailed,
    OAuthError,
    bearer_token,
    invalid_client,
    json_response,
    method_not_allowed,
    parse_form,
    preflight,
    presented_credentials,
    with_cors,
)
from ._server import Request, Response
from ._tls import common_name, thumbprint

if TYPE_CHECKING:
    from ._realm import LocalRealm

Endpoint: TypeAlias = Literal[
    "certs", "token", "discovery", "introspect", "revoke", "userinfo", "realm"
]
_ACCESS_TOKEN_TYPE: Final = "urn:ietf:params:oauth:token-type:access_token"  # noqa: S105 - a URN
_TOKEN_EXCHANGE: Final = "urn:ietf:params:oauth:grant-type:token-exchange"  # noqa: S105 - a URN
_AUTH_METHODS: Final = ("client_secret_basic", "client_secret_post", "private_key_jwt")
_POST_OPTIONS: Final = "POST, OPTIONS"


# ---------------------------------------------------------------------------------------------
# Documents


def _public_document(
    request: Request,
    document: Callable[[], Mapping[str, Any]],
    headers: tuple[tuple[str, str], ...] = (),
) -> Response:
    """GET (or HEAD) of a public JSON document. Keycloak lets any origin read these, so a
    browser page can discover the realm and fetch its keys."""
    if request.method == "OPTIONS":
        return preflight(request, "GET, OPTIONS")
    if request.method not in ("GET", "HEAD"):
        return method_not_allowed("GET", "HEAD")
    response = json_response(200, document(), headers=headers)
    return with_cors(response, request, None, any_origin=True)


def realm_page(realm: LocalRealm, request: Request) -> Response:
    """Keycloak's realm information (``GET /realms/<realm>``), which python-keycloak's
    ``public_key()`` and older adapters read: the public_key is the newest RS256 key, omitted
    (as Keycloak omits nulls) when the realm has none."""

    def document() -> dict[str, Any]:
        page: dict[str, Any] = {"realm": realm.name}
        rsa_key = realm._keys.newest("RS256")
        if rsa_key is not None:
            page["public_key"] = public_key_base64(rsa_key)
        page["token-service"] = realm.issuer + "/protocol/openid-connect"
        page["account-service"] = realm.issuer + "/account"
        page["tokens-not-before"] = 0
        return page

    return _public_document(request, document)


def certs(realm: LocalRealm, request: Request) -> Response:
    return _public_document(request, realm._keys.jwks, (("Cache-Control", "no-cache"),))


def discovery(realm: LocalRealm, request: Request) -> Response:
    """Keycloak 26's field names and values, limited to what this realm serves: every endpoint
    listed answers, and nothing that does not answer is listed."""
    return _public_document(request, lambda: _discovery_document(realm))


def _discovery_document(realm: LocalRealm) -> dict[str, Any]:
    return {
        "issuer": realm.issuer,
        "token_endpoint": realm.token_url,
        "introspection_endpoint": realm.introspection_url,
        "userinfo_endpoint": realm.userinfo_url,
        "jwks_uri": realm.jwks_url,
        "grant_types_supported": list(_GRANTS),
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": list(SUPPORTED_ALGORITHMS),
        "token_endpoint_auth_methods_supported": list(_AUTH_METHODS),
        "token_endpoint_auth_signing_alg_values_supported": list(SUPPORTED_ALGORITHMS),
        "introspection_endpoint_auth_methods_supported": list(_AUTH_METHODS),
        "claims_supported": ["aud", "sub", "iss", "preferred_username", "acr", "azp"],
        "claim_types_supported": ["normal"],
        "claims_parameter_supported": False,
        "scopes_supported": ["openid", *realm._scope_names()],
        "revocation_endpoint": realm.revocation_url,
        "revocation_endpoint_auth_methods_supported": list(_AUTH_METHODS),
    }


# ---------------------------------------------------------------------------------------------
# Client-authenticated endpoints


def _authenticate(realm: LocalRealm, request: Request, form: Mapping[str, str]) -> Client:
    if "client_assertion" in form or "client_assertion_type" in form:
        if "client_secret" in form or _has_basic_credentials(request):
            raise OAuthError(400, "invalid_request", "Multiple client authentication methods")
        return assertion_client(realm, form)
    client_id, secret = presented_credentials(request, form)
    client = realm._client_or_none(client_id)
    if client is not None and client.certificate_bound and client.enabled:
        return _certificate_client(client, request)
    if client is None or secret is None or client.secret is None or not client.enabled:
        raise invalid_client()
    if not hmac.compare_digest(client.secret.encode("utf-8"), secret.encode("utf-8")):
        raise invalid_client()
    return client


def _has_basic_credentials(request: Request) -> bool:
    scheme, _, _ = request.headers.get("authorization", "").strip().partition(" ")
    return scheme.lower() == "basic"


def _certificate_client(client: Client, request: Request) -> Client:
    """Keycloak's X.509 client authenticator (RFC 8705 tls_client_auth): the connection's
    certificate, verified against the realm's CA, must name the client; no secret. The client
    comes back bound to it, for the token's ``cnf``."""
    der = request.client_certificate
    if der is None or common_name(der) != client.client_id:
        raise invalid_client()
    return dataclasses.replace(client, bound_to=thumbprint(der))


def _client_endpoint(
    realm: LocalRealm,
    request: Request,
    answer: Callable[[LocalRealm, Client, Mapping[str, str]], Response],
    *,
    check_form: Callable[[Mapping[str, str]], None] = lambda form: None,
) -> Response:
    """POST, a form, client authentication, then ``answer``; CORS for the client's origins.

    Errors before the client is known carry no CORS headers; a failed client authentication
    is readable from any origin; later errors follow the client's Web Origins (Keycloak's
    order and choices).
    """
    if request.method == "OPTIONS":
        return preflight(request, _POST_OPTIONS)
    if request.method != "POST":
        return method_not_allowed("POST")
    client: Client | None = None
    try:
        form = parse_form(request)
        check_form(form)
        client = _authenticate(realm, request, form)
        response = answer(realm, client, form)
    except ClientAuthenticationFailed as error:
        return with_cors(error.response(), request, None, any_origin=True)
    except OAuthError as error:
        response = error.response()
    return with_cors(response, request, client)


def token(realm: LocalRealm, request: Request) -> Response:
    try:
        jkt = _proof_key(realm, request)
    except OAuthError as error:
        return error.response()

    def grant(realm: LocalRealm, client: Client, form: Mapping[str, str]) -> Response:
        if client.dpop_bound and jkt is None:
            raise OAuthError(400, "invalid_dpop_proof", "DPoP proof is missing")
        return _grant(realm, client, form, jkt)

    return _client_endpoint(realm, request, grant, check_form=_check_grant_type)


def _proof_key(realm: LocalRealm, request: Request) -> str | None:
    """The thumbprint of the key a token request's DPoP proof was signed with, as Keycloak
    checks the proof (RFC 9449 section 5: htm POST, htu the token URL, fresh, not replayed)."""
    proof = request.headers.get("dpop")
    if proof is None:
        return None
    try:
        verdict = realm._dpop_proofs.check(
            proof, ath=None, method="POST", url=realm.token_url, now=realm._clock()
        )
    except InvalidDPoPProof as error:
        raise OAuthError(400, "invalid_dpop_proof", error.description) from None
    if not realm._dpop_replay.first_use(verdict.replay_key, verdict.replay_ttl):
        raise OAuthError(400, "invalid_dpop_proof", "DPoP proof has already been used")
    return verdict.jkt


def introspect(realm: LocalRealm, request: Request) -> Response:
    """RFC 7662 with Keycloak's answer: the token's full claims (a lightweight token's too) plus
    client_id, username, token_type and ``active: true``; or only ``active: false`` for a
    token that is expired, revoked, not this realm's, or whose client is disabled or unknown."""
    return _client_endpoint(realm, request, _introspection)


def revoke(realm: LocalRealm, request: Request) -> Response:
    """RFC 7009: 200 with no body, also for a token that is invalid already; a valid token of
    another client is refused."""
    return _client_endpoint(realm, request, _revocation)


def _check_grant_type(form: Mapping[str, str]) -> None:
    # Checked before client authentication, as Keycloak does.
    grant_type = form.get("grant_type")
    if not grant_type:
        raise OAuthError(400, "invalid_request", "Missing form parameter: grant_type")
    if grant_type not in _GRANTS:
        raise OAuthError(400, "unsupported_grant_type", "Unsupported grant_type")


def _grant(realm: LocalRealm, client: Client, form: Mapping[str, str], jkt: str | None) -> Response:
    if form["grant_type"] == "client_credentials":
        body = _client_credentials(realm, client, form, jkt)
    else:
        body = _GRANTS[form["grant_type"]](realm, client, form)
    return json_response(200, body, headers=NO_STORE)


def _token_to_inspect(form: Mapping[str, str], description: str) -> str:
    value = form.get("token")
    if value is None:
        raise OAuthError(400, "invalid_request", description)
    return value


def _introspection(realm: LocalRealm, client: Client, form: Mapping[str, str]) -> Response:
    value = _token_to_inspect(form, "Token not provided.")
    hint = form.get("token_type_hint", "access_token")
    if hint not in ("access_token", "refresh_token", "requesting_party_token"):
        raise OAuthError(400, "invalid_request", "Unsupported token type.")
    # This realm issues no refresh tokens: under that hint nothing is active.
    claims = realm._active_claims(value) if hint != "refresh_token" else None
    answer = introspection(claims) if claims is not None else {"active": False}
    return json_response(200, answer, headers=(("Cache-Control", "no-cache"),))


def _revocation(realm: LocalRealm, client: Client, form: Mapping[str, str]) -> Response:
    value = _token_to_inspect(form, "Token not provided")
    hint = form.get("token_type_hint")
    if hint not in (None, "access_token", "refresh_token"):
        raise OAuthError(400, "unsupported_token_type", f"Unsupported token_type_hint: {hint}")
    claims = realm._active_claims(value)
    if claims is not None:
        if claims.get("azp") != client.client_id:
            raise OAuthError(400, "invalid_request", "Unmatching clients")
        realm.revoke(value)
    return Response(200, b"", None, NO_STORE)


# ---------------------------------------------------------------------------------------------
# Grants: (realm, authenticated client, form) -> success body, or raise OAuthError


def _granted_scopes(client: Client, form: Mapping[str, str]) -> tuple[str, ...]:
    requested = form.get("scope")
    scopes = client.scopes.granted(requested)
    if scopes is None:
        raise OAuthError(400, "invalid_scope", f"Invalid scopes: {requested}")
    return scopes


def _token_response(
    realm: LocalRealm,
    access_token: str,
    scopes: tuple[str, ...],
    id_token: str | None,
    token_type: str = "Bearer",  # noqa: S107 - a token type, not a secret
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "access_token": access_token,
        "expires_in": realm.token_lifetime,
        "refresh_expires_in": 0,
        "token_type": token_type,
    }
    if id_token is not None:
        body["id_token"] = id_token
    body["not-before-policy"] = 0
    body["scope"] = " ".join(scopes)
    return body


def _client_credentials(
    realm: LocalRealm, client: Client, form: Mapping[str, str], jkt: str | None = None
) -> dict[str, Any]:
    scopes = _granted_scopes(client, form)
    access_token, claims = realm._issue(client, scopes, jkt)
    # Keycloak adds an ID token to any grant whose scope asks for openid.
    id_token = realm._issue_id_token(client, access_token, claims) if "openid" in scopes else None
    token_type = "Bearer" if jkt is None else "DPoP"
    return _token_response(realm, access_token, scopes, id_token, token_type)


def _token_exchange(realm: LocalRealm, client: Client, form: Mapping[str, str]) -> dict[str, Any]:
    """RFC 8693 as Keycloak's standard token exchange (V2) does it, for access tokens only.

    The subject token must be active (as introspection sees it; 400 ``invalid_token``) and name
    the requesting client in ``aud`` (403 ``access_denied``); ``audience`` must name a known
    client (400 ``invalid_client``). The new token keeps the subject's ``sub``, username and
    realm roles, names the requester in ``azp`` and carries only the client roles of its
    audience.
    """
    subject_token = form.get("subject_token")
    if not subject_token:
        raise OAuthError(400, "invalid_request", "Missing parameter: subject_token")
    if form.get("subject_token_type", _ACCESS_TOKEN_TYPE) != _ACCESS_TOKEN_TYPE:
        raise OAuthError(400, "invalid_request", "Unsupported subject_token_type")
    if form.get("requested_token_type", _ACCESS_TOKEN_TYPE) != _ACCESS_TOKEN_TYPE:
        raise OAuthError(400, "invalid_request", "Unsupported requested_token_type")
    subject = realm._active_claims(subject_token)
    if subject is None:
        raise OAuthError(400, "invalid_token", "Invalid token")
    if client.client_id not in _audience_list(subject.get("aud")):
        raise OAuthError(403, "access_denied", "Client is not within the token audience")
    target = form.get("audience")
    if target is not None and not realm._has_client(target):
        raise OAuthError(400, "invalid_client", "Audience not found")
    scopes = _granted_scopes(client, form)
    new_token = realm._issue_exchanged(client, subject, target, scopes)
    return {
        **_token_response(realm, new_token, scopes, None),
        "issued_token_type": _ACCESS_TOKEN_TYPE,
    }


def _audience_list(aud: object) -> list[str]:
    if isinstance(aud, str):
        return [aud]
    return [name for name in aud if isinstance(name, str)] if isinstance(aud, list) else []


_Grant: TypeAlias = Callable[["LocalRealm", Client, Mapping[str, str]], dict[str, Any]]
_GRANTS: Final[Mapping[str, _Grant]] = MappingProxyType(
    {"client_credentials": _client_credentials, _TOKEN_EXCHANGE: _token_exchange}
)


# ---------------------------------------------------------------------------------------------
# Userinfo


def userinfo_endpoint(realm: LocalRealm, request: Request) -> Response:
    """A service account's userinfo, for a token with the openid scope (Keycloak 19+ answers
    403 ``insufficient_scope`` without it). Errors carry an RFC 6750 challenge."""
    if request.method == "OPTIONS":
        return preflight(request, "GET, POST, OPTIONS")
    if request.method not in ("GET", "POST"):
        return method_not_allowed("GET", "POST")
    try:
        form = parse_form(request) if request.method == "POST" else {}
        value = bearer_token(request, form)
        if value is None:
            raise OAuthError(
                400, "invalid_request", "Token not provided", challenge_realm=realm.name
            )
        claims = realm._active_claims(value)
        if claims is None:
            raise OAuthError(
                401, "invalid_token", "Token verification failed", challenge_realm=realm.name
            )
        scopes = str(claims.get("scope", "")).split()
        if realm._layout.userinfo_needs_openid and "openid" not in scopes:
            raise OAuthError(
                403, "insufficient_scope", "Missing openid scope", challenge_realm=realm.name
            )
    except OAuthError as error:
        return with_cors(error.response(), request, None, any_origin=True)
    client = realm._client_or_none(str(claims.get("azp")))
    return with_cors(json_response(200, userinfo(claims)), request, client)


HANDLERS: Final[Mapping[Endpoint, Callable[[LocalRealm, Request], Response]]] = MappingProxyType(
    {
        "certs": certs,
        "token": token,
        "discovery": discovery,
        "introspect": introspect,
        "revoke": revoke,
        "userinfo": userinfo_endpoint,
        "realm": realm_page,
    }
)
