"""A process pool for parsing that starts on first use.

feedparser is CPU-bound, so on a machine with several cores bodies are parsed in worker
processes. Starting the workers costs about a second, which a warm poll (every publisher
answers 304, nothing to parse) should not pay: the pool is created by the first ``submit``.
Workers come from a forkserver (not fork: the daemon has threads) that preloads the parse
modules, so each worker starts as a cheap fork of an interpreter that already imported them.
"""

from __future__ import annotations

import multiprocessing
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")


class LazyProcessPool(Executor):
    """``ProcessPoolExecutor`` semantics; the processes start when work first arrives."""

    def __init__(self, workers: int, preload: tuple[str, ...] = ("aggregator.ingest",)) -> None:
        self.workers = workers
        self.preload = preload
        self._pool: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()

    @property
    def started(self) -> bool:
        """Whether worker processes exist yet."""
        return self._pool is not None

    def _get(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._pool is None:
                ctx = multiprocessing.get_context("forkserver")
                ctx.set_forkserver_preload(list(self.preload))
                self._pool = ProcessPoolExecutor(self.workers, mp_context=ctx)
            return self._pool

    def warm_up(self) -> None:
        """Start every worker now (the daemon does this at start-up, off the first tick)."""
        pool = self._get()
        for future in [pool.submit(int) for _ in range(self.workers)]:
            future.result()

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        return self._get().submit(fn, *args, **kwargs)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=wait, cancel_futures=cancel_futures)
