"""Readings in: validation, the one ingest pipeline, the fast path, line protocol, MQTT, the demo."""
