"""The long-running daemon: APScheduler drives the tick, uvicorn serves HTTP, one process.

Kept apart from ``app.py`` so one-shot commands (``poll``, ``export``) do not pay for importing
the web stack. Shutdown on SIGTERM/SIGINT: the server stops accepting, the tick in flight
finishes (its leases are released by ``apply``), then the process exits with status 0.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from contextlib import suppress
from datetime import UTC, datetime, timedelta
from functools import partial
from types import FrameType
from typing import Any

import uvicorn
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from aggregator.api import DaemonAdmin
from aggregator.app import open_pipeline, settle_heap
from aggregator.enrich import Enricher, open_enricher
from aggregator.metrics import build_metrics
from aggregator.pipeline import Pipeline
from aggregator.recap_cli import recap_trigger, weekly_recaps
from aggregator.settings import Settings
from aggregator.store.db import schema_is_current
from aggregator.store.recaps import RecapStore
from aggregator.web import create_app

log = logging.getLogger("aggregator.daemon")
SHUTDOWN_GRACE_SECONDS = 8.0


class Runner:
    """APScheduler driving ``Pipeline.tick``; remembers the tick in flight for shutdown."""

    def __init__(
        self, pipeline: Pipeline, tick_seconds: float, enricher: Enricher | None = None
    ) -> None:
        self.pipeline = pipeline
        self.enricher = enricher
        self.scheduler = AsyncIOScheduler(timezone="UTC")
        self.scheduler.add_job(
            self._tick,
            "interval",
            seconds=tick_seconds,
            id="tick",
            max_instances=1,
            coalesce=True,
            misfire_grace_time=None,
            next_run_time=datetime.now(UTC),  # first tick at start, not one interval later
        )
        recap = pipeline.settings.recap
        if recap.enabled:  # weekly recap of every edition (aggregator.recap_cli)
            self.scheduler.add_job(
                self._recap,
                recap_trigger(recap),
                id="recap",
                max_instances=1,
                coalesce=True,
                misfire_grace_time=6 * 3600,  # a daemon down at the hour still makes it
            )
        if enricher is not None:  # story cards, off the hot path (aggregator.enrich.worker)
            every = enricher.settings.interval_seconds
            self.scheduler.add_job(
                self._enrich,
                "interval",
                seconds=every,
                id="enrich",
                max_instances=1,
                coalesce=True,
                misfire_grace_time=None,
                next_run_time=datetime.now(UTC) + timedelta(seconds=min(every, 5.0)),
            )
        self._current: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return bool(self.scheduler.running)

    async def _tick(self) -> None:
        self._current = asyncio.current_task()
        try:
            report = await self.pipeline.tick()
            if report.sources:
                log.info(
                    "tick done",
                    extra={
                        "sources": len(report.sources),
                        "failed": report.failed,
                        "new": report.new,
                        "updated": report.updated,
                        "rendered": report.rendered,
                    },
                )
        except Exception:  # a tick that fails is logged; the next one runs as usual
            log.exception("tick failed")
        finally:
            self._current = None

    async def _recap(self) -> None:
        """Build last week's recaps on the pipeline's database thread; failures are logged."""
        pipeline = self.pipeline
        try:
            await pipeline.run_in_db(
                weekly_recaps, pipeline.settings, pipeline.repo, pipeline.clock.now()
            )
        except Exception:  # the next week's run goes ahead as usual
            log.exception("weekly recap failed")

    async def _enrich(self) -> None:
        """One enrichment pass; a failed pass is logged and the next one runs as usual."""
        assert self.enricher is not None
        try:
            report = await self.enricher.run_once()
        except Exception:
            log.exception("enrichment pass failed")
            return
        metrics = self.pipeline.metrics
        if metrics is not None:
            for outcome, count in (
                ("extractive", report.cards),
                ("llm", report.llm_cards),
                ("llm_failed", report.llm_failed),
                ("over_budget", report.over_budget),
            ):
                if count:
                    metrics.enrichments.labels(outcome=outcome).inc(count)

    def start(self) -> None:
        self.scheduler.start()

    async def stop(self, grace: float = SHUTDOWN_GRACE_SECONDS) -> None:
        """Stop scheduling and let the tick in flight finish (bounded by ``grace``).

        The scheduler is only paused first: shutting APScheduler's asyncio executor down
        cancels the jobs it is running, which would abandon the tick half way.
        """
        if self.scheduler.running:
            self.scheduler.pause()
        task = self._current
        if task is not None and not task.done():
            with suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(task), timeout=grace)
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)


async def serve(settings: Settings, *, host: str | None = None, port: int | None = None) -> None:
    """``aggregator run``: scheduler + HTTP server in one process until SIGTERM/SIGINT."""
    metrics = build_metrics()
    async with (
        open_pipeline(settings, metrics=metrics, warm=True) as pipeline,
        open_enricher(
            settings,
            pipeline.repo.engine,
            clock=pipeline.clock,
            rerender=partial(pipeline.run_in_db, pipeline.render_editions),
        ) as enricher,
    ):
        enrich = enricher if settings.enrich.enabled else None
        runner = Runner(pipeline, settings.schedule.tick_seconds, enrich)
        engine = pipeline.repo.engine

        def readiness() -> dict[str, bool]:
            return {"migrations": schema_is_current(engine), "scheduler": runner.running}

        admin = DaemonAdmin(pipeline.repo, pipeline, pipeline.clock)
        app = create_app(
            settings,
            pipeline.repo,
            readiness=readiness,
            metrics=metrics,
            admin=admin,
            recaps=RecapStore(engine),
        )
        config = uvicorn.Config(
            app,
            host=host or settings.server.host,
            port=port or settings.server.port,
            log_config=None,
            access_log=False,
            lifespan="off",
            proxy_headers=True,
        )
        server = uvicorn.Server(config)
        # uvicorn re-raises SIGTERM/SIGINT once it has shut down; with the default handler that
        # would kill the process before the tick in flight is finished. A no-op handler of ours
        # is what uvicorn restores and re-raises into, so shutdown continues below.
        previous = _quiet_signals()
        settle_heap()
        runner.start()
        log.info(
            "serving",
            extra={"host": config.host, "port": config.port, "sources": len(settings.sources)},
        )
        try:
            await server.serve()
        finally:
            log.info("shutting down: finishing the tick in flight")
            await runner.stop()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            log.info("stopped")


def _quiet_signals() -> dict[int, Any]:
    """Install no-op SIGTERM/SIGINT handlers (main thread only); return the old ones."""
    if threading.current_thread() is not threading.main_thread():
        return {}

    def note(sig: int, frame: FrameType | None) -> None:
        log.debug("signal %s noted during shutdown", sig)

    return {sig: signal.signal(sig, note) for sig in (signal.SIGTERM, signal.SIGINT)}
