"""One wake-up item for each key of a stateful step at the start of every run.

A step resumed with work to hand on (the label join's resumed labels, the implicit-negative
claimer's claims made after its snapshot) must hand it on from a batch, not from a timer due at
once. Bytewax 0.21.1's ``stateful_batch`` loads a key's state in the epoch of its snapshot and
means to move its output on to the resume epoch afterwards, but that step acts on an emptied
list of capabilities (``src/operators.rs``, ``init_caps.downgrade_all`` after both were
popped), so the output stays at the loaded epochs until the step next processes the resume
epoch. A logic called back by a timer due at once when it is loaded hands on items stamped with
that older epoch; a stateful step downstream processes that epoch before it loads its own state
of a later one, takes the items into a state built anew, and its load then replaces that state:
the items are lost (``tests/test_label_join_resume_integration.py``). Input comes at the resume
epoch or later, after every load. :func:`with_wake_ups` gives such a step one :data:`WAKE_UP`
for each of its keys as the first input of every run, so its first batch comes at once even
when its own input is idle; the step sets no timer before that batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

import bytewax.operators as op
import msgspec
from bytewax.dataflow import Stream
from bytewax.inputs import DynamicSource, StatelessSourcePartition

X = TypeVar("X")


class WakeUp(msgspec.Struct, frozen=True):
    """The first item of every run for each key of a step (:func:`with_wake_ups`); no data."""


WAKE_UP = WakeUp()


class _Once(StatelessSourcePartition[tuple[str, WakeUp]]):
    def __init__(self, items: list[tuple[str, WakeUp]]) -> None:
        self._items: list[tuple[str, WakeUp]] | None = items

    def next_batch(self) -> list[tuple[str, WakeUp]]:
        if self._items is None:
            raise StopIteration
        items, self._items = self._items, None
        return items


class WakeUps(DynamicSource[tuple[str, WakeUp]]):
    """One ``(key, WAKE_UP)`` for each of ``keys`` (from the first worker; Bytewax routes each to
    its key's worker) at the start of every run, then the end of this input."""

    def __init__(self, keys: Sequence[str]) -> None:
        self._keys = list(keys)

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _Once:
        return _Once([(key, WAKE_UP) for key in self._keys] if worker_index == 0 else [])


def with_wake_ups(
    step_id: str, keyed: Stream[tuple[str, X]], keys: Sequence[str]
) -> Stream[tuple[str, X | WakeUp]]:
    """``keyed`` with one wake-up for each of ``keys`` at the start of every run, for the
    stateful step ``step_id`` (the input is ``wake_<step_id>``)."""
    wake_ups = op.input(f"wake_{step_id}", keyed.flow(), WakeUps(keys))
    return op.merge(f"{step_id}_and_wake_ups", keyed, wake_ups)
