"""LocalRealm: a Keycloak-compatible realm served over real HTTP, for tests and demos.

Only what a machine-to-machine client and a token validator talk to is served: discovery, the
JWKS (``certs``) and the token endpoint with the client-credentials grant and Keycloak's standard
token exchange (RFC 8693, access tokens only). Everything else is a 404, like any path Keycloak does
not know.

Token endpoint choices where Keycloak and RFC 6749 leave room:

* No client authentication at all: 401 ``invalid_client`` ("Missing client_id parameter").
* Basic credentials *and* a ``client_secret`` form field: 400 ``invalid_request``. RFC 6749 2.3
  forbids using two methods; Keycloak silently lets the form win, which would hide client bugs.
* A ``client_id`` form field next to Basic credentials is accepted only if it names the same
  client (400 ``invalid_request`` otherwise).
* Any form parameter sent twice: 400 ``invalid_request`` ("duplicated parameter"), as Keycloak.
* A non-empty body that is not ``application/x-www-form-urlencoded``: 415 ``invalid_request``.
* ``scope``: absent or blank grants all of the client's scopes; otherwise each requested scope must
  be one of them, and the granted ones are listed in the client's own order.
* Token exchange: the subject token must be one this realm signed with a published key, unexpired
  (400 ``invalid_token``), and name the requesting client in ``aud`` (403 ``access_denied``, as
  Keycloak); ``audience`` must name a known client (400 ``invalid_client``). The new token
  keeps the subject's ``sub``, username and realm roles, names the requester in ``azp`` and carries
  only the client roles of its audience.
"""

from __future__ import annotations

import base64
import binascii
import copy
import datetime
import functools
import hashlib
import hmac
import json
import math
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from types import MappingProxyType, TracebackType
from typing import Any, ClassVar, Final, Literal, TypeAlias, get_args
from urllib.parse import parse_qs, quote, unquote_plus

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID
from jwt.algorithms import get_default_algorithms

from ._server import HttpServer, Request, Response

__all__ = ["Endpoint", "LocalRealm", "PrivateKey"]

PrivateKey: TypeAlias = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
PublicKey: TypeAlias = rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey
Endpoint: TypeAlias = Literal["certs", "token", "discovery"]

_RSA_ALGORITHMS: Final = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512")
_EC_ALGORITHMS: Final[Mapping[str, Callable[[], ec.EllipticCurve]]] = {
    "ES256": ec.SECP256R1,
    "ES384": ec.SECP384R1,
    "ES512": ec.SECP521R1,
}
_SUPPORTED_ALGORITHMS: Final = (*_RSA_ALGORITHMS, *_EC_ALGORITHMS, "EdDSA")
# JOSE names (RFC 7518 6.2.1.1) and matching JWS algorithm, keyed by cryptography's curve name.
_JWK_CURVES: Final = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}
_CURVE_ALGORITHMS: Final = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}
# PyJWT's signers give JOSE's raw r||s for ECDSA, which cryptography alone would DER-encode.
_JWS_SIGNERS: Final = get_default_algorithms()

_ACCOUNT_ROLES: Final = ("manage-account", "manage-account-links", "view-profile")
_NO_CLIENT_ROLES: Final[Mapping[str, Iterable[str]]] = MappingProxyType({})
_MADE_UP_CLIENT_ID: Final = "test-client"
_FORM_CONTENT_TYPE: Final = "application/x-www-form-urlencoded"
_ACCESS_TOKEN_TYPE: Final = "urn:ietf:params:oauth:token-type:access_token"  # noqa: S105 - a URN


# ---------------------------------------------------------------------------------------------
# Records


@dataclass(frozen=True)
class _Key:
    kid: str
    algorithm: str
    use: Literal["sig", "enc"]
    private_key: PrivateKey = field(repr=False)
    jwk: Mapping[str, Any] = field(repr=False)


@dataclass(frozen=True)
class _Client:
    client_id: str
    secret: str = field(repr=False)
    realm_roles: tuple[str, ...]
    client_roles: tuple[tuple[str, tuple[str, ...]], ...]
    audience: tuple[str, ...]
    scopes: tuple[str, ...]
    # Keycloak puts the service-account *user's* id in ``sub``, never the client id.
    service_account_id: str


@dataclass(frozen=True)
class _Fault:
    delay: float = 0.0
    # None: answer normally once the delay is over.
    response: Response | None = None


class _OAuthError(Exception):
    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(error)
        self.status = status
        self.error = error
        self.description = description

    def response(self) -> Response:
        return _json_response(
            self.status, {"error": self.error, "error_description": self.description}
        )


def _invalid_client() -> _OAuthError:
    # Same answer for unknown client and wrong secret, so the endpoint does not reveal which.
    return _OAuthError(401, "invalid_client", "Invalid client or Invalid client credentials")


# ---------------------------------------------------------------------------------------------
# Encoding helpers


