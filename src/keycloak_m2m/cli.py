"""The ``keycloak-m2m`` command line: ``demo``, ``inspect``, ``verify`` and ``token``.

Each command is one ``_add_<name>`` function that declares its arguments and the function that
runs it; a new command is one more such function in ``_COMMANDS``.

Exit codes: 0 success; 1 the answer is no (token invalid, token refused, server unreachable);
2 the command was used wrongly (bad argument, missing setting). Failures are one line on stderr,
never a traceback; the package's log records reach the terminal only with ``-v``.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from importlib.metadata import version
from typing import TYPE_CHECKING, NoReturn, TypeAlias
from urllib.parse import urlsplit

from ._client import ClientCredentials, TokenRequestError
from ._errors import AuthError, InvalidAudience, InvalidIssuer, KeysUnavailable, MalformedToken
from ._inspect import audience_mismatch, describe_principal, explain, issuer_mismatch, render
from ._validator import TokenValidator

__all__ = ["main"]

_PROG = "keycloak-m2m"
_USAGE_ERROR = 2
_REFUSED = 1
_INTERRUPTED = 130


class _Failure(Exception):
    """A failure already phrased for the user: printed as one line, then exit with the code."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # argparse prints the whole usage block; one line and a pointer to --help reads better.
        self.exit(_USAGE_ERROR, f"{self.prog}: error: {message} (see --help)\n")


if TYPE_CHECKING:
    Subparsers: TypeAlias = argparse._SubParsersAction[_Parser]


def _count(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text!r}")
    return int(text)


def _read_token(argument: str | None) -> str:
    """The token from the argument, or from stdin when the argument is absent or '-'."""
    if argument is not None and argument != "-":
        return argument.strip()
    if sys.stdin is None or sys.stdin.isatty():
        raise _Failure("give a TOKEN, or pipe one on stdin", _USAGE_ERROR)
    token = sys.stdin.read().strip()
    if not token:
        raise _Failure("no token on stdin", _USAGE_ERROR)
    return token


def _verbosity() -> _Parser:
    # On the main parser and on each command, so that -v may come before or after the command.
    # SUPPRESS: a command's default must not overwrite a -v given before it.
    options = _Parser(add_help=False)
    options.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=argparse.SUPPRESS,
        help="show the package's log records (key fetches, retries) on stderr",
    )
    return options


# --- inspect -----------------------------------------------------------------------------------


def _add_inspect(commands: Subparsers) -> None:
    parser = commands.add_parser(
        "inspect",
        parents=[_verbosity()],
        help="decode a token WITHOUT verifying it and explain it",
        description="Decode a token without verifying it: header, claims, who it speaks for, "
        "roles, scopes, expiry and what a resource server would object to.",
    )
    parser.add_argument("token", nargs="?", metavar="TOKEN", help="the token; '-' or none: stdin")
    parser.add_argument(
        "--audience", metavar="API", help="the API the token is meant for, to check aud against"
    )
    parser.set_defaults(run=_run_inspect)


def _run_inspect(args: argparse.Namespace) -> int:
    try:
        report = explain(_read_token(args.token), now=time.time(), audience=args.audience)
    except MalformedToken as error:
        raise _Failure(f"not a readable JWT: {error.description}", _USAGE_ERROR) from None
    print("\n".join(render(report)))
    return 0


# --- verify ------------------------------------------------------------------------------------


def _add_verify(commands: Subparsers) -> None:
    parser = commands.add_parser(
        "verify",
        parents=[_verbosity()],
        help="validate a token against its issuer, as a resource server would",
        description="Validate a token fully (signature with the issuer's published keys, "
        "issuer, audience, expiry, type, service account). Exit 0 if valid, 1 if not.",
    )
    parser.add_argument("token", metavar="TOKEN", help="the token; '-': stdin")
    parser.add_argument("--issuer", required=True, help="the realm URL, e.g. .../realms/shop")
    parser.add_argument(
        "--audience",
        required=True,
        action="append",
        metavar="API",
        help="an accepted audience (repeat for several)",
    )
    parser.add_argument(
        "--azp-as-audience",
        action="store_true",
        help="accept a token issued to an --audience (azp) even if aud does not name it",
    )
    keys = parser.add_mutually_exclusive_group()
    keys.add_argument("--jwks-url", help="where the keys are (default: from the issuer)")
    keys.add_argument("--keycloak-url", help="Keycloak's internal base URL, for the keys")
    parser.set_defaults(run=_run_verify)


