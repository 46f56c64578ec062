"""The payscore dataflow: every payment read from Kafka is scored for fraud and stored in MySQL,
and the model keeps learning from the fraud labels that arrive later.

Run it with ``python -m bytewax.run dataflows.scoring:flow`` (``-w N`` worker threads, ``-i/-a``
for several processes, ``-r/-s/-b`` for recovery; see the README). Top to bottom:

Payments
    1. **Decode** each message into a typed ``Payment``. One that breaks the contract becomes a
       dead letter (Kafka topic and MySQL table) with its reason, partition and offset.
    2. **Features**: the card's, the terminal's and the merchant's histories, each keyed by its
       id, add their point-in-time features; calendar features come last. A card's exact repeat
       of a recent payment is skipped; a recent id reused for other content is a dead letter.
    3. **Score** each batch with the newest model version: probability and the model's
       decision.
    4. **Apply the analysts' rules** (the newest ruleset version, ``rules/``): the final
       decision by the precedence allow rule > decline rule > review rule > model
       (``rules/decisions.py``), the rules that fired and the shadow rules that would have, and
       reason codes for the payments an analyst reads (all but approvals, and every payment a
       rule fired on; an approval's are computed on demand from its stored features and
       version, ``python -m review.explain``). Every process applies a new ruleset version
       within ``PAYSCORE_RULES_REFRESH_SECONDS`` without a restart (``rules/loader.py``).
    5. **Store and publish** the decided payment: in MySQL (first write wins, so a replay
       changes nothing; a transaction id belongs to the first message in Kafka order, any other
       carrying it is a dead letter), and its stored decision on the decisions topic, inside
       the same transaction (``storage/sink.py``).

Labels
    6. **Decode** each label the same way (bad ones are dead letters too).
    7. **Join** it with its stored payment: the features that payment was scored with.
    8. **Feed back**: the label updates its terminal's and merchant's fraud rates (from its
       report time on) and **learns**: one learner owns the model and publishes new versions,
       which step 3 picks up. Each version is recorded in MySQL and checkpointed on disk.
    8. **Implicit negatives**: a stored payment nobody reported within the label delay (on the
       payments' event-time clock) is claimed once as legitimate and learned as such; a fraud
       reported after that is a correction (step 6). Legitimate labels are learned as a
       weighted sample (negative downsampling), every fraud is learned.
       A scheduled retrain (``python -m model_state.retrain``) starts a new lineage, which
       scoring and the learner both go on from.

Every message ends somewhere one can query: a scored payment, a label row in ``fraud_labels``
(claimed and learned, or rejected with its reason), or a dead letter. Labels take effect exactly
once through crashes and restarts (see ``dataflows/label_join.py`` and ``learning.py``);
SIGTERM or SIGINT stop the flow gracefully (``dataflows/stopping.py``); MySQL outages are ridden
out for ``PAYSCORE_MYSQL_OUTAGE_SECONDS`` (``storage/engine.py``). Whatever stops the flow is
logged with its Python cause and its step first (``dataflows/failures.py``); the process then
exits at once with status 1 (``dataflows/exiting.py``), for a supervisor to restart it.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import zlib
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import bytewax.operators as op
from bytewax.dataflow import Dataflow, Stream
from confluent_kafka import OFFSET_BEGINNING

from dataflows import collector, exiting, logs, metrics, stopping
from dataflows.call_trace import CallTrace
from dataflows.cluster_shape import require_cluster_shape
from dataflows.dead_letter_topic import DeadLetterSink
from dataflows.decisions_topic import DecisionsTopic
from dataflows.drift_watch import DriftWatch
from dataflows.epochs import EpochGrid, epoch_interval
from dataflows.failures import log_failures
from dataflows.implicit_negatives import (
    CLAIMER_KEY,
    configured_implicit_negatives,
    newest_event_time,
)
from dataflows.keyed_history import History, keyed_history, mark_key
from dataflows.label_join import configured_label_join, join_labels
from dataflows.learning import LEARNER_KEY, Lineages, learn_step
from dataflows.messages import (
    DeadLetter,
    MessageDecoder,
    Positioned,
    letter_row,
    rejected_letter,
)
from dataflows.metrics_server import process_id, refuse_bytewax_api, serve_metrics
from dataflows.model_registry import ModelRegistry
from dataflows.output_topics import require_topics
from dataflows.payments_topic import require_append_time
from dataflows.recovery_dir import recovery_directory, require_own_recovery
from dataflows.schema_check import require_schema
from dataflows.sources import DrainCheck, FlowKafkaSource, LabelsAccountedFor
from dataflows.unread_snapshots import skip_unread_snapshots
from dataflows.wake_ups import with_wake_ups
from features.calendar import calendar_features
from features.card import CardHistory
from features.catalog import HISTORY_REACH
from features.contract import LabelDecoder, Payment, PaymentDecoder
from features.entity import EntityHistory
from model_state import artifact, signing
from model_state.artifact import VersionRecord
from model_state.checkpoints import ModelVersionSink
from model_state.scorer import Scorer, explained_rows
from model_state.stored_versions import NewerVersionsInMySQL, RefusedRows
from rules.loader import RulesWatch
from rules.ruleset import Ruleset
from rules.store import RulesStore
from settings.config import Config
from storage.engine import make_engine
from storage.labels import FraudNote, LabelledPayment
from storage.payments import settle_reused_ids
from storage.rows import refused_row_letter, scored_payment_row
from storage.sink import MySQLSink, Writing
from storage.tables import dead_letters, scored_payments

log = logging.getLogger(__name__)

# A key idle past every feature's reach (features.catalog.HISTORY_REACH, 38 days) plus a day.
IDLE_KEY_SECONDS = HISTORY_REACH + timedelta(days=1).total_seconds()
CARD_IDS_KEPT = 64  # a card's last transaction ids, to skip a redelivered payment
LABEL_GROUPS = 16  # keys of the label join (cards hashed into groups; label_join.py: why 16)
NO_RULES = Ruleset(0, (), {})  # version 0: no rule yet
FLOW_ID = "payscore"


def flow() -> Dataflow:
    """The entry point: reads the configuration from the environment, serves this process's
    metrics (``dataflows/metrics_server.py``), routes SIGTERM and SIGINT to a graceful stop,
    makes a failing process exit at once (``dataflows/exiting.py``), builds the flow and sets the
    garbage collector for it (``dataflows/collector.py``)."""
    config = Config.from_env(os.environ)
    logs.configure(config.log_level, config.log_format)
    refuse_bytewax_api(os.environ)
    require_cluster_shape(sys.argv, os.environ)
    require_append_time(config)
    require_topics(config)
    require_schema(config)
    artifact.require_writable(Path(config.model_dir))
    require_own_recovery(sys.argv, os.environ, FLOW_ID, kafka_readers(config))
    serve_metrics(config.metrics_host, config.metrics_port, process_id(sys.argv, os.environ))
    stop = threading.Event()
    stopping.install(stop)
    exiting.install()
    built = build(
        config,
        stop,
        epoch_seconds=epoch_interval(sys.argv, os.environ),
        snapshots_read=recovery_directory(sys.argv, os.environ) is not None,
    )
    collector.settle()  # what exists now (the model, the modules) is never scanned again
    return built


def build(
    config: Config,
    stop: threading.Event | None = None,
    *,
    epoch_seconds: float | None = None,
    snapshots_read: bool = True,
) -> Dataflow:
    """The flow; with ``epoch_seconds`` (bytewax.run's epoch interval) and
    ``PAYSCORE_EPOCH_ALIGN_MS`` > 0 its readers close their epochs on a grid shared by every
    process (``dataflows/epochs.py``); without ``snapshots_read`` (no recovery directory) its
    stateful steps take no snapshot (``dataflows/unread_snapshots.py``)."""
    stop = stop or threading.Event()
    grid = (
        EpochGrid(epoch_seconds, config.epoch_align_ms / 1000)
        if epoch_seconds and config.epoch_align_ms
        else None
    )
    model_dir = Path(config.model_dir)
    key = signing.read_key(Path(config.model_key_file))
    start = artifact.load(model_dir, key=key)
    refused = RefusedRows(metrics.version_refused)  # logged once per process
    versions = NewerVersionsInMySQL(config.mysql_dsn, key=key, refused=refused)
    models = ModelRegistry(
        start,
        versions,
        refresh_seconds=config.model_refresh_seconds,
        watch=True,
        review=config.review_threshold,
        decline=config.decline_threshold,
        fetch_challenger=versions.challenger if config.shadow else None,
        newest_seen=versions.newest_seen,
    )
    drift = DriftWatch()
    rules = analysts_rules(config)
    log.info(
        "flow built: payments from %s, labels from %s, scoring with %s, %s",
        config.payments_topic,
        config.labels_topic,
        start.version,
        "following the topics" if config.tail else "until the end of the topics",
        extra={"event": "flow_started", "version": start.version},
    )
    skew = timedelta(seconds=config.max_future_skew_seconds)
    decode = MessageDecoder(PaymentDecoder(skew), LabelDecoder(skew))
    flow = Dataflow(FLOW_ID)

    # Labels: decode, join with the stored payment, (below) feed back into features and model.
    label_messages = op.input(
        "read_labels",
        flow,
        kafka_source(config, config.labels_topic, stop, labels_accounted_for(config), grid),
    )
    labels = split_off_dead_letters(
        "labels", op.map("decode_labels", label_messages, decode.label), config
    )
    labelled = join_labels_with_scored_payments(labels, config)
    frauds = fraud_notes(labelled)

    # Payments: decode, features, score, store.
    messages = op.input(
        "read_payments", flow, kafka_source(config, config.payments_topic, stop, grid=grid)
    )
    payments = split_off_dead_letters(
        "payments", op.map("decode_payments", messages, decode.payment), config
    )
    implicit = claim_implicit_negatives(payments, config)
    payments = add_features(
        "card_features",
        payments,
        card_id,
        CardHistory,
        remember=CARD_IDS_KEPT,
        mark_key=mark_key(key),  # the recent ids' content marks: keyed, as no producer knows
        compact=config.card_snapshots == "compact",  # smallest snapshots, or fastest
    )
    payments = split_off_reused_ids(payments, config)
    payments = add_features(
        "terminal_features", payments, terminal_id, terminal_history, (frauds, noted_terminal)
    )
    payments = add_features(
        "merchant_features", payments, merchant_id, merchant_history, (frauds, noted_merchant)
    )
    payments = op.map("calendar_features", payments, add_calendar_features)
    rows = op.flat_map_batch(
        "score_and_apply_rules",
        payments,
        lambda batch: score(
            models.current(),
            batch,
            rules=rules.current(),
            shadow=models.challenger(),
            drift=drift,
        ),
    )
    op.output("store_scored_payments", rows, scored_payments_sink(config))

    # Learning: one learner owns the model; its versions are recorded and checkpointed.
    versions = learn_from_labels(
        op.merge("labels_and_implicit_negatives", labelled, implicit), start, config, key, refused
    )
    op.output(
        "record_model_versions",
        versions,
        ModelVersionSink(
            config.mysql_dsn,
            model_dir,
            config.labels_topic,
            patience=config.mysql_outage_seconds,
            key=key,
        ),
    )
    if not snapshots_read:
        flow = skip_unread_snapshots(flow)
    trace = CallTrace(Path(config.call_trace_dir)) if config.call_trace_dir else None
    return log_failures(flow, trace)


# ---------------------------------------------------------------------------- steps


def kafka_readers(config: Config) -> dict[str, str]:
    """The flow's Kafka readers (their step ids, as Bytewax's snapshots name them) and topics."""
    return {
        f"{FLOW_ID}.read_labels": config.labels_topic,
        f"{FLOW_ID}.read_payments": config.payments_topic,
    }


def analysts_rules(config: Config) -> RulesWatch:
    """The process's view of the analysts' rules: the newest ruleset version now (a flow never
    starts deciding without its block lists, nor with a stale version after a restart), then
    refreshed every ``PAYSCORE_RULES_REFRESH_SECONDS`` on a background thread. Nothing about
    rules is in Bytewax's snapshots."""
    store = RulesStore(make_engine(config.mysql_dsn, pool_size=1))
    watch = RulesWatch.from_store(store, refresh_seconds=config.rules_refresh_seconds)
    return watch.start(patience=config.mysql_outage_seconds)


