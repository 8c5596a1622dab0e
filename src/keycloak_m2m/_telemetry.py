"""Observability: OpenTelemetry spans and metrics (the audit log is ``_audit``).

All OpenTelemetry use of the package is here, on the ``opentelemetry-api`` alone (the ``[otel]``
extra). Until an SDK is configured nothing is measured: the probes handed out are shared no-op
objects, and the verified-token cache's lookup is the validator's own method, untouched. Once an
SDK is configured (the API's global providers are set once and never unset), every validator
switches its lookup to one that counts hits in a plain int, reported by an observable counter,
and records a span per hit.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Iterable, Iterator, MutableMapping, Sequence
from contextlib import contextmanager
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, NamedTuple, Protocol

try:
    from opentelemetry import context as otel_context
    from opentelemetry import metrics, propagate, trace
    from opentelemetry.metrics import _internal as metrics_internal

    API_INSTALLED = True
except ImportError:  # pragma: no cover - depends on the environment
    API_INSTALLED = False

from ._request import TokenVerifier

if TYPE_CHECKING:
    from ._binding import ClientCertificate
    from ._http import FetchFailure
    from ._introspection import Entry
    from ._principal import Principal

__all__ = ["API_INSTALLED", "ValidatorTelemetry", "inject_trace_context", "token_request"]

SCOPE: Final = "keycloak_m2m"
ACCEPTED: Final = "accepted"
REFUSED: Final = "refused"
# Attribute names: OpenTelemetry's where one exists (error.type, url.full, the HTTP status),
# else under the package's namespace.
OUTCOME: Final = "keycloak_m2m.outcome"
ERROR_TYPE: Final = "error.type"
CLIENT_ID: Final = "keycloak_m2m.client_id"
ISSUER: Final = "keycloak_m2m.issuer"
CACHE_HIT: Final = "keycloak_m2m.cache_hit"
WAITED_FOR_KEYS: Final = "keycloak_m2m.waited_for_keys"
KEY_COUNT: Final = "keycloak_m2m.key_count"
GRANT_TYPE: Final = "keycloak_m2m.grant_type"
RETRIES: Final = "keycloak_m2m.retries"
URL: Final = "url.full"
STATUS: Final = "http.response.status_code"

# --- whether an SDK is configured -----------------------------------------------------------------


class _State:
    on = False


_state = _State()
_switch_lock = threading.Lock()
_watched: weakref.WeakSet[ValidatorTelemetry] = weakref.WeakSet()


def _on() -> bool:
    """Whether spans and metrics are recorded; switches everything on at the first check after an
    SDK was configured."""
    if _state.on:
        return True
    # The API's own globals: get_tracer_provider() would also look up an environment variable
    # (a failed lookup raises and catches KeyError), too slow for every validation.
    if not API_INSTALLED or (
        trace._TRACER_PROVIDER is None and metrics_internal._METER_PROVIDER is None
    ):
        return False
    with _switch_lock:
        if not _state.on:
            _instruments.create()
            for watched in list(_watched):
                watched.switch_on()
            _state.on = True
    return True


class _Instruments:
    """The metric instruments and the tracer, made once an SDK is configured."""

    def create(self) -> None:
        meter = metrics.get_meter(SCOPE)
        self.tracer = trace.get_tracer(SCOPE)
        self.validations = meter.create_counter(
            "keycloak_m2m.validations", "{validation}", "Token validations, by outcome"
        )
        self.validation_duration = meter.create_histogram(
            "keycloak_m2m.validation.duration", "s", "Duration of token validations"
        )
        self.key_fetches = meter.create_counter(
            "keycloak_m2m.key_set.fetches", "{fetch}", "Key-set fetches, by outcome"
        )
        self.key_fetch_duration = meter.create_histogram(
            "keycloak_m2m.key_set.fetch.duration", "s", "Duration of key-set fetches"
        )
        self.introspections = meter.create_counter(
            "keycloak_m2m.introspections", "{request}", "Introspection requests, by outcome"
        )
        self.introspection_duration = meter.create_histogram(
            "keycloak_m2m.introspection.duration", "s", "Duration of introspection requests"
        )
        self.token_requests = meter.create_counter(
            "keycloak_m2m.token_requests", "{request}", "Token requests (and exchanges), by outcome"
        )
        self.token_request_duration = meter.create_histogram(
            "keycloak_m2m.token_request.duration",
            "s",
            "Duration of token requests, retries included",
        )
        meter.create_observable_counter(
            "keycloak_m2m.token_cache.hits",
            [lambda _: _cache_counts("hits")],
            "{lookup}",
            "Verified-token cache lookups that found the token",
        )
        meter.create_observable_counter(
            "keycloak_m2m.token_cache.misses",
            [lambda _: _cache_counts("misses")],
            "{lookup}",
            "Verified-token cache lookups that did not: the validation ran its checks",
        )
        meter.create_observable_gauge(
            "keycloak_m2m.key_set.age",
            [lambda _: _key_set_ages()],
            "s",
            "Time since the key set in use was fetched",
        )

    tracer: trace.Tracer
    validations: metrics.Counter
    validation_duration: metrics.Histogram
    key_fetches: metrics.Counter
    key_fetch_duration: metrics.Histogram
    introspections: metrics.Counter
    introspection_duration: metrics.Histogram
    token_requests: metrics.Counter
    token_request_duration: metrics.Histogram


_instruments = _Instruments()


def _cache_counts(which: str) -> Iterator[metrics.Observation]:
    totals: dict[str, int] = {}
    for watched in list(_watched):
        totals[watched.issuer] = totals.get(watched.issuer, 0) + getattr(watched, which)
    for issuer, count in totals.items():
        yield metrics.Observation(count, {ISSUER: issuer})


def _key_set_ages() -> Iterator[metrics.Observation]:
    for watched in list(_watched):
        age = watched.key_set_age()
        if age is not None:
            yield metrics.Observation(age, {ISSUER: watched.issuer})


# --- spans ----------------------------------------------------------------------------------------


class _Span:
    """A span made current for the duration of a ``with`` block, timed for a histogram."""

    __slots__ = ("_started", "_token", "span")

    def __init__(self, name: str, attributes: dict[str, Any]) -> None:
        self.span = _instruments.tracer.start_span(name, attributes=attributes)
        self._token = otel_context.attach(trace.set_span_in_context(self.span))
        self._started = time.perf_counter()

    def end(self, attributes: dict[str, Any], refused: bool) -> float:
        """End the span with ``attributes``; the seconds it lasted."""
        elapsed = time.perf_counter() - self._started
        span = self.span
        span.set_attributes(attributes)
        if refused:
            span.set_status(trace.StatusCode.ERROR, str(attributes.get(ERROR_TYPE, "")))
        otel_context.detach(self._token)
        span.end()
        return elapsed


def _error_type(error: BaseException) -> str:
    return type(error).__name__


# --- the validator --------------------------------------------------------------------------------


class WatchedValidator(TokenVerifier, Protocol):
    """What the telemetry reads of a TokenValidator beyond what the request step does; it wraps
    the step's three methods."""

    @property
    def key_fetches(self) -> int: ...

    def key_set_age(self) -> float | None: ...


