"""The core steps of a built flow, each replaced by a copy with some of its callables changed.

A Bytewax ``Dataflow`` is a tree of operators: the composite ones (``stateful_map``,
``key_on``, ...) hold ``substeps``, the core ones (``flat_map_batch``, ``stateful_batch``, an
input, an output) hold the Python objects Bytewax calls (a mapper, a builder, a source, a sink).
:func:`dataflows.failures.log_failures` guards those objects and
:func:`dataflows.unread_snapshots.skip_unread_snapshots` changes what the builders build; both
walk the tree with :func:`replace_in_core_steps`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from bytewax.dataflow import Operator


def replace_in_core_steps(
    steps: list[Operator], changes: Callable[[Operator], dict[str, Any]]
) -> None:
    """Each core step among ``steps`` (and their substeps, at any depth) replaced in place by a
    copy with the fields ``changes(step)`` gives; a step it gives none for is left as it is."""
    for index, step in enumerate(steps):
        if step.substeps:
            replace_in_core_steps(step.substeps, changes)
            continue
        if changed := changes(step):
            steps[index] = dataclasses.replace(step, **changed)  # type: ignore[type-var]