def kafka_source(
    config: Config,
    topic: str,
    stop: threading.Event,
    drained: DrainCheck | None = None,
    grid: EpochGrid | None = None,
) -> FlowKafkaSource:
    """Every partition of ``topic`` from the beginning; recovery resumes at the stored offsets.
    With ``drained`` (labels, in a drain run) a partition ends only when its labels are
    resolved; with ``grid`` its epochs close on the grid's boundaries."""
    return FlowKafkaSource(
        config.brokers,
        [topic],
        tail=config.tail,
        starting_offset=OFFSET_BEGINNING,
        batch_size=config.kafka_batch_size,
        # An offset the broker deleted already (retention, while the flow was down) resumes at
        # the oldest message left, never at the end (librdkafka's default: every message still
        # in the partition was skipped); dataflows/sources.py logs what was deleted unread.
        add_config=config.kafka_settings,
        consumer_config={"auto.offset.reset": "earliest"},
        stop=stop,
        drained=drained,
        poll_seconds=min(config.label_retry_seconds, 1.0),
        give_up_seconds=config.label_wait_seconds + 3 * config.label_retry_seconds + 60,
        grid=grid,
    )


def labels_accounted_for(config: Config) -> DrainCheck | None:
    """In a drain run, a labels partition ends only once the labels it read are resolved."""
    return (
        None if config.tail else LabelsAccountedFor(config.mysql_dsn, config.mysql_outage_seconds)
    )


