"""Every call the flow makes into its Python code, timed: a diagnostic for the pause at each
epoch close (``PAYSCORE_CALL_TRACE_DIR``; off by default).

Bytewax runs the flow's steps, sources and sinks from its worker threads; between those calls
it does its own work (moving items between operators and processes, tracking progress, writing
recovery snapshots), which Python does not see. With a folder set, every call that
:func:`dataflows.failures.log_failures` guards (each step's mapper and stateful logic, each
source partition's reads and snapshots, each sink's writes) is written to
``calls-<host>-<pid>.tsv`` in that folder, one line a call::

    started  ended  thread  step  what  items

(Unix seconds, the worker thread, the step id, the method called, the batch's length or -1).
What is not in a file is time the process spent outside the flow's Python: Bytewax's own work,
or waiting. ``benchmarks/epoch_close_trace.py`` reads the files and says where each epoch
close's pause went; ``benchmarks/bench_throughput.py --call-trace`` runs it on its latency runs.

Cost: two clock reads and five appends a call (about 1 µs; a payment makes about 20 calls),
28 bytes of memory a call until the process exits normally, when the file is written (about 100
bytes a call; a process that fails, which ``dataflows/exiting.py`` ends at once, or is killed
writes nothing): some hundred megabytes for a few minutes at thousands of payments a second.
Nothing is written while the flow runs, so the trace adds no pause of its own. It is a
diagnostic for minutes-long runs, not for production; past :data:`MAX_CALLS` calls are counted,
not kept.
"""

from __future__ import annotations

import atexit
import os
import socket
import threading
from array import array
from pathlib import Path

MAX_CALLS = 20_000_000
"""Calls kept at most (about 560 MB); later ones are counted, not kept (the file says how many)."""


class CallTrace:
    """This process's call file (see the module)."""

    def __init__(self, folder: Path) -> None:
        if not folder.is_dir() or not os.access(folder, os.W_OK):
            raise ValueError(
                f"PAYSCORE_CALL_TRACE_DIR {str(folder)[:200]!r} is not a folder this process "
                "can write to; expected an existing, writable folder for the call files (or "
                "leave the setting empty: no trace)"
            )
        self.path = folder / f"calls-{socket.gethostname()[:60]}-{os.getpid()}.tsv"
        self.path.touch()  # refused now, not at exit, if it cannot be made
        # Columns, not tuples: an append is cheap, and nothing is written while the flow runs
        # (formatting lines on the worker thread would pause it).
        self._started = array("d")
        self._ended = array("d")
        self._thread = array("q")
        self._where = array("I")  # into self._names: (step, what)
        self._items = array("q")
        self._names: dict[tuple[str, str], int] = {}
        self._dropped = 0
        self._lock = threading.Lock()
        self._closed = False
        atexit.register(self.close)

    def record(self, started: float, ended: float, step: str, what: str, items: int) -> None:
        """One call: when it started and ended (``time.time()``), where, what, how many items."""
        with self._lock:
            if len(self._started) >= MAX_CALLS:
                self._dropped += 1
                return
            name = self._names.setdefault((step, what), len(self._names))
            self._started.append(started)
            self._ended.append(ended)
            self._thread.append(threading.get_ident())
            self._where.append(name)
            self._items.append(items)

    def close(self) -> None:
        """Write the calls and forget them (at exit; again: nothing more)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            names = [f"{_clean(step)}\t{what}" for step, what in self._names]
            with self.path.open("w", encoding="utf-8") as file:
                for i in range(len(self._started)):
                    file.write(
                        f"{self._started[i]:.6f}\t{self._ended[i]:.6f}\t{self._thread[i]}\t"
                        f"{names[self._where[i]]}\t{self._items[i]}\n"
                    )
                if self._dropped:
                    file.write(f"# {self._dropped} later calls not kept (MAX_CALLS)\n")
            for column in (self._started, self._ended, self._thread, self._where, self._items):
                del column[:]


def _clean(step: str) -> str:
    """A step id on one field of a line (ids come from the flow's code, not from input)."""
    return step.replace("\t", " ").replace("\n", " ")
