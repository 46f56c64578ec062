"""What ranking reason codes costs in the score step, and what leaving an approval's to on demand
saves.

    .venv/bin/python benchmarks/bench_reasons.py [--days 1] [--cards 20000] [--batch 500]
        [--repeat 7]

Scores the generator's payments (seed 99, with the features the flow gives them) with the newest
version in ``PAYSCORE_MODEL_DIR`` and the configured thresholds, in batches of ``--batch`` as the
flow does, each of these ways in turn on every batch:

- ``probabilities only``: the split and the probability, nothing ranked
  (:meth:`~model_state.scorer.Scorer.probabilities`, what a shadowing challenger costs);
- ``score_batch, as the flow``: reasons ranked for the payments not approved;
- ``score_batch, every payment ranked``: as the flow scored before approvals were left to on
  demand;
- ``score step and rows``, both ways: the flow's ``score`` step (:func:`dataflows.scoring.score`),
  the stored rows included.

For a ``boosted`` version it also times two parts of the split: the forest walk (the leaf each
tree reaches) and the Saabas sums of those leaves (each feature's share of the forest's log-odds,
which the probability is summed from).

Each way is timed ``--repeat`` times on each batch and the fastest run counts (the least
disturbed, as ``timeit`` advises), in CPU time of this process (``time.process_time``): on a
shared machine other jobs take wall time from a run, not its CPU time. Prints µs per payment for
each way and the share of payments approved.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dataflows.messages import Positioned
from dataflows.scoring import score
from features.replay import replay
from model_state import artifact, signing
from model_state.boosted import Boosted
from model_state.scorer import Scorer
from settings.config import Config
from test_data.generator import simulate
from test_data.spec import SimulationSpec


def fastest(work: Callable[[], Any], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.process_time()
        work()
        best = min(best, time.process_time() - started)
    return best


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--days", type=int, default=1)
    parser.add_argument("--cards", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=500, help="scoring batch size")
    parser.add_argument("--repeat", type=int, default=7, help="runs per batch and way")
    args = parser.parse_args()
    config = Config.from_env(os.environ)
    version = artifact.load(
        Path(config.model_dir), key=signing.read_key(Path(config.model_key_file))
    )
    scorer = Scorer(
        version.model,
        version.version,
        review=config.review_threshold,
        decline=config.decline_threshold,
        positive_weight=version.metadata.positive_weight,
    )
    sim = simulate(
        SimulationSpec(seed=99, days=args.days, cards=args.cards, merchants=args.cards // 5)
    )
    payments = [Positioned(p, 0, i, f) for i, (p, f) in enumerate(replay(sim.stream))]
    batches = [payments[i : i + args.batch] for i in range(0, len(payments), args.batch)]
    ways: dict[str, Callable[[list[Positioned[Any]]], Any]] = {
        "probabilities only": lambda b: scorer.probabilities([p.features for p in b]),
        "score_batch, as the flow": lambda b: scorer.score_batch([p.features for p in b]),
        "score_batch, every payment ranked": lambda b: scorer.score_batch(
            [p.features for p in b], explain=True
        ),
        "score step and rows, as the flow": lambda b: score(scorer, b),
        "score step and rows, every payment ranked": lambda b: score(scorer, b, explain=True),
    }
    boosted = artifact.expansion_of(version.model)
    if isinstance(boosted, Boosted):  # two parts of the split
        reached = {id(b): boosted.leaves(boosted.matrix([p.features for p in b])) for b in batches}
        ways["split part: forest walk"] = lambda b: boosted.leaves(
            boosted.matrix([p.features for p in b])
        )
        ways["split part: Saabas sums of the leaves reached"] = lambda b: boosted.saabas(
            reached[id(b)]
        )
    seconds = dict.fromkeys(ways, 0.0)
    approved = 0
    for batch in batches:
        approved += sum(
            1 for s in scorer.score_batch([p.features for p in batch]) if s.reasons is None
        )
        for name, way in ways.items():
            seconds[name] += fastest(lambda way=way, batch=batch: way(batch), args.repeat)
    n = len(payments)
    print(
        f"{n:,} payments in batches of {args.batch}, model {version.version}; "
        f"{approved / n:.1%} approved (not ranked); fastest of {args.repeat} runs per batch, "
        "CPU time"
    )
    for name, s in seconds.items():
        print(f"{name:<44} {s * 1e6 / n:8.2f} µs per payment")


if __name__ == "__main__":
    main()
