"""Metrics: run-time histograms, the Prometheus collector, the ``/metrics`` server."""

__all__: list[str] = []
