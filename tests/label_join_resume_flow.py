"""A small dataflow around the real label join, for ``tests/test_label_join_resume_integration.py``:
run as two processes of one worker each (``python -m tests.label_join_resume_flow DIR RUN PROC
PORT``) with Bytewax recovery in ``DIR``, no Kafka and no MySQL.

The input (one partition, resumed from its snapshot) sends, every 50 ms, a payment to every
terminal, and with each of its first ``LABELS`` batches a fraud label of one more card. The labels
go through the real label join (:func:`dataflows.label_join.join_labels`) with a claim that
claims every label, and a gather time of an hour: they stay held until the run ends or the join
is resumed with them. The claimed labels and the payments meet in a per-terminal step, as the
flow's fraud notes and payments meet in the terminals' state; it counts the labels it learned.

Run 1 runs until it is killed. Run 2 resumes and ends its input after ``RUN2_SECONDS``; at the
end of input each terminal writes ``terminal,labels_learned`` to ``DIR/learned-PROC.csv``.
Every terminal has exactly one label: each must have learned it once.
"""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from bytewax.operators import StatefulBatchLogic
from bytewax.recovery import RecoveryConfig
from bytewax.testing import TestingSink, cluster_main

from dataflows.label_join import join_labels, label_join
from dataflows.messages import Positioned
from dataflows.scoring import card_group
from features.contract import FraudLabel
from storage.labels import Claimed, LabelledPayment, ReadLabel

LABELS = 16
RUN2_SECONDS = 4.0
T0 = datetime(2026, 3, 2, 12, tzinfo=UTC)


def card(i: int) -> str:
    return f"card-{i}"


def terminal(i: int) -> str:
    return f"pos-{i}"


class _Feed(StatefulSourcePartition):
    def __init__(self, run: int, batches: int | None) -> None:
        self._run = run
        self._batches = batches or 0  # batches sent, over both runs
        self._started = time.monotonic()

    def next_batch(self) -> list:
        if self._run == 2 and time.monotonic() - self._started > RUN2_SECONDS:
            raise StopIteration
        self._batches += 1
        out: list = [("pay", terminal(i)) for i in range(LABELS)]
        if self._batches <= LABELS:  # one label a batch: the join's snapshots span epochs
            i = self._batches - 1
            label = FraudLabel(
                transaction_id=f"t{i}", card_id=card(i), is_fraud=True, reported_at=T0
            )
            out.append(("label", Positioned(label, 0, i)))
        return out

    def next_awake(self) -> datetime:
        return datetime.now(UTC) + timedelta(seconds=0.05)

    def snapshot(self) -> int:
        return self._batches


class Feed(FixedPartitionedSource):
    def __init__(self, run: int) -> None:
        self._run = run

    def list_parts(self) -> list[str]:
        return ["p"]  # named as in a run that lost the labels: placement decides the race

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> _Feed:
        return _Feed(self._run, resume_state)


def claim_all(reads: list[ReadLabel], expired: object) -> Claimed:
    """Every label claimed, its payment made at its terminal (the label's card's number)."""
    return Claimed(
        [
            LabelledPayment(
                transaction_id=r.label.transaction_id,
                card_id=r.label.card_id,
                merchant_id="m",
                terminal_id=terminal(int(r.label.card_id.split("-")[1])),
                payment_time=T0.timestamp(),
                reported_at=T0.timestamp(),
                is_fraud=True,
                features={},
                scored_by="v",
                label_partition=r.partition,
                label_offset=r.offset,
            )
            for r in reads
        ],
        [],
        [],
    )


class Terminal(StatefulBatchLogic):
    """Counts the payments and the labels of one terminal."""

    def __init__(self, state: tuple[int, int] | None) -> None:
        self.payments, self.labels = state or (0, 0)

    def on_batch(self, values: list) -> tuple[list, bool]:
        for value in values:
            if isinstance(value, LabelledPayment):
                self.labels += 1
            else:
                self.payments += 1
        return [], self.RETAIN

    def on_eof(self) -> tuple[list, bool]:
        return [(self.labels, self.payments)], self.RETAIN

    def snapshot(self) -> tuple[int, int]:
        return self.payments, self.labels


def build(run: int, out: list) -> Dataflow:
    flow = Dataflow("label_join_resume")
    feed = op.input("feed", flow, Feed(run))
    split = op.branch("split", feed, lambda x: x[0] == "label")
    labels = op.key_on(
        "key_labels",
        op.map("labels", split.trues, lambda x: x[1]),
        lambda p: card_group(p.event.card_id),
    )
    joined = op.key_rm(
        "unkey",
        join_labels(
            "join",
            labels,
            label_join(claim_all, retry_seconds=1, wait_seconds=600, gather_seconds=3600),
            sorted({card_group(card(i)) for i in range(LABELS)}),
        ),
    )
    noted = op.key_on("key_noted", joined, lambda x: x.terminal_id)
    payments = op.map("payments", split.falses, lambda x: (x[1], "payment"))
    counted = op.stateful_batch(
        "terminals", op.merge("payments_and_labels", payments, noted), Terminal
    )
    op.output("out", counted, TestingSink(out))
    return flow


def main(directory: Path, run: int, proc: int, port: int) -> None:
    out: list = []
    cluster_main(
        build(run, out),
        [f"127.0.0.1:{port}", f"127.0.0.1:{port + 1}"],
        proc,
        epoch_interval=timedelta(seconds=0.5),
        recovery_config=RecoveryConfig(str(directory)),
    )
    lines = [f"{key},{labels}\n" for key, (labels, _) in out]
    (directory / f"learned-{proc}.csv").write_text("".join(lines))


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))