class _Off:
    """The probe (of a key fetch, of an introspection) handed out while no SDK is configured:
    every method does nothing."""

    __slots__ = ()

    def __enter__(self) -> _Off:
        return self

    def __exit__(self, kind: object, error: object, traceback: object) -> None:
        return None

    def done(self, *_details: object) -> None:
        return None


_OFF: Final = _Off()


class _Validation:
    """One validation that ran its checks: a ``keycloak_m2m.validate`` span and its metrics.

    It waited for keys when a key-set fetch was made (by it, or by another validation it
    waited for) while it ran.
    """

    __slots__ = ("_fetches", "_principal", "_span", "_validator", "_watched")

    def __init__(self, watched: ValidatorTelemetry, validator: WatchedValidator) -> None:
        self._watched = watched
        self._validator = validator
        self._principal: Principal | None = None

    def __enter__(self) -> _Validation:
        self._watched.misses += 1
        self._fetches = self._validator.key_fetches
        self._span = _Span("keycloak_m2m.validate", {ISSUER: self._watched.issuer})
        return self

    def accepted(self, principal: Principal) -> Principal:
        self._principal = principal
        return principal

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        _traceback: TracebackType | None,
    ) -> None:
        principal = self._principal
        waited = self._validator.key_fetches != self._fetches
        attributes: dict[str, Any] = {CACHE_HIT: False, WAITED_FOR_KEYS: waited}
        if error is None and principal is not None:
            attributes[OUTCOME] = ACCEPTED
            attributes[CLIENT_ID] = principal.client_id
        else:
            attributes[OUTCOME] = REFUSED
            attributes[ERROR_TYPE] = _error_type(error) if error is not None else "unknown"
        _measure_validation(self._span.end(attributes, error is not None), attributes)