def _b64(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def _b64_text(data: bytes) -> str:
    return _b64(data).decode("ascii")


def _b64_uint(value: int) -> str:
    return _b64_text(value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big"))


def _compact_json(value: Any) -> str:
    # Jackson's default output, which Keycloak uses for payloads: no spaces, raw UTF-8.
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _keycloak_header_json(members: Mapping[str, Any]) -> bytes:
    # Keycloak's JWSBuilder writes the header by hand: {"alg":"RS256","typ" : "JWT","kid" : "…"}.
    # Kept byte for byte: the signing input covers these bytes, and validators must cope with them.
    parts = [
        _compact_json(name) + (":" if name == "alg" else " : ") + _compact_json(value)
        for name, value in members.items()
    ]
    return ("{" + ",".join(parts) + "}").encode("utf-8")


def _json_response(
    status: int, body: Mapping[str, Any], *, headers: tuple[tuple[str, str], ...] = ()
) -> Response:
    return Response(status, _compact_json(body).encode("utf-8"), "application/json", headers)


def _reason_body(status: int) -> bytes:
    try:
        return f"{status} {HTTPStatus(status).phrase}".encode()
    except ValueError:
        return str(status).encode()


def _strings(values: Iterable[str], what: str) -> tuple[str, ...]:
    # A bare string is iterable too; catching it here saves a confusing token full of letters.
    if isinstance(values, str):
        raise TypeError(f"{what} must be an iterable of strings, not a single string")
    return tuple(dict.fromkeys(values))


def _unique(values: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(values))


# ---------------------------------------------------------------------------------------------
# Keys


def _check_algorithm(algorithm: str) -> None:
    if algorithm not in _SUPPORTED_ALGORITHMS:
        raise ValueError(f"unsupported algorithm {algorithm!r}; use one of {_SUPPORTED_ALGORITHMS}")


def _generate_private_key(algorithm: str) -> PrivateKey:
    if algorithm in _EC_ALGORITHMS:
        return ec.generate_private_key(_EC_ALGORITHMS[algorithm]())
    if algorithm == "EdDSA":
        return ed25519.Ed25519PrivateKey.generate()
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@functools.lru_cache(maxsize=1)
def _shared_encryption_key() -> rsa.RSAPrivateKey:
    # The enc key is only ever published, never used; sharing one per process keeps realm
    # creation to a single RSA key generation.
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _keycloak_kid(public_key: PublicKey) -> str:
    # Keycloak's KeyUtils.createKeyId: SHA-256 of the X.509 SubjectPublicKeyInfo, base64url.
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return _b64_text(hashlib.sha256(der).digest())


def _public_params(public_key: PublicKey) -> dict[str, str]:
    if isinstance(public_key, rsa.RSAPublicKey):
        numbers = public_key.public_numbers()
        return {"kty": "RSA", "n": _b64_uint(numbers.n), "e": _b64_uint(numbers.e)}
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        size = (public_key.curve.key_size + 7) // 8  # RFC 7518 6.2.1.2: full-length coordinates
        point = public_key.public_numbers()
        return {
            "kty": "EC",
            "crv": _JWK_CURVES[public_key.curve.name],
            "x": _b64_text(point.x.to_bytes(size, "big")),
            "y": _b64_text(point.y.to_bytes(size, "big")),
        }
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return {"kty": "OKP", "crv": "Ed25519", "x": _b64_text(raw)}


def _certificate_params(private_key: PrivateKey, subject: str) -> dict[str, Any]:
    # Keycloak publishes its generated RSA and EC keys with a self-signed certificate; a validator
    # must not be thrown by (or rely on) x5c. Its EdDSA keys come without one.
    if isinstance(private_key, ed25519.Ed25519PrivateKey):
        return {}
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject[:64])])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .sign(private_key, hashes.SHA256())
    )
    der = certificate.public_bytes(serialization.Encoding.DER)
    return {
        "x5c": [base64.b64encode(der).decode("ascii")],
        "x5t": _b64_text(hashlib.sha1(der, usedforsecurity=False).digest()),
        "x5t#S256": _b64_text(hashlib.sha256(der).digest()),
    }


def _new_key(
    algorithm: str,
    *,
    subject: str,
    use: Literal["sig", "enc"] = "sig",
    private_key: PrivateKey | None = None,
) -> _Key:
    if private_key is None:
        private_key = _generate_private_key(algorithm)
    public_key = private_key.public_key()
    kid = _keycloak_kid(public_key)
    params = _public_params(public_key)
    # Keycloak's member order: kid, kty, alg, use, then the key material.
    jwk = {"kid": kid, "kty": params["kty"], "alg": algorithm, "use": use}
    jwk.update(params)
    jwk.update(_certificate_params(private_key, subject))
    return _Key(kid, algorithm, use, private_key, MappingProxyType(jwk))


def _natural_algorithm(key: PrivateKey | bytes) -> str:
    if isinstance(key, bytes):
        return "HS256"
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return _CURVE_ALGORITHMS[key.curve.name]
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return "EdDSA"
    return "RS256"


