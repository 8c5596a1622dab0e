"""The request step's input from an ASGI scope: shared by the ASGI middleware and FastAPI.

Plain data in, plain data out: no framework is imported here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from ._binding import CertificateHeader, ForwardedCertificate
from ._request import Presented

_NO_HEADERS: Final[tuple[bytes, ...]] = ()
_NO_VALUES: Final[tuple[str, ...]] = ()


def presented(
    asgi_scope: Mapping[str, Any], certificate_header: CertificateHeader | None = None
) -> Presented:
    """What an HTTP or websocket scope carries, read in one pass over its headers.

    ``certificate_header``: the client certificate comes from this header of a trusted proxy
    (and only from it) rather than from the server's ``tls`` extension.
    """
    # A dict, as ASGI has it: typed so, the compiled build reads it without method calls.
    scope = asgi_scope if type(asgi_scope) is dict else dict(asgi_scope)
    # Tuples grown on a match: most requests carry one Authorization header and none of the
    # others, and an empty tuple costs no allocation. Authorization stays bytes: the request
    # step decides a cached token without decoding it.
    authorization: tuple[bytes, ...] = _NO_HEADERS
    dpop: tuple[str, ...] = _NO_VALUES
    forwarded: tuple[str, ...] = _NO_VALUES
    content_type = None
    host = None
    wanted = certificate_header.encode("latin-1") if certificate_header else None
    # Typed for the same reason: compared and decoded without method calls. Each header is
    # indexed rather than unpacked, which would go through the iterator protocol.
    name: bytes
    value: bytes
    for header in scope["headers"]:
        name = header[0]
        value = header[1]
        if name == b"authorization":
            authorization = (*authorization, value) if authorization else (value,)
        elif name == b"host":
            host = value.decode("latin-1")
        elif name == b"content-type":
            content_type = value.decode("latin-1")
        elif name == b"dpop":
            dpop = (*dpop, value.decode("latin-1"))
        elif name == wanted:
            forwarded = (*forwarded, value.decode("latin-1"))
    http = scope["type"] == "http"
    if host is None:
        server = scope.get("server")
        host = f"{server[0]}:{server[1]}" if server else ""
    certificate: Any
    if certificate_header is not None:
        certificate = ForwardedCertificate(certificate_header, forwarded)
    else:
        extensions = scope.get("extensions")
        tls = extensions.get("tls") if extensions else None
        chain = tls.get("client_cert_chain") if tls else None
        certificate = chain[0] if chain else None
    return Presented(
        scope.get("method", "GET"),
        scope.get("scheme") or ("http" if http else "ws"),
        host,
        scope.get("root_path", "") + scope["path"],
        authorization,
        dpop,
        scope.get("query_string", b""),
        # A websocket's messages are frames, not a body that could hold a form.
        content_type if http else None,
        certificate,
    )
