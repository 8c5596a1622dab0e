"""The native prototype for issue 16 (native_prototype/README.md), timed beside the package, the
one-function bound and native_ceiling.py's rows, as multiples of the RSA floor in one run.

    python benchmarks/native_prototype.py [--rounds N]

The prototype row runs the bound's checks up to the signature, then one native call that parses
the payload and builds the ``Principal``'s parts, then the claim rules in Python: issuer,
``typ``, the three times with the leeway, audience, ``azp``, no ``cnf``, the service account.
A measurement, not a validator, and not a test.
"""

from __future__ import annotations

import argparse
import sys
import types
from collections.abc import Callable
from pathlib import Path

import native_ceiling  # beside this script
import validate  # beside this script
from cryptography.exceptions import InvalidSignature as CryptoInvalidSignature
from inlined_bound import inlined_validator  # beside this script

from keycloak_m2m import _claims, _jose
from keycloak_m2m._principal import verified_principal
from keycloak_m2m._token_cache import Verified
from keycloak_m2m.testing import LocalRealm

sys.path.insert(0, str(Path(__file__).parent / "native_prototype"))
import payload_native

ROW = "prototype: native parse + Principal parts, rules in Python"
COMPARED = (
    "issuer", "client_id", "subject", "is_service_account", "realm_roles", "client_roles",
    "scopes", "expires_at",
)  # fmt: skip


def prototype(fixture: validate.Fixture) -> Callable[[str], Verified]:
    fields = payload_native.Extractor(types.MappingProxyType).fields
    signed = native_ceiling.signed_payload(fixture.public_key)
    parse = _jose.JsonParser(accept_duplicate_members=False)
    issuer, audience = fixture.issuer, validate.AUDIENCE

    def check(token: str) -> Verified:
        raw, payload = signed(token)
        try:
            (
                iss,
                exp,
                nbf,
                iat,
                aud,
                typ,
                azp,
                sub,
                username,
                realm_roles,
                client_roles,
                scopes,
                cnf,
            ) = fields(payload)
        except ValueError as error:
            raise ValueError("payload") from error
        now = native_ceiling.checked_now(
            issuer=issuer,
            audience=audience,
            iss=iss,
            typ=typ,
            azp=azp,
            bound=cnf,
            times=(exp, nbf, iat),
            aud=aud,
        )
        principal = verified_principal(
            issuer=issuer,
            client_id=azp,
            subject=sub,
            is_service_account=username == "service-account-" + azp,
            realm_roles=realm_roles,
            client_roles=client_roles,
            scopes=scopes,
            read_claims=_claims.VerifiedClaims(token, parse),
            expires_at=exp,
        )
        return native_ceiling.cache_entry(raw, principal, now)

    return check


def same_principals(fixture: validate.Fixture, check: Callable[[str], Verified]) -> None:
    """Raise unless the prototype's principals are the bound's, on both shapes."""
    bound = inlined_validator(fixture.issuer, fixture.public_key, validate.AUDIENCE)
    for shape in ("", validate.WIDE):
        for token in fixture.fresh[shape][: validate.TOKEN_COUNT]:
            expected, got = bound(token).principal, check(token).principal
            for name in COMPARED:
                if getattr(expected, name) != getattr(got, name):
                    raise AssertionError(f"{name} differs from the bound's on {shape or 'shape 1'}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    settings = validate.Settings(rounds=parser.parse_args().rounds, round_seconds=0.2)
    validate.print_header(settings)
    with LocalRealm("shop") as realm:
        fixture = validate.mint_fixture(realm)
        check = prototype(fixture)
        same_principals(fixture, check)
        package, inlined = validate.ours(fixture), validate.inlined(fixture)
        rows = [validate.floor(fixture)]
        for shape in ("", validate.WIDE):
            rows += [row for row in package if row.name == validate.CACHE_OFF + shape]
            rows += [row for row in inlined if validate.shape_of(row.name) == shape]
            tokens = fixture.fresh[shape][: validate.TOKEN_COUNT]
            rows.append(
                validate.Contender(ROW + shape, check, tokens, CryptoInvalidSignature, ValueError)
            )
        for row in rows:
            validate.check_correctness(row, fixture)
        validate.print_table(rows, validate.measure(rows, settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
