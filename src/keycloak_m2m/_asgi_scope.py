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
    # indexed rather than unpacked, which would go through the iterator protocol, and a tuple
    # (as servers send them) as one: a typed index needs no int object.
    name: bytes
    value: bytes
    for header in scope["headers"]:
        if type(header) is tuple:
            pair: tuple[bytes, ...] = header
            name = pair[0]
            value = pair[1]
        else:
            name = header[0]
            value = header[1]
        if name == b"authorization":
            authorization = (*authorization, value) if authorization else (value,)
        elif name == b"host":
            host = value
        elif name == b"content-type":
            content_type = value.decode("latin-1")
        elif name == b"dpop":
            dpop = (*dpop, value.decode("latin-1"))
        elif name == wanted:
            forwarded = (*forwarded, value.decode("latin-1"))
    http = scope["type"] == "http"
    certificate: Any
    if certificate_header is not None:
        certificate = ForwardedCertificate(certificate_header, forwarded)
    else:
        extensions = scope.get("extensions")
        tls = extensions.get("tls") if extensions else None
        chain = tls.get("client_cert_chain") if tls else None
        certificate = chain[0] if chain else None
    return _ScopeRequest(
        scope,
        host,
        authorization,
        dpop,
        scope.get("query_string", b""),
        # A websocket's messages are frames, not a body that could hold a form.
        content_type if http else None,
        certificate,
    )


class _ScopeRequest(Presented):
    """A ``Presented`` whose method and URL are read from its scope when asked."""

    __slots__ = ("_host_header", "_scope")

    def __init__(
        self,
        scope: dict[str, Any],
        host_header: bytes | None,
        authorization: tuple[bytes, ...],
        dpop: tuple[str, ...],
        query: bytes,
        content_type: str | None,
        certificate: Any,
    ) -> None:
        # Not Presented.__init__: its method and URL slots would never be read (the properties
        # below replace them), and the call costs the pure build 2 k instructions a request.
        self.authorization = authorization
        self.dpop = dpop
        self.query = query
        self.content_type = content_type
        self.client_certificate = certificate
        self._scope = scope
        self._host_header = host_header

    @property
    def method(self) -> str:
        method: str = self._scope.get("method", "GET")
        return method

    @property
    def scheme(self) -> str:
        scope = self._scope
        scheme: str = scope.get("scheme") or ("http" if scope["type"] == "http" else "ws")
        return scheme

    @property
    def host(self) -> str:
        if self._host_header is not None:
            return self._host_header.decode("latin-1")
        server = self._scope.get("server")
        return f"{server[0]}:{server[1]}" if server else ""

    @property
    def path(self) -> str:
        scope = self._scope
        path: str = scope.get("root_path", "") + scope["path"]
        return path
