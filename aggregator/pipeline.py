"""The runner that wires the stages for one tick: claim -> fetch -> ingest -> plan -> apply.

This is the only place where the pure stages meet IO. Each source is handled on its own: a
failure of any kind is recorded on that source (status, last error, backoff) and never reaches
the others or the tick. Database writes run on one dedicated thread (SQLAlchemy is synchronous;
one writer suits SQLite). With a process pool, a changed body is planned whole in a worker
(``aggregator.planchanged``: the source's stored state read through the worker's own
connection, parse, normalize, plan), and only the plan comes back; without one (or with an
in-memory SQLite database, which a worker cannot open) the planner's reads run on a second
thread beside the writes and parsing runs on the pool or inline.

What keeps a run cheap (``bench/README.md`` has the numbers):

* at most ``fetch.concurrency`` sources are between fetch and apply at once, and of those at
  most ``BODIES_PER_WORKER x workers`` hold a body being parsed or items being stored, so
  memory does not grow with the number of sources (parse results waiting for the database
  are the big part);
* plans that change only a source's poll state (a 304, an unchanged body, a failure) are
  written together, one transaction per batch (``Repository.write_source_states``), not one
  each: whatever arrived while the previous batch was being written forms the next one;
* a body whose hash did not change is not parsed; in a changed body, entries whose raw bytes
  the source's entry cache knows are cut out before feedparser runs (``aggregator.entrycache``),
  and parsed entries stored unchanged are recognised from their key and content hash and skip
  sanitizing (``ingest(known=..., cache=...)``);
* one log line per source only at DEBUG (failures at INFO); one summary line per run at INFO;
* a one-shot poll (``keep_workers=False``) stops the parse workers before rendering (a run
  with nothing to render leaves that to the command's exit, ``app.open_pipeline``, which
  also starts them early for a long source list).
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import random
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import URL

from aggregator.clock import Clock
from aggregator.dedupe.prepare import prepare_many
from aggregator.dedupe.semantic import thresholds_for
from aggregator.dedupe.stories import DEFAULT_THRESHOLDS
from aggregator.errors import StorageError
from aggregator.fetch import Fetcher
from aggregator.ingest import Ingested, ingest
from aggregator.model import (
    ApplyResult,
    ExistingItem,
    Fetched,
    FetchFailed,
    FetchResult,
    Snapshot,
    SourceState,
    UpdatePlan,
)
from aggregator.parsepool import LazyProcessPool
from aggregator.plan import answered, build_plan, is_network_failure, keyed_items
from aggregator.planchanged import (
    KNOWN_ITEMS,
    existing_rows,
    known_digests,
    plan_in_worker,
    split_known,
    writes_stub,
)
from aggregator.publish import render_all, story_window
from aggregator.related import (
    TEXT_KEYS,
    KeyInputs,
    KeysFn,
    TextKeys,
    key_inputs,
    summary_keys_many,
)
from aggregator.settings import Settings
from aggregator.store import relatedkeys
from aggregator.store.bandprune import SLICE as PRUNE_SLICE
from aggregator.store.bandprune import band_cutoff, prune_story_bands
from aggregator.store.matching import MatchAfterApply
from aggregator.store.recaps import RecapStore
from aggregator.store.repo import Repository

if TYPE_CHECKING:  # prometheus_client is loaded by the daemon that exports metrics, not by `poll`
    from aggregator.metrics import Metrics

log = logging.getLogger("aggregator.pipeline")
T = TypeVar("T")
#: No publisher answered for this long, and every one in the batch failed on the network:
#: that is our outage, not theirs.
OUTAGE_WINDOW_SECONDS = 60.0
#: The story index is pruned after a run at most this often (per process).
PRUNE_EVERY_SECONDS = 3600.0
#: Poll-state-only plans written per transaction, at most.
STATE_BATCH = 1000
#: Fewer story text keys than this missing at a render are computed in-process.
POOL_KEYS_MIN = 64
#: Changed bodies per parse worker between "fetched" and "stored". A body spends a few
#: milliseconds in a worker and as long again travelling (to the worker, back, to the database
#: thread, each step waiting for the interpreter lock of a busy main process): with 2 x
#: workers + 2 the workers idled a fifth of a 2,000-feed tick; 8 per worker keeps them fed.
BODIES_PER_WORKER = 8
_QUIET = frozenset({"ok", "not_modified", "deferred"})  # outcomes logged at DEBUG only


class _Slot:
    """One place among the sources between fetch and apply (``Pipeline.run`` bounds them)."""

    def __init__(self, semaphore: asyncio.Semaphore) -> None:
        self._semaphore = semaphore
        self.held = False

    async def acquire(self) -> None:
        if not self.held:
            await self._semaphore.acquire()
            self.held = True

    def release(self) -> None:
        if self.held:
            self.held = False
            self._semaphore.release()


class _StateWriter:
    """Group commit for plans that only change a source's poll state.

    ``write`` queues a plan and waits until it is stored. One drain task writes what is queued
    as one ``Repository.write_source_states`` call on the database thread. The batch is taken
    when that thread starts the call, not when the call is queued behind other sources'
    applies: the plans that arrived meanwhile go with it (fewer, larger transactions). A failed
    batch fails each of its plans' ``write``.
    """

    def __init__(self, pipeline: Pipeline) -> None:
        self._pipeline = pipeline
        # appended to on the event loop, taken from on the database thread (deque: both safe)
        self._queue: deque[tuple[UpdatePlan, asyncio.Future[None]]] = deque()
        self._drainer: asyncio.Task[None] | None = None

    async def write(self, plan: UpdatePlan) -> None:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append((plan, done))
        if self._drainer is None or self._drainer.done():
            self._drainer = asyncio.create_task(self._drain())
        await done

    def _take(self) -> list[tuple[UpdatePlan, asyncio.Future[None]]]:
        batch: list[tuple[UpdatePlan, asyncio.Future[None]]] = []
        while self._queue and len(batch) < STATE_BATCH:
            batch.append(self._queue.popleft())
        return batch

    async def _drain(self) -> None:
        await asyncio.sleep(0)  # let the plans of this loop iteration join the first batch
        pipeline = self._pipeline
        while self._queue:
            batch: list[tuple[UpdatePlan, asyncio.Future[None]]] = []

            def write(batch: list[tuple[UpdatePlan, asyncio.Future[None]]] = batch) -> None:
                batch.extend(self._take())
                pipeline.repo.write_source_states([p for p, _ in batch], pipeline.owner)

            try:
                await pipeline._in_db(write)
            except Exception as exc:
                for _, done in batch:
                    if not done.done():
                        done.set_exception(exc)
            else:
                for _, done in batch:
                    if not done.done():
                        done.set_result(None)


class _Batch:
    """Fetch outcomes of one run, so network failures can be judged against the others."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.pending = size
        self.answered = False
        self._done = asyncio.Event()
        if size == 0:
            self._done.set()

    def record(self, result: FetchResult | None) -> None:
        if result is not None and answered(result):
            self.answered = True
        self.pending -= 1
        if self.pending <= 0:
            self._done.set()

    async def wait(self) -> None:
        await self._done.wait()


