"""Prometheus metrics and health endpoints (``/metrics``, ``/healthz``, ``/readyz``).

Counters are bumped by the pipeline and, for RTP, by adapters through
:meth:`Metrics.rtp_packets`; gauges (active calls, spool depth) are read at scrape time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.calls_started = Counter("vcon_capture_calls_started", "Calls started", ["adapter"], registry=r)
        self.calls_ended = Counter("vcon_capture_calls_ended", "Calls ended", ["adapter", "outcome"], registry=r)
        self.vcons_emitted = Counter(
            "vcon_capture_vcons_emitted", "vCons written to the spool", ["adapter"], registry=r
        )
        self.vcons_delivered = Counter(
            "vcon_capture_vcons_delivered", "vCons acknowledged by a sink", ["sink"], registry=r
        )
        self.vcons_dead = Counter(
            "vcon_capture_vcons_dead_lettered", "vCons refused permanently by a sink", ["sink"], registry=r
        )
        self.rtp_received = Counter(
            "vcon_capture_rtp_packets_received", "RTP packets received", ["adapter"], registry=r
        )
        self.rtp_lost = Counter("vcon_capture_rtp_packets_lost", "RTP packets never received", ["adapter"], registry=r)
        self.disk_free = Gauge(
            "vcon_capture_disk_free_bytes", "Free space under a directory the service writes", ["path"], registry=r
        )
        self.disk_low = Gauge(
            "vcon_capture_disk_low", "1 while free space is below min_free_mb (calls refused)", registry=r
        )
        self.write_failures = Counter(
            "vcon_capture_write_failures", "Writes the disk refused (retried later)", ["what"], registry=r
        )
        self.audio_lost = Counter(
            "vcon_capture_audio_lost_seconds", "Audio dropped because the disk refused it for too long", registry=r
        )
        self.live_listeners = Gauge("vcon_capture_live_listeners", "Live audio/event listeners connected", registry=r)
        self.live_dropped = Counter(
            "vcon_capture_live_listeners_dropped", "Live listeners dropped for falling behind", registry=r
        )
        self.end_to_vcon = Histogram(
            "vcon_capture_end_to_vcon_seconds",
            "Time from the end of a call (BYE, hangup, last participant gone) to its vCon in the spool",
            ["adapter"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )

    def rtp_packets(self, adapter: str, received: int, lost: int) -> None:
        """Adapters report RTP counts, typically once per stream when it ends."""
        if received:
            self.rtp_received.labels(adapter).inc(received)
        if lost:
            self.rtp_lost.labels(adapter).inc(lost)

    def watch(self, *, active_calls: Callable[[], Mapping[str, int]], spool_depth: Callable[[], int]) -> None:
        """Gauges read at scrape time: calls in progress per adapter, and the spool's depth."""
        self.registry.register(_Gauges(active_calls, spool_depth))


class _Gauges(Collector):
    def __init__(self, active_calls: Callable[[], Mapping[str, int]], spool_depth: Callable[[], int]) -> None:
        self._active_calls = active_calls
        self._spool_depth = spool_depth

    def collect(self) -> Iterator[GaugeMetricFamily]:
        active = GaugeMetricFamily("vcon_capture_active_calls", "Calls in progress", labels=["adapter"])
        for adapter, count in sorted(self._active_calls().items()):
            active.add_metric([adapter], count)
        yield active
        yield GaugeMetricFamily(
            "vcon_capture_spool_depth", "vCons not yet acknowledged by every sink", value=self._spool_depth()
        )


def health_app(metrics: Metrics, ready: Callable[[], bool]) -> web.Application:
    """/metrics (Prometheus text), /healthz (the process answers), /readyz (taking calls)."""

    async def scrape(_: web.Request) -> web.Response:
        body = generate_latest(metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(_: web.Request) -> web.Response:
        return web.Response(text="ready\n") if ready() else web.Response(text="not ready\n", status=503)

    app = web.Application()
    app.router.add_get("/metrics", scrape)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    return app
