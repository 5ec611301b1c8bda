"""Prometheus metrics: one registry per daemon (or per test), built by a factory.

There is deliberately no module-level registry: several apps in one process (tests, the CLI
running a one-off export next to a server) would otherwise collide on metric names. The
composition root calls :func:`build_metrics` once and hands the result to the pipeline and to the
web app; ``GET /metrics`` renders :attr:`Metrics.registry`.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

NAMESPACE = "aggregator"

# Fetches range from a few ms (304 from a nearby server) to the total timeout (60 s by default).
FETCH_SECONDS_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0)


@dataclass(frozen=True, slots=True)
class Metrics:
    """Every metric object the daemon updates, all living in ``registry``.

    Label values, by convention (keep them low-cardinality):
    ``fetches{outcome}``: ``"200"``, ``"304"`` or a ``FetchFailed.error_class`` (``timeout``...);
    ``items{kind}``: ``new`` | ``updated``; ``sources{status}``: a ``SourceState.status``;
    ``export_renders{edition,format}``: edition name and ``rss`` | ``atom`` | ``json``;
    ``http_requests{route,status}``: the route *template* (``/feeds/{edition}.{fmt}``) and the
    numeric status code.
    """

    registry: CollectorRegistry
    fetches: Counter  # aggregator_fetches_total{outcome}
    fetch_seconds: Histogram  # aggregator_fetch_seconds
    items: Counter  # aggregator_items_total{kind}
    stories_merged: Counter  # aggregator_stories_merged_total
    sources: Gauge  # aggregator_sources{status}
    next_due_lag_seconds: Gauge  # aggregator_next_due_lag_seconds
    export_renders: Counter  # aggregator_export_renders_total{edition,format}
    http_requests: Counter  # aggregator_http_requests_total{route,status}
    enrichments: Counter  # aggregator_enrichments_total{outcome}

    def render(self) -> bytes:
        """The registry in the Prometheus text exposition format."""
        return generate_latest(self.registry)


def build_metrics() -> Metrics:
    """Create a fresh registry and register every metric of the daemon in it."""
    registry = CollectorRegistry(auto_describe=True)
    ns = NAMESPACE
    return Metrics(
        registry=registry,
        fetches=Counter(
            "fetches_total",
            "Feed fetches by outcome (HTTP 200, 304 or error class).",
            ["outcome"],
            namespace=ns,
            registry=registry,
        ),
        fetch_seconds=Histogram(
            "fetch_seconds",
            "Wall-clock time of one feed fetch, body included.",
            namespace=ns,
            registry=registry,
            buckets=FETCH_SECONDS_BUCKETS,
        ),
        items=Counter(
            "items_total",
            "Items stored, by kind (new or updated).",
            ["kind"],
            namespace=ns,
            registry=registry,
        ),
        stories_merged=Counter(
            "stories_merged_total",
            "Items attached to an existing story of another publisher.",
            namespace=ns,
            registry=registry,
        ),
        sources=Gauge(
            "sources", "Sources by current status.", ["status"], namespace=ns, registry=registry
        ),
        next_due_lag_seconds=Gauge(
            "next_due_lag_seconds",
            "How late the most overdue source is (0 when the scheduler keeps up).",
            namespace=ns,
            registry=registry,
        ),
        export_renders=Counter(
            "export_renders_total",
            "Edition snapshots rendered, by edition and format.",
            ["edition", "format"],
            namespace=ns,
            registry=registry,
        ),
        http_requests=Counter(
            "http_requests_total",
            "HTTP requests served, by route template and status code.",
            ["route", "status"],
            namespace=ns,
            registry=registry,
        ),
        enrichments=Counter(
            "enrichments_total",
            "Story cards by outcome: extractive and llm cards made, llm_failed calls,"
            " over_budget calls not made.",
            ["outcome"],
            namespace=ns,
            registry=registry,
        ),
    )
