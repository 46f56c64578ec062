"""The flow's Prometheus metrics, in one place, and what updates them.

Each flow process serves them at ``/metrics`` on ``PAYSCORE_METRICS_HOST`` (127.0.0.1) and port
``PAYSCORE_METRICS_PORT`` + its process id (3030 + i; :mod:`dataflows.metrics_server`),
together with Bytewax's Kafka consumer lag, ``bytewax_kafka_consumer_lag{step_id, topic,
partition}``: the messages between what a partition reader consumed and the end of the partition
(librdkafka statistics, every second). A counter ``x`` is exposed as ``x_total``.
``ops/prometheus/alerts.yml`` alerts on them and ``ops/grafana/payscore.json`` shows them.

What lands in MySQL is counted after its transaction commits (:func:`stored_payments`), so the
payment counters equal the rows stored by this process since it started, rows made dead letters
left out (a batch replayed after a crash counts again; MySQL keeps its first write).
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

PAYMENTS_SCORED = Counter(
    "payscore_payments_scored", "Scored payments stored in MySQL, by decision", ["decision"]
)
RULE_DECISIONS = Counter(
    "payscore_rule_decisions",
    "Stored payments whose final decision an analyst's rule made, by rule and decision",
    ["rule", "decision"],
)
RULESET_VERSION = Gauge(
    "payscore_ruleset_version", "The ruleset version this process decided its last batch with"
)
APPEND_TO_COMMIT = Histogram(
    "payscore_append_to_commit_seconds",
    "From a payment's Kafka record time (the broker's append time) to its MySQL commit",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
GC_PAUSE = Histogram(
    "payscore_gc_pause_seconds",
    "Python's garbage collections in this process, by generation, and how long each held the "
    "process (every worker thread waits: dataflows/collector.py)",
    ["generation"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
FRAUD_PROBABILITY = Histogram(
    "payscore_fraud_probability",
    "Fraud probability of the payments stored",
    buckets=(0.001, 0.01, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9, 0.99, 1),
)
LAST_SCORED = Gauge(
    "payscore_last_scored_timestamp_seconds", "When this process last stored a scored payment"
)
DEAD_LETTERS = Counter(
    "payscore_dead_letters",
    "Messages made dead letters, by where they came from and a class of their reason",
    ["source", "reason"],
)
SINK_RETRIES = Counter(
    "payscore_sink_retries", "MySQL writes tried again while MySQL was unavailable", ["table"]
)
SINK_FAILURES = Counter(
    "payscore_sink_failures", "MySQL writes that failed for good (the flow stops)", ["table"]
)
MODEL_INFO = Gauge("payscore_model_info", "The model version scoring in this process", ["version"])
MODEL_PUBLISHED = Gauge(
    "payscore_model_published_timestamp_seconds", "When the version scoring here was created"
)
MODEL_CHECKED = Gauge(
    "payscore_model_checked_timestamp_seconds",
    "When this process last looked in model_versions for a newer version (successfully)",
)
MODEL_BEHIND_SINCE = Gauge(
    "payscore_model_behind_since_timestamp_seconds",
    "Since when model_versions holds a version newer (by lineage and sequence) than the one "
    "scoring here that this process has not adopted; 0 while it scores with the newest",
)
VERSIONS_REFUSED = Counter(
    "payscore_model_versions_refused",
    "model_versions rows this process refused to load (each once), by why",
    ["reason"],
)
for _reason in ("identity", "signature", "missing", "mismatch"):  # shown at 0, so increase() works
    VERSIONS_REFUSED.labels(_reason)
LEARNER_BACKLOG = Gauge(
    "payscore_learner_backlog", "Labels learned but not yet published in a model version"
)
PSI = Gauge(
    "payscore_psi",
    "Population stability index against the training distribution, over the last payments",
    ["subject"],
)

DUPLICATES = Counter("payscore_duplicate_payments", "Payments skipped as repeats of a recent id")
LABELS = Counter("payscore_labels", "Fraud labels by what became of them", ["outcome"])
CLAIM_SIZE = Histogram(
    "payscore_label_claim_size",
    "Label messages tried in one claim transaction of the label join (held and waiting ones)",
    buckets=(1, 5, 10, 20, 50, 100, 200, 500, 1000, 2000),
)
LEARNED = Counter(
    "payscore_labels_learned",
    "Labels the learner learned, by kind (explicit, implicit, correction)",
    ["kind"],
)
CLAIMED_KINDS = Counter(
    "payscore_labels_claimed",
    "Labels claimed (label messages and implicit negatives; replays not counted), by kind "
    "(explicit, implicit, correction) and whether the learner was given them (learner: yes, or "
    "sampled_out by negative downsampling)",
    ["kind", "learner"],
)
IMPLICIT_REPLAYED = Counter(
    "payscore_implicit_labels_replayed",
    "Implicit negatives handed to the learner again after a restart (claimed after the snapshot)",
)
for _kind in ("explicit", "implicit", "correction"):  # shown at 0, so increase() works
    LEARNED.labels(_kind)
    CLAIMED_KINDS.labels(_kind, "yes")
    if _kind != "correction":  # every correction is learned
        CLAIMED_KINDS.labels(_kind, "sampled_out")
SKIPPED = Counter(
    "payscore_labels_known", "Replayed labels skipped: the version resumed from learned them"
)
OUTDATED = Counter(
    "payscore_labels_outdated_features",
    "Labels not learned: their payment was scored with another feature catalogue",
)

SNAPSHOT_SECONDS = Counter(
    "payscore_snapshot_seconds",
    "Seconds the stateful steps spent in snapshot(), which Bytewax calls for every key a step "
    "touched as each epoch closes, by step (the learner and the label join included; none "
    "without a recovery directory, where nobody reads them: dataflows/unread_snapshots.py)",
    ["step"],
)
EPOCHS_CLOSED = Counter(
    "payscore_epochs_closed",
    "Epochs closed by this process's Kafka partition readers, by topic and partition",
    ["topic", "partition"],
)

EPOCH_CLOSE_WAIT = Histogram(
    "payscore_epoch_close_wait_seconds",
    "From a Kafka partition reader's epoch close to its next read: Bytewax reads nothing more "
    "until every process has closed that epoch and all it read is stored (dataflows/epochs.py)",
    ["topic"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
)

EPOCH_CLOSE_OFF_GRID = Histogram(
    "payscore_epoch_close_off_grid_seconds",
    "How far from the nearest boundary of the epoch grid (before or after) a Kafka partition "
    "reader closed an epoch (dataflows/epochs.py), by topic: near 0 when every process closes "
    "together; a reader whose closes stay seconds off the grid holds every other one back",
    ["topic"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 7.5, 10),
)


def snapshot_timer(step: str) -> Callable[[float], None]:
    """What a step calls with the seconds one ``snapshot()`` took."""
    return SNAPSHOT_SECONDS.labels(step).inc


_EPOCH = datetime(1970, 1, 1)


def stored_payments(rows: Sequence[Mapping[str, Any]], replayed: bool = False) -> None:
    """Count a batch of ``scored_payments`` rows just committed (the sink's ``after_commit``;
    rows it made dead letters are not among them). In a batch where MySQL skipped rows stored
    already (a replay after a crash), those rows are counted again but their latency is not
    observed: they were committed before."""
    now = time.time()
    for decision, n in collections.Counter(row["decision"] for row in rows).items():
        PAYMENTS_SCORED.labels(decision).inc(n)
    by_rule = collections.Counter(
        (row["decided_by"], row["decision"])
        for row in rows
        if row.get("decided_by") not in (None, "model")
    )
    for (rule, decision), n in by_rule.items():
        RULE_DECISIONS.labels(rule, decision).inc(n)
    for row in rows:
        FRAUD_PROBABILITY.observe(row["fraud_probability"])
        appended = row.get("appended_at")
        if appended is not None and not replayed:  # naive UTC, as stored
            APPEND_TO_COMMIT.observe(max(now - (appended - _EPOCH).total_seconds(), 0.0))
    if rows:
        LAST_SCORED.set(now)


def scoring_with(version: str, created_at: datetime) -> None:
    """The version scoring in this process is now ``version``."""
    MODEL_INFO.clear()
    MODEL_INFO.labels(version).set(1)
    MODEL_PUBLISHED.set(created_at.timestamp())


def model_checked(at: float, behind_since: float | None) -> None:
    """The registry looked for a newer version at ``at``; since ``behind_since`` (or not at
    all) a newer recorded version waits to be adopted."""
    MODEL_CHECKED.set(at)
    MODEL_BEHIND_SINCE.set(behind_since or 0.0)


def version_refused(version: str, reason: str) -> None:
    """A ``model_versions`` row was refused (``reason``: identity, signature, missing or
    mismatch); ``version`` is for the log, not a label."""
    VERSIONS_REFUSED.labels(reason).inc()


def dead_letter(source: str, kind: str) -> None:
    """A dead letter of ``source`` (the flow's step that made it) and ``kind``: what the message
    broke, as the code that made the letter names it (``features.contract.Invalid``,
    ``reused_id``, ``refused_by_mysql``), never read from the letter's text."""
    DEAD_LETTERS.labels(source, kind).inc()
