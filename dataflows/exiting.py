"""A flow process that fails exits at once with status 1, without Python's finalization.

How a failure ends a flow process, in order: the step it came from logs it with its Python
cause, the step's id and a bounded traceback (:mod:`dataflows.failures`, event
``step_failed``); Bytewax turns it into a panic and raises in the main thread (with several
processes only ``PanicException: Send thread panic``); this module's hook prints that, logs
that the process stops (event ``flow_failed``) and ends the process. That last line names the
cause, not Bytewax's panic alone: this process's first failure (its step and error, logged
above it), or that no step of this process failed (another process did, or the connection to
it broke), with what Bytewax reported after it.

Why: when a flow of several processes fails (one process's step raises; MySQL refused a write),
Bytewax 0.21 ends each process with ``PanicException: Send thread panic``: timely's
communication guard stops joining its threads at the first one that panicked, so the others are
left running. One of them panics in turn when the other process closes its socket, and
Bytewax's panic hook then takes the GIL. If Python is finalizing by then (a large heap takes a
while), that thread is ended by ``pthread_exit``, whose forced unwind Rust's ``catch_unwind``
catches: glibc aborts the process with ``FATAL: exception not rethrown`` (exit 134), the abort
of issue 20. ``tests/test_exiting.py`` reproduces it with two Bytewax processes.

:func:`install` sets :data:`sys.excepthook`: the error that ends the main thread is printed as
Python prints it and logged, the log handlers and standard streams are flushed, and the process
ends with ``os._exit(1)``. Nothing runs after it that a thread could race. What the flow wrote
is in MySQL (every batch is a transaction) and in its recovery snapshots, as after the
``kill -9`` it is built to survive; a supervisor restarts it (``ops/run_flow.sh --supervise``).
"""

from __future__ import annotations

import logging
import os
import sys
from types import TracebackType

from dataflows import failures
from features.bounded import bounded

log = logging.getLogger(__name__)

FAILED = 1


# How a full disk shows in what Bytewax raises: SQLite's refusal of a snapshot (its error code,
# and its words), or the OS's.
DISK_FULL = ("DiskFull", "database or disk is full", "No space left on device")


def disk_full_hint(reported: str) -> str:
    """What to do, when ``reported`` says a disk is full (Bytewax raised ``called
    `Result::unwrap()` on an `Err` value: SqliteFailure(... DiskFull ...)`` from its snapshot
    writer, naming no folder); else nothing.

    >>> disk_full_hint("RuntimeError: SqliteFailure(Error { code: DiskFull })")[:44]
    ': the disk of the recovery directory (-r) is'
    """
    if not any(words in reported for words in DISK_FULL):
        return ""
    return (
        ": the disk of the recovery directory (-r) is full (its snapshots could not be "
        "written); free space on it, or move the directory to a larger disk, and start the flow "
        "again: it resumes from its last snapshot, and what was read since is read again, "
        "nothing lost"
    )


def install() -> None:
    """Route the main thread's uncaught error to :func:`exit_at_once`; call at the entry
    point."""
    sys.excepthook = exit_at_once


def exit_at_once(
    kind: type[BaseException], error: BaseException, trace: TracebackType | None
) -> None:
    try:
        sys.__excepthook__(kind, error, trace)
        reported = f"{kind.__name__}: {bounded(str(error), 1000)}"
        first = failures.first_failure()
        if first is not None:  # this process's own failure: named last, not the panic alone
            where, cause = first
            log.critical(
                "the flow process stops: %s failed: %s (logged above, event step_failed); "
                "Bytewax reports it as %s; exit %d at once",
                where,
                cause,
                reported,
                FAILED,
                extra={"event": "flow_failed", "reason": cause.partition(":")[0]},
            )
        elif kind.__name__ != "PanicException":  # raised outside any step (the build)
            log.critical(
                "the flow process stops: %s%s; exit %d at once",
                reported,
                disk_full_hint(reported),
                FAILED,
                extra={"event": "flow_failed", "reason": kind.__name__},
            )
        else:
            log.critical(
                "the flow process stops: no step of this process failed: another process of "
                "the flow failed (its log names the cause, event step_failed), the connection "
                "to it broke, or Bytewax itself failed here (a full disk or a locked recovery "
                "partition while writing snapshots: its text follows); Bytewax reports it as "
                "%s; exit %d at once",
                reported,
                FAILED,
                extra={"event": "flow_failed", "reason": kind.__name__},
            )
        logging.shutdown()
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
    finally:
        os._exit(FAILED)