def _signing_algorithm(key: _Key) -> str:
    # The enc key's alg (RSA-OAEP) is not a JWS algorithm; signing with it is a test of
    # validators that forget to check ``use``.
    return key.algorithm if key.use == "sig" else "RS256"


def _sign(signing_input: bytes, algorithm: str, key: PrivateKey | bytes) -> bytes:
    try:
        signer = _JWS_SIGNERS[algorithm]
    except KeyError:
        raise ValueError(f"cannot sign with alg {algorithm!r}; pass signature= instead") from None
    return signer.sign(signing_input, key)


def _compact_jws(header: bytes, payload: bytes, sign: Callable[[bytes], bytes]) -> str:
    signing_input = _b64(header) + b"." + _b64(payload)
    return (signing_input + b"." + _b64(sign(signing_input))).decode("ascii")


# ---------------------------------------------------------------------------------------------
# Token contents


def _service_account_claims(
    *,
    issuer: str,
    realm: str,
    client: _Client,
    scopes: Iterable[str],
    issued_at: int,
    lifetime: int,
) -> dict[str, Any]:
    """The payload of a Keycloak 24+ client-credentials access token, in Keycloak's order."""
    client_roles = [(name, roles) for name, roles in client.client_roles if roles]
    audience = _unique([*client.audience, *(name for name, _ in client_roles), "account"])
    return {
        "exp": issued_at + lifetime,
        "iat": issued_at,
        "jti": f"trtcc:{uuid.uuid4()}",
        "iss": issuer,
        "aud": audience[0] if len(audience) == 1 else audience,
        "sub": client.service_account_id,
        "typ": "Bearer",
        "azp": client.client_id,
        "acr": "1",
        "allowed-origins": ["/*"],
        "realm_access": {"roles": _realm_roles(realm, client.realm_roles)},
        "resource_access": _resource_access(client_roles),
        "scope": " ".join(scopes),
        "email_verified": False,
        "clientHost": "127.0.0.1",
        "preferred_username": f"service-account-{client.client_id}",
        "clientAddress": "127.0.0.1",
        "client_id": client.client_id,
    }


def _realm_roles(realm: str, extra: Iterable[str]) -> list[str]:
    defaults = [f"default-roles-{realm.lower()}", "offline_access", "uma_authorization"]
    return _unique([*defaults, *extra])


def _resource_access(
    client_roles: Iterable[tuple[str, tuple[str, ...]]],
) -> dict[str, dict[str, list[str]]]:
    access = {name: {"roles": list(roles)} for name, roles in client_roles}
    # "account" always comes last, merged with any account roles the test asked for.
    extra_account_roles = access.pop("account", {"roles": []})["roles"]
    access["account"] = {"roles": _unique([*_ACCOUNT_ROLES, *extra_account_roles])}
    return access


def _token_response(token: str, lifetime: int, scopes: Iterable[str]) -> dict[str, Any]:
    return {
        "access_token": token,
        "expires_in": lifetime,
        "refresh_expires_in": 0,
        "token_type": "Bearer",
        "not-before-policy": 0,
        "scope": " ".join(scopes),
    }


# ---------------------------------------------------------------------------------------------
# Token endpoint: request parsing, client authentication, grants


def _parse_form(request: Request) -> dict[str, str]:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    # An empty body is an empty form whatever it is labelled (httpx sends none for data={}).
    if request.body and content_type != _FORM_CONTENT_TYPE:
        raise _OAuthError(415, "invalid_request", f"Content-Type must be {_FORM_CONTENT_TYPE}")
    try:
        text = request.body.decode("utf-8")
    except UnicodeDecodeError:
        raise _OAuthError(400, "invalid_request", "Request body is not UTF-8") from None
    fields = parse_qs(text, keep_blank_values=True)
    if any(len(values) > 1 for values in fields.values()):
        raise _OAuthError(400, "invalid_request", "duplicated parameter")
    return {name: values[0] for name, values in fields.items()}


def _basic_credentials(authorization: str | None) -> tuple[str, str] | None:
    if authorization is None:
        return None
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() != "basic":
        return None  # e.g. a Bearer token: not client authentication
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise _invalid_client() from None
    client_id, colon, secret = decoded.partition(":")
    if not colon:
        raise _invalid_client()
    # RFC 6749 2.3.1: both halves are form-urlencoded before being joined; Keycloak decodes them.
    return unquote_plus(client_id), unquote_plus(secret)


def _presented_credentials(request: Request, form: Mapping[str, str]) -> tuple[str, str | None]:
    basic = _basic_credentials(request.headers.get("authorization"))
    if basic is not None:
        if "client_secret" in form:
            raise _OAuthError(400, "invalid_request", "Multiple client authentication methods")
        if form.get("client_id", basic[0]) != basic[0]:
            raise _OAuthError(400, "invalid_request", "client_id does not match Authorization")
        return basic
    if not form.get("client_id"):
        raise _OAuthError(401, "invalid_client", "Missing client_id parameter")
    return form["client_id"], form.get("client_secret")


