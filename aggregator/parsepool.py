"""A process pool for parsing that starts on first use, lean and self-healing.

feedparser is CPU-bound, so on a machine with several cores bodies are parsed in worker
processes. Starting the workers costs a moment, which a warm poll (every publisher answers 304,
nothing to parse) should not pay: the pool is created by the first ``submit``.

Workers come from a forkserver (not fork: the daemon has threads) that preloads the parse
modules, so each worker starts as a cheap fork of an interpreter that already imported them.
They do *not* re-import the program's ``__main__``: multiprocessing would otherwise run the
``aggregator`` console script (the CLI, SQLAlchemy, aiohttp, rich, ...) in every worker, which
cost about 0.7 s of CPU and tens of megabytes per worker and is never needed (the work is
``aggregator.ingest.ingest``, imported by name). A worker that dies (a C library crash, the OOM
killer) breaks a ``ProcessPoolExecutor`` for good; this pool replaces it on the next submit.
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.context
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from typing import ParamSpec, TypeVar

log = logging.getLogger("aggregator.parsepool")

P = ParamSpec("P")
T = TypeVar("T")

_main_lock = threading.Lock()


@contextmanager
def _main_module_hidden() -> Iterator[None]:
    """Make ``__main__`` look like an interactive session while a worker process starts.

    A child's preparation data names the parent's main module (by ``__spec__`` or by
    ``__file__``) and the child imports it; with neither set, it imports nothing extra.
    """
    main = sys.modules.get("__main__")
    if main is None:
        yield
        return
    with _main_lock:
        saved = {
            name: main.__dict__[name] for name in ("__file__", "__spec__") if name in vars(main)
        }
        try:
            main.__file__ = None
            main.__spec__ = None
            yield
        finally:
            for name in ("__file__", "__spec__"):
                if name in saved:
                    setattr(main, name, saved[name])
                else:
                    main.__dict__.pop(name, None)


class _LeanProcess(multiprocessing.context.ForkServerProcess):
    """A forkserver process that does not import the parent's ``__main__``."""

    def start(self) -> None:
        with _main_module_hidden():
            super().start()


class _LeanContext(multiprocessing.context.ForkServerContext):
    """The forkserver context, starting ``_LeanProcess`` workers."""

    Process = _LeanProcess


class LazyProcessPool(Executor):
    """``ProcessPoolExecutor`` semantics; the processes start when work first arrives."""

    def __init__(
        self,
        workers: int,
        preload: tuple[str, ...] = ("aggregator.parsepreload",),
    ) -> None:
        self.workers = workers
        self.preload = preload
        self._pool: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()
        self._warming = threading.Lock()
        self._ready: ProcessPoolExecutor | None = None  # the pool ``warm_up`` last finished
        self.restarts = 0  # pools replaced after a worker died

    @property
    def started(self) -> bool:
        """Whether worker processes exist yet."""
        return self._pool is not None

    def _get(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._pool is None:
                ctx = _LeanContext()
                ctx.set_forkserver_preload(list(self.preload))
                self._pool = ProcessPoolExecutor(self.workers, mp_context=ctx)
            return self._pool

    @property
    def ready(self) -> bool:
        """Whether ``warm_up`` has finished (every worker answered) since the pool started."""
        return self._ready is not None and self._ready is self._pool

    def warm_up(self) -> None:
        """Start every worker now and wait until each answers (the daemon does this at
        start-up, off the first tick). Blocks for as long as the forkserver takes to import
        the parse modules (about half a second); callers at once share one start."""
        with self._warming:
            if self.ready:
                return
            for future in [self.submit(int) for _ in range(self.workers)]:
                future.result()  # a pool broken meanwhile raises here; the next call replaces it
            self._ready = self._pool

    def start_soon(self) -> threading.Thread:
        """``warm_up`` on a background thread, so the workers come up while the caller does
        its own start-up; a failure there is logged, and the first ``warm_up`` after it tries
        again. Returns the thread."""

        def warm() -> None:
            try:
                self.warm_up()
            except Exception:
                log.warning("starting the parse workers failed", exc_info=True)

        thread = threading.Thread(target=warm, name="aggregator-pool-start", daemon=True)
        thread.start()
        return thread

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        pool = self._get()
        try:
            return pool.submit(fn, *args, **kwargs)
        except BrokenProcessPool:  # a worker died: the tasks it held failed, start afresh
            self._discard(pool)
            return self._get().submit(fn, *args, **kwargs)

    def _discard(self, pool: ProcessPoolExecutor) -> None:
        with self._lock:
            if self._pool is pool:
                self._pool = None
                self.restarts += 1
        pool.shutdown(wait=True, cancel_futures=True)  # broken: its threads have ended

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=wait, cancel_futures=cancel_futures)
