"""The ``telemetry`` fixture: one OpenTelemetry SDK for the whole test session (the API's
providers are set once per process), read through its in-memory span exporter and metric reader."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import Counter, Histogram, MeterProvider, ObservableCounter
from opentelemetry.sdk.metrics.export import AggregationTemporality, InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

Attributes = frozenset[tuple[str, Any]]

# Each test reads what happened since it started: counters and histograms as deltas.
_DELTA = {
    Counter: AggregationTemporality.DELTA,
    Histogram: AggregationTemporality.DELTA,
    ObservableCounter: AggregationTemporality.CUMULATIVE,
}


@dataclass
class Telemetry:
    exporter: InMemorySpanExporter
    reader: InMemoryMetricReader
    _units: dict[str, str] = field(default_factory=dict)

    def spans(self, name: str | None = None) -> list[ReadableSpan]:
        finished = sorted(self.exporter.get_finished_spans(), key=lambda s: s.start_time or 0)
        return [span for span in finished if name is None or span.name == name]

    def metrics(self) -> dict[str, dict[Attributes, Any]]:
        """Metric name -> attributes -> value (a sum, a gauge's value, or a histogram's count)."""
        found: dict[str, dict[Attributes, Any]] = {}
        data = self.reader.get_metrics_data()
        for resource in data.resource_metrics if data else ():
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    self._units[metric.name] = metric.unit
                    points = found.setdefault(metric.name, {})
                    for point in metric.data.data_points:
                        value = getattr(point, "value", None)
                        if value is None:
                            value = (point.count, point.sum)  # a histogram
                        points[frozenset((point.attributes or {}).items())] = value
                    found[metric.name] = points
        return found

    def units(self) -> dict[str, str]:
        """The unit of every metric the last ``metrics()`` saw."""
        return self._units


_session: Telemetry | None = None


def _sdk() -> Telemetry:
    global _session
    if _session is None:
        exporter = InMemorySpanExporter()
        provider = trace.get_tracer_provider()
        if not isinstance(provider, TracerProvider):  # another test may have set one already
            provider = TracerProvider()
            trace.set_tracer_provider(provider)
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        reader = InMemoryMetricReader(preferred_temporality=_DELTA)
        metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
        _session = Telemetry(exporter, reader)
    return _session


@pytest.fixture
def telemetry() -> Iterator[Telemetry]:
    """The session's SDK, with the spans and metric deltas of earlier tests cleared."""
    sdk = _sdk()
    sdk.reader.get_metrics_data()
    sdk.exporter.clear()
    yield sdk
    sdk.exporter.clear()


def attributes(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})
