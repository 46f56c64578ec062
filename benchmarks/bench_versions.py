"""Bytes of a lineage root and of an online version (a delta on it) for the newest root in a
model folder, and how long a delta takes to load.

    .venv/bin/python benchmarks/bench_versions.py [--model-dir model_state/versions] [--labels 500]

The learner learns ``--labels`` made-up labels on the newest root (``v0000N``) and publishes one
version, as the flow does every ``PAYSCORE_PUBLISH_EVERY_LABELS``; nothing is written.
"""

from __future__ import annotations

import argparse
import os
import time
from datetime import UTC, datetime
from pathlib import Path

from features.catalog import FEATURE_NAMES
from model_state import artifact
from model_state.learner import OnlineLearner
from model_state.signing import read_key, sign
from settings.config import Config
from storage.labels import LabelledPayment


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, default=None)
    parser.add_argument("--labels", type=int, default=500)
    args = parser.parse_args()
    config = Config.from_env(os.environ)
    model_dir = args.model_dir or Path(config.model_dir)
    key = read_key(Path(config.model_key_file))
    roots = [v for v in artifact.list_versions(model_dir) if "." not in v]
    if not roots:
        raise SystemExit(
            f"no lineage root in {model_dir}: train one with python -m model_state.train"
        )
    root = artifact.load(model_dir, roots[-1], key=key)
    learner = OnlineLearner(root, args.labels)
    for i in range(args.labels):
        learner.learn(
            LabelledPayment(
                transaction_id=f"t{i}", card_id="c", merchant_id="m", terminal_id="p",
                payment_time=0.0, reported_at=float(i), is_fraud=i % 50 == 0,
                features=dict.fromkeys(FEATURE_NAMES, float(i % 7)), scored_by=root.version,
            )
        )  # fmt: skip
    record = learner.publish(datetime.now(UTC))
    metadata = sign(record.metadata, key)
    started = time.perf_counter()
    artifact.from_bytes(record.payload, metadata, where="bench", key=key, bases=lambda v: root)
    loaded = time.perf_counter() - started
    print(f"root {root.version}: {len(root.payload):,} bytes pickled")
    print(f"online version after {args.labels} labels: {len(record.payload):,} bytes (a delta), "
          f"loaded with its root at hand in {loaded * 1000:.1f} ms")  # fmt: skip


if __name__ == "__main__":
    main()
