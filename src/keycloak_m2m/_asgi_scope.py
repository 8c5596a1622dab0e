"""The request step's input from an ASGI scope: shared by the ASGI middleware and FastAPI.

Plain data in, plain data out: no framework is imported here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from ._request import Presented

_NO_VALUES: Final[tuple[str, ...]] = ()


def presented(scope: Mapping[str, Any]) -> Presented:
    """What an HTTP or websocket scope carries, read in one pass over its headers."""
    authorization: list[str] = []
    dpop: list[str] = []
    content_type = None
    host = None
    for name, value in scope["headers"]:
        if name == b"authorization":
            authorization.append(value.decode("latin-1"))
        elif name == b"host":
            host = value.decode("latin-1")
        elif name == b"content-type":
            content_type = value.decode("latin-1")
        elif name == b"dpop":
            dpop.append(value.decode("latin-1"))
    http = scope["type"] == "http"
    if host is None:
        server = scope.get("server")
        host = f"{server[0]}:{server[1]}" if server else ""
    extensions = scope.get("extensions")
    tls = extensions.get("tls") if extensions else None
    chain = tls.get("client_cert_chain") if tls else None
    # tuple.__new__ rather than Presented(...): a NamedTuple's own __new__ is a Python function,
    # a measurable share of a cached request through the middleware.
    return tuple.__new__(
        Presented,
        (
            scope.get("method", "GET"),
            (scope.get("scheme") or ("http" if http else "ws")) + "://" + host,
            scope.get("root_path", "") + scope["path"],
            authorization,
            dpop or _NO_VALUES,
            scope.get("query_string", b""),
            # A websocket's messages are frames, not a body that could hold a form.
            content_type if http else None,
            chain[0] if chain else None,
        ),
    )
