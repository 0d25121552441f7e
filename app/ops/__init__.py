"""Operating the process: Prometheus telemetry, logs, GC tuning, shutdown."""