def _measure_validation(seconds: float, attributes: dict[str, Any]) -> None:
    labels = {OUTCOME: attributes[OUTCOME]}
    if ERROR_TYPE in attributes:
        labels[ERROR_TYPE] = attributes[ERROR_TYPE]
    _instruments.validations.add(1, labels)
    _instruments.validation_duration.record(seconds, labels)


class _KeyFetch:
    """One key-set fetch: a ``keycloak_m2m.fetch_keys`` span and its metrics."""

    __slots__ = ("_ended", "_span", "_url")

    def __init__(self, url: str) -> None:
        self._url = url
        self._ended = False

    def __enter__(self) -> _KeyFetch:
        self._span = _Span("keycloak_m2m.fetch_keys", {URL: self._url})
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        _traceback: TracebackType | None,
    ) -> None:
        if not self._ended:  # interrupted (a cancelled task) before the fetch was recorded
            self._end({OUTCOME: "failed", ERROR_TYPE: _error_type(error) if error else "unknown"})

    def done(self, outcome: object, adopted: bool, key_count: int) -> None:
        """``outcome``: the fetched body or the FetchFailure; ``adopted``: the key set is used."""
        status = getattr(outcome, "status", 200)
        reason = getattr(outcome, "reason", None)
        attributes: dict[str, Any] = {OUTCOME: "fetched" if adopted else "failed"}
        if status is not None:
            attributes[STATUS] = status
        if adopted:
            attributes[KEY_COUNT] = key_count
        else:
            attributes[ERROR_TYPE] = reason or "unusable key set"
        self._end(attributes)

    def _end(self, attributes: dict[str, Any]) -> None:
        self._ended = True
        seconds = self._span.end(attributes, attributes[OUTCOME] != "fetched")
        labels = {OUTCOME: attributes[OUTCOME]}
        _instruments.key_fetches.add(1, labels)
        _instruments.key_fetch_duration.record(seconds, labels)


FetchProbe = _KeyFetch | _Off


class _Introspection:
    """One introspection request: a ``keycloak_m2m.introspect`` span and its metrics.

    Its attributes are the request's and the verdict's kind, never the token or the answer's
    claims: ``keycloak_m2m.client_id`` is the resource server's own, that it authenticates with.
    """

    __slots__ = ("_attributes", "_ended", "_span")

    def __init__(self, endpoint: str, client_id: str) -> None:
        self._attributes = {URL: endpoint, CLIENT_ID: client_id}
        self._ended = False

    def __enter__(self) -> _Introspection:
        self._span = _Span("keycloak_m2m.introspect", self._attributes)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        _traceback: TracebackType | None,
    ) -> None:
        if not self._ended:  # interrupted (a cancelled task) before the answer was recorded
            self._end({OUTCOME: "failed", ERROR_TYPE: _error_type(error) if error else "unknown"})

    def done(self, outcome: bytes | FetchFailure, entry: Entry) -> None:
        """``outcome``: the answer's body or the FetchFailure; ``entry``: what was cached of it."""
        status = 200 if isinstance(outcome, bytes) else outcome.status
        attributes: dict[str, Any] = {}
        if status is not None:
            attributes[STATUS] = status
        reason = getattr(entry, "reason", None)  # a Failed entry: no verdict
        if reason is not None:
            attributes[OUTCOME] = "failed"
            attributes[ERROR_TYPE] = reason
        else:
            attributes[OUTCOME] = "inactive" if getattr(entry, "claims", None) is None else "active"
        self._end(attributes)

    def _end(self, attributes: dict[str, Any]) -> None:
        self._ended = True
        # An inactive token is a verdict, not a failure of the request: only "failed" is ERROR.
        seconds = self._span.end(attributes, attributes[OUTCOME] == "failed")
        labels = {OUTCOME: attributes[OUTCOME]}
        _instruments.introspections.add(1, labels)
        _instruments.introspection_duration.record(seconds, labels)


