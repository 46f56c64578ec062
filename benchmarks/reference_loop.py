"""The flow's work as a hand-written loop in one process: the reference for the flow.

    python benchmarks/reference_loop.py    (topics and database from the PAYSCORE_* settings)

No Bytewax: one confluent-kafka consumer reads the payments and labels topics from the beginning
to their current end, and the loop drives the flow's own step logic by hand, in the flow's order:
decode (dead letters stored), card / terminal / merchant histories (``KeyedHistory``, one per
key, exactly as the flow's stateful steps hold them), calendar, ``score`` with the registry's
current version, ``MySQLSinkPartition.write_batch``; labels: decode, the label join
(``LabelJoin`` per card group, claiming in MySQL), the fraud rates (``learn_label`` through
the terminal's and merchant's ``KeyedHistory``), the learner (``LearnStep``) and the version
sink; the implicit negatives (``ImplicitNegatives`` ticked by each batch's newest event time,
claiming in MySQL) go to the learner too. It ends when both topics are read and no label is
waiting, and prints one JSON line: payments stored, labels handed to the learner, and seconds
since its imports ended (the benchmark times the whole process from outside, as it times the
flow). No recovery snapshots
are taken (the flow in the benchmark runs without recovery too).
"""

from __future__ import annotations

import json
import os
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bytewax.connectors.kafka import KafkaSourceMessage
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from dataflows import collector
from dataflows.implicit_negatives import configured_implicit_negatives, newest_event_time
from dataflows.keyed_history import keyed_history, mark_key
from dataflows.label_join import configured_label_join
from dataflows.learning import Lineages, learn_step
from dataflows.messages import DeadLetter, MessageDecoder, Positioned, letter_row
from dataflows.model_registry import ModelRegistry
from dataflows.scoring import (
    CARD_IDS_KEPT,
    IDLE_KEY_SECONDS,
    add_calendar_features,
    card_group,
    merchant_history,
    score,
    scored_payments_sink,
    terminal_history,
)
from features.card import CardHistory
from features.contract import LabelDecoder, PaymentDecoder
from model_state import artifact, signing
from model_state.checkpoints import ModelVersionSink
from model_state.stored_versions import NewerVersionsInMySQL
from settings.config import Config
from storage.labels import FraudNote
from storage.sink import MySQLSink
from storage.tables import dead_letters

STARTED = time.perf_counter()


def main() -> None:
    config = Config.from_env(os.environ)
    print(json.dumps(run(config)))


class Keyed:
    """One step's logic per key, built on first use, as Bytewax's stateful steps hold them."""

    def __init__(self, build: Callable[[Any], Any]) -> None:
        self._build = build
        self.logic: dict[str, Any] = {}

    def feed(self, values: Iterable[Any], key: Callable[[Any], str]) -> list[Any]:
        groups: dict[str, list[Any]] = defaultdict(list)
        for value in values:
            groups[key(value)].append(value)
        out: list[Any] = []
        for k, batch in groups.items():
            logic = self.logic.get(k)
            if logic is None:
                logic = self.logic[k] = self._build(None)
            emitted, _ = logic.on_batch(batch)
            out += emitted
        return out


