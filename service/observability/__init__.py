"""Logs and metrics: structlog's set-up, the access line, Prometheus."""
