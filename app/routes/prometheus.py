"""``GET /metrics``: Prometheus text for this process.

Stream and fan-out figures come straight from the broker at scrape time
(a custom collector), so the hot path keeps plain integer counters.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from quart import Blueprint, Response, current_app

from ..engine import engine_of

bp = Blueprint("prometheus", __name__)


class BrokerCollector(Collector):
    def __init__(self, app: object) -> None:
        self.app = app

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        eng = engine_of(self.app)  # type: ignore[arg-type]
        broker = eng.broker
        yield GaugeMetricFamily(
            "livedash_streams_open",
            "Open SSE streams and waiting long polls in this process",
            value=len(broker.subscriptions),
        )
        yield CounterMetricFamily("livedash_events_delivered", "Events queued to subscribers", value=broker.delivered)
        yield CounterMetricFamily(
            "livedash_streams_dropped", "Subscribers dropped as slow consumers", value=broker.dropped
        )
        depth = max((len(s.queue) for s in tuple(broker.subscriptions)), default=0)
        yield GaugeMetricFamily("livedash_stream_queue_depth_max", "Deepest subscriber queue", value=depth)
        yield GaugeMetricFamily(
            "livedash_event_reader_healthy",
            "1 while the event-log reader reads",
            value=1 if broker.healthy.is_set() else 0,
        )


@bp.get("/metrics")
async def metrics() -> Response:
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    registry = app.extensions.get("livedash_registry")
    if registry is None:
        registry = CollectorRegistry()
        registry.register(BrokerCollector(app))
        app.extensions["livedash_registry"] = registry
    return Response(generate_latest(registry), content_type="text/plain; version=0.0.4; charset=utf-8")
