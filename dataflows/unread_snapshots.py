"""Without a recovery directory nobody reads a snapshot, so none is taken.

Bytewax 0.21.1 calls ``snapshot()`` on every key a ``stateful_batch`` step touched in an epoch
at that epoch's close, with or without recovery (``benchmarks/BYTEWAX-INTERNALS.md`` section 3:
the snapshot streams are always built, and only with recovery are they written anywhere). Each
call pickles the key's state: about 12 µs a card and 10 µs a terminal or merchant, some 8,000
keys a process at each 10 s close of the benchmark's stream, on the worker thread, while the
next epoch's reads wait (README, "Where the pause at each close goes"). A flow run without
``-r`` / ``BYTEWAX_RECOVERY_DIRECTORY`` throws every one of them away.

:func:`skip_unread_snapshots` therefore makes every stateful step of such a flow answer its
snapshot with ``None`` and do nothing else. What the steps compute is untouched: ``snapshot()``
reads state and changes none (``tests/test_unread_snapshots.py`` runs a flow both ways on real
Bytewax and compares every output). With a recovery directory the flow is left as it is, so
recovery keeps every snapshot it had.

>>> class Logic:
...     def snapshot(self) -> bytes:
...         return b"state"
>>> unread(Logic()).snapshot() is None
True
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bytewax.dataflow import Dataflow, Operator

from dataflows.core_steps import replace_in_core_steps


def skip_unread_snapshots(flow: Dataflow) -> Dataflow:
    """``flow`` with every ``stateful_batch`` step's logic built by :func:`unread` (the steps are
    replaced in place, as :func:`dataflows.failures.log_failures` replaces them)."""
    replace_in_core_steps(flow.substeps, _unread_builds)
    return flow


def unread(logic: Any) -> Any:
    """``logic`` (built by a step), its ``snapshot`` answering ``None`` without work."""
    logic.snapshot = _nothing
    return logic


def _nothing() -> None:
    return None


def _unread_builds(step: Operator) -> dict[str, Any]:
    builder = getattr(step, "builder", None)
    return {} if builder is None else {"builder": _unread_builder(builder)}


def _unread_builder(builder: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def build(resume: Any) -> Any:
        return unread(builder(resume))

    return build