def split_off_dead_letters(name: str, decoded: Stream, config: Config) -> Stream:
    """Send dead letters to their Kafka topic and MySQL table; return the valid events."""
    split = op.branch(f"split_valid_{name}", decoded, lambda x: isinstance(x, Positioned))
    publish_dead_letters(name, split.falses, config)
    return split.trues


def split_off_reused_ids(payments: Stream, config: Config) -> Stream:
    """A payment whose id its card used before for other content is a dead letter."""
    split = op.branch("split_reused_ids", payments, lambda p: not p.rejected)
    letters = op.map(
        "reused_id_letters", split.falses, lambda p: rejected_letter(p, config.payments_topic)
    )
    publish_dead_letters("reused_ids", letters, config)
    return split.trues


def publish_dead_letters(name: str, letters: Stream[DeadLetter], config: Config) -> None:
    """To the ``dead_letters`` table (whole) and the dead-letter topic (what fits)."""
    op.output(
        f"store_{name}_dead_letters",
        op.map(f"{name}_dead_letter_rows", letters, lambda d: counted_dead_letter_row(name, d)),
        dead_letter_sink(config),
    )


def dead_letter_sink(config: Config) -> DeadLetterSink:
    return DeadLetterSink(
        config.mysql_dsn,
        config.kafka_client(),
        config.dead_letters_topic,
        config.dead_letter_max_bytes,
        patience=config.mysql_outage_seconds,
        on_retry=metrics.SINK_RETRIES.labels(dead_letters.name).inc,
        on_failure=metrics.SINK_FAILURES.labels(dead_letters.name).inc,
    )


