"""Instructions per validation, counted by valgrind's callgrind: a measure that a busy machine
does not move, beside validate.py's times (which it does).

    python benchmarks/instructions.py    # needs valgrind (apt-get install valgrind); ~10 min

The realm runs in this process; each row runs in a child under callgrind twice, validating 500
and then 2,000 distinct tokens, and the difference over 1,500 is that row's cost per validation
(start-up, imports and the first key fetch cancel out). The rows are validate.py's floor, cache
off, fresh-with-cache and pure-Python bound rows, on both token shapes, for the package as
installed: pure Python or the compiled build, which the first line names.

A measurement, not a test: it always exits 0 once the numbers are printed.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from inlined_bound import inlined_validator
from validate import AUDIENCE, WIDE, build_name, mint_fixture

from keycloak_m2m import TokenValidator
from keycloak_m2m._jose import b64url_decode
from keycloak_m2m.testing import LocalRealm

FEW, MANY = 500, 2000
ROWS = ("floor", "cache off", "fresh, cache on", "bound")
COLLECTED = re.compile(rb"Collected : (\d+)")


def child(row: str, shape: str, count: int, data: Path) -> None:
    """Validate ``count`` tokens of ``shape`` as ``row`` does (run under callgrind)."""
    fixture = json.loads(data.read_text())
    tokens = fixture[shape][:count]
    # jwks_timeout: a key fetch under valgrind is tens of times slower than without.
    # A cache smaller than either batch: every insert past the first FEW // 2 evicts one.
    size = FEW // 2 if row == "fresh, cache on" else 0
    validator = TokenValidator(fixture["issuer"], AUDIENCE, token_cache_size=size, jwks_timeout=300)
    validator.validate(fixture[shape][-1])  # the key fetch, in both counts alike
    public_key = validator._keys.keys[0].public_key
    if row == "floor":
        scheme, digest = padding.PKCS1v15(), hashes.SHA256()
        for token in tokens:
            signing_input, _, signature = token.rpartition(".")
            public_key.verify(
                b64url_decode(signature.encode()), signing_input.encode(), scheme, digest
            )
    elif row == "bound":
        validate = inlined_validator(fixture["issuer"], public_key, AUDIENCE)
        for token in tokens:
            validate(token)
    else:
        for token in tokens:
            validator.validate(token)


def instructions(row: str, shape: str, count: int, data: Path) -> int:
    return counted([__file__, "--child", row, shape, str(count), str(data)])


def under_callgrind(arguments: list[str]) -> list[str]:
    """The command that runs ``python *arguments`` under callgrind, which prints its count."""
    return [
        "valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable,
        *arguments,
    ]  # fmt: skip


def collected(stderr: bytes, arguments: list[str]) -> int:
    """The instruction count callgrind printed on ``stderr`` for ``arguments``."""
    found = COLLECTED.search(stderr)
    if found is None:
        raise RuntimeError(f"callgrind printed no count for {arguments}")
    return int(found.group(1))


def counted(arguments: list[str]) -> int:
    """The instructions ``python *arguments`` runs, counted by callgrind."""
    done = subprocess.run(under_callgrind(arguments), capture_output=True, check=True)  # noqa: S603
    return collected(done.stderr, arguments)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    if options.child:
        row, shape, count, data = options.child
        child(row, shape, int(count), Path(data))
        return 0
    with LocalRealm() as realm, tempfile.TemporaryDirectory() as directory:
        fixture = mint_fixture(realm)
        data = Path(directory, "tokens.json")
        shapes = {"": list(fixture.fresh[""][:MANY]), WIDE: list(fixture.fresh[WIDE][:MANY])}
        data.write_text(json.dumps({"issuer": fixture.issuer, **shapes}))
        print(f"keycloak-m2m build: {build_name()}")
        print("row                                   instructions   vs floor")
        floor = 0
        for shape in ("", WIDE):
            for row in ROWS:
                if row == "floor" and shape:
                    continue
                few, many = (instructions(row, shape, n, data) for n in (FEW, MANY))
                per_validation = (many - few) // (MANY - FEW)
                floor = floor or per_validation
                label = f"{row}{shape}"
                print(f"{label:36} {per_validation:>12,}   {per_validation / floor:6.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
