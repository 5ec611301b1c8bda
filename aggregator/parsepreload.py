"""What the parse pool's forkserver imports before it forks workers (``aggregator.parsepool``).

The modules a worker runs (parse, normalize, planning and the store's reads), then
``gc.freeze()``: the forkserver forks each worker from this state, and a frozen object is never
visited by a child's garbage collector, so the pages holding these modules stay shared between
the forkserver and its workers instead of being copied into each worker by its first
collection (the use the ``gc.freeze`` documentation gives). Importing this module has that
side effect on purpose; nothing but the forkserver imports it.
"""

from __future__ import annotations

import gc

import aggregator.planchanged
import aggregator.store  # the workers read through it

__all__ = ["aggregator"]

gc.freeze()
