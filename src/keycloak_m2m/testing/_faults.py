"""Fault injection and request counting for LocalRealm: the part of the realm tests turn on to
see how a client copes with a sick or slow Keycloak."""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias, get_args

from ._endpoints import Endpoint
from ._keys import compact_json
from ._protocol import reason_body
from ._server import Response

# The endpoints a test can break.
FaultyEndpoint: TypeAlias = Literal["certs", "token", "introspect"]


@dataclass(frozen=True)
class Fault:
    delay: float = 0.0
    # None: answer normally once the delay is over.
    response: Response | None = None
    # Set: no answer before it is set (by the test, heal_keys() or stop()).
    release: threading.Event | None = None


class FaultInjection:
    """Mixed into LocalRealm; the faults and counts live under the realm's lock."""

    _lock: threading.Lock
    _faults: dict[Endpoint, Fault]
    _counts: Counter[Endpoint]

    # -- certs --------------------------------------------------------------------------------

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
        self._set_fault("certs", Fault(_check_delay(delay)))

    def hold_keys(self) -> threading.Event:
        """Hold every certs request until the returned event is set (or ``heal_keys()``), then
        serve the real keys: for a test that must see what happens while a fetch is in flight
        without betting on how long that takes."""
        release = threading.Event()
        self._set_fault("certs", Fault(release=release))
        return release

    def redirect_keys(self, location: str, *, status: int = 302) -> None:
        """Answer the certs endpoint with a redirect to ``location`` until ``heal_keys()``."""
        if not 300 <= status <= 399:
            raise ValueError("a redirect status must be between 300 and 399")
        response = Response(status, b"", None, (("Location", location),))
        self._set_fault("certs", Fault(0.0, response))

    def serve_keys_document(self, document: Any) -> None:
        """Serve ``document`` (bytes as is, anything else as JSON) with 200 until heal_keys()."""
        body = document if isinstance(document, bytes) else compact_json(document).encode()
        self._set_fault("certs", Fault(0.0, Response(200, body, "application/json")))

    def heal_keys(self) -> None:
        self._set_fault("certs", None)

    # -- token --------------------------------------------------------------------------------

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
        self._set_fault("token", Fault(_check_delay(delay)))

    def heal_token(self) -> None:
        self._set_fault("token", None)

    # -- introspection ------------------------------------------------------------------------

    def fail_introspection(
        self,
        status: int = 500,
        *,
        body: bytes | None = None,
        content_type: str | None = "text/plain",
        delay: float = 0.0,
    ) -> None:
        """Answer the introspection endpoint with ``status`` (after ``delay`` s) until
        ``heal_introspection()``."""
        self._set_fault("introspect", _failure(status, body, content_type, delay))

    def slow_introspection(self, delay: float) -> None:
        """Answer introspection requests normally, but only after ``delay`` seconds."""
        self._set_fault("introspect", Fault(_check_delay(delay)))

    def heal_introspection(self) -> None:
        self._set_fault("introspect", None)

    def _set_fault(self, endpoint: FaultyEndpoint, fault: Fault | None) -> None:
        with self._lock:
            replaced = self._faults.pop(endpoint, None)
            if fault is not None:
                self._faults[endpoint] = fault
        if replaced is not None and replaced.release is not None:
            replaced.release.set()  # no request stays held by a fault that is gone

    def _release_held(self) -> None:
        with self._lock:
            releases = [fault.release for fault in self._faults.values() if fault.release]
        for release in releases:
            release.set()

    # -- counting -----------------------------------------------------------------------------

    def request_count(self, endpoint: Endpoint) -> int:
        """Requests that reached ``endpoint`` (one of ``Endpoint``), failed ones too."""
        if endpoint not in get_args(Endpoint):
            raise ValueError(f"unknown endpoint {endpoint!r}; use one of {get_args(Endpoint)}")
        with self._lock:
            return self._counts[endpoint]

    def reset_counts(self) -> None:
        with self._lock:
            self._counts.clear()


def _check_delay(delay: float) -> float:
    if not delay >= 0:  # also rejects NaN
        raise ValueError("delay must be a non-negative number of seconds")
    return delay


def _failure(status: int, body: bytes | None, content_type: str | None, delay: float) -> Fault:
    if not 200 <= status <= 599:
        raise ValueError("status must be between 200 and 599")
    response = Response(status, reason_body(status) if body is None else body, content_type)
    return Fault(_check_delay(delay), response)