def counted_dead_letter_row(source: str, letter: DeadLetter) -> dict[str, object]:
    """The ``dead_letters`` row of ``letter``, counted in ``payscore_dead_letters_total`` by
    its kind."""
    metrics.dead_letter(source, letter.kind)
    return letter_row(letter)


def scored_payments_sink(config: Config) -> MySQLSink:
    """First write wins; the first message in Kafka order keeps a transaction id; a row MySQL
    refuses, or whose id belongs to a payment read earlier, becomes a dead letter of its
    payment (table and topic); every batch publishes its stored decisions on the decisions
    topic before it commits (``dataflows/decisions_topic.py``)."""
    return MySQLSink(
        config.mysql_dsn,
        scored_payments,
        Writing(
            refused=refused_row_letter(config.payments_topic),
            refused_table=dead_letters,
            patience=config.mysql_outage_seconds,
            conflicts=settle_reused_ids,
            after_commit=metrics.stored_payments,
            on_retry=metrics.SINK_RETRIES.labels(scored_payments.name).inc,
            on_failure=metrics.SINK_FAILURES.labels(scored_payments.name).inc,
            on_refused=lambda kind: metrics.dead_letter("refused_rows", kind),
            conflict_kind="reused_id",
            letters_out=lambda: dead_letter_sink(config).topic().publish,
            before_commit=lambda: DecisionsTopic(
                config.kafka_client(), config.decisions_topic, patience=config.mysql_outage_seconds
            ),
        ),
    )


