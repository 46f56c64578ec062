"""Whatever stops the flow is logged with its Python cause first.

Bytewax (0.21.1) turns a Python exception raised in a step, a source or a sink into a Rust
panic. Run as one process it raises the exception again with its traceback. Run as several
(``-i``/``-a``, as ``ops/run_flow.sh`` runs them) the worker's panic hook hands the error to the
main thread, but the timely communication thread panics too when the worker goes, and what the
process prints is ``pyo3_runtime.PanicException: Send thread panic: Any { .. }`` and nothing of
the cause (``src/run.rs``: ``cluster_main``'s panic hook and ``guards.join``).

So :func:`log_failures` wraps every Python object the built flow hands to Bytewax (each core
step's mapper, predicate, inspector and stateful logic, each source and sink and their
partitions) in a guard that logs an exception at CRITICAL (event ``step_failed``), with the
step's id and the bounded traceback (:data:`features.bounded.TRACEBACK_CHARS`), and raises it on
unchanged. Each exception is logged once, by the innermost guard it passes. With a
:class:`dataflows.call_trace.CallTrace` every guarded call is timed into it as well. A source's
``StopIteration`` (the end of its input) is not a failure. What a mapper or a stateful logic
emits is made into a list inside the guard: Bytewax's ``op.map`` returns a generator, whose
exception would otherwise come out later, in Bytewax's hands.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import time
import traceback
from collections.abc import Callable
from typing import Any, TypeVar

from bytewax.dataflow import Dataflow, Operator
from bytewax.inputs import (
    DynamicSource,
    FixedPartitionedSource,
    StatefulSourcePartition,
    StatelessSourcePartition,
)
from bytewax.operators import StatefulBatchLogic
from bytewax.outputs import (
    DynamicSink,
    FixedPartitionedSink,
    StatefulSinkPartition,
    StatelessSinkPartition,
)

from dataflows.call_trace import CallTrace
from dataflows.core_steps import replace_in_core_steps
from features.bounded import TRACEBACK_CHARS, bounded

log = logging.getLogger(__name__)
F = TypeVar("F", bound=Callable[..., Any])
_LOGGED = "_payscore_logged"
# The first failure this process logged: its step and "Type: text" (bounded), for the last line
# the process writes (dataflows/exiting.py), which Bytewax's panic alone would otherwise name.
_first: tuple[str, str] | None = None
# Where the guards built from now on time their calls (log_failures's ``trace``), or None.
_trace: CallTrace | None = None


def first_failure() -> tuple[str, str] | None:
    """The step and the cause (``Type: text``) of the first failure this process logged."""
    return _first


def log_failures(flow: Dataflow, trace: CallTrace | None = None) -> Dataflow:
    """``flow`` with every Python object Bytewax calls guarded (see the module docstring);
    with ``trace``, each call timed into it."""
    global _trace
    _trace = trace
    replace_in_core_steps(flow.substeps, _guards)
    return flow


def failed(where: str, exc: BaseException) -> None:
    """Log ``exc`` (once) as what stops the flow at ``where``."""
    if getattr(exc, _LOGGED, False):
        return
    with contextlib.suppress(AttributeError, TypeError):  # else it may be logged twice
        setattr(exc, _LOGGED, True)
    global _first
    if _first is None:
        _first = (where, f"{type(exc).__name__}: {bounded(str(exc), 500)}")
    text = "".join(traceback.format_exception(exc))
    log.critical(
        "%s failed, the flow stops: %s",
        where,
        bounded(text, TRACEBACK_CHARS, lines=True),
        extra={"event": "step_failed", "reason": where},
    )


def guarded(where: str, function: F) -> F:
    """``function``, logging what it raises (see :func:`failed`), and timed into the call
    trace of :func:`log_failures` if it has one."""
    trace = _trace

    @functools.wraps(function)
    def call(*args: Any, **kwargs: Any) -> Any:
        return _called(where, trace, function, args, kwargs)

    return call  # type: ignore[return-value]


def _called(
    where: str,
    trace: CallTrace | None,
    function: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    what: str = "",
    emits: bool = False,
) -> Any:
    """``function(*args, **kwargs)`` guarded at ``where`` and timed into ``trace`` as ``what``
    (its name by default); with ``emits``, it returns ``(values, discard)`` and its values are
    made into a list inside the guard."""
    if trace is not None:
        started = time.time()
        out = _called(where, None, function, args, kwargs, emits=emits)
        first = args[0] if args else out
        items = len(first) if isinstance(first, list) else len(out) if isinstance(out, list) else -1
        trace.record(
            started, time.time(), where, what or getattr(function, "__name__", "call"), items
        )
        return out
    try:
        if emits:
            values, discard = function(*args, **kwargs)
            return list(values), discard
        return function(*args, **kwargs)
    except StopIteration:
        raise
    except Exception as exc:
        failed(where, exc)
        raise


def _guard_mapper(where: str, mapper: Callable[[list[Any]], Any]) -> Callable:
    """A batch mapper, its items made inside the guard (``op.map`` returns a generator, which
    would raise later, in Bytewax's hands)."""

    def mapper_batch(batch: list[Any]) -> list[Any]:
        return list(mapper(batch))

    return guarded(where, mapper_batch)


def _guards(step: Operator) -> dict[str, Any]:
    return {
        name: _GUARDS[name](step.step_id, getattr(step, name))
        for name in _GUARDS
        if hasattr(step, name)
    }


def _guard_builder(where: str, builder: Callable[[Any], StatefulBatchLogic]) -> Callable:
    def build(resume: Any) -> StatefulBatchLogic:
        return _Logic(where, guarded(where, builder)(resume))

    return build


def _guard_source(where: str, source: object) -> object:
    if isinstance(source, FixedPartitionedSource):
        return _FixedSource(where, source)
    if isinstance(source, DynamicSource):
        return _DynamicSource(where, source)
    return source


def _guard_sink(where: str, sink: object) -> object:
    if isinstance(sink, FixedPartitionedSink):
        return _FixedSink(where, sink)
    if isinstance(sink, DynamicSink):
        return _DynamicSink(where, sink)
    return sink


_GUARDS: dict[str, Callable[[str, Any], Any]] = {
    "mapper": _guard_mapper,
    "predicate": guarded,
    "inspector": guarded,
    "builder": _guard_builder,
    "source": _guard_source,
    "sink": _guard_sink,
}


class _Logic(StatefulBatchLogic):
    """A key's logic, guarded. Its methods are the class's, not closures made per key as the
    other guards' are: a process holds one logic per key of every stateful step, tens of
    thousands, and each closure is objects the garbage collector walks at every full collection
    (43 more per key than the logic alone; ``benchmarks/bench_gc_objects.py``)."""

    def __init__(self, where: str, inner: StatefulBatchLogic) -> None:
        self._where = where
        self._inner = inner
        self._trace = _trace

    def on_batch(self, values: list[Any]) -> tuple[list[Any], bool]:
        return _called(
            self._where, self._trace, self._inner.on_batch, (values,), {}, "on_batch", True
        )

    def on_notify(self) -> tuple[list[Any], bool]:
        return _called(self._where, self._trace, self._inner.on_notify, (), {}, "on_notify", True)

    def on_eof(self) -> tuple[list[Any], bool]:
        return _called(self._where, self._trace, self._inner.on_eof, (), {}, "on_eof", True)

    def notify_at(self) -> Any:
        return _called(self._where, self._trace, self._inner.notify_at, (), {}, "notify_at")

    def snapshot(self) -> Any:
        return _called(self._where, self._trace, self._inner.snapshot, (), {}, "snapshot")


class _StatefulSourcePart(StatefulSourcePartition):
    def __init__(self, where: str, inner: StatefulSourcePartition) -> None:
        self.next_batch = guarded(where, inner.next_batch)  # type: ignore[method-assign]
        self.next_awake = guarded(where, inner.next_awake)  # type: ignore[method-assign]
        self.snapshot = guarded(where, inner.snapshot)  # type: ignore[method-assign]
        self.close = guarded(where, inner.close)  # type: ignore[method-assign]

    def next_batch(self) -> list[Any]: ...  # replaced in __init__

    def snapshot(self) -> Any: ...  # replaced in __init__


class _StatelessSourcePart(StatelessSourcePartition):
    def __init__(self, where: str, inner: StatelessSourcePartition) -> None:
        self.next_batch = guarded(where, inner.next_batch)  # type: ignore[method-assign]
        self.next_awake = guarded(where, inner.next_awake)  # type: ignore[method-assign]
        self.close = guarded(where, inner.close)  # type: ignore[method-assign]

    def next_batch(self) -> list[Any]: ...  # replaced in __init__


class _FixedSource(FixedPartitionedSource):
    def __init__(self, where: str, inner: FixedPartitionedSource) -> None:
        self._where = where
        self._inner = inner

    def list_parts(self) -> list[str]:
        return guarded(self._where, self._inner.list_parts)()

    def build_part(self, step_id: str, for_part: str, resume_state: Any) -> StatefulSourcePartition:
        where = f"{self._where} (partition {for_part})"
        inner = guarded(where, self._inner.build_part)(step_id, for_part, resume_state)
        return _StatefulSourcePart(where, inner)


class _DynamicSource(DynamicSource):
    def __init__(self, where: str, inner: DynamicSource) -> None:
        self._where = where
        self._inner = inner

    def build(self, step_id: str, worker_index: int, worker_count: int) -> StatelessSourcePartition:
        inner = guarded(self._where, self._inner.build)(step_id, worker_index, worker_count)
        return _StatelessSourcePart(self._where, inner)


class _StatelessSinkPart(StatelessSinkPartition):
    def __init__(self, where: str, inner: StatelessSinkPartition) -> None:
        self.write_batch = guarded(where, inner.write_batch)  # type: ignore[method-assign]
        self.close = guarded(where, inner.close)  # type: ignore[method-assign]

    def write_batch(self, items: list[Any]) -> None: ...  # replaced in __init__


class _StatefulSinkPart(StatefulSinkPartition):
    def __init__(self, where: str, inner: StatefulSinkPartition) -> None:
        self.write_batch = guarded(where, inner.write_batch)  # type: ignore[method-assign]
        self.snapshot = guarded(where, inner.snapshot)  # type: ignore[method-assign]
        self.close = guarded(where, inner.close)  # type: ignore[method-assign]

    def write_batch(self, values: list[Any]) -> None: ...  # replaced in __init__

    def snapshot(self) -> Any: ...  # replaced in __init__


class _DynamicSink(DynamicSink):
    def __init__(self, where: str, inner: DynamicSink) -> None:
        self._where = where
        self._inner = inner

    def build(self, step_id: str, worker_index: int, worker_count: int) -> StatelessSinkPartition:
        inner = guarded(self._where, self._inner.build)(step_id, worker_index, worker_count)
        return _StatelessSinkPart(self._where, inner)


class _FixedSink(FixedPartitionedSink):
    def __init__(self, where: str, inner: FixedPartitionedSink) -> None:
        self._where = where
        self._inner = inner

    def list_parts(self) -> list[str]:
        return guarded(self._where, self._inner.list_parts)()

    def part_fn(self, item_key: str) -> int:
        return self._inner.part_fn(item_key)

    def build_part(self, step_id: str, for_part: str, resume_state: Any) -> StatefulSinkPartition:
        inner = guarded(self._where, self._inner.build_part)(step_id, for_part, resume_state)
        return _StatefulSinkPart(self._where, inner)