def run(config: Config) -> dict[str, Any]:
    model_dir = Path(config.model_dir)
    key = signing.read_key(Path(config.model_key_file))
    start = artifact.load(model_dir, key=key)
    models = ModelRegistry(
        start,
        NewerVersionsInMySQL(config.mysql_dsn, key=key),
        refresh_seconds=config.model_refresh_seconds,
        watch=True,
        review=config.review_threshold,
        decline=config.decline_threshold,
    )
    decode = MessageDecoder(PaymentDecoder(), LabelDecoder())
    cards = Keyed(
        keyed_history(CardHistory, IDLE_KEY_SECONDS, CARD_IDS_KEPT, mark_key=mark_key(key))
    )
    terminals = Keyed(keyed_history(terminal_history, IDLE_KEY_SECONDS))
    merchants = Keyed(keyed_history(merchant_history, IDLE_KEY_SECONDS))
    joins = Keyed(configured_label_join(config))
    claimer = configured_implicit_negatives(config)(None)
    root = (
        artifact.load(model_dir, start.metadata.base_version, key=key)
        if start.metadata.base_version
        else None
    )
    learner = learn_step(
        start,
        root=root,
        publish_every=config.publish_every_labels,
        publish_seconds=config.publish_seconds,
        lineages=Lineages(
            NewerVersionsInMySQL(config.mysql_dsn, key=key, patience=config.mysql_outage_seconds),
            config.model_refresh_seconds,
        ),
    )(None)
    payments_sink = scored_payments_sink(config).build("loop", 0, 1)
    letters_sink = MySQLSink.for_dead_letters(config.mysql_dsn, dead_letters).build("loop", 0, 1)
    versions_sink = ModelVersionSink(
        config.mysql_dsn,
        model_dir,
        config.labels_topic,
        patience=config.mysql_outage_seconds,
        key=key,
    ).build("loop", 0, 1)

    collector.settle()  # as the flow's entry point does once it is built
    consumer = Consumer(config.kafka_client(**{"group.id": "reference-loop"}))
    ends: dict[tuple[str, int], int] = {}
    assignment = []
    for topic in (config.payments_topic, config.labels_topic):
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        for p in partitions:
            ends[(topic, p)] = consumer.get_watermark_offsets(TopicPartition(topic, p))[1]
            assignment.append(TopicPartition(topic, p, OFFSET_BEGINNING))
    consumer.assign(assignment)
    read: dict[tuple[str, int], int] = {k: 0 for k in ends}
    payments = labels = 0

    def store_letters(letters: list[DeadLetter]) -> None:
        if letters:
            rows = [letter_row(d) for d in letters]
            letters_sink.write_batch(rows)

    def learn(labelled: list[Any]) -> None:
        nonlocal labels
        frauds = [FraudNote.of(x) for x in labelled if x.is_fraud]  # as the flow's fraud_notes
        terminals.feed(frauds, lambda x: x.terminal_id)
        merchants.feed(frauds, lambda x: x.merchant_id)
        versions, _ = learner.on_batch(labelled)
        labels += len(labelled)
        versions_sink.write_batch(versions)

    while True:
        messages = consumer.consume(num_messages=config.kafka_batch_size, timeout=0.2)
        batch: dict[str, list[KafkaSourceMessage]] = defaultdict(list)
        for m in messages:
            if m.error():
                raise RuntimeError(f"reading {m.topic()}[{m.partition()}]: {m.error()}")
            read[(m.topic(), m.partition())] = m.offset() + 1
            batch[m.topic()].append(
                KafkaSourceMessage(
                    m.key(),
                    m.value(),
                    topic=m.topic(),
                    offset=m.offset(),
                    partition=m.partition(),
                    timestamp=m.timestamp(),
                )
            )
        decoded = [decode.payment(m) for m in batch[config.payments_topic]]
        store_letters([d for d in decoded if isinstance(d, DeadLetter)])
        valid = [d for d in decoded if isinstance(d, Positioned)]
        with_card = cards.feed(valid, lambda p: p.event.card_id)
        fresh = [p for p in with_card if not p.rejected]
        scored = merchants.feed(
            terminals.feed(fresh, lambda p: p.event.terminal_id), lambda p: p.event.merchant_id
        )
        for p in scored:
            add_calendar_features(p)
        if scored:
            payments_sink.write_batch(score(models.current(), scored))
            payments += len(scored)
        decoded = [decode.label(m) for m in batch[config.labels_topic]]
        store_letters([d for d in decoded if isinstance(d, DeadLetter)])
        valid = [d for d in decoded if isinstance(d, Positioned)]
        learn(joins.feed(valid, lambda p: card_group(p.event.card_id)))
        learn(claimer.on_batch(newest_event_time(fresh))[0] if fresh else [])
        due = claimer.notify_at()
        if due is not None and due <= datetime.now(UTC):
            learn(claimer.on_notify()[0])
        waiting = [j for j in joins.logic.values() if j.notify_at() is not None]
        for join in waiting:  # as Bytewax: each group when its timer is due (gather, retry)
            if join.due_in() == 0.0:
                learn(join.on_notify()[0])
        if not messages and all(read[k] >= end for k, end in ends.items()) and not waiting:
            break
    learn(claimer.on_eof()[0])
    versions, _ = learner.on_eof()
    versions_sink.write_batch(versions)
    consumer.close()
    return {"payments": payments, "labels": labels, "seconds": time.perf_counter() - STARTED}


if __name__ == "__main__":
    main()
