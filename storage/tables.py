"""The MySQL schema as SQLAlchemy Core tables: scored payments, fraud labels, dead letters,
model versions, and the review queue's users, verdicts, sessions and sign-in records.

This module is the single source of the schema; ``test_data/schema.sql`` is rendered from it
(``python -m storage.schema``) and a test fails when the two differ. Times are stored in UTC as
``DATETIME(6)``; a payment's own UTC offset is kept beside its event time. Only SQL that both
MySQL 8 and MariaDB 10.11 accept is used.

Identifiers compare byte for byte: every id column has the binary collation ``utf8mb4_bin``,
whatever the database's default (``utf8mb4_unicode_ci`` as ``ops/services.sh`` creates it,
``utf8mb4_0900_ai_ci`` on MySQL 8.4), so ``abc`` and ``ABC`` are two payments. Model versions
are ordered by the numbers ``lineage`` and ``sequence``, never by their names as strings.
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
    text,
)
from sqlalchemy.dialects.mysql import DATETIME, LONGBLOB, MEDIUMBLOB

metadata = MetaData()

Timestamp = DATETIME(fsp=6)
Blob = LargeBinary().with_variant(MEDIUMBLOB(), "mysql", "mariadb")
# Raw Kafka bytes of any size a broker may be configured to take (LONGBLOB: up to 4 GiB).
RawBytes = LargeBinary().with_variant(LONGBLOB(), "mysql", "mariadb")
BINARY = "utf8mb4_bin"


def Id(length: int = 64) -> String:  # noqa: N802 (a column type, named like one)
    """An identifier: compared byte for byte."""
    return String(length, collation=BINARY)


scored_payments = Table(
    "scored_payments",
    metadata,
    Column("transaction_id", Id(), primary_key=True),
    Column("card_id", Id(), nullable=False),
    Column("merchant_id", Id(), nullable=False),
    Column("terminal_id", Id(), nullable=False),
    Column("amount_minor", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("event_time", Timestamp, nullable=False, comment="UTC"),
    Column("utc_offset_minutes", SmallInteger, nullable=False),
    Column("fraud_probability", Double, nullable=False),
    Column("decision", String(8), nullable=False, comment="approve, review or decline"),
    Column(
        "reason_codes",
        JSON,
        nullable=False,
        comment="up to three feature names, empty for an approval (computed on demand)",
    ),
    Column("model_version", Id(), nullable=False),
    Column("features", JSON, nullable=False, comment="feature name -> value used to score"),
    Column("kafka_partition", Integer, nullable=False),
    Column("kafka_offset", BigInteger, nullable=False),
    Column("scored_at", Timestamp, nullable=False, comment="UTC"),
    Column("label_is_fraud", Boolean, nullable=True, comment="set once, when the label is learned"),
    Column("label_reported_at", Timestamp, nullable=True, comment="UTC"),
    Column(
        "appended_at",
        Timestamp,
        nullable=True,
        comment="UTC: the Kafka record timestamp (log-append time, or the producer time)",
    ),
    Column("shadow_version", Id(), nullable=True, comment="the challenger shadowing, if any"),
    Column("shadow_probability", Double, nullable=True, comment="the challenger's probability"),
    Column(
        "stored_at",
        Timestamp,
        nullable=True,
        server_default=text("CURRENT_TIMESTAMP(6)"),
        info={"written_at": True},
        comment="UTC: when MySQL wrote the row, inside the transaction of its batch",
    ),
    Index("ix_scored_payments_card_time", "card_id", "event_time"),
    Index("ix_scored_payments_event_time", "event_time"),
    # The review queue (review.queries): by decision, most likely fraud first, and by merchant.
    Index("ix_scored_payments_queue", "decision", "fraud_probability", "transaction_id"),
    Index(
        "ix_scored_payments_merchant_queue",
        "merchant_id",
        "decision",
        "fraud_probability",
        "transaction_id",
    ),
    comment="One row per payment, first write wins: a replayed payment changes nothing.",
)

dead_letters = Table(
    "dead_letters",
    metadata,
    Column("topic", Id(249), primary_key=True),
    Column("kafka_partition", Integer, primary_key=True, autoincrement=False),
    Column("kafka_offset", BigInteger, primary_key=True, autoincrement=False),
    Column("message_key", RawBytes, nullable=True, comment="the record's key, whole"),
    Column("raw_value", RawBytes, nullable=True, comment="the record's value, whole"),
    Column("error", Text, nullable=False),
    Column("received_at", Timestamp, nullable=True, comment="Kafka record time, UTC"),
    Column("dead_lettered_at", Timestamp, nullable=False, comment="UTC"),
    comment="Messages that broke the contract or rows MySQL refused, keyed by where read.",
)

fraud_labels = Table(
    "fraud_labels",
    metadata,
    Column("topic", Id(249), primary_key=True),
    Column("kafka_partition", Integer, primary_key=True, autoincrement=False),
    Column("kafka_offset", BigInteger, primary_key=True, autoincrement=False),
    Column("transaction_id", Id(), nullable=False),
    Column("card_id", Id(), nullable=False),
    Column("is_fraud", Boolean, nullable=False),
    Column("reported_at", Timestamp, nullable=False, comment="UTC"),
    Column("status", String(8), nullable=False, comment="waiting, claimed or rejected"),
    Column("reason", Text, nullable=True, comment="why a rejected label is not learned"),
    Column("learned_version", Id(), nullable=True, comment="the first version that learned it"),
    Column("first_seen_at", Timestamp, nullable=False, comment="UTC"),
    Column("resolved_at", Timestamp, nullable=True, comment="UTC"),
    Column(
        "analyst",
        Id(),
        nullable=True,
        comment="who gave it in the review queue: only when a review_verdicts row confirms it",
    ),
    Column(
        "unverified_analyst",
        Id(),
        nullable=True,
        comment="an analyst the message named that no review_verdicts row confirms: a claim, "
        "never shown as that analyst's verdict",
    ),
    Index("ix_fraud_labels_transaction", "transaction_id"),
    Index("ix_fraud_labels_status", "status", "topic", "kafka_partition"),
    comment="Every fraud label read, keyed by where it was read: what became of it.",
)

model_versions = Table(
    "model_versions",
    metadata,
    Column("version", Id(), primary_key=True),
    Column("lineage", BigInteger, nullable=False, comment="v00002.000017 -> 2"),
    Column("sequence", BigInteger, nullable=False, comment="v00002.000017 -> 17, and 0 for a root"),
    Column("parent_version", Id(), nullable=True),
    Column("created_at", Timestamp, nullable=False, comment="UTC"),
    Column("origin", String(16), nullable=False, comment="pretrained, retrained or online"),
    Column("labels_learned", BigInteger, nullable=False),
    Column("content_hash", String(64), nullable=False, comment="SHA-256 of the artifact"),
    Column("artifact_path", String(512), nullable=False),
    Column("metadata", JSON, nullable=False),
    Column("artifact", Blob, nullable=False, comment="the pickled model"),
    Index("ix_model_versions_order", "lineage", "sequence", unique=True),
    comment="Every model version that scored or may score payments.",
)

model_candidates = Table(
    "model_candidates",
    metadata,
    Column("version", Id(), primary_key=True),
    Column("created_at", Timestamp, nullable=False, comment="UTC"),
    Column("origin", String(16), nullable=False),
    Column("content_hash", String(64), nullable=False, comment="SHA-256 of the artifact"),
    Column("verdict", Text, nullable=False, comment="how it compared with the champion"),
    Column("metadata", JSON, nullable=False),
    Column("artifact", Blob, nullable=False, comment="the pickled model"),
    comment="Versions that may shadow the champion and be promoted, but never score by "
    "themselves (python -m model_state.retrain --candidate).",
)

model_actions = Table(
    "model_actions",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("action", String(8), nullable=False, comment="shadow, unshadow or promote"),
    Column("version", Id(), nullable=False, comment="the version shadowed or promoted"),
    Column("decided_by", String(128), nullable=False),
    Column("decided_at", Timestamp, nullable=False, comment="UTC"),
    Column("note", Text, nullable=True),
    Column("promoted_as", Id(), nullable=True, comment="promote: the new version recorded"),
    comment="Shadow scoring and promotions, as operators decided them "
    "(python -m model_state.shadow).",
)

review_users = Table(
    "review_users",
    metadata,
    Column("name", Id(), primary_key=True),
    Column("role", String(8), nullable=False, comment="analyst or viewer"),
    Column("password_hash", String(255), nullable=False, comment="scrypt (review.passwords)"),
    Column("created_at", Timestamp, nullable=False, comment="UTC"),
    comment="Who may sign in to the review queue (python -m review.users). Review app: SELECT. "
    "Admin tool: SELECT, INSERT, UPDATE (role, password_hash).",
)

review_verdicts = Table(
    "review_verdicts",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("transaction_id", Id(), nullable=False),
    Column("card_id", Id(), nullable=False),
    Column("analyst", Id(), nullable=False),
    Column("is_fraud", Boolean, nullable=False, comment="the verdict"),
    Column("note", Text, nullable=True),
    Column("decided_at", Timestamp, nullable=False, comment="UTC, the label's reported_at"),
    Column("model_version", Id(), nullable=False, comment="the version that scored the payment"),
    Column("model_decision", String(8), nullable=False, comment="what the verdict overrode"),
    Column("model_probability", Double, nullable=False),
    Column("earlier_label_is_fraud", Boolean, nullable=True, comment="the payment's label then"),
    Column("earlier", Text, nullable=True, comment="earlier labels and verdicts, in words"),
    Column("labels_topic", Id(249), nullable=False),
    Column("kafka_partition", Integer, nullable=True, comment="where the label was written"),
    Column("kafka_offset", BigInteger, nullable=True, comment="NULL: not delivered"),
    Column("delivery_error", Text, nullable=True),
    Index("ix_review_verdicts_transaction", "transaction_id"),
    comment="Every verdict given in the review queue, and the label message it became. Review "
    "app: SELECT, INSERT, UPDATE (kafka_partition, kafka_offset, delivery_error). The flow: "
    "SELECT (transaction_id, card_id, analyst, is_fraud, decided_at), to confirm a label's "
    "analyst (storage.labels).",
)


# -- The review application's sign-in state ------------------------------------------------------
# Who may do what (the grants of each job's MySQL account):
#   review app (python -m review)       the three tables below, as each comment says
#   admin tool (python -m review.users) review_login_limits: SELECT, UPDATE (unlock);
#                                       review_login_audit: INSERT (the unlock)
#   the flow                            none of them
# Sessions and limits are mutable state; the audit is insert-only: no job UPDATEs or DELETEs it.

review_sessions = Table(
    "review_sessions",
    metadata,
    Column(
        "id",
        Id(),
        primary_key=True,
        comment="SHA-256 (hex) of the session token in the cookie (the token is never stored)",
    ),
    Column("user_name", Id(), nullable=False),
    Column(
        "credentials",
        Id(),
        nullable=False,
        comment="SHA-256 (hex) of the user's role and password hash at sign-in: "
        "a changed role or password ends the session",
    ),
    Column("client_address", String(64), nullable=False, comment="where the sign-in came from"),
    Column("created_at", Timestamp, nullable=False, comment="UTC"),
    Column("last_seen_at", Timestamp, nullable=False, comment="UTC: the last request"),
    Column("ended_at", Timestamp, nullable=True, comment="UTC, NULL while live"),
    Column(
        "end_reason",
        String(16),
        nullable=True,
        comment="logout, replaced, idle, expired, credentials or removed",
    ),
    Index("ix_review_sessions_user", "user_name", "created_at"),
    comment="Sessions of the review application, checked on every request (review.sessions). "
    "Review app: SELECT, INSERT, UPDATE (last_seen_at, ended_at, end_reason).",
)

review_login_limits = Table(
    "review_login_limits",
    metadata,
    Column("kind", String(8), primary_key=True, comment="account, address or device"),
    Column(
        "subject",
        Id(),
        primary_key=True,
        comment="the user name, the client address or the trusted device's id",
    ),
    Column("failures", Integer, nullable=False, comment="failed sign-ins in the current run"),
    Column("last_failure_at", Timestamp, nullable=True, comment="UTC"),
    Column("locked_until", Timestamp, nullable=True, comment="UTC: sign-ins are refused before"),
    comment="Failed sign-ins and locks per account, client address and trusted device "
    "(review.throttle, review.signin). Review app: SELECT, INSERT, UPDATE (failures, "
    "last_failure_at, locked_until). Admin tool: SELECT, UPDATE (failures, locked_until).",
)

review_login_audit = Table(
    "review_login_audit",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("at", Timestamp, nullable=False, comment="UTC"),
    Column(
        "outcome",
        String(8),
        nullable=False,
        comment="success, failure, refused (locked), lockout (a lock began) or unlock",
    ),
    Column(
        "name", String(64, collation=BINARY), nullable=False, comment="the name typed, cut to 64"
    ),
    Column("client_address", String(64), nullable=False),
    Column("device", Id(), nullable=True, comment="a trusted device's id, if one was shown"),
    Column("session_id", Id(), nullable=True, comment="success: the review_sessions.id"),
    Column("detail", String(255), nullable=True, comment="why: which lock, until when"),
    Index("ix_review_login_audit_name", "name", "at"),
    Index("ix_review_login_audit_at", "at"),
    comment="Every sign-in attempt, lockout and unlock of the review application. Insert-only: "
    "review app and admin tool INSERT, nobody UPDATEs or DELETEs, auditors SELECT.",
)
