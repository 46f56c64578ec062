"""The MySQL schema as SQLAlchemy Core tables: scored payments, dead letters and model versions.

This module is the single source of the schema; ``test_data/schema.sql`` is rendered from it
(``python -m storage.schema``) and a test fails when the two differ. Times are stored in UTC as
``DATETIME(6)``; a payment's own UTC offset is kept beside its event time. Only SQL that both
MySQL 8 and MariaDB 10.11 accept is used.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Double,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
)
from sqlalchemy.dialects.mysql import DATETIME, MEDIUMBLOB

metadata = MetaData()

Timestamp = DATETIME(fsp=6)
Blob = LargeBinary().with_variant(MEDIUMBLOB(), "mysql", "mariadb")

scored_payments = Table(
    "scored_payments",
    metadata,
    Column("transaction_id", String(64), primary_key=True),
    Column("card_id", String(64), nullable=False),
    Column("merchant_id", String(64), nullable=False),
    Column("terminal_id", String(64), nullable=False),
    Column("amount_minor", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("event_time", Timestamp, nullable=False, comment="UTC"),
    Column("utc_offset_minutes", SmallInteger, nullable=False),
    Column("fraud_probability", Double, nullable=False),
    Column("decision", String(8), nullable=False, comment="approve, review or decline"),
    Column("reason_codes", JSON, nullable=False, comment="up to three feature names"),
    Column("model_version", String(64), nullable=False),
    Column("features", JSON, nullable=False, comment="feature name -> value used to score"),
    Column("kafka_partition", Integer, nullable=False),
    Column("kafka_offset", BigInteger, nullable=False),
    Column("scored_at", Timestamp, nullable=False, comment="UTC"),
    Column("label_is_fraud", Boolean, nullable=True, comment="set once, when the label is learned"),
    Column("label_reported_at", Timestamp, nullable=True, comment="UTC"),
    Index("ix_scored_payments_card_time", "card_id", "event_time"),
    Index("ix_scored_payments_event_time", "event_time"),
    comment="One row per payment, first write wins: a replayed payment changes nothing.",
)

dead_letters = Table(
    "dead_letters",
    metadata,
    Column("topic", String(249), primary_key=True),
    Column("kafka_partition", Integer, primary_key=True, autoincrement=False),
    Column("kafka_offset", BigInteger, primary_key=True, autoincrement=False),
    Column("message_key", String(255), nullable=True),
    Column("raw_value", Blob, nullable=True),
    Column("error", Text, nullable=False),
    Column("received_at", Timestamp, nullable=True, comment="Kafka record time, UTC"),
    Column("dead_lettered_at", Timestamp, nullable=False, comment="UTC"),
    comment="Messages that broke the contract, keyed by where they were read.",
)

model_versions = Table(
    "model_versions",
    metadata,
    Column("version", String(64), primary_key=True),
    Column("parent_version", String(64), nullable=True),
    Column("created_at", Timestamp, nullable=False, comment="UTC"),
    Column("origin", String(16), nullable=False, comment="pretrained, retrained or online"),
    Column("labels_learned", BigInteger, nullable=False),
    Column("content_hash", String(64), nullable=False, comment="SHA-256 of the artifact"),
    Column("artifact_path", String(512), nullable=False),
    Column("metadata", JSON, nullable=False),
    Column("artifact", Blob, nullable=False, comment="the pickled model"),
    comment="Every model version that scored or may score payments.",
)