def _granted_scopes(client: _Client, requested: str | None) -> tuple[str, ...]:
    if requested is None or not requested.strip():
        return client.scopes
    wanted = set(requested.split())
    if not wanted <= set(client.scopes):
        raise _OAuthError(400, "invalid_scope", f"Invalid scopes: {requested}")
    return tuple(scope for scope in client.scopes if scope in wanted)


def _client_credentials_grant(
    realm: LocalRealm, client: _Client, form: Mapping[str, str]
) -> dict[str, Any]:
    scopes = _granted_scopes(client, form.get("scope"))
    token = realm._issue(client, scopes)
    return _token_response(token, realm.token_lifetime, scopes)


def _token_exchange_grant(
    realm: LocalRealm, client: _Client, form: Mapping[str, str]
) -> dict[str, Any]:
    """RFC 8693 as Keycloak's standard token exchange (V2) does it, for access tokens only."""
    subject_token = form.get("subject_token")
    if not subject_token:
        raise _OAuthError(400, "invalid_request", "Missing parameter: subject_token")
    if form.get("subject_token_type", _ACCESS_TOKEN_TYPE) != _ACCESS_TOKEN_TYPE:
        raise _OAuthError(400, "invalid_request", "Unsupported subject_token_type")
    if form.get("requested_token_type", _ACCESS_TOKEN_TYPE) != _ACCESS_TOKEN_TYPE:
        raise _OAuthError(400, "invalid_request", "Unsupported requested_token_type")
    subject = realm._verified_claims(subject_token)
    if client.client_id not in _audience_list(subject.get("aud")):
        raise _OAuthError(403, "access_denied", "Client is not within the token audience")
    target = form.get("audience")
    if target is not None and not realm._has_client(target):
        raise _OAuthError(400, "invalid_client", "Audience not found")
    scopes = _granted_scopes(client, form.get("scope"))
    token = realm._issue_exchanged(client, subject, target, scopes)
    return {
        **_token_response(token, realm.token_lifetime, scopes),
        "issued_token_type": _ACCESS_TOKEN_TYPE,
    }


def _audience_list(aud: object) -> list[str]:
    if isinstance(aud, str):
        return [aud]
    return [name for name in aud if isinstance(name, str)] if isinstance(aud, list) else []


