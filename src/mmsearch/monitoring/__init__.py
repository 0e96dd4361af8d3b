"""Observability: Prometheus metrics, OpenTelemetry traces, JSON logs, query and click logs."""
