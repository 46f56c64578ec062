"""Where a payment's microseconds go: each stage of the flow's per-payment work, timed alone.

    python benchmarks/profile_stages.py [--days 4] [--cards 20000] [--repeats 3] [--cprofile PATH]

Runs the project's own functions in one process, without Kafka, MySQL or Bytewax, over the
generator's stream (payments and their labels, seed 99): decode, card / terminal / merchant
histories, calendar, scoring, the stored row and its bulk-load text, then the label path
(the fraud rates' label folding and the learner). Prints µs per payment (or label) for each
stage, and with ``--cprofile`` writes the cProfile table of the whole run, sorted by own time.
Times are CPU time of this process (``time.process_time``), not wall time: on a shared machine
the wall time of a stage says more about the neighbours than about the stage. The whole set of
stages runs ``--repeats`` times; each stage's median is printed with its spread.
A model must exist in ``PAYSCORE_MODEL_DIR`` (``python -m model_state.train``).
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec

from dataflows.messages import MessageDecoder, Positioned
from dataflows.scoring import NO_RULES, add_calendar_features, score
from features.card import CardHistory
from features.contract import FraudLabel, LabelDecoder, Payment, PaymentDecoder
from features.entity import EntityHistory
from model_state import artifact, signing
from model_state.learner import OnlineLearner
from model_state.scorer import Scorer
from rules.lists import ListIndex
from rules.ruleset import Ruleset, RuleSpec, compile_ruleset
from settings.config import Config
from storage.labels import LabelledPayment
from storage.sink import tsv_lines
from storage.tables import scored_payments
from test_data.generator import simulate
from test_data.rule_examples import RULES, example_lists
from test_data.spec import SimulationSpec


class RawMessage(msgspec.Struct):
    """What Bytewax's Kafka source hands the flow (the fields the decoder reads)."""

    value: bytes
    key: bytes
    topic: str
    partition: int
    offset: int
    timestamp: tuple[int, int]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--days", type=int, default=4)
    parser.add_argument("--cards", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=500, help="scoring batch size")
    parser.add_argument("--cprofile", type=Path, help="write the cProfile table here")
    parser.add_argument("--repeats", type=int, default=3, help="runs of all stages")
    parser.add_argument(
        "--rules",
        action="store_true",
        help="score with the fifty rules of test_data/rule_examples.py active, and their lists "
        "made for the stream (as bench_throughput.py's rules run)",
    )
    args = parser.parse_args()
    config = Config.from_env(os.environ)
    key = signing.read_key(Path(config.model_key_file))
    model = artifact.load(Path(config.model_dir), key=key)
    scorer = Scorer(
        model.model,
        model.version,
        review=config.review_threshold,
        decline=config.decline_threshold,
        positive_weight=model.metadata.positive_weight,
    )
    sim = simulate(
        SimulationSpec(seed=99, days=args.days, cards=args.cards, merchants=args.cards // 5)
    )
    encode = msgspec.json.Encoder().encode
    payments_raw, labels_raw = [], []
    for event in sim.stream:
        ms = int(datetime.now(UTC).timestamp() * 1000)
        raw = RawMessage(encode(event), event.card_id.encode(), "t", 0, len(payments_raw), (1, ms))
        (payments_raw if isinstance(event, Payment) else labels_raw).append(raw)
    print(f"{len(payments_raw):,} payments, {len(labels_raw):,} labels")
    ruleset = NO_RULES
    if args.rules:
        lists = example_lists(list(sim.payments()))
        indexes = {n: ListIndex.build(n, kind, entries) for n, (kind, entries) in lists.items()}
        specs = [RuleSpec(rule_id, text, "active") for rule_id, text in RULES]
        ruleset = compile_ruleset(specs, indexes, version=1)
        sizes = ", ".join(f"@{n} {len(e):,}" for n, (_, e) in lists.items())
        print(f"{len(specs)} active rules; lists: {sizes}")
    profiler = cProfile.Profile() if args.cprofile else None
    if profiler:
        profiler.enable()
    runs = [
        run(payments_raw, labels_raw, scorer, model, args.batch, ruleset)
        for _ in range(args.repeats)
    ]
    if profiler:
        profiler.disable()
        with args.cprofile.open("w") as out:
            pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(60)
        print(f"cProfile table: {args.cprofile}")
    totals = [0.0] * len(runs)
    for stage, (_, n) in runs[0].items():
        per = sorted(r[stage][0] * 1e6 / n for r in runs)
        for i, r in enumerate(runs):
            totals[i] += r[stage][0]
        print(
            f"{stage:<28} {statistics.median(per):8.1f} µs per item  ({n:,} items; "
            f"{per[0]:.1f}-{per[-1]:.1f} in {len(per)} runs)"
        )
    whole = sorted(t * 1e6 / len(payments_raw) for t in totals)
    print(
        f"{'all stages':<28} {statistics.median(whole):8.1f} µs per payment "
        f"({whole[0]:.1f}-{whole[-1]:.1f})"
    )


def run(
    payments_raw: list[RawMessage],
    labels_raw: list[RawMessage],
    scorer: Scorer,
    model: artifact.ModelArtifact,
    batch: int,
    ruleset: Ruleset = NO_RULES,
) -> dict[str, tuple[float, int]]:
    timings: dict[str, tuple[float, int]] = {}

    def timed(stage: str, n: int, work: Callable[[], Any]) -> Any:
        started = time.process_time()
        out = work()
        timings[stage] = (time.process_time() - started, n)
        return out

    decode = MessageDecoder(PaymentDecoder(), LabelDecoder())
    n = len(payments_raw)
    payments: list[Positioned[Payment]] = timed(
        "decode", n, lambda: [decode.payment(m) for m in payments_raw]
    )
    for stage, key, new in (
        ("card features", "card_id", CardHistory),
        ("terminal features", "terminal_id", lambda: EntityHistory("terminal")),
        ("merchant features", "merchant_id", lambda: EntityHistory("merchant")),
    ):
        histories: dict[str, Any] = {}

        def observe(key: str = key, new: Callable[[], Any] = new, h: dict = histories) -> None:
            for p in payments:
                k = getattr(p.event, key)
                history = h.get(k)
                if history is None:
                    history = h[k] = new()
                p.features.update(history.observe(p.event))

        timed(stage, n, observe)
    timed("calendar features", n, lambda: [add_calendar_features(p) for p in payments])
    rows: list[dict[str, Any]] = timed(
        "score and row",
        n,
        lambda: [
            r
            for i in range(0, n, batch)
            for r in score(scorer, payments[i : i + batch], rules=ruleset)
        ],
    )
    timed("bulk-load text", n, lambda: tsv_lines(scored_payments, rows))
    by_id = {p.event.transaction_id: p for p in payments}
    labels = [decode.label(m) for m in labels_raw]
    labelled = [
        LabelledPayment(
            transaction_id=lab.event.transaction_id,
            card_id=lab.event.card_id,
            terminal_id=by_id[lab.event.transaction_id].event.terminal_id,
            merchant_id=by_id[lab.event.transaction_id].event.merchant_id,
            payment_time=by_id[lab.event.transaction_id].event.event_timestamp,
            reported_at=lab.event.reported_at.timestamp(),
            is_fraud=lab.event.is_fraud,
            features=by_id[lab.event.transaction_id].features,
            scored_by=scorer.version,
            label_partition=lab.partition,
            label_offset=lab.offset,
            learned_version=None,
        )
        for lab in labels
        if isinstance(lab, Positioned)
        and isinstance(lab.event, FraudLabel)
        and lab.event.transaction_id in by_id
    ]
    learner = OnlineLearner(model, publish_every=500)

    def learn() -> None:  # in batches, as the flow's learner step gets them
        for i in range(0, len(labelled), batch):
            chunk = labelled[i : i + batch]
            for example, columns in zip(chunk, learner.prepare(chunk) or [], strict=True):
                learner.learn(example, columns)
                if learner.due:
                    learner.publish(datetime.now(UTC))

    timed("learn (per label)", len(labelled), learn)
    return timings


if __name__ == "__main__":
    main()