def card_id(p: Positioned[Payment]) -> str:
    return p.event.card_id


def terminal_id(p: Positioned[Payment]) -> str:
    return p.event.terminal_id


def merchant_id(p: Positioned[Payment]) -> str:
    return p.event.merchant_id


def fraud_notes(labelled: Stream[LabelledPayment]) -> Stream[FraudNote]:
    """The claimed frauds, as the fraud rates need them. A legitimate label changes no fraud
    rate (``EntityHistory.learn_label``), so it goes to the learner only."""
    frauds = op.filter("claimed_frauds", labelled, lambda label: label.is_fraud)
    return op.map("fraud_notes", frauds, FraudNote.of)


def noted_terminal(note: FraudNote) -> str:
    return note.terminal_id


def noted_merchant(note: FraudNote) -> str:
    return note.merchant_id


def terminal_history() -> EntityHistory:
    return EntityHistory("terminal")


def merchant_history() -> EntityHistory:
    return EntityHistory("merchant")


def add_features(
    step: str,
    payments: Stream[Positioned[Payment]],
    key: Callable[[Positioned[Payment]], str],
    new_history: Callable[[], History],
    labels: tuple[Stream[FraudNote], Callable[[FraudNote], str]] | None = None,
    *,
    remember: int = 0,
    mark_key: bytes | None = None,
    compact: bool = False,
) -> Stream[Positioned[Payment]]:
    """Key the payments (and labels) by ``key``; that key's history adds its features (and, with
    ``remember``, skips repeats of its last ids, marked with ``mark_key``); with ``compact`` its
    snapshots take the history's smallest form."""
    keyed = op.key_on(f"key_{step}", payments, key)
    if labels is not None:
        labelled, label_key = labels
        keyed_labels = op.key_on(f"key_labels_{step}", labelled, label_key)
        keyed = op.merge(f"payments_and_labels_{step}", keyed, keyed_labels)  # type: ignore[assignment]
    with_features = op.stateful_batch(
        step,
        keyed,
        keyed_history(
            new_history, IDLE_KEY_SECONDS, remember, step, mark_key=mark_key, compact=compact
        ),
    )
    return op.key_rm(f"unkey_{step}", with_features)


def add_calendar_features(p: Positioned[Payment]) -> Positioned[Payment]:
    p.features.update(calendar_features(p.event))
    return p


