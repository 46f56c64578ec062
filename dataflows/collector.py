"""Python's garbage collector, set for a long-running flow once it is built.

The flow makes many small objects a payment (decoded structs, feature dicts, rows) and keeps few;
CPython's default thresholds (700, 10, 10) then run a young collection every few payments, and a
full one over everything the process holds (the model, the modules, every card's state) every
hundred young ones. After the flow is built, :func:`settle` collects once, freezes what exists
(``gc.freeze()``: the model, the imported modules and the configuration are never scanned again)
and raises the thresholds to (50,000, 20, 100). Nothing the flow computes or stores changes.

Measured under load (shared 2-core machine), ``benchmarks/profile_flow.py --processes 1
--variants plain gc`` (``benchmarks/THROUGHPUT-DESIGN.md``, section 2): the collector's share
went from 69 to 11 µs of CPU per payment with its label, the flow's whole from 513 to 451 µs.
"""

from __future__ import annotations

import gc

THRESHOLDS = (50_000, 20, 100)


def settle() -> None:
    """Collect once, freeze every object made so far, and raise the collector's thresholds."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
