"""The objects the collector walks for each key the flow holds, and a full collection's time.

    python benchmarks/bench_gc_objects.py [--cards 5000] [--days 30] [--repeats 5]

A process of the flow holds, for every card, terminal and merchant it has seen in the last 31
days, a key logic of a ``stateful_batch`` step; every object of it that can hold references is
tracked by Python's collector and walked at each full collection, while every worker thread of
the process waits (``dataflows/collector.py``). This prints, for 30 days of the generator's
traffic (seed 97, ``--cards`` cards, cards / 5 merchants) fed through the card and terminal
steps' key logic (:class:`key_replay.KeyReplay`):

- **as the flow builds it**: each step's builder taken from the flow that
  ``dataflows.scoring.build`` makes without recovery (its snapshots skipped, its failure guard
  around it; the model and the signing key from ``PAYSCORE_MODEL_DIR`` and
  ``PAYSCORE_MODEL_KEY_FILE``); and **bare**: the step's own logic alone;
- objects tracked per card and per terminal, by type (a merchant's logic is a terminal's), and
  the references a full collection follows from them (a list's every item, none of an
  array's);
- a full collection's time (``gc.collect()``, median of ``--repeats``) with every key held, and
  without them; the stream and the modules are frozen first (``gc.freeze()``), as the flow
  freezes its model and modules once it is built.

Run it in another checkout's tree (``cd OTHER && .venv/bin/python THIS/benchmarks/...``) to
compare its code: the script imports the product from the installed checkout.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from bytewax.dataflow import Operator
from key_replay import KeyReplay

from dataflows.core_steps import replace_in_core_steps
from dataflows.scoring import build
from settings.config import Config
from test_data.generator import simulate
from test_data.spec import SimulationSpec

Builder = Callable[[Any], Any]


def flow_builders() -> tuple[Builder, Builder]:
    """The card and terminal steps' builders of the flow as ``dataflows.scoring.build`` builds
    it without recovery (configured from the environment, as the flow; it connects to nothing
    until it runs)."""
    flow = build(Config.from_env(os.environ), snapshots_read=False)
    found: dict[str, Builder] = {}

    def take(step: Operator) -> dict[str, Any]:
        builder = getattr(step, "builder", None)
        for name in ("card", "terminal"):
            if builder is not None and step.step_id.endswith(f".{name}_features"):
                found[name] = builder
        return {}

    replace_in_core_steps(flow.substeps, take)
    return found["card"], found["terminal"]


def tracked() -> tuple[Counter[str], int]:
    """Objects the collector tracks, by type, and the references a full collection follows."""
    gc.collect()
    objects = gc.get_objects()
    return Counter(type(o).__name__ for o in objects), sum(
        len(gc.get_referents(o)) for o in objects
    )


def full_collection_ms(repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        gc.collect()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def measure(label: str, keys: KeyReplay, stream: list[Any], n: int, repeats: int) -> None:
    gc.collect()
    gc.freeze()  # the stream and the modules, as the flow freezes its model and modules
    base_ms = full_collection_ms(repeats)
    before, followed_before = tracked()
    for _ in keys.replay(stream, n):
        pass
    keys.payment_of.clear()  # the replay's own look-up, not the flow's state
    after, followed = tracked()
    cards, terminals = len(keys.card_keys), len(keys.terminal_keys)
    grown = after - before
    total = sum(grown.values())
    ms = full_collection_ms(repeats)
    print(
        f"{label}: {cards:,} cards and {terminals:,} terminals hold {total:,} tracked objects; "
        f"a full collection follows {followed - followed_before:,} references from them and takes "
        f"{ms:.1f} ms (without them {base_ms:.1f} ms)"
    )
    keys_held = cards + terminals
    top = ", ".join(f"{kind} {count / keys_held:.1f}" for kind, count in grown.most_common(8))
    print(f"  tracked objects per key (cards and terminals), by type: {top}")
    print(f"  per key: {total / keys_held:.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cards", type=int, default=5000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    sim = simulate(
        SimulationSpec(seed=97, days=args.days, cards=args.cards, merchants=max(args.cards // 5, 2))
    )
    stream = list(sim.stream)
    card, terminal = flow_builders()
    for label, builders in (("as the flow builds it", (card, terminal)), ("bare", None)):
        keys = KeyReplay()
        if builders is not None:
            keys._new_card, keys._new_terminal = builders
        measure(label, keys, stream, sim.n_payments, args.repeats)
        del keys
        gc.unfreeze()
        gc.collect()


if __name__ == "__main__":
    main()
