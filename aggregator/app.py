"""Composition root: settings -> engine, repository, fetcher, pipeline, scheduler, web server.

Nothing is built at import time. ``open_pipeline`` is shared by every command that polls;
``serve`` runs scheduler and HTTP server in one process and shuts down cleanly on SIGTERM:
the server stops accepting, the tick in flight finishes (its leases are released by ``apply``),
then the process exits.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import socket
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import asynccontextmanager, suppress
from datetime import UTC, datetime

import uvicorn
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlalchemy.engine import Engine

from aggregator.clock import Clock, SystemClock
from aggregator.fetch import Fetcher
from aggregator.pipeline import Pipeline
from aggregator.settings import Settings
from aggregator.store.db import make_engine, schema_is_current, upgrade
from aggregator.store.repo import Repository
from aggregator.web import create_app

log = logging.getLogger("aggregator.app")
SHUTDOWN_GRACE_SECONDS = 8.0


def owner_id() -> str:
    """A lease owner name unique to this process: host, pid and a random suffix."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def open_repository(settings: Settings, *, migrate: bool = True) -> tuple[Engine, Repository]:
    """Engine plus repository; migrates to the latest schema unless told not to."""
    engine = make_engine(settings.database_url)
    if migrate:
        upgrade(engine)
    return engine, Repository(engine)


def parse_workers(settings: Settings) -> int:
    """How many parse processes to use (0 = parse inline on the event loop's thread)."""
    if settings.parse_workers is not None:
        return max(0, settings.parse_workers)
    cpus = os.cpu_count() or 1
    return cpus if cpus > 1 else 0


@asynccontextmanager
async def open_pipeline(
    settings: Settings, *, clock: Clock | None = None, workers: int | None = None
) -> AsyncIterator[Pipeline]:
    """A ready pipeline with config sources synced into the database; cleans up on exit."""
    clock = clock or SystemClock()
    engine, repo = open_repository(settings)
    repo.sync_sources(settings.sources, clock.now())
    n = parse_workers(settings) if workers is None else workers
    executor = (
        ProcessPoolExecutor(n, mp_context=multiprocessing.get_context("spawn")) if n else None
    )
    try:
        async with Fetcher(settings.fetch) as fetcher:
            pipeline = Pipeline(
                settings, repo, fetcher, clock=clock, owner=owner_id(), parse_executor=executor
            )
            try:
                yield pipeline
            finally:
                pipeline.close()
    finally:
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)
        engine.dispose()


class Runner:
    """APScheduler driving ``Pipeline.tick``; remembers the tick in flight for shutdown."""

    def __init__(self, pipeline: Pipeline, tick_seconds: float) -> None:
        self.pipeline = pipeline
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
        self._current: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return bool(self.scheduler.running)

    async def _tick(self) -> None:
        self._current = asyncio.current_task()  # type: ignore[assignment]
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

    def start(self) -> None:
        self.scheduler.start()

    async def stop(self, grace: float = SHUTDOWN_GRACE_SECONDS) -> None:
        """Stop scheduling and let the tick in flight finish (bounded by ``grace``)."""
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        task = self._current
        if task is not None and not task.done():
            with suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(task), timeout=grace)


async def serve(settings: Settings, *, host: str | None = None, port: int | None = None) -> None:
    """``aggregator run``: scheduler + HTTP server in one process until SIGTERM/SIGINT."""
    async with open_pipeline(settings) as pipeline:
        runner = Runner(pipeline, settings.schedule.tick_seconds)
        engine = pipeline.repo.engine

        def readiness() -> dict[str, bool]:
            return {"migrations": schema_is_current(engine), "scheduler": runner.running}

        app = create_app(settings, pipeline.repo, readiness=readiness)
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
            log.info("stopped")
