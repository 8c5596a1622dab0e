"""Certificate-bound tokens (RFC 8705): the comparison, the proxy headers, the validator's check
(cached or not), and LocalRealm(tls=True) issuing bound tokens to ClientCredentials(cert=...)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from keycloak_m2m import (
    CertificateMismatch,
    ClientCredentials,
    InvalidClaim,
    InvalidRequest,
    TokenRequestError,
    TokenValidator,
)
from keycloak_m2m._binding import ForwardedCertificate, certificate_header, thumbprint
from keycloak_m2m._http import tls_context
from keycloak_m2m._jose import b64url_decode
from keycloak_m2m.testing import CertificateAuthority, IssuedCertificate, LocalRealm

from .support import CLIENT, Validate

MakeValidator = Callable[..., TokenValidator]
AUTHORITY = CertificateAuthority()
XFCC_NAME = "x-forwarded-client-cert"
MINE = AUTHORITY.client_certificate("shop-api")
OTHER = AUTHORITY.client_certificate("intruder")


def hex_digest(certificate: IssuedCertificate) -> str:
    return hashlib.sha256(certificate.der).hexdigest()


def forwarded(header: str, *values: str) -> ForwardedCertificate:
    name = certificate_header(header)
    assert name is not None
    return ForwardedCertificate(name, values)


# --- the thumbprint of every form a certificate arrives in ------------------------------------


def test_pem_text_pem_bytes_and_der_have_one_thumbprint() -> None:
    pem = MINE.certificate_pem
    assert thumbprint(pem) == thumbprint(pem.encode()) == thumbprint(MINE.der) == MINE.thumbprint


def test_nginx_escaped_certificate_and_raw_pem() -> None:
    escaped = quote(MINE.certificate_pem, safe="")
    assert thumbprint(forwarded("ssl-client-cert", escaped)) == MINE.thumbprint
    assert thumbprint(forwarded("SSL-Client-Cert", MINE.certificate_pem)) == MINE.thumbprint
    one_line = MINE.certificate_pem.replace("\n", " ")  # what some proxies make of newlines
    assert thumbprint(forwarded("ssl-client-cert", one_line)) == MINE.thumbprint


def test_no_header_or_an_empty_one_is_no_certificate() -> None:
    assert thumbprint(forwarded("ssl-client-cert")) is None
    assert thumbprint(forwarded("ssl-client-cert", "")) is None
    assert thumbprint(forwarded("x-forwarded-client-cert", " ")) is None


def test_envoy_hash_or_cert_of_the_last_element() -> None:
    cert = quote(MINE.certificate_pem, safe="")
    mine_by_hash = f'By=spiffe://svc;Hash={hex_digest(MINE)};Subject="CN=shop-api,O=a;b"'
    earlier = f"By=spiffe://edge;Hash={hex_digest(OTHER)}"
    for value in (
        mine_by_hash,
        f'Hash={hex_digest(MINE)};Cert="{cert}"',
        f'Cert="{cert}";Subject="CN=x"',
        f"{earlier},{mine_by_hash}",
    ):
        assert thumbprint(forwarded("x-forwarded-client-cert", value)) == MINE.thumbprint
    # Two headers read as one list: the last element is the nearest proxy's.
    assert (
        thumbprint(forwarded("x-forwarded-client-cert", earlier, mine_by_hash)) == MINE.thumbprint
    )


@given(subjects=st.lists(st.text(alphabet=st.characters(codec="ascii"), max_size=20), max_size=4))
def test_any_quoted_values_before_the_last_element_are_skipped(subjects: list[str]) -> None:
    def quoted(text: str) -> str:
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'

    elements = [f"Hash={hex_digest(OTHER)};Subject={quoted(subject)}" for subject in subjects]
    elements.append(f"Subject={quoted(''.join(subjects))};Hash={hex_digest(MINE)}")
    value = ",".join(elements)
    assert thumbprint(forwarded("x-forwarded-client-cert", value)) == MINE.thumbprint


@pytest.mark.parametrize(
    ("header", "value"),
    [
        ("ssl-client-cert", "not a certificate"),
        ("ssl-client-cert", "-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----"),
        ("ssl-client-cert", MINE.certificate_pem + OTHER.certificate_pem),
        ("x-forwarded-client-cert", "Hash=abc"),
        ("x-forwarded-client-cert", 'Subject="unterminated'),
        ("x-forwarded-client-cert", "By=spiffe://x;Subject=y"),
        ("x-forwarded-client-cert", "=;="),
    ],
)
def test_an_unparsable_header_is_an_invalid_request(header: str, value: str) -> None:
    with pytest.raises(InvalidRequest) as refused:
        thumbprint(forwarded(header, value))
    assert refused.value.status_code == 400


def test_two_nginx_headers_are_an_invalid_request() -> None:
    with pytest.raises(InvalidRequest):
        thumbprint(forwarded("ssl-client-cert", MINE.certificate_pem, MINE.certificate_pem))


def test_only_known_headers_can_be_configured() -> None:
    assert certificate_header(None) is None
    with pytest.raises(ValueError, match="client_cert_header"):
        certificate_header("x-client-cert")


# --- the validator's check ---------------------------------------------------------------------


def bound_token(realm: LocalRealm, certificate: IssuedCertificate) -> str:
    return realm.mint(CLIENT, claims={"cnf": {"x5t#S256": certificate.thumbprint}})


def validate_with(
    validator: TokenValidator, token: str, certificate: object, *, use_async: bool
) -> object:
    import asyncio

    if use_async:
        return asyncio.run(validator.validate_async(token, client_certificate=certificate))  # type: ignore[arg-type]
    return validator.validate(token, client_certificate=certificate)  # type: ignore[arg-type]


@pytest.fixture(params=[False, True], ids=["sync", "async"])
def use_async(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


def test_a_bound_token_passes_only_with_its_certificate(
    realm: LocalRealm, make_validator: MakeValidator, use_async: bool
) -> None:
    validator = make_validator()
    token = bound_token(realm, MINE)
    for certificate in (OTHER.certificate_pem, None):
        with pytest.raises(CertificateMismatch) as refused:
            validate_with(validator, token, certificate, use_async=use_async)
        assert refused.value.description == "certificate mismatch"
        assert refused.value.error == "invalid_token"
    with pytest.raises(InvalidRequest):  # a certificate that cannot be read: 400
        validate_with(validator, token, "garbage", use_async=use_async)
    for certificate in (MINE.certificate_pem, MINE.der):
        assert validate_with(validator, token, certificate, use_async=use_async)


def test_the_cache_never_skips_the_comparison(
    realm: LocalRealm, make_validator: MakeValidator, use_async: bool
) -> None:
    validator = make_validator()
    token = bound_token(realm, MINE)
    principal = validate_with(validator, token, MINE.der, use_async=use_async)
    assert validator.cached(token, MINE.der) is principal
    assert validator.cached(token) is None
    assert validator.cached(token, OTHER.der) is None
    with pytest.raises(CertificateMismatch):
        validate_with(validator, token, OTHER.der, use_async=use_async)
    with pytest.raises(CertificateMismatch):
        validate_with(validator, token, None, use_async=use_async)


def test_required_refuses_unbound_tokens(
    realm: LocalRealm, make_validator: MakeValidator, validate: Validate
) -> None:
    with pytest.raises(CertificateMismatch, match="certificate-bound token required"):
        validate(make_validator(certificate_bound="required"), realm.mint(CLIENT))
    assert make_validator(certificate_bound="required").validate(
        bound_token(realm, MINE), client_certificate=MINE.der
    )
    with pytest.raises(ValueError, match="certificate_bound"):
        make_validator(certificate_bound="sometimes")


def test_an_unbound_token_passes_with_or_without_a_certificate(
    realm: LocalRealm, make_validator: MakeValidator
) -> None:
    validator = make_validator()
    token = realm.mint(CLIENT)
    assert validator.validate(token, client_certificate=OTHER.der)
    assert validator.cached(token) is not None


@pytest.mark.parametrize("confirmation", [{"x5t#S256": 7}, {"x5t#S256": ""}])
def test_a_malformed_confirmation_is_an_invalid_claim(
    realm: LocalRealm, make_validator: MakeValidator, confirmation: object
) -> None:
    token = realm.mint(CLIENT, claims={"cnf": confirmation})
    with pytest.raises(InvalidClaim):
        make_validator().validate(token, client_certificate=MINE.der)


# --- the caller side: LocalRealm(tls=True) and ClientCredentials(cert=...) ---------------------


@pytest.fixture
def tls_realm(monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalRealm]:
    with LocalRealm("mtls", tls=True) as realm:
        # Until TokenValidator and ClientCredentials take a CA bundle, the process-wide one.
        monkeypatch.setenv("SSL_CERT_FILE", str(realm.ca_file))
        tls_context.cache_clear()
        realm.add_client(CLIENT, "unused-secret", audience=["orders"], certificate_bound=True)
        yield realm
    tls_context.cache_clear()


def test_a_certificate_gets_a_token_bound_to_it(tls_realm: LocalRealm, tmp_path: Path) -> None:
    import json

    certificate = tls_realm.client_certificate(CLIENT)
    credentials = ClientCredentials(
        CLIENT, token_url=tls_realm.token_url, cert=certificate.write(tmp_path, "client")
    )
    token = credentials.get_token()
    claims = json.loads(b64url_decode(token.split(".")[1].encode()))
    assert claims["cnf"] == {"x5t#S256": certificate.thumbprint}
    validator = TokenValidator(tls_realm.issuer, "orders")
    assert validator.validate(token, client_certificate=certificate.certificate_pem)
    with pytest.raises(CertificateMismatch):
        validator.validate(token, client_certificate=OTHER.der)


def test_a_certificate_bound_client_needs_its_certificate(
    tls_realm: LocalRealm, tmp_path: Path
) -> None:
    with pytest.raises(TokenRequestError) as refused:
        ClientCredentials(CLIENT, "unused-secret", token_url=tls_realm.token_url).get_token()
    assert refused.value.error == "invalid_client"
    stranger = tls_realm.client_certificate("someone-else")
    with pytest.raises(TokenRequestError):
        ClientCredentials(
            CLIENT, token_url=tls_realm.token_url, cert=stranger.write(tmp_path, "stranger")
        ).get_token()
    untrusted = OTHER  # the right name, from a CA the realm does not trust
    with pytest.raises(TokenRequestError):
        ClientCredentials(
            CLIENT, token_url=tls_realm.token_url, cert=untrusted.write(tmp_path, "untrusted")
        ).get_token()


def test_cert_needs_https_and_some_credential() -> None:
    with pytest.raises(ValueError, match="https"):
        ClientCredentials(CLIENT, token_url="http://127.0.0.1:1/token", cert=("a", "b"))
    with pytest.raises(ValueError, match=r"client_secret or client_secret_file \(or cert"):
        ClientCredentials(CLIENT, token_url="http://127.0.0.1:1/token")


@given(value=st.text(max_size=300), header=st.sampled_from(["ssl-client-cert", XFCC_NAME]))
def test_any_header_value_gives_a_thumbprint_none_or_invalid_request(
    value: str, header: str
) -> None:
    try:
        result = thumbprint(forwarded(header, value))
    except InvalidRequest:
        return
    assert result is None or len(result) == 43
