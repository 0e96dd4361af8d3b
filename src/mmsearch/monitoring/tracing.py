"""OpenTelemetry tracing of searches: one span per search, one child span per stage.

Off by default (``Settings.tracing = "off"``): no provider, no cost. ``console``
prints finished spans; ``otlp`` exports to an OpenTelemetry collector (install the
``otlp`` extra and configure it with the standard ``OTEL_EXPORTER_OTLP_*`` variables).

Stage spans are built from ``SearchResult.timings_ms`` after the search returns: the
searcher runs its stages one after another and measures each, so laying the stages
end to end inside the search span reproduces the timeline without threading a tracer
through the retrieval code.
"""

from __future__ import annotations

import time
from typing import Any

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
)

from mmsearch.errors import MMSearchError

EXPORTERS = ("off", "console", "otlp")


def make_exporter(name: str) -> SpanExporter | None:
    """The exporter a setting names; an unknown name or a missing extra says what to do."""
    if name == "off":
        return None
    if name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    if name == "otlp":
        try:
            # the optional 'otlp' extra, which CI does not install
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # pyright: ignore[reportMissingImports]
                OTLPSpanExporter,
            )
        except ImportError:
            raise MMSearchError(
                "Tracing to OTLP needs the exporter: pip install 'mmsearch[otlp]'."
            ) from None
        return OTLPSpanExporter()
    raise MMSearchError(
        f"Unknown tracing exporter '{name}'; choose one of: {', '.join(EXPORTERS)}."
    )


class SearchTracer:
    """Records search spans on this app's own provider (never the global one)."""

    def __init__(self, exporter: SpanExporter | None, *, batch: bool = False):
        self.enabled = exporter is not None
        self._provider: TracerProvider | None = None
        if exporter is not None:
            self._provider = TracerProvider()
            processor = BatchSpanProcessor(exporter) if batch else SimpleSpanProcessor(exporter)
            self._provider.add_span_processor(processor)
            self._tracer = self._provider.get_tracer("mmsearch.search")

    @classmethod
    def from_setting(cls, name: str) -> SearchTracer:
        return cls(make_exporter(name), batch=name == "otlp")

    def record_search(
        self,
        *,
        started_ns: int,
        ended_ns: int,
        timings_ms: dict[str, float],
        attributes: dict[str, Any],
    ) -> None:
        if self._provider is None:
            return
        clean = {k: v for k, v in attributes.items() if v is not None}
        parent = self._tracer.start_span("search", start_time=started_ns, attributes=clean)
        from opentelemetry import trace

        context = trace.set_span_in_context(parent)
        cursor = started_ns
        for stage, ms in timings_ms.items():
            end = min(cursor + int(ms * 1_000_000), ended_ns)
            span = self._tracer.start_span(
                f"search.{stage}", context=context, start_time=cursor, attributes={"stage": stage}
            )
            span.end(end_time=end)
            cursor = end
        parent.end(end_time=ended_ns)

    def shutdown(self) -> None:
        if self._provider is not None:
            self._provider.shutdown()


def now_ns() -> int:
    return time.time_ns()