def _decoded_segment(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def _exchanged_claims(
    *,
    issuer: str,
    requester: _Client,
    subject: Mapping[str, Any],
    audience: list[str],
    scopes: Iterable[str],
    issued_at: int,
    lifetime: int,
) -> dict[str, Any]:
    """The new token speaks for the subject, is held by the requester, and is meant for
    ``audience``: Keycloak keeps the subject's identity and roles, narrowed to the audience."""
    resource_access = subject.get("resource_access")
    narrowed = {
        name: roles
        for name, roles in (resource_access if isinstance(resource_access, dict) else {}).items()
        if name in audience
    }
    return {
        "exp": issued_at + lifetime,
        "iat": issued_at,
        "jti": f"trte:{uuid.uuid4()}",
        "iss": issuer,
        "aud": audience[0] if len(audience) == 1 else audience,
        "sub": subject.get("sub"),
        "typ": "Bearer",
        "azp": requester.client_id,
        "acr": "1",
        "realm_access": subject.get("realm_access", {"roles": []}),
        "resource_access": narrowed,
        "scope": " ".join(scopes),
        "preferred_username": subject.get("preferred_username"),
    }


# One function per grant type: (realm, authenticated client, form) -> success body, or raise
# _OAuthError.
_Grant: TypeAlias = Callable[["LocalRealm", _Client, Mapping[str, str]], dict[str, Any]]
_GRANTS: Final[Mapping[str, _Grant]] = MappingProxyType(
    {
        "client_credentials": _client_credentials_grant,
        "urn:ietf:params:oauth:grant-type:token-exchange": _token_exchange_grant,
    }
)


def _grant_for(grant_type: str | None) -> _Grant:
    if not grant_type:
        raise _OAuthError(400, "invalid_request", "Missing form parameter: grant_type")
    grant = _GRANTS.get(grant_type)
    if grant is None:
        raise _OAuthError(400, "unsupported_grant_type", "Unsupported grant_type")
    return grant


_NOT_FOUND: Final = _json_response(
    404,
    {
        "error": "Unable to find matching target resource method",
        "error_description": "For more on this error consult the server log.",
    },
)


def _method_not_allowed(*allowed: str) -> Response:
    return _json_response(
        405,
        {
            "error": "HTTP 405 Method Not Allowed",
            "error_description": "For more on this error consult the server log.",
        },
        headers=(("Allow", ", ".join(allowed)),),
    )


# ---------------------------------------------------------------------------------------------
# The realm


class LocalRealm:
    """A Keycloak-compatible realm on ``127.0.0.1`` for tests and demos.

    Use as a context manager (``with LocalRealm() as realm:``) or call ``start()``/``stop()``.
    The server, keys, clients and faults may be changed from any thread at any time.
    """

    SUPPORTED_ALGORITHMS: ClassVar[tuple[str, ...]] = _SUPPORTED_ALGORITHMS

    def __init__(
        self,
        name: str = "test",
        *,
        algorithm: str = "RS256",
        token_lifetime: int = 300,
        legacy_auth_prefix: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not name:
            raise ValueError("realm name must not be empty")
        if token_lifetime <= 0:
            raise ValueError("token_lifetime must be positive")
        _check_algorithm(algorithm)
        self._name = name
        self._token_lifetime = token_lifetime
        self._path = ("/auth" if legacy_auth_prefix else "") + "/realms/" + quote(name, safe="")
        self._clock = clock
        self._lock = threading.Lock()
        # Set by stop(): wakes request threads sleeping in an injected delay.
        self._stopping = threading.Event()
        self._server: HttpServer | None = None
        self._port: int | None = None
        first = _new_key(algorithm, subject=name)
        self._keys: dict[str, _Key] = {first.kid: first}
        self._active_kid = first.kid
        self._encryption_key = _new_key(
            "RSA-OAEP", subject=name, use="enc", private_key=_shared_encryption_key()
        )
        self._clients: dict[str, _Client] = {}
        self._faults: dict[Endpoint, _Fault] = {}
        self._counts: Counter[Endpoint] = Counter()
        self._made_up_subject = str(uuid.uuid4())
        self._routes: Mapping[str, Endpoint] = {
            f"{self._path}/.well-known/openid-configuration": "discovery",
            f"{self._path}/protocol/openid-connect/certs": "certs",
            f"{self._path}/protocol/openid-connect/token": "token",
        }

    def __repr__(self) -> str:
        where = self.base_url if self._port is not None else "not started"
        return f"LocalRealm({self._name!r}, {where})"

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> LocalRealm:
        """Start serving on a free port; a realm can be started once."""
        with self._lock:
            if self._port is not None:
                raise RuntimeError("a LocalRealm can only be started once")
            self._server = HttpServer(self._handle)
            self._port = self._server.port
        return self

    def stop(self) -> None:
        """Stop serving, cut open connections and join every server thread. Idempotent."""
        with self._lock:
            server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()
        server.close()

    def __enter__(self) -> LocalRealm:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # -- addresses ----------------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self._name

    @property
    def token_lifetime(self) -> int:
        return self._token_lifetime

    @property
    def base_url(self) -> str:
        if self._port is None:
            raise RuntimeError("the realm has not been started")
        return f"http://127.0.0.1:{self._port}"

    @property
    def issuer(self) -> str:
        return self.base_url + self._path

    @property
    def jwks_url(self) -> str:
        return self.issuer + "/protocol/openid-connect/certs"

    @property
    def token_url(self) -> str:
        return self.issuer + "/protocol/openid-connect/token"

    @property
    def discovery_url(self) -> str:
        return self.issuer + "/.well-known/openid-configuration"

    # -- keys ---------------------------------------------------------------------------------

    @property
    def active_kid(self) -> str:
        with self._lock:
            return self._active_kid

    @property
    def signing_kids(self) -> tuple[str, ...]:
        """Every published signing key, active first, then the passive ones newest first."""
        with self._lock:
            return tuple(key.kid for key in self._signing_keys_in_order())

    @property
    def encryption_kid(self) -> str:
        return self._encryption_key.kid

    def rotate_keys(self, *, keep_old: bool = True, algorithm: str | None = None) -> str:
        """Make a new active signing key and return its kid.

        ``algorithm`` defaults to the current active key's. Old keys stay published (passive)
        unless ``keep_old`` is false.
        """
        if algorithm is None:
            with self._lock:
                algorithm = self._keys[self._active_kid].algorithm
        _check_algorithm(algorithm)
        key = _new_key(algorithm, subject=self._name)  # slow for RSA: outside the lock
        with self._lock:
            if not keep_old:
                self._keys.clear()
            self._keys[key.kid] = key
            self._active_kid = key.kid
        return key.kid

    def private_key(self, kid: str) -> PrivateKey:
        return self._published_key(kid).private_key

    def public_jwk(self, kid: str) -> dict[str, Any]:
        return copy.deepcopy(dict(self._published_key(kid).jwk))

    def _published_key(self, kid: str) -> _Key:
        with self._lock:
            key = self._keys.get(kid)
        if key is None and kid == self._encryption_key.kid:
            key = self._encryption_key
        if key is None:
            raise KeyError(f"no published key with kid {kid!r}")
        return key

    def _signing_keys_in_order(self) -> list[_Key]:
        # Caller holds the lock.
        passive = [key for kid, key in reversed(self._keys.items()) if kid != self._active_kid]
        return [self._keys[self._active_kid], *passive]

    # -- clients ------------------------------------------------------------------------------

    def add_client(
        self,
        client_id: str,
        secret: str,
        *,
        realm_roles: Iterable[str] = (),
        client_roles: Mapping[str, Iterable[str]] = _NO_CLIENT_ROLES,
        audience: Iterable[str] = (),
        scopes: Iterable[str] = ("profile", "email"),
    ) -> None:
        """Register (or replace) a confidential client with a service account."""
        if not client_id:
            raise ValueError("client_id must not be empty")
        scope_names = _strings(scopes, "scopes")
        if any(not scope or any(c.isspace() for c in scope) for scope in scope_names):
            raise ValueError("scope names must be non-empty and contain no whitespace")
        client = _Client(
            client_id=client_id,
            secret=secret,
            realm_roles=_strings(realm_roles, "realm_roles"),
            client_roles=tuple(
                (name, _strings(roles, f"client_roles[{name!r}]"))
                for name, roles in client_roles.items()
            ),
            audience=_strings(audience, "audience"),
            scopes=scope_names,
            service_account_id=str(uuid.uuid4()),
        )
        with self._lock:
            self._clients[client_id] = client

    def token_claims(self, client_id: str) -> dict[str, Any]:
        """The payload the token endpoint would issue to ``client_id`` now (all its scopes)."""
        client = self._client(client_id)
        return self._claims_for(client, client.scopes)

    def _client(self, client_id: str) -> _Client:
        with self._lock:
            client = self._clients.get(client_id)
        if client is None:
            raise KeyError(f"no client {client_id!r}; add it with add_client()")
        return client

    def _made_up_client(self) -> _Client:
        return _Client(
            client_id=_MADE_UP_CLIENT_ID,
            secret="",
            realm_roles=(),
            client_roles=(),
            audience=(),
            scopes=("profile", "email"),
            service_account_id=self._made_up_subject,
        )

    def _claims_for(self, client: _Client, scopes: Iterable[str]) -> dict[str, Any]:
        return _service_account_claims(
            issuer=self.issuer,
            realm=self._name,
            client=client,
            scopes=scopes,
            issued_at=int(self._clock()),
            lifetime=self._token_lifetime,
        )

    # -- tokens -------------------------------------------------------------------------------

    def _issue(self, client: _Client, scopes: Iterable[str]) -> str:
        """Sign a token as the token endpoint does: active key, Keycloak header."""
        with self._lock:
            key = self._keys[self._active_kid]
        header = _keycloak_header_json({"alg": key.algorithm, "typ": "JWT", "kid": key.kid})
        payload = _compact_json(self._claims_for(client, scopes)).encode("utf-8")
        return _compact_jws(
            header, payload, lambda data: _sign(data, key.algorithm, key.private_key)
        )

    def _issue_exchanged(
        self,
        requester: _Client,
        subject: Mapping[str, Any],
        target: str | None,
        scopes: Iterable[str],
    ) -> str:
        claims = _exchanged_claims(
            issuer=self.issuer,
            requester=requester,
            subject=subject,
            audience=[target] if target is not None else _unique([*requester.audience, "account"]),
            scopes=scopes,
            issued_at=int(self._clock()),
            lifetime=self._token_lifetime,
        )
        return self.mint(raw_payload=_compact_json(claims).encode("utf-8"))

    def _verified_claims(self, token: str) -> dict[str, Any]:
        """The payload of a token this realm signed and that is still valid, or invalid_token."""
        invalid = _OAuthError(400, "invalid_token", "Invalid token")
        try:
            header_segment, payload_segment, signature_segment = token.split(".")
            header = json.loads(_decoded_segment(header_segment))
            claims = json.loads(_decoded_segment(payload_segment))
            signature = _decoded_segment(signature_segment)
        except (ValueError, binascii.Error):
            raise invalid from None
        if not isinstance(header, dict) or not isinstance(claims, dict):
            raise invalid
        with self._lock:
            key = self._keys.get(str(header.get("kid")))
        signing_input = f"{header_segment}.{payload_segment}".encode("ascii")
        if (
            key is None
            or header.get("alg") != key.algorithm
            or not _JWS_SIGNERS[key.algorithm].verify(
                signing_input, key.private_key.public_key(), signature
            )
            or claims.get("iss") != self.issuer
            or not isinstance(claims.get("exp"), int)
            or claims["exp"] <= self._clock()
        ):
            raise invalid
        return claims

    def _has_client(self, client_id: str) -> bool:
        # A name used for client roles or as an audience is a client in Keycloak too, even if
        # this realm was never given its secret.
        with self._lock:
            clients = list(self._clients.values())
        return any(
            client_id == client.client_id
            or client_id in client.audience
            or any(client_id == name for name, _ in client.client_roles)
            for client in clients
        )

    def mint(
        self,
        client_id: str | None = None,
        *,
        claims: Mapping[str, Any] | None = None,
        remove: Iterable[str] = (),
        header: Mapping[str, Any] | None = None,
        remove_header: Iterable[str] = (),
        alg: str | None = None,
        kid: str | None = None,
        expires_in: float | None = None,
        raw_header: bytes | None = None,
        raw_payload: bytes | None = None,
        signing_key: PrivateKey | bytes | None = None,
        signature: bytes | None = None,
    ) -> str:
        """Make a token directly, with any override, including deliberately broken ones.

        Payload: ``token_claims(client_id)``, or for no client a service-account token of a
        made-up client "test-client" (audience "account"); then ``claims`` overrides, then
        ``expires_in`` sets ``exp = iat + expires_in``, then ``remove`` drops claims.

        Header: Keycloak's ``{"alg","typ","kid"}``, then ``header`` overrides, then
        ``remove_header`` drops members. ``kid`` (default: the active key) names the key in the
        header and, without ``signing_key``, the realm key (signing or enc) that signs.

        Signing: ``signing_key`` (a private key, or bytes as an HMAC secret) replaces the realm
        key; ``alg`` (default: the signing key's) is both the header's alg and the algorithm
        used, so ``header={"alg": ...}`` can make them disagree. ``signature`` replaces the
        signature bytes outright. ``raw_header``/``raw_payload`` are encoded as given.
        """
        header_kid, realm_key = self._key_named(kid)
        if signing_key is None and realm_key is None and signature is None:
            raise ValueError(f"no realm key with kid {header_kid!r}; pass signing_key=")
        algorithm = alg or self._default_mint_algorithm(signing_key, realm_key)
        if raw_header is None:
            members: dict[str, Any] = {"alg": algorithm, "typ": "JWT", "kid": header_kid}
            members.update(header or {})
            for name in remove_header:
                members.pop(name, None)
            raw_header = _keycloak_header_json(members)
        if raw_payload is None:
            payload = self._mint_payload(client_id, claims, expires_in, remove)
            raw_payload = _compact_json(payload).encode("utf-8")
        key = signing_key
        if key is None and realm_key is not None:
            key = realm_key.private_key

        def sign(signing_input: bytes) -> bytes:
            if signature is not None:
                return signature
            assert key is not None  # checked above: no signature means there is a key
            return _sign(signing_input, algorithm, key)

        return _compact_jws(raw_header, raw_payload, sign)

    def _key_named(self, kid: str | None) -> tuple[str, _Key | None]:
        with self._lock:
            name = kid if kid is not None else self._active_kid
            key = self._keys.get(name)
        if key is None and name == self._encryption_key.kid:
            key = self._encryption_key
        return name, key

    def _default_mint_algorithm(
        self, signing_key: PrivateKey | bytes | None, realm_key: _Key | None
    ) -> str:
        if signing_key is not None:
            return _natural_algorithm(signing_key)
        if realm_key is not None:
            return _signing_algorithm(realm_key)
        with self._lock:
            return self._keys[self._active_kid].algorithm

    def _mint_payload(
        self,
        client_id: str | None,
        claims: Mapping[str, Any] | None,
        expires_in: float | None,
        remove: Iterable[str],
    ) -> dict[str, Any]:
        client = self._client(client_id) if client_id is not None else self._made_up_client()
        payload = self._claims_for(client, client.scopes)
        payload.update(claims or {})
        if expires_in is not None:
            payload["exp"] = math.floor(payload["iat"] + expires_in)
        for name in remove:
            payload.pop(name, None)
        return payload

    # -- faults -------------------------------------------------------------------------------

    def fail_keys(
        self,
        status: int = 500,
        *,
        body: bytes | None = None,
        content_type: str | None = "text/plain",
        delay: float = 0.0,
    ) -> None:
        """Answer the certs endpoint with ``status`` (after ``delay`` s) until ``heal_keys()``.

        ``body`` defaults to the status line's text, e.g. ``b"500 Internal Server Error"``.
        """
        self._set_fault("certs", _failure(status, body, content_type, delay))

    def slow_keys(self, delay: float) -> None:
        """Serve the real keys, but only after ``delay`` seconds, until ``heal_keys()``."""
        self._set_fault("certs", _Fault(_check_delay(delay)))

    def redirect_keys(self, location: str, *, status: int = 302) -> None:
        """Answer the certs endpoint with a redirect to ``location`` until ``heal_keys()``."""
        if not 300 <= status <= 399:
            raise ValueError("a redirect status must be between 300 and 399")
        response = Response(status, b"", None, (("Location", location),))
        self._set_fault("certs", _Fault(0.0, response))

    def serve_keys_document(self, document: Any) -> None:
        """Serve ``document`` (bytes as is, anything else as JSON) with 200 until heal_keys()."""
        body = document if isinstance(document, bytes) else _compact_json(document).encode()
        self._set_fault("certs", _Fault(0.0, Response(200, body, "application/json")))

    def heal_keys(self) -> None:
        self._set_fault("certs", None)

    def fail_token(
        self,
        status: int = 500,
        *,
        body: bytes | None = None,
        content_type: str | None = "text/plain",
        delay: float = 0.0,
    ) -> None:
        """Answer the token endpoint with ``status`` (after ``delay`` s) until ``heal_token()``."""
        self._set_fault("token", _failure(status, body, content_type, delay))

    def slow_token(self, delay: float) -> None:
        """Answer token requests normally, but only after ``delay`` seconds."""
        self._set_fault("token", _Fault(_check_delay(delay)))

    def heal_token(self) -> None:
        self._set_fault("token", None)

    def _set_fault(self, endpoint: Endpoint, fault: _Fault | None) -> None:
        with self._lock:
            if fault is None:
                self._faults.pop(endpoint, None)
            else:
                self._faults[endpoint] = fault

    # -- counting -----------------------------------------------------------------------------

    def request_count(self, endpoint: Endpoint) -> int:
        """Requests that reached ``endpoint`` ("certs", "token", "discovery"), failed ones too."""
        if endpoint not in get_args(Endpoint):
            raise ValueError(f"unknown endpoint {endpoint!r}; use one of {get_args(Endpoint)}")
        with self._lock:
            return self._counts[endpoint]

    def reset_counts(self) -> None:
        with self._lock:
            self._counts.clear()

    # -- HTTP ---------------------------------------------------------------------------------

    def _handle(self, request: Request) -> Response:
        endpoint = self._routes.get(request.path)
        if endpoint is None:
            return _NOT_FOUND
        with self._lock:
            self._counts[endpoint] += 1
            fault = self._faults.get(endpoint)
        if fault is not None:
            if fault.delay > 0:
                # Sleeps only this request's thread; stop() cuts it short.
                self._stopping.wait(fault.delay)
            if fault.response is not None:
                return fault.response
        if endpoint == "token":
            return self._token_endpoint(request)
        if request.method not in ("GET", "HEAD"):
            return _method_not_allowed("GET", "HEAD")
        if endpoint == "certs":
            return _json_response(200, self._jwks(), headers=(("Cache-Control", "no-cache"),))
        return _json_response(200, self._discovery_document())

    def _jwks(self) -> dict[str, Any]:
        with self._lock:
            signing_keys = self._signing_keys_in_order()
        # The enc key first, as Keycloak often lists it: a validator that takes keys[0] or
        # ignores ``use`` fails right away.
        keys = [self._encryption_key, *signing_keys]
        return {"keys": [dict(key.jwk) for key in keys]}

    def _discovery_document(self) -> dict[str, Any]:
        issuer = self.issuer
        oidc = issuer + "/protocol/openid-connect"
        with self._lock:
            client_scopes = [scope for c in self._clients.values() for scope in c.scopes]
        # Keycloak's shape; of the endpoints named here only token and jwks_uri are served.
        return {
            "issuer": issuer,
            "authorization_endpoint": oidc + "/auth",
            "token_endpoint": oidc + "/token",
            "introspection_endpoint": oidc + "/token/introspect",
            "userinfo_endpoint": oidc + "/userinfo",
            "end_session_endpoint": oidc + "/logout",
            "jwks_uri": oidc + "/certs",
            "grant_types_supported": list(_GRANTS),
            "response_types_supported": ["code", "none", "id_token", "token"],
            "subject_types_supported": ["public", "pairwise"],
            "id_token_signing_alg_values_supported": list(_SUPPORTED_ALGORITHMS),
            "userinfo_signing_alg_values_supported": list(_SUPPORTED_ALGORITHMS),
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "scopes_supported": _unique(["openid", "profile", "email", *client_scopes]),
            "claims_supported": ["aud", "sub", "iss", "preferred_username", "acr", "azp"],
            "response_modes_supported": ["query", "fragment", "form_post"],
        }

    def _token_endpoint(self, request: Request) -> Response:
        if request.method != "POST":
            return _method_not_allowed("POST")
        try:
            form = _parse_form(request)
            grant = _grant_for(form.get("grant_type"))
            client = self._authenticate(request, form)
            body = grant(self, client, form)
        except _OAuthError as error:
            return error.response()
        return _json_response(
            200, body, headers=(("Cache-Control", "no-store"), ("Pragma", "no-cache"))
        )

    def _authenticate(self, request: Request, form: Mapping[str, str]) -> _Client:
        client_id, secret = _presented_credentials(request, form)
        with self._lock:
            client = self._clients.get(client_id)
        if client is None or secret is None:
            raise _invalid_client()
        if not hmac.compare_digest(client.secret.encode("utf-8"), secret.encode("utf-8")):
            raise _invalid_client()
        return client


def _check_delay(delay: float) -> float:
    if not delay >= 0:  # also rejects NaN
        raise ValueError("delay must be a non-negative number of seconds")
    return delay


def _failure(status: int, body: bytes | None, content_type: str | None, delay: float) -> _Fault:
    if not 200 <= status <= 599:
        raise ValueError("status must be between 200 and 599")
    response = Response(status, _reason_body(status) if body is None else body, content_type)
    return _Fault(_check_delay(delay), response)
