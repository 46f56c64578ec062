"""The payscore dataflow: every payment read from Kafka is scored for fraud and stored in MySQL.

Run it with ``python -m bytewax.run dataflows.scoring:flow`` (add ``-w N`` for worker threads, or
``-i/-a`` for several processes; see the README). Reading top to bottom:

1. **Decode** each payment message into a typed ``Payment``; a message that breaks the contract
   becomes a dead letter (Kafka topic and MySQL table) with its reason and offset.
2. **Features**: the card's, the terminal's and the merchant's histories, each keyed by its id,
   add their point-in-time features; calendar features are added last.
3. **Score** with the current model version: probability, decision, reason codes.
4. **Store** the scored payment in MySQL, idempotently (a replay changes nothing).

Fraud labels arrive on their own topic; they are decoded the same way (bad ones are dead letters
too) and feed the terminals' and merchants' fraud rates.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import bytewax.operators as op
import msgspec
from bytewax.connectors.kafka import KafkaSink, KafkaSource
from bytewax.dataflow import Dataflow, Stream
from confluent_kafka import OFFSET_BEGINNING

from dataflows.config import Config
from dataflows.keyed_history import keyed_history
from dataflows.messages import DeadLetter, MessageDecoder, Positioned, to_kafka
from features.calendar import calendar_features
from features.card import CardHistory
from features.contract import LabelDecoder, Payment, PaymentDecoder
from features.entity import EntityHistory
from model_state import artifact
from model_state.scorer import Scorer
from storage.rows import dead_letter_row, scored_payment_row
from storage.sink import MySQLSink
from storage.tables import dead_letters, scored_payments

IDLE_KEY_SECONDS = timedelta(days=35).total_seconds()


def flow() -> Dataflow:
    """The entry point: reads the configuration from the environment and builds the flow."""
    return build(Config.from_env(os.environ))


def build(config: Config) -> Dataflow:
    model = artifact.load(Path(config.model_dir))
    scorer = Scorer(
        model.model,
        model.version,
        review=config.review_threshold,
        decline=config.decline_threshold,
    )
    skew = timedelta(seconds=config.max_future_skew_seconds)
    decoder = MessageDecoder(PaymentDecoder(skew), LabelDecoder(skew))

    flow = Dataflow("payscore")
    messages = op.input("read_payments", flow, kafka_source(config, config.payments_topic))
    decoded = op.map("decode_payments", messages, decoder.payment)
    payments = split_off_dead_letters("payments", decoded, config)

    payments = add_features("card_features", payments, card_id, CardHistory)
    payments = add_features("terminal_features", payments, terminal_id, terminal_history)
    payments = add_features("merchant_features", payments, merchant_id, merchant_history)
    payments = op.map("calendar_features", payments, add_calendar_features)

    rows = op.map("score", payments, lambda p: score(scorer, p))
    op.output("store_scored_payments", rows, MySQLSink(config.mysql_url, scored_payments))

    label_messages = op.input("read_labels", flow, kafka_source(config, config.labels_topic))
    labels = op.map("decode_labels", label_messages, decoder.label)
    split_off_dead_letters("labels", labels, config)
    return flow


# ---------------------------------------------------------------------------- steps


def kafka_source(config: Config, topic: str) -> KafkaSource:
    """Every partition of ``topic`` from the beginning; recovery resumes at the stored offsets."""
    return KafkaSource(
        config.brokers,
        [topic],
        tail=config.tail,
        starting_offset=OFFSET_BEGINNING,
        batch_size=1000,
    )


def split_off_dead_letters(name: str, decoded: Stream, config: Config) -> Stream[Positioned]:
    """Send dead letters to their Kafka topic and MySQL table; return the valid events."""
    split = op.branch(f"split_valid_{name}", decoded, lambda x: isinstance(x, Positioned))
    letters: Stream[DeadLetter] = split.falses
    op.output(
        f"publish_{name}_dead_letters",
        op.map(f"{name}_dead_letters_to_kafka", letters, to_kafka),
        KafkaSink(config.brokers, config.dead_letters_topic),
    )
    op.output(
        f"store_{name}_dead_letters",
        op.map(
            f"{name}_dead_letters_to_rows",
            letters,
            lambda d: dead_letter_row(**msgspec.structs.asdict(d)),
        ),
        MySQLSink(config.mysql_url, dead_letters),
    )
    return split.trues


def card_id(p: Positioned[Payment]) -> str:
    return p.event.card_id


def terminal_id(p: Positioned[Payment]) -> str:
    return p.event.terminal_id


def merchant_id(p: Positioned[Payment]) -> str:
    return p.event.merchant_id


def terminal_history() -> EntityHistory:
    return EntityHistory("terminal")


def merchant_history() -> EntityHistory:
    return EntityHistory("merchant")


def add_features(step: str, payments: Stream, key: object, new_history: object) -> Stream:
    """Key the payments by ``key``, let that key's history add its features, drop the key."""
    keyed = op.key_on(f"key_{step}", payments, key)  # type: ignore[arg-type]
    with_features = op.stateful_batch(
        step,
        keyed,
        keyed_history(new_history, IDLE_KEY_SECONDS),  # type: ignore[arg-type]
    )
    return op.key_rm(f"unkey_{step}", with_features)


def add_calendar_features(p: Positioned[Payment]) -> Positioned[Payment]:
    p.features.update(calendar_features(p.event))
    return p


def score(scorer: Scorer, p: Positioned[Payment]) -> dict[str, object]:
    result = scorer.score(p.features)
    return scored_payment_row(
        p.event,
        partition=p.partition,
        offset=p.offset,
        features=p.features,
        probability=result.probability,
        decision=result.decision,
        reasons=result.reasons,
        model_version=scorer.version,
        scored_at=datetime.now(UTC),
    )