def _run_verify(args: argparse.Namespace) -> int:
    if args.keycloak_url is not None and "/realms/" in urlsplit(args.keycloak_url).path + "/":
        # The realm path comes from the issuer: it would appear twice, and Keycloak answer 404.
        raise _Failure(
            "--keycloak-url must be Keycloak's base URL without /realms/...: "
            "the realm comes from --issuer",
            _USAGE_ERROR,
        )
    try:
        validator = TokenValidator(
            args.issuer,
            args.audience,
            jwks_url=args.jwks_url,
            keycloak_url=args.keycloak_url,
            azp_as_audience=args.azp_as_audience,
        )
    except ValueError as error:
        raise _Failure(str(error), _USAGE_ERROR) from None
    token = _read_token(args.token)
    try:
        principal = validator.validate(token)
    except KeysUnavailable:
        raise _Failure(f"cannot get the signing keys from {validator.jwks_url}", _REFUSED) from None
    except AuthError as error:
        reason = f"invalid token: {error.description} ({type(error).__name__})"
        raise _Failure(reason + _mismatch(error, token, args), _REFUSED) from None
    print("valid token")
    print("\n".join(describe_principal(principal, time.time())))
    return 0


def _mismatch(error: AuthError, token: str, args: argparse.Namespace) -> str:
    """For an issuer or audience mismatch, what was expected and what the token carries.

    The operator holds the token: its claims may be shown to them, never the token itself.
    Such a token passed the signature check, so its claims are readable.
    """
    if isinstance(error, InvalidIssuer):
        found = explain(token, now=time.time()).claims.get("iss")
        return ": " + issuer_mismatch(args.issuer, found)
    if isinstance(error, InvalidAudience):
        claims = explain(token, now=time.time()).claims
        return ": " + audience_mismatch(args.audience, claims.get("aud"), claims.get("azp"))
    return ""


# --- token -------------------------------------------------------------------------------------


def _add_token(commands: Subparsers) -> None:
    parser = commands.add_parser(
        "token",
        parents=[_verbosity()],
        help="print a fresh access token of the client configured in the environment",
        description="Print a fresh access token (client-credentials grant) for use in scripts. "
        "Settings: KEYCLOAK_URL, KEYCLOAK_REALM, KEYCLOAK_CLIENT_ID, KEYCLOAK_CLIENT_SECRET (or "
        "KEYCLOAK_CLIENT_SECRET_FILE) and optionally KEYCLOAK_AUTH_PATH, KEYCLOAK_SCOPES and "
        "KEYCLOAK_CA_BUNDLE.",
    )
    parser.add_argument(
        "--retries",
        type=_count,
        default=3,
        metavar="N",
        help="retries after a connection error or 5xx (default 3)",
    )
    parser.set_defaults(run=_run_token)


def _run_token(args: argparse.Namespace) -> int:
    try:
        credentials = ClientCredentials.from_env(max_retries=args.retries)
    except ValueError as error:
        raise _Failure(str(error), _USAGE_ERROR) from None
    try:
        token = credentials.get_token()
    except TokenRequestError as error:
        raise _Failure(str(error), _REFUSED) from None
    print(token)
    return 0


# --- demo --------------------------------------------------------------------------------------


def _add_demo(commands: Subparsers) -> None:
    parser = commands.add_parser(
        "demo",
        parents=[_verbosity()],
        help="run a local realm, a protected service and its caller, step by step",
        description="Start a local Keycloak-compatible realm, a FastAPI notification-service "
        "protected by this package and a shop-api caller, all on 127.0.0.1, and walk through "
        "accepted, refused and rotated-key calls. Needs the demo extra: "
        "pip install 'keycloak-m2m[demo]'.",
    )
    parser.set_defaults(run=_run_demo)


def _run_demo(args: argparse.Namespace) -> int:
    try:
        from . import _demo
    except ImportError as error:
        raise _Failure(
            f"the demo needs FastAPI and uvicorn ({error.name} is missing): "
            "pip install 'keycloak-m2m[demo]'",
            _USAGE_ERROR,
        ) from None
    return 0 if _demo.run(sys.stdout) else _REFUSED


# --- main --------------------------------------------------------------------------------------

_COMMANDS: tuple[Callable[[Subparsers], None], ...] = (
    _add_demo,
    _add_inspect,
    _add_verify,
    _add_token,
)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=_PROG,
        description="Keycloak machine-to-machine tokens: demo, inspect, verify, obtain.",
        parents=[_verbosity()],
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {version(_PROG)}")
    commands = parser.add_subparsers(
        title="commands", metavar="COMMAND", required=True, parser_class=_Parser
    )
    for add in _COMMANDS:
        add(commands)
    return parser


@contextmanager
def _log_records(verbose: bool) -> Iterator[None]:
    """Show the package's log records on stderr with -v; otherwise keep them off the terminal.

    Without a handler of its own, a WARNING record would reach Python's last-resort handler and
    print before the command's one-line error.
    """
    logger = logging.getLogger("keycloak_m2m")
    handler: logging.Handler = logging.NullHandler()
    level = logger.level
    if verbose:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(f"{_PROG}: %(levelname)s: %(message)s"))
        logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exit:  # --help, --version, or a usage error already printed
        return exit.code if isinstance(exit.code, int) else _USAGE_ERROR
    try:
        with _log_records(getattr(args, "verbose", False)):
            code: int = args.run(args)
    except _Failure as failure:
        print(f"{_PROG}: error: {failure}", file=sys.stderr)
        return failure.exit_code
    except KeyboardInterrupt:
        return _INTERRUPTED
    return code
