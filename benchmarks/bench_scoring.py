"""The score step and the stored row, cut into their parts: what reason codes and per-payment
datetime and JSON work cost.

    python benchmarks/bench_scoring.py [--payments 20000] [--batch 500] [--repeats 5]

With the newest model in ``PAYSCORE_MODEL_DIR`` (the ``boosted`` family) and the generator's
payments with their real features (``stream_items.py``), in batches of ``--batch`` as the score
step gets them, µs per payment (CPU, best of ``--repeats``):

- ``score_batch`` as the flow calls it, and its parts: the feature matrix, the hats' part of the
  contributions, the forest walk (leaves), the per-feature split of the forest's part (Saabas),
  the top three reasons and the ``Score`` objects;
- the **probability alone**: matrix, hats, leaves and the sum of the leaves' values -- what an
  approved payment needs if its reasons are computed only when someone asks;
- the stored row (``scored_payment_row``) and its bulk-load text (``tsv_lines``), and inside
  them the per-payment datetime work (three conversions) and JSON (features, reasons).
"""

from __future__ import annotations

import argparse
import math
import os
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import stream_items

from model_state import artifact, signing
from model_state.boosted import hats
from model_state.scorer import MAX_REASONS, Scorer, top_positive
from settings.config import Config
from storage.rows import scored_payment_row, utc_naive
from storage.sink import tsv_lines
from storage.tables import scored_payments

_json = msgspec.json.Encoder().encode


def best(repeats: int, work: Callable[[], Any]) -> float:
    seconds = math.inf
    for _ in range(repeats):
        started = time.process_time()
        work()
        seconds = min(seconds, time.process_time() - started)
    return seconds


def main(argv: Iterable[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--payments", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(list(argv) if argv is not None else None)
    config = Config.from_env(os.environ)
    model = artifact.load(Path(config.model_dir), key=signing.read_key(Path(config.model_key_file)))
    scorer = Scorer(
        model.model, model.version, review=config.review_threshold,
        decline=config.decline_threshold, positive_weight=model.metadata.positive_weight,
    )  # fmt: skip
    explain = scorer._explain
    boosted = explain._boosted
    payments = stream_items.load_items("merchant", 60_000)[: args.payments]
    learner = stream_items.load_plain(60_000)["learner"]
    features = {row[0]: row[7] for row in learner}
    rows = [features.get(p.event.transaction_id) for p in payments]
    kept = [(p, f) for p, f in zip(payments, rows, strict=True) if f is not None]
    payments, rows = [p for p, _ in kept], [f for _, f in kept]
    n = len(rows)
    batches = [rows[i : i + args.batch] for i in range(0, n, args.batch)]
    print(f"bench_scoring: {n:,} payments in batches of {args.batch}; model {model.version}; "
          f"µs per payment, CPU, best of {args.repeats}")  # fmt: skip

    def us(seconds: float) -> str:
        return f"{seconds * 1e6 / n:7.2f} µs"

    matrices = [boosted.matrix(b) for b in batches]
    leaves = [boosted.leaves(x) for x in matrices]
    pushes = [explain.batch(b) for b in batches]
    w = explain._hat_weights
    expected = explain._hat_expected
    values = boosted.nodes["value"]

    def hat_part(x: np.ndarray) -> np.ndarray:
        k, past = hats(x)
        f = np.arange(x.shape[1])[None, :]
        return w[f, k] * (1.0 - past) + w[f, k + 1] * past - expected

    parts = {
        "score_batch (as the flow)": lambda: [scorer.score_batch(b) for b in batches],
        "  feature matrix": lambda: [boosted.matrix(b) for b in batches],
        "  hats' contributions": lambda: [hat_part(x) for x in matrices],
        "  forest walk (leaves)": lambda: [boosted.leaves(x) for x in matrices],
        "  Saabas split of the forest": lambda: [boosted.saabas(at) for at in leaves],
        "  top reasons": lambda: [top_positive(p, MAX_REASONS).tolist() for p in pushes],
        "probability alone (matrix, hats, leaves, leaf values)": lambda: [
            hat_part(x).sum(axis=1) + values[boosted.leaves(x)].sum(axis=1)
            for x in (boosted.matrix(b) for b in batches)
        ],
    }
    for name, work in parts.items():
        print(f"{name:<56} {us(best(args.repeats, work))}")

    scores = [s for b in batches for s in scorer.score_batch(b)]
    now = datetime.now(UTC)

    def stored_rows() -> list[dict[str, Any]]:
        return [
            scored_payment_row(
                p.event, partition=p.partition, offset=p.offset, features=f,
                probability=s.probability, decision=s.decision, reasons=s.reasons,
                model_version=scorer.version, scored_at=now, appended_at=p.appended_at,
            )
            for p, f, s in zip(payments, rows, scores, strict=True)
        ]  # fmt: skip

    stored = stored_rows()
    no_reasons = [{**r, "reason_codes": []} for r in stored]
    row_parts = {
        "stored row (scored_payment_row)": stored_rows,
        "  its datetime work (event, scored and appended time)": lambda: [
            (
                utc_naive(p.event.event_time),
                p.event.event_time.utcoffset(),
                utc_naive(now),
                datetime.fromtimestamp(p.appended_at or 0.0, UTC).replace(tzinfo=None),
            )
            for p in payments
        ],
        "bulk-load text (tsv_lines)": lambda: [
            tsv_lines(scored_payments, stored[i : i + args.batch]) for i in range(0, n, args.batch)
        ],
        "  the same without reason codes": lambda: [
            tsv_lines(scored_payments, no_reasons[i : i + args.batch])
            for i in range(0, n, args.batch)
        ],
        "  features JSON alone": lambda: [_json(r["features"]) for r in stored],
        "  datetime text alone (isoformat x3)": lambda: [
            (
                r["event_time"].isoformat(sep=" "),
                r["scored_at"].isoformat(sep=" "),
                r["appended_at"].isoformat(sep=" "),
            )
            for r in stored
        ],
    }
    for name, work in row_parts.items():
        print(f"{name:<56} {us(best(args.repeats, work))}")
    approve = sum(s.decision == "approve" for s in scores) / n
    print(f"approved: {approve:.1%} of the payments")


if __name__ == "__main__":
    main()
