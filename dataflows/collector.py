"""Python's garbage collector, set for a long-running flow once it is built.

The flow makes many small objects a payment (decoded structs, feature dicts, rows) and keeps few;
CPython's default thresholds (700, 10, 10) then run a young collection every few payments, and a
full one over everything the process holds (the model, the modules, every card's state) every
hundred young ones. After the flow is built, :func:`settle` collects once, freezes what exists
(``gc.freeze()``: the model, the imported modules and the configuration are never scanned again)
and sets the thresholds to (10,000, 5, 100). Nothing the flow computes or stores changes.

Measured under load (shared 2-core machine), ``benchmarks/profile_flow.py --processes 1
--variants plain gc`` (``benchmarks/THROUGHPUT-DESIGN.md``, section 2): the collector's share
went from 69 to 11 µs of CPU per payment with its label, the flow's whole from 513 to 451 µs.

**Each collection is timed** into ``payscore_gc_pause_seconds{generation}``, and one that held
the process longer than :data:`SLOW_SECONDS` is logged (WARNING, event ``slow_collection``):
a collection stops every worker thread of the process, so it is a pause in every payment's
path. Measured with a tailing flow at 1,220 payments/s (README, *No snapshots where nobody
reads them*), the thresholds were (50,000, 20, 100) before: young collections of 20 to 37 ms
every few seconds and, about once a minute a process, a collection of the middle generation of
343 to 473 ms, which set the flow's p99. A young collection scans what was made since the last
one, and one of the middle generation the survivors of the young ones since its own last, most
of them the keys' long-lived state: smaller and more frequent collections scan about the same
objects in all, in pauses a fifth and a twentieth as long. With (10,000, 5, 100) no collection
held a process 100 ms in the same runs, p99 fell to 303 and 106 ms (341 and 346 before), and a
drain ran as fast (2,781 and 2,586 payments/s, steady 3,285 and 3,277, one run each).
"""

from __future__ import annotations

import gc
import logging
import time

from dataflows.metrics import GC_PAUSE

log = logging.getLogger(__name__)
THRESHOLDS = (10_000, 5, 100)
SLOW_SECONDS = 0.1  # a collection longer than this is logged
_began = [0.0]  # when the running collection began (collections never overlap: the GIL)


def settle() -> None:
    """Collect once, freeze every object made so far, and raise the collector's thresholds."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
    if timed not in gc.callbacks:
        gc.callbacks.append(timed)


def timed(phase: str, info: dict[str, int]) -> None:
    """The collector's callback: each collection into ``payscore_gc_pause_seconds``; a slow one
    logged."""
    if phase == "start":
        _began[0] = time.perf_counter()
        return
    took = time.perf_counter() - _began[0]
    generation = info.get("generation", -1)
    GC_PAUSE.labels(str(generation)).observe(took)
    if took > SLOW_SECONDS:
        log.warning(
            "garbage collection of generation %d held the process %.0f ms (%d objects freed)",
            generation,
            took * 1000,
            info.get("collected", 0),
            extra={"event": "slow_collection"},
        )
