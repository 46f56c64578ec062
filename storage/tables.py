"""The MySQL schema as SQLAlchemy Core tables: scored payments, fraud labels, dead letters,
model versions, the review queue's users, verdicts, sessions and sign-in records, and the rules
and lists analysts write.

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
    Column(
        "decision",
        String(8),
        nullable=False,
        comment="the final decision (rules over the model, rules.decisions): approve, review "
        "or decline",
    ),
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
    # Labels as banks send them (issue 22 item 2): how the label came (storage.labels).
    Column(
        "label_kind",
        String(10),
        nullable=True,
        comment="explicit (a label message), implicit (nobody reported it within the label "
        "delay: legitimate) or correction (a fraud reported after an implicit label)",
    ),
    Column(
        "appended_at",
        Timestamp,
        nullable=True,
        comment="UTC: the Kafka record timestamp (log-append time, or the producer time)",
    ),
    Column("shadow_version", Id(), nullable=True, comment="the challenger shadowing, if any"),
    Column("shadow_probability", Double, nullable=True, comment="the challenger's probability"),
    # The payment's other contract fields, for rules and their backtest (rules.backtest); NULL in
    # rows stored before they were kept (country is then NULL too).
    Column("mcc", String(4), nullable=True),
    Column("channel", String(16), nullable=True),
    Column("country", String(2), nullable=True),
    Column("device_id", Id(), nullable=True),
    Column("latitude", Double, nullable=True),
    Column("longitude", Double, nullable=True),
    # The analysts' rules (rules/, issue 21): NULL in rows stored before the flow applied them.
    Column(
        "model_decision",
        String(8),
        nullable=True,
        comment="the model's own decision (its probability against the thresholds)",
    ),
    Column(
        "decided_by",
        Id(),
        nullable=True,
        comment="the rule id that decided, or 'model'",
    ),
    Column(
        "rules_fired",
        JSON,
        nullable=True,
        comment="ids of the active rules that fired, in precedence order, the deciding one first",
    ),
    Column(
        "shadow_hits",
        JSON,
        nullable=True,
        comment="ids of the shadow rules that would have fired (never deciding)",
    ),
    Column(
        "rule_reasons",
        JSON,
        nullable=True,
        comment="words naming the rules that decided (rules.decisions), empty: the model alone",
    ),
    Column("ruleset_version", BigInteger, nullable=True, comment="the ruleset decided with"),
    Column(
        "stored_at",
        Timestamp,
        nullable=True,
        server_default=text("CURRENT_TIMESTAMP(6)"),
        info={"written_at": True},
        comment="UTC: when MySQL wrote the row, inside the transaction of its batch",
    ),
    # The features again, packed (storage.feature_vector): what the backtest reads. NULL in rows
    # stored before the flow packed them (the backtest reads their JSON).
    Column(
        "feature_vector",
        LargeBinary,
        nullable=True,
        comment="the features as float64s in catalogue order (storage.feature_vector)",
    ),
    Index("ix_scored_payments_card_time", "card_id", "event_time"),
    Index("ix_scored_payments_event_time", "event_time"),
    # Payments still unlabelled, oldest first: the implicit negatives due (storage.implicit).
    Index("ix_scored_payments_unlabelled", "label_is_fraud", "event_time"),
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
    Column(
        "message_headers",
        RawBytes,
        nullable=True,
        comment="the record's headers, whole: JSON [[name, base64 value or null], ...]",
    ),
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

implicit_labels = Table(
    "implicit_labels",
    metadata,
    Column("transaction_id", Id(), primary_key=True),
    Column("kind", String(10), primary_key=True, comment="implicit"),
    Column("card_id", Id(), nullable=False),
    Column("event_time", Timestamp, nullable=False, comment="UTC, the payment's"),
    Column(
        "claim",
        BigInteger,
        nullable=False,
        comment="the claim that made it, numbered from 1: a replay hands on the newer ones",
    ),
    Column("claimed_through", Timestamp, nullable=False, comment="UTC: the event-time cutoff"),
    Column("claimed_at", Timestamp, nullable=False, comment="UTC"),
    Column("reason", Text, nullable=True, comment="why it is not learned (sampled_out)"),
    Column("learned_version", Id(), nullable=True, comment="the first version that learned it"),
    Index("ix_implicit_labels_claim", "claim"),
    comment="Every implicit negative, once: a payment nobody reported within the label delay, "
    "claimed as legitimate by the flow (storage.implicit).",
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

# ---------------------------------------------------------------------------- rules and lists
# Rules and lists analysts write (rules/, issue 21). Who writes what:
# - the review app and `python -m rules` write every table below, through rules.store only, one
#   transaction per change, which adds one ruleset_versions row and one ruleset_audit row;
# - the flow (rules.loader) and the backtest (rules.backtest) only read them;
# - ruleset_audit is insert-only for every account but admin.

fraud_rules = Table(
    "fraud_rules",
    metadata,
    Column("rule_id", Id(), primary_key=True),
    Column("text", Text, nullable=False, comment="canonical text (rules.syntax.to_text)"),
    Column("action", String(8), nullable=False, comment="decline, review or allow"),
    Column("priority", Integer, nullable=False, comment="lower first among one action"),
    Column("status", String(8), nullable=False, comment="active, shadow or disabled"),
    Column("created_by", Id(), nullable=False),
    Column("created_at", Timestamp, nullable=False, comment="UTC"),
    Column("updated_by", Id(), nullable=False),
    Column("updated_at", Timestamp, nullable=False, comment="UTC"),
    Column("version", BigInteger, nullable=False, comment="the ruleset version of the last change"),
    comment="The rules as they are now (written by the review app and python -m rules through "
    "rules.store, read by the flow). Every change is also a ruleset_versions row.",
)

rule_lists = Table(
    "rule_lists",
    metadata,
    Column("name", Id(), primary_key=True, comment="written @name in rules"),
    Column(
        "kind", String(8), nullable=False, comment="card, merchant, terminal, country, device, bin"
    ),
    Column("description", Text, nullable=True),
    Column("created_by", Id(), nullable=False),
    Column("created_at", Timestamp, nullable=False, comment="UTC"),
    comment="Named lists (written by the review app and python -m rules, read by the flow).",
)

rule_list_entries = Table(
    "rule_list_entries",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("list_name", Id(), nullable=False),
    Column("value", Id(), nullable=False),
    Column("expires_at", Timestamp, nullable=True, comment="UTC, applies to payments before it"),
    Column("reason", String(500), nullable=True),
    Column("added_by", Id(), nullable=False),
    Column("added_at", Timestamp, nullable=False, comment="UTC"),
    Column("added_in", BigInteger, nullable=False, comment="the ruleset version that added it"),
    Column(
        "removed_in", BigInteger, nullable=True, comment="the version that removed it, NULL: on"
    ),
    Column("removed_by", Id(), nullable=True),
    Column("removed_at", Timestamp, nullable=True, comment="UTC"),
    Index("ix_rule_list_entries_current", "list_name", "removed_in", "value"),
    Index("ix_rule_list_entries_added", "list_name", "added_in"),
    comment="Every list entry ever, with the versions that added and removed it: a list at "
    "version V holds the rows with added_in <= V < removed_in (written by the review app and "
    "python -m rules, the flow reads rule_list_blobs instead).",
)

rule_list_blobs = Table(
    "rule_list_blobs",
    metadata,
    Column("list_name", Id(), primary_key=True),
    Column("version", BigInteger, primary_key=True, autoincrement=False),
    Column("part", Integer, primary_key=True, autoincrement=False),
    Column("data", Blob, nullable=False, comment="rules.lists.pack: zlib(MessagePack), in parts"),
    comment="A list's packed form, written once by the change that made it (ruleset version), "
    "what the flow loads (written by the review app and python -m rules, read by the flow).",
)

ruleset_versions = Table(
    "ruleset_versions",
    metadata,
    Column("version", BigInteger, primary_key=True, autoincrement=False),
    Column("created_at", Timestamp, nullable=False, comment="UTC"),
    Column("created_by", Id(), nullable=False),
    Column("change", String(255), nullable=False, comment="what changed, in words"),
    Column("rules", JSON, nullable=False, comment="every rule: rule_id, text, status"),
    Column("lists", JSON, nullable=False, comment="list name -> kind, blob version, entries"),
    comment="Every ruleset version, whole (a rollback is a new version), the flow applies the "
    "newest (written by the review app and python -m rules, read by the flow).",
)

ruleset_audit = Table(
    "ruleset_audit",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("version", BigInteger, nullable=False, comment="the ruleset version it made"),
    Column("at", Timestamp, nullable=False, comment="UTC"),
    Column("actor", Id(), nullable=False, comment="who"),
    Column("action", String(32), nullable=False, comment="add_rule, edit_rule, set_status, ..."),
    Column("target", String(128), nullable=False, comment="the rule or list"),
    Column("diff", JSON, nullable=False, comment="what changed: before and after"),
    Index("ix_ruleset_audit_version", "version"),
    comment="Who changed which rule or list, when, and the diff. Insert-only for every account "
    "but admin (written by the review app and python -m rules).",
)

# Every table's own character set and collation, whatever the database's default: a database
# made with MariaDB's server default (latin1, `CREATE DATABASE payscore;` by a DBA) gave every
# text column that names no collation (dead_letters.error, review_verdicts.note, fraud_rules.text,
# rule_lists.description, ...) latin1, which refuses an accented letter or an emoji (error 1366):
# the msgspec error quoting a field name in another script, an analyst's "fraude confirmée".
# Identifiers keep their binary collation (Id()).
for _table in metadata.tables.values():
    _table.dialect_options["mysql"]["charset"] = "utf8mb4"
    _table.dialect_options["mysql"]["collate"] = "utf8mb4_unicode_ci"