@dataclass(frozen=True, slots=True)
class SourceReport:
    """What happened to one source in one run."""

    key: str
    url: str
    status: str
    new: int = 0
    updated: int = 0
    error: str | None = None
    elapsed: float = 0.0


@dataclass
class TickReport:
    """What one run did, summed over sources."""

    sources: list[SourceReport] = field(default_factory=list)
    rendered: int = 0
    seconds: float = 0.0  # wall time of the whole run, render included
    render_seconds: float = 0.0  # of which re-rendering the editions

    @property
    def ok(self) -> int:
        return sum(1 for s in self.sources if s.status in ("ok", "not_modified", "deferred"))

    @property
    def failed(self) -> int:
        return len(self.sources) - self.ok

    @property
    def new(self) -> int:
        return sum(s.new for s in self.sources)

    @property
    def updated(self) -> int:
        return sum(s.updated for s in self.sources)


class Pipeline:
    """Polls sources and keeps the edition snapshots current."""

    def __init__(
        self,
        settings: Settings,
        repo: Repository,
        fetcher: Fetcher,
        *,
        clock: Clock,
        owner: str,
        rng: random.Random | None = None,
        parse_executor: Executor | None = None,
        metrics: Metrics | None = None,
        keep_workers: bool = True,
    ) -> None:
        """``keep_workers=False`` (one-shot commands) stops the parse processes when a run's
        sources are done, before the editions are rendered: their memory is not needed for
        that, and a lazy pool starts again if another run needs it."""
        self.settings = settings
        self.keep_workers = keep_workers
        self.repo = repo
        self.fetcher = fetcher
        self.clock = clock
        self.owner = owner
        self.rng = rng or random.Random()
        self.parse_executor = parse_executor
        self.metrics = metrics
        self._pool_lock = asyncio.Lock()
        self._last_answer = float("-inf")  # monotonic time any publisher last answered
        self._pruned_at = float("-inf")  # monotonic time the story index was last pruned
        self._db = ThreadPoolExecutor(max_workers=1, thread_name_prefix="aggregator-db")
        # the planner's reads of one source (what it has stored) run beside the writes, so a
        # body's parse does not wait behind other sources' inserts (WAL readers do not block
        # the writer); an in-memory SQLite database exists once per connection: same thread
        self._reads = (
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="aggregator-db-read")
            if _shared_database(repo.engine.url)
            else self._db
        )
        self._states = _StateWriter(self)
        # changed bodies are planned whole in a parse worker (``aggregator.planchanged``) when
        # there are workers and they can open the same database
        self._worker_database: str | None = None
        if parse_executor is not None and _shared_database(repo.engine.url):
            self._worker_database = repo.engine.url.render_as_string(hide_password=False)
        workers = getattr(parse_executor, "workers", None) or getattr(
            parse_executor, "_max_workers", None
        )
        self._workers = workers if isinstance(workers, int) else 1
        # bodies between "fetched" and "stored": enough to keep every parse worker busy while
        # plans travel back and wait for the database thread (``BODIES_PER_WORKER``)
        self._bodies = asyncio.Semaphore(BODIES_PER_WORKER * self._workers)
        # story decisions: the defaults, plus a configured semantic backend, built once
        self._thresholds = (
            thresholds_for(settings.stories) if settings.stories.match_text else DEFAULT_THRESHOLDS
        )

    def close(self) -> None:
        """Stop the database threads (after in-flight calls finish)."""
        self._db.shutdown(wait=True)
        if self._reads is not self._db:
            self._reads.shutdown(wait=True)

    async def _in_db(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._db, partial(fn, *args, **kwargs))

    async def _in_read(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a read-only ``fn`` on the reading thread (see ``__init__``)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._reads, partial(fn, *args, **kwargs))

    async def run_in_db(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``fn`` on the pipeline's database thread, serialised with polling and renders
        (the daemon's other jobs, e.g. the weekly recap, use it)."""
        return await self._in_db(fn, *args, **kwargs)

    # ------------------------------------------------------------------ runs

    async def tick(self) -> TickReport:
        """Claim the sources that are due, poll them, re-render editions if anything changed."""
        sched = self.settings.schedule
        due = await self._in_db(
            self.repo.claim_due_sources,
            self.clock.now(),
            sched.batch_size,
            self.owner,
            sched.lease_seconds,
        )
        return await self.run(due)

    async def poll_all(self, on_done: Callable[[SourceReport], None] | None = None) -> TickReport:
        """Poll every enabled source once, whether due or not (``aggregator poll``)."""
        sched = self.settings.schedule
        keys = [s.key for s in await self._in_db(self.repo.list_sources) if s.enabled]
        claimed = await self._in_db(
            self.repo.claim_sources, keys, self.clock.now(), self.owner, sched.lease_seconds
        )
        return await self.run(claimed, on_done=on_done)

    async def run(
        self,
        sources: Sequence[SourceState],
        on_done: Callable[[SourceReport], None] | None = None,
    ) -> TickReport:
        """Poll the given (already claimed) sources concurrently, then render if needed."""
        report = TickReport()
        batch = _Batch(len(sources))
        in_flight = asyncio.Semaphore(max(self.settings.fetch.concurrency, 8))
        started = time.perf_counter()

        async def one(src: SourceState) -> None:
            slot = _Slot(in_flight)
            await slot.acquire()
            try:
                rep = await self.process(src, batch, slot)
            finally:
                slot.release()
            report.sources.append(rep)
            if on_done is not None:
                on_done(rep)

        await asyncio.gather(*(one(s) for s in sources))
        if report.new or report.updated or not await self._in_db(self.repo.list_snapshot_editions):
            pool = self.parse_executor
            if not self.keep_workers and isinstance(pool, LazyProcessPool) and pool.started:
                # free their memory for the render; a run with nothing to render leaves that
                # to the command's exit (``open_pipeline``) instead of waiting here for workers
                # it may have started early (``start_soon``) and never used
                await asyncio.to_thread(pool.shutdown, True)
            render_started = time.perf_counter()
            report.rendered = await self._in_db(self.render_editions)
            report.render_seconds = time.perf_counter() - render_started
        if self.metrics is not None:
            await self._in_db(self.refresh_gauges)
        await self._prune_story_index()
        report.seconds = time.perf_counter() - started
        if sources:
            log.info(
                "polled %d sources: %d ok, %d failed, %d new, %d updated items in %.2f s",
                len(sources),
                report.ok,
                report.failed,
                report.new,
                report.updated,
                report.seconds,
            )
        return report

    async def _prune_story_index(self) -> None:
        """Drop band rows of stories past every matching window (``store.bandprune``), at
        most once per ``PRUNE_EVERY_SECONDS`` per process; a failure is logged only."""
        if time.monotonic() - self._pruned_at < PRUNE_EVERY_SECONDS:
            return
        self._pruned_at = time.monotonic()
        cutoff = band_cutoff(self.clock.now(), self.settings.stories.window_days)
        try:
            deleted = await self._in_db(
                prune_story_bands, self.repo.engine, cutoff, cutoff - PRUNE_SLICE
            )
        except StorageError as exc:
            log.warning("pruning the story index failed: %s", exc)
            return
        if deleted:
            log.info("pruned %d story-index rows of stories older than %s", deleted, cutoff)

    # ------------------------------------------------------------------ one source

    async def process(
        self, source: SourceState, batch: _Batch | None = None, slot: _Slot | None = None
    ) -> SourceReport:
        """Fetch, ingest, plan and apply one source; never raises.

        ``slot`` (held by the caller) is given up while waiting to judge a network failure
        against the rest of ``batch``, so the sources still to fetch can proceed.
        """
        started = time.perf_counter()
        result: FetchResult | None = None
        try:
            try:
                result = await self.fetcher.fetch(
                    source.url, etag=source.etag, last_modified=source.last_modified
                )
            finally:
                if batch is not None:
                    batch.record(result)
            outage = await self._is_outage(result, batch, slot)
            bodies = self._bodies if isinstance(result, Fetched) else None
            if bodies is not None:
                await bodies.acquire()
            try:
                plan = await self._plan(source, result, outage)
                now = self.clock.now()
                matcher = await self._matcher(plan, now)
                applied = await self._apply(plan, now, matcher)
            finally:
                if bodies is not None:
                    bodies.release()
            if self.metrics is not None and applied.new > applied.new_stories:
                # reports that joined a story already told by someone (URL or link-blog match)
                self.metrics.stories_merged.inc(applied.new - applied.new_stories)
            if self.metrics is not None and matcher is not None and matcher.report.merged:
                self.metrics.stories_merged.inc(matcher.report.merged)
            upd = plan.source_update
            rep = SourceReport(
                source.key,
                source.url,
                upd.status,
                applied.new,
                applied.updated,
                upd.last_error,
                time.perf_counter() - started,
            )
        except Exception as exc:  # the runner's last line of defence: record, never propagate
            log.exception("source %s failed unexpectedly", source.key)
            rep = SourceReport(
                source.key,
                source.url,
                "error",
                error=f"internal: {exc!r}"[:500],
                elapsed=time.perf_counter() - started,
            )
            await self._record_crash(source, rep.error or "internal error")
        level = logging.DEBUG if rep.status in _QUIET else logging.INFO
        if log.isEnabledFor(level):
            log.log(
                level,
                "polled %s",
                source.key,
                extra={
                    "source": source.key,
                    "url": source.url,
                    "outcome": rep.status,
                    "new": rep.new,
                    "updated": rep.updated,
                    "error": rep.error,
                    "duration_ms": round(rep.elapsed * 1000, 1),
                },
            )
        if self.metrics is not None:
            self._count(rep, result)
        return rep

    async def _apply(
        self, plan: UpdatePlan, now: datetime, matcher: MatchAfterApply | None = None
    ) -> ApplyResult:
        """Store ``plan``: its own transaction when it writes items or moves the source's URL,
        else batched with other sources' poll states (``_StateWriter``). ``matcher`` runs in
        the apply's transaction (story matching: one commit per source)."""
        if plan.intents or plan.source_update.url:
            return await self._in_db(self.repo.apply, plan, now, self.owner, matcher)
        await self._states.write(plan)
        return ApplyResult()

    async def _matcher(self, plan: UpdatePlan, now: datetime) -> MatchAfterApply | None:
        """Text story matching for ``plan``'s new and edited items, when enabled: their
        features and band keys are computed first, in a parse worker when there is a pool
        (pure CPU that would otherwise hold the database thread)."""
        if not self.settings.stories.match_text or not plan.intents:
            return None
        prepared = None
        if self.parse_executor is not None:
            rows = [
                (i.item.title, i.item.summary_html, i.item.language, i.item.published_at)
                for i in plan.intents
            ]
            loop = asyncio.get_running_loop()
            try:
                prepared = await loop.run_in_executor(self.parse_executor, prepare_many, rows)
            except Exception:  # e.g. a broken worker: the matcher computes them itself
                log.exception("preparing story matching in a worker failed; doing it inline")
        return MatchAfterApply(
            plan.source_id,
            now,
            edited_keys=tuple(i.item_key for i in plan.intents if i.action == "update"),
            prepared=prepared,
            window=timedelta(days=self.settings.stories.window_days),
            thresholds=self._thresholds,
        )

    def _count(self, rep: SourceReport, result: FetchResult | None) -> None:
        """Update fetch and item metrics for one processed source."""
        assert self.metrics is not None
        if isinstance(result, Fetched):
            outcome = "200"
        elif isinstance(result, FetchFailed):
            outcome = result.error_class
        elif result is None:
            outcome = "internal"
        else:
            outcome = "304"
        self.metrics.fetches.labels(outcome=outcome).inc()
        if result is not None:
            self.metrics.fetch_seconds.observe(result.elapsed)
        if rep.new:
            self.metrics.items.labels(kind="new").inc(rep.new)
        if rep.updated:
            self.metrics.items.labels(kind="updated").inc(rep.updated)

    def refresh_gauges(self) -> None:
        """Sources by status and the next-due lag, read from the database."""
        if self.metrics is None:
            return
        counts: dict[str, int] = {}
        for src in self.repo.list_sources():
            status = src.status if src.enabled else "disabled"
            counts[status] = counts.get(status, 0) + 1
        self.metrics.sources.clear()
        for status, n in counts.items():
            self.metrics.sources.labels(status=status).set(n)
        self.metrics.next_due_lag_seconds.set(self.repo.overdue_seconds(self.clock.now()))

    async def _is_outage(
        self, result: FetchResult, batch: _Batch | None, slot: _Slot | None = None
    ) -> bool:
        """True when ``result`` is a network failure and nobody else answered either."""
        if answered(result):
            self._last_answer = time.monotonic()
            return False
        if not is_network_failure(result) or batch is None or batch.size < 2:
            return False
        if slot is not None:
            slot.release()  # no body held; let the sources still to fetch have the place
        try:
            await batch.wait()  # bounded: every fetch ends within the fetcher's total timeout
        finally:
            if slot is not None:
                await slot.acquire()
        quiet_for = time.monotonic() - self._last_answer
        return not batch.answered and quiet_for > OUTAGE_WINDOW_SECONDS

    async def _plan(self, source: SourceState, result: FetchResult, outage: bool) -> UpdatePlan:
        now = self.clock.now()
        settings, rng = self.settings.schedule, self.rng
        if not isinstance(result, Fetched):
            return build_plan(
                source, result, feed=None, mean_gap=None, keyed=(), existing=(), tombstoned=(),
                parse_error=None, body_hash=None, now=now, settings=settings, rng=rng,
                outage=outage,
            )  # fmt: skip
        body_hash = hashlib.sha256(result.body).hexdigest()
        if body_hash == source.body_hash and source.status in ("ok", "not_modified"):
            return build_plan(
                source, result, feed=None, mean_gap=None, keyed=(), existing=(), tombstoned=(),
                parse_error=None, body_hash=body_hash, now=now, settings=settings, rng=rng,
                unchanged=True,
            )  # fmt: skip
        if self._worker_database is not None:
            return await self._plan_in_worker(source, result, body_hash, now)
        recent, cache = await self._in_read(self._known_items, source.id)
        ingested = await self._ingest(result, source, now, known_digests(recent), cache)
        # no recent item: the source has no stored item, so none can match by key or URL
        plan = await self._plan_items(
            source, result, ingested, body_hash, now, recent, bool(recent)
        )
        if ingested.stubs and writes_stub(plan, ingested):
            # a stored digest or cached span was stale (or collided): parse every entry in full
            log.debug("source %s: re-ingesting without known entries", source.key)
            ingested = await self._ingest(result, source, now)
            plan = await self._plan_items(source, result, ingested, body_hash, now)
        if ingested.cache is not None and plan.source_update.status == "ok":
            plan = dataclasses.replace(plan, entry_cache=ingested.cache)
        return plan

    async def _plan_items(
        self,
        source: SourceState,
        result: Fetched,
        ingested: Ingested,
        body_hash: str,
        now: datetime,
        recent: Sequence[ExistingItem] = (),
        has_items: bool = True,
    ) -> UpdatePlan:
        """Plan a changed body's items against what is stored (``planchanged.split_known``:
        only items not known stored and unchanged are looked up)."""
        keyed = keyed_items(ingested.items)
        sure, keys, urls = split_known(keyed, recent)
        if has_items:
            found, tombstoned = await self._in_read(
                self.repo.planner_lookups, source.id, keys, urls
            )
        else:
            found, tombstoned = [], await self._in_read(self.repo.tombstoned, source.id, keys)
        settings, rng = self.settings.schedule, self.rng
        return build_plan(
            source, result, feed=ingested.feed, mean_gap=ingested.mean_gap, keyed=keyed,
            existing=existing_rows(found, sure), tombstoned=tombstoned,
            parse_error=ingested.error, body_hash=body_hash, now=now, settings=settings, rng=rng,
        )  # fmt: skip

    def _known_items(self, source_id: int) -> tuple[list[ExistingItem], bytes | None]:
        """The source's recent stored items and its entry cache (``ingest(known=, cache=)``)."""
        return self.repo.known_items(source_id, KNOWN_ITEMS)

    async def _start_pool(self) -> None:
        """Start a lazy pool's workers off the event loop, once (it blocks for a moment)."""
        pool = self.parse_executor
        if isinstance(pool, LazyProcessPool) and not pool.ready:
            async with self._pool_lock:
                if not pool.ready:  # (waits for a start already under way: ``start_soon``)
                    await asyncio.to_thread(pool.warm_up)

    async def _plan_in_worker(
        self, source: SourceState, result: Fetched, body_hash: str, now: datetime
    ) -> UpdatePlan:
        """``planchanged.plan_changed`` for a changed body, run whole in a parse worker."""
        assert self._worker_database is not None
        seed = self.rng.getrandbits(64)
        database, schedule = self._worker_database, self.settings.schedule
        return await self._in_pool(
            plan_in_worker, database, source, result, body_hash, now, schedule, seed
        )

    async def _in_pool(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` on the parse pool (started first if it is lazy and not yet up)."""
        assert self.parse_executor is not None
        await self._start_pool()
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.parse_executor, fn, *args)

    async def _ingest(
        self,
        result: Fetched,
        source: SourceState,
        now: datetime,
        known: bytes | None = None,
        cache: bytes | None = None,
    ) -> Ingested:
        if self.parse_executor is None:
            return ingest(
                result.body, result.headers, result.url, source.language, now, known, cache
            )
        body, headers, url, language = result.body, result.headers, result.url, source.language
        return await self._in_pool(ingest, body, headers, url, language, now, known, cache)

    async def _record_crash(self, source: SourceState, error: str) -> None:
        """Record an unexpected failure and back off, so a poison source cannot spin."""
        now = self.clock.now()
        failed = FetchFailed(source.url, "internal", error, 0.0)
        plan = build_plan(
            source,
            failed,
            feed=None,
            mean_gap=None,
            keyed=(),
            existing=(),
            tombstoned=(),
            parse_error=None,
            body_hash=None,
            now=now,
            settings=self.settings.schedule,
            rng=self.rng,
        )
        try:
            await self._in_db(self.repo.apply, plan, now, self.owner)
        except Exception:
            log.exception("could not record the failure of %s", source.key)

    # ------------------------------------------------------------------ editions

    def render_editions(self) -> int:
        """Re-render every edition from recent stories; store the snapshots that changed."""
        changed = render_stored(self.settings, self.repo, self.clock.now(), self._keys)
        if self.metrics is not None:
            for snap in changed:
                self.metrics.export_renders.labels(edition=snap.edition, format=snap.format).inc()
        return len(changed)

    def _keys(self, inputs: list[KeyInputs]) -> list[TextKeys]:
        """Story text keys for a render: spread over the parse workers when they are up and
        there are enough to be worth sending (after a busy tick, thousands: tokenizing them
        took a serial second at the end of the cycle while both cores idled)."""
        pool = self.parse_executor
        started = not isinstance(pool, LazyProcessPool) or pool.started
        if pool is None or not started or len(inputs) < POOL_KEYS_MIN:
            return summary_keys_many(inputs)
        size = max(POOL_KEYS_MIN // 2, -(-len(inputs) // (2 * self._workers)))
        try:
            parts = [
                pool.submit(summary_keys_many, inputs[i : i + size])
                for i in range(0, len(inputs), size)
            ]
            return [found for part in parts for found in part.result()]
        except Exception:  # e.g. a broken worker: the render computes them itself
            log.exception("computing story keys in the parse workers failed; doing it inline")
            return summary_keys_many(inputs)


def _shared_database(url: URL) -> bool:
    """Whether every connection to ``url`` sees the same database (not in-memory SQLite)."""
    if url.get_backend_name() != "sqlite":
        return True
    database = url.database or ""
    return bool(database) and database != ":memory:" and "mode=memory" not in str(url)


def render_stored(
    settings: Settings,
    repo: Repository,
    now: datetime,
    compute_keys: KeysFn = summary_keys_many,
) -> list[Snapshot]:
    """Render every edition from the stored recent stories and newest recaps; save and return
    the snapshots whose bytes changed (shared by the pipeline and ``aggregator recap``).

    The text keys of stories neither in memory nor stored are computed first, all in one
    ``compute_keys`` call (the pipeline spreads them over its parse workers).
    """
    days, count = story_window(settings.editions)
    stories = repo.recent_stories(now - timedelta(days=days), count)
    recaps = RecapStore(repo.engine).latest([e.name for e in settings.editions])
    relatedkeys.preload(repo.engine, TEXT_KEYS, stories)
    TEXT_KEYS.compute_missing((key_inputs(s) for s in stories if s.items), compute_keys)
    snaps = render_all(
        settings.editions, stories, base_url=settings.server.base_url, now=now, recaps=recaps
    )
    changed = []
    for snap in snaps:
        old = repo.get_snapshot(snap.edition, snap.format)
        if old is None or old.etag != snap.etag:
            changed.append(snap)
    if changed:
        repo.save_snapshots(changed)
    relatedkeys.persist(repo.engine, TEXT_KEYS, now)
    return changed