IntrospectionProbe = _Introspection | _Off


class ValidatorTelemetry:
    """The telemetry of one TokenValidator: its probes, and its cache counts once switched on."""

    __slots__ = ("__weakref__", "_validator", "hits", "issuer", "misses")

    def __init__(self, validator: WatchedValidator) -> None:
        self.issuer = validator.issuer
        self.hits = 0
        self.misses = 0
        self._validator = weakref.ref(validator)
        if API_INSTALLED:
            with _switch_lock:  # so that _on() switching everything on sees it, or it sees _on
                _watched.add(self)
                on = _state.on
            if on:
                self.switch_on()
            else:
                _on()  # an SDK configured since the last check switches every validator on

    def key_fetch(self, url: str) -> _KeyFetch | _Off:
        return _KeyFetch(url) if _on() else _OFF

    def introspection(self, endpoint: str, client_id: str) -> _Introspection | _Off:
        return _Introspection(endpoint, client_id) if _on() else _OFF

    def key_set_age(self) -> float | None:
        validator = self._validator()
        return None if validator is None else validator.key_set_age()

    def switch_on(self) -> None:
        """Put instrumented twins of ``cached``, ``validate`` and ``validate_async`` in front of
        the validator's own, which stay untouched (and uninstrumented) until then."""
        validator = self._validator()
        if validator is None:
            return
        # The class's methods: this runs once per validator.
        lookup, validate, validate_async = (
            validator.cached,
            validator.validate,
            validator.validate_async,
        )
        issuer = self.issuer

        def cached(
            token: str | bytes,
            client_certificate: ClientCertificate | None = None,
            introspect: bool = False,
            start: int = 0,
        ) -> Principal | None:
            started = time.time_ns()
            principal = lookup(token, client_certificate, introspect, start)
            if principal is not None:
                self.hits += 1  # not atomic across threads: a rare lost count, never a wrong one
                _cache_hit(principal, issuer, started)
            return principal

        def bearer_hit(token: str, options: dict[str, Any]) -> Principal | None:
            # A proof is checked on every request: only a bearer token is decided by the cache.
            if options.get("dpop_proof"):
                return None
            return cached(
                token, options.get("client_certificate"), options.get("introspect", False)
            )

        # The validator's own keywords, passed on as they came (see TokenVerifier).
        def traced(token: str, **options: Any) -> Principal:
            principal = bearer_hit(token, options)
            if principal is not None:
                return principal
            with _Validation(self, validator) as probe:
                return probe.accepted(validate(token, **options))

        async def traced_async(token: str, **options: Any) -> Principal:
            principal = bearer_hit(token, options)
            if principal is not None:
                return principal
            with _Validation(self, validator) as probe:
                return probe.accepted(await validate_async(token, **options))

        # Instance attributes: the adapters' and drivers' ``validator.cached`` (and the rest)
        # find them first. The drivers' own lookup then misses again, at no cost worth counting.
        validator.cached = cached  # type: ignore[misc]  # read-only in the request step's protocol
        validator.validate = traced  # type: ignore[method-assign]
        validator.validate_async = traced_async  # type: ignore[method-assign]


def _cache_hit(principal: Principal, issuer: str, started: int) -> None:
    # A span, but no counter or histogram: the hit is counted in a plain int (token_cache.hits),
    # because a measurement costs more than the lookup itself.
    attributes: dict[str, Any] = {
        ISSUER: issuer,
        OUTCOME: ACCEPTED,
        CLIENT_ID: principal.client_id,
        CACHE_HIT: True,
        WAITED_FOR_KEYS: False,
    }
    span = _instruments.tracer.start_span(
        "keycloak_m2m.validate", attributes=attributes, start_time=started
    )
    span.end()


# --- the caller side ------------------------------------------------------------------------------


