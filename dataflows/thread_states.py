"""A Python thread state kept for good in each of Bytewax's worker threads.

Bytewax's worker threads are Rust threads, not Python threads: every ``Python::with_gil`` of its
code (each operator activation, and each item it pickles or unpickles between processes) calls
``PyGILState_Ensure``, which creates a thread state (and its first 16 KB frame-stack chunk,
mmap'd), and ``PyGILState_Release``, which deletes it again (munmap) when its count falls to 0.
One ``PyGILState_Ensure`` that is never released, called from Python code running in the worker
thread, keeps the count above 0, so the state is made once per thread and lives as long as the
thread (the flow). Nothing the flow computes changes; ``threading.local`` values then last
between activations, as in any Python thread.

Measured (``benchmarks/bench_exchange.py``, ``benchmarks/THROUGHPUT-DESIGN.md`` section 4.7):
an item crossing between processes costs 20-34 µs of CPU instead of 60-80. Checked on Bytewax
0.21.1 by ``tests/test_bytewax_costs.py``. The flow's Kafka source calls :func:`pin` when a
worker builds a partition (``dataflows/sources.py``).
"""

from __future__ import annotations

import ctypes
import threading

_pinned = threading.local()


def pin() -> bool:
    """Keep this thread's Python thread state alive until the thread ends; True the first time
    (on a thread whose state is not kept, the mark below is gone by its next activation, and a
    second call would only raise the count again)."""
    if getattr(_pinned, "done", False):
        return False
    ctypes.pythonapi.PyGILState_Ensure.restype = ctypes.c_int
    ctypes.pythonapi.PyGILState_Ensure()
    _pinned.done = True
    return True