def score(
    scorer: Scorer,
    batch: list[Positioned[Payment]],
    *,
    rules: Ruleset = NO_RULES,
    explain: bool | Sequence[bool] = False,
    shadow: Scorer | None = None,
    drift: DriftWatch | None = None,
) -> list[dict[str, object]]:
    """The rows to store for a batch of payments, all scored by one model version and decided
    with one ruleset version (``rules``) at once, with the reason codes of every payment not
    approved by the model, of every payment an active rule fired on, and of those ``explain``
    marks (one flag a payment, ``True``: all); an approval's are computed on demand. A
    challenger ``shadow`` scores them too (its probability is stored, nothing else of it);
    ``drift`` watches what was scored."""
    features = [p.features for p in batch]
    split = scorer.split_batch(features)
    metrics.RULESET_VERSION.set(rules.version)
    outcomes = rules.decide_batch(
        [p.event for p in batch], features, split.probabilities, split.decisions
    )
    # A rule fired (it decided, or was overruled): an analyst reads why the model said what it
    # did. Ranked with the others' in one call, from the one split of the batch.
    marked = explained_rows(explain, len(batch))
    results = split.scores(
        [bool(o.rules_fired) or m for o, m in zip(outcomes, marked, strict=True)]
    )
    reasons = [r.reasons for r in results]
    shadowed = shadow.probabilities(features) if shadow is not None else [None] * len(batch)
    if drift is not None:
        drift.observe(scorer, features, split.probabilities)
    scored_at = datetime.now(UTC)
    return [
        scored_payment_row(
            p.event,
            partition=p.partition,
            offset=p.offset,
            features=p.features,
            probability=result.probability,
            decision=result.decision,
            reasons=why,
            model_version=scorer.version,
            scored_at=scored_at,
            appended_at=p.appended_at,
            shadow_version=shadow.version if shadow is not None else None,
            shadow_probability=other,
            outcome=outcome,
            ruleset_version=rules.version,
        )
        for p, result, why, outcome, other in zip(
            batch, results, reasons, outcomes, shadowed, strict=True
        )
    ]


def card_group(card: str) -> str:
    """One of ``LABEL_GROUPS`` keys for the label join: all labels of a card go to one key,
    and one key claims the labels of many cards in one transaction per batch."""
    return str(zlib.crc32(card.encode()) % LABEL_GROUPS)


def join_labels_with_scored_payments(labels: Stream, config: Config) -> Stream[LabelledPayment]:
    keyed = op.key_on("key_labels_by_card_group", labels, lambda p: card_group(p.event.card_id))
    joined = join_labels(
        "join_labels_with_scored_payments",
        keyed,
        configured_label_join(config),
        [str(group) for group in range(LABEL_GROUPS)],
    )
    return op.key_rm("unkey_labelled_payments", joined)


def claim_implicit_negatives(
    payments: Stream[Positioned[Payment]], config: Config
) -> Stream[LabelledPayment]:
    """The payments' event-time clock, one tick a batch, drives one claimer of the payments
    nobody reported within ``PAYSCORE_LABEL_DELAY_DAYS`` (``dataflows/implicit_negatives.py``)."""
    ticks = op.flat_map_batch("event_time_clock", payments, newest_event_time)
    keyed = op.key_on("key_implicit_claimer", ticks, lambda _: CLAIMER_KEY)
    step = "claim_implicit_negatives"
    claimed = op.stateful_batch(
        step, with_wake_ups(step, keyed, [CLAIMER_KEY]), configured_implicit_negatives(config)
    )
    return op.key_rm("unkey_implicit_negatives", claimed)


def learn_from_labels(
    labelled: Stream[LabelledPayment],
    start: artifact.ModelArtifact,
    config: Config,
    key: bytes,
    refused: RefusedRows,
) -> Stream[VersionRecord]:
    keyed = op.key_on("key_learner", labelled, lambda _: LEARNER_KEY)
    versions = op.stateful_batch(
        "learn",
        keyed,
        learn_step(
            start,
            root=(
                artifact.load(Path(config.model_dir), start.metadata.base_version, key=key)
                if start.metadata.base_version
                else None
            ),
            publish_every=config.publish_every_labels,
            publish_seconds=config.publish_seconds,
            lineages=Lineages(
                NewerVersionsInMySQL(
                    config.mysql_dsn,
                    key=key,
                    patience=config.mysql_outage_seconds,
                    refused=refused,
                ),
                config.model_refresh_seconds,
            ),
        ),
    )
    return op.key_rm("unkey_versions", versions)