class _TokenRequest:
    """One token request or exchange, retries included: a span and its metrics."""

    __slots__ = ("_attempts", "_grant", "_span", "_status")

    def __init__(self, token_url: str, client_id: str, grant: str) -> None:
        self._grant = grant
        self._attempts = 0
        self._status: int | None = None
        name = (
            "keycloak_m2m.token_exchange"
            if grant.endswith("token-exchange")
            else ("keycloak_m2m.token_request")
        )
        self._span = _Span(name, {URL: token_url, CLIENT_ID: client_id, GRANT_TYPE: grant})

    def sending(self, headers: MutableMapping[str, str]) -> None:
        self._attempts += 1
        propagate.inject(headers)

    def answered(self, outcome: object) -> None:
        self._status = getattr(outcome, "status_code", None)

    def end(self, error: BaseException | None) -> None:
        attributes: dict[str, Any] = {
            OUTCOME: "issued" if error is None else "failed",
            RETRIES: max(0, self._attempts - 1),
        }
        if self._status is not None:
            attributes[STATUS] = self._status
        if error is not None:
            attributes[ERROR_TYPE] = getattr(error, "error", None) or _error_type(error)
        seconds = self._span.end(attributes, error is not None)
        labels = {OUTCOME: attributes[OUTCOME], GRANT_TYPE: self._grant}
        _instruments.token_requests.add(1, labels)
        _instruments.token_request_duration.record(seconds, labels)


class _NoTokenRequest:
    __slots__ = ()

    def sending(self, headers: MutableMapping[str, str]) -> None:
        return None

    def answered(self, outcome: object) -> None:
        return None


_NO_TOKEN_REQUEST: Final = _NoTokenRequest()


@contextmanager
def token_request(
    token_url: str, client_id: str, grant: str
) -> Iterator[_TokenRequest | _NoTokenRequest]:
    """Around one run of a token-request flow: ``sending`` before each attempt, ``answered``
    after it."""
    if not _on():
        yield _NO_TOKEN_REQUEST
        return
    probe = _TokenRequest(token_url, client_id, grant)
    try:
        yield probe
    except BaseException as error:
        probe.end(error)
        raise
    probe.end(None)


def inject_trace_context(headers: MutableMapping[str, str]) -> None:
    """Add the W3C trace context of the current span to an outgoing request's headers."""
    if _on():
        propagate.inject(headers)


# --- recording spans for the demo -----------------------------------------------------------------


class RecordedSpan(NamedTuple):
    """A finished span as the demo draws it."""

    name: str
    trace_id: int
    start_ns: int
    end_ns: int


def timeline_available() -> bool:
    """Whether the SDK is installed, so the demo can record its own spans."""
    try:
        import opentelemetry.sdk.trace  # noqa: F401
    except ImportError:
        return False
    return True


@contextmanager
def recording() -> Iterator[list[RecordedSpan]]:
    """Record the spans finished inside the block (the list is filled when the block ends).

    Sets an SDK tracer provider when none is configured yet, else adds a processor to the one
    configured; the processor stops recording when the block ends.
    """
    from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider

    finished: list[ReadableSpan] = []

    class Collect(SpanProcessor):
        active = True

        def on_end(self, span: ReadableSpan) -> None:
            if self.active:
                finished.append(span)

    collect = Collect()
    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        trace.set_tracer_provider(TracerProvider())
    provider = trace.get_tracer_provider()
    if isinstance(provider, TracerProvider):
        provider.add_span_processor(collect)
    spans: list[RecordedSpan] = []
    try:
        yield spans
    finally:
        collect.active = False
        spans.extend(_flattened(finished))


def _flattened(finished: Sequence[Any]) -> Iterable[RecordedSpan]:
    for span in sorted(finished, key=lambda span: span.start_time or 0):
        yield RecordedSpan(
            span.name, span.context.trace_id, span.start_time or 0, span.end_time or 0
        )


@contextmanager
def traced(name: str, carrier: dict[str, str] | None = None) -> Iterator[None]:
    """A span around the block, continuing the W3C trace context in ``carrier`` if given (the
    demo's caller and service, which no instrumentation library traces here)."""
    if not _on():
        yield
        return
    parent = propagate.extract(carrier) if carrier is not None else None
    with trace.get_tracer(SCOPE).start_as_current_span(name, context=parent):
        yield
