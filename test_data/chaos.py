"""Crash and outage drills for the running flow, and the accounting that must hold after them.

Used by ``tests/test_chaos_integration.py`` (a bounded schedule, in CI) and by
``benchmarks/soak.py`` (long schedules, by hand). Everything runs against the real broker and
MySQL server of ``ops/services.sh``, on this machine.

:class:`FlowProcess` runs ``ops/run_flow.sh`` with Bytewax recovery and can kill it
(``kill -9`` of every process, optionally right after a snapshot was written) or stop it
(SIGTERM). :func:`account` then says, from MySQL alone, whether

- every valid payment is stored once and its card features equal the offline replay;
- every label message is accounted for (a ``fraud_labels`` row or a dead letter), none waits,
  and the claimed ones are exactly the labels whose payments exist (with implicit negatives,
  :func:`account_implicit`: at most one claimed message a payment, and every labelled payment
  has one or an implicit negative that its legitimate labels duplicate);
- the newest model version learned every claimed label once: its ``labels_learned`` equals the
  claimed labels (implicit negatives included, those negative downsampling left out excluded),
  every one names the version that learned it, and each version's count is its parent's plus
  the labels marked with it;
- with implicit negatives (``label_delay``): every stored payment made ``label_delay`` before
  the newest one is labelled, each has at most one ``implicit_labels`` row, a fraud claimed after
  one is a correction (ledger, payment and the learner's counts agree), and a legitimate label
  is sampled out exactly when :func:`~model_state.label_kinds.sampled` says so;

- (with the decisions topic) every stored payment has its decision on the topic, and the last
  record of each key is exactly the stored decision (:func:`check_decisions`; records of ids
  never stored count as a problem too);

and :func:`check_fraud_rates` whether the terminals' and merchants' fraud rates count every
claimed fraud exactly once, through probe payments scored after everything else.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic
from sqlalchemy import Engine, func, select, text, true
from sqlalchemy.engine import make_url

from features.contract import FraudLabel, Payment
from model_state.label_kinds import sampled
from settings.config import DECISIONS_TOPIC_SETTINGS, PAYMENTS_TOPIC_SETTINGS, Config
from storage.accounts import Accounts, revoke_all
from storage.decision_records import DecisionRecord, stored_decisions
from storage.decision_records import decode as decode_decision
from storage.engine import make_engine
from storage.parity import check as parity_check
from storage.schema import DATABASE_OPTIONS, create_schema
from storage.tables import (
    dead_letters,
    fraud_labels,
    implicit_labels,
    model_versions,
    scored_payments,
)
from storage.versions import version_key
from test_data.ports import free_ports, ports_taken
from test_data.produce import from_simulation, send
from test_data.topic_end import read_to_end

ROOT = Path(__file__).resolve().parent.parent


@contextmanager
def scratch_database(config: Config, prefix: str) -> Iterator[str]:
    """A new database ``<prefix>_<random>``, created by the admin account as ``ops/services.sh``
    creates the product's, holding the schema, with every job account's rights on it as
    ``python -m storage.schema --create`` gives them in the product (``storage/accounts.py``);
    the flow's URL for it (``config.on_database(name)`` has every account's). Afterwards the
    rights are taken back (MySQL keeps them past a ``DROP``) and the database is dropped."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    accounts = Accounts.of(config)
    admin_base = make_url(config.mysql_admin_dsn)
    admin = make_engine(admin_base.set(database=None).render_as_string(hide_password=False))
    with admin.begin() as c:
        c.execute(text(f"CREATE DATABASE {name} {DATABASE_OPTIONS}"))
    try:
        engine = make_engine(admin_base.set(database=name).render_as_string(hide_password=False))
        try:
            create_schema(engine, accounts)
        finally:
            engine.dispose()
        yield config.on_database(name).mysql_dsn
    finally:
        with admin.begin() as c:
            revoke_all(c, name, accounts)
            c.execute(text(f"DROP DATABASE IF EXISTS {name}"))
        admin.dispose()


@contextmanager
def scratch_topics(brokers: str, partitions: int, prefix: str) -> Iterator[dict[str, str]]:
    """Payments, labels, dead-letter and decisions topics of ``partitions`` each (payments with
    ``LogAppendTime``, decisions compacted, as ``ops/create_topics.py`` makes them), deleted
    afterwards; named by their Config field (``payments_topic``, ...)."""
    stem = f"{prefix}-{uuid.uuid4().hex[:8]}"
    names = {
        "payments_topic": f"{stem}-payments",
        "labels_topic": f"{stem}-labels",
        "dead_letters_topic": f"{stem}-dead-letters",
        "decisions_topic": f"{stem}-decisions",
    }
    admin = AdminClient({"bootstrap.servers": brokers})
    settings = {
        names["payments_topic"]: PAYMENTS_TOPIC_SETTINGS,  # as the flow requires
        names["decisions_topic"]: DECISIONS_TOPIC_SETTINGS,
    }
    futures = admin.create_topics(
        [NewTopic(n, num_partitions=partitions, config=settings.get(n, {})) for n in names.values()]
    )
    for f in futures.values():
        f.result(timeout=30)
    try:
        yield names
    finally:
        for f in admin.delete_topics(list(names.values())).values():
            f.result(timeout=30)


def produce(brokers: str, topics: dict[str, str], events: Iterable[Payment | FraudLabel]) -> None:
    """Send events to the flow's topics (keyed by card); every one must land."""
    producer = Producer({"bootstrap.servers": brokers, "linger.ms": 5, "enable.idempotence": True})
    report = send(
        from_simulation(events, topics["payments_topic"], topics["labels_topic"]),
        producer,
        progress=False,
    )
    if not report.ok:
        raise RuntimeError(f"producing failed: {report.errors[:5]}")


def wait_for(what: str, check: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.3)


# What ``ops/run_flow.sh --supervise`` logs before it starts the flow's processes again: the
# processes' lines before it are a run that has ended.
SUPERVISED_RESTART = "[run_flow] the flow exited with status"


def current_run(log_text: str, start: int) -> str:
    """What the flow logged since :meth:`FlowProcess.start` number ``start`` wrote its marker
    and, under ``--supervise``, since ``run_flow.sh`` last started the processes again: a wait
    for something each process logs once must not count a line of a run that has ended (a
    process that built the flow, then crashed)."""
    since = log_text.rsplit(f"==== start {start} at", 1)[-1]
    return since.rsplit(SUPERVISED_RESTART, 1)[-1]


def services(*args: str) -> None:
    """``bash ops/services.sh ARGS`` (a restart drill)."""
    subprocess.run(["bash", str(ROOT / "ops" / "services.sh"), *args], check=True)


class FlowProcess:
    """``ops/run_flow.sh`` in its own process group, with recovery in ``recovery``."""

    def __init__(
        self,
        env: dict[str, str],
        recovery: Path,
        log: Path,
        *,
        processes: int = 2,
        workers: int = 1,
        snapshot_seconds: int = 1,
        base_port: int | None = None,
        supervise: bool = False,
    ) -> None:
        """``base_port``: the first of the cluster's ports (``FLOW_BASE_PORT``), the same for
        every start; by default free ports (:func:`test_data.ports.free_ports`), drawn once.
        ``supervise``: run ``run_flow.sh --supervise`` (a flow that exits non-zero, such as after
        a MySQL outage past ``PAYSCORE_MYSQL_OUTAGE_SECONDS``, is started again by the script;
        :meth:`supervised_restarts` counts them)."""
        if base_port is None:
            base_port = free_ports(processes)
        self.base_port = base_port
        self.env = env | {"FLOW_BASE_PORT": str(base_port)}
        self.recovery = recovery
        self.log = log
        self.processes = processes
        self.workers = workers
        self.snapshot_seconds = snapshot_seconds
        self.supervise = supervise
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        """Start the flow, on the same cluster ports as every start before. Raises
        :class:`AssertionError` naming them when something else listens on one (the flow's
        processes would fail to connect, which reads as a crash of the flow)."""
        taken = ports_taken(self.base_port, self.processes)
        if taken:
            raise AssertionError(
                f"start {self.starts + 1} of the flow: its cluster ports {', '.join(taken)} "
                f"are taken by another process (FLOW_BASE_PORT={self.base_port})"
            )
        self.starts += 1
        with self.log.open("ab") as out:
            out.write(f"\n==== start {self.starts} at {time.time():.3f}\n".encode())
            self.proc = subprocess.Popen(
                [
                    "bash",
                    str(ROOT / "ops" / "run_flow.sh"),
                    *(["--supervise"] if self.supervise else []),
                    str(self.processes),
                    str(self.workers),
                    "-r",
                    str(self.recovery),
                    "-s",
                    str(self.snapshot_seconds),
                    "-b",
                    "30",
                ],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill9(self) -> None:
        """``kill -9`` the script and every flow process."""
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)
        # Until every process of the group is gone: a new flow must not meet the old one's
        # sockets (its cluster ports).
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                os.killpg(self.proc.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)
        raise AssertionError(f"processes of the flow's group {self.proc.pid} outlived kill -9")

    def built(self) -> int:
        """How many processes of the current run have built the flow (their stop handler is
        installed first: before that, a SIGTERM ends a process during Python's start): since
        the latest start and, when ``run_flow.sh`` supervises, since it last started them
        again (:func:`current_run`)."""
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return current_run(text, self.starts).count("flow built:")

    def supervised_restarts(self) -> list[str]:
        """The lines ``run_flow.sh --supervise`` logged when it started the flow again, over
        every start (a line of the log read whole)."""
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return [line for line in text.splitlines() if line.startswith(SUPERVISED_RESTART)]

    def stop(self, timeout: float = 90) -> int:
        """SIGTERM to ``run_flow.sh`` (as a supervisor sends it), once every process has built
        the flow (on a loaded machine a fresh start may still be importing); its exit status."""
        assert self.proc is not None
        wait_for(
            "every process to build the flow",
            lambda: self.built() >= self.processes or not self.running,
            timeout,
        )
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill9()
            raise AssertionError(f"the flow did not stop within {timeout} s of SIGTERM") from None

    def wait_built(self, timeout: float = 120) -> None:
        """Until every process of the current start has logged that its flow is built (its
        signal handlers are installed then: a SIGTERM before would kill it, status 143). On a
        loaded machine importing the flow alone takes seconds."""
        wait_for("the flow to be built", lambda: self.built() >= self.processes, timeout)

    def snapshots_written(self) -> float:
        """The newest modification time of the recovery partitions. SQLite removes a
        partition's ``-wal`` and ``-shm`` files when it checkpoints, which can fall between the
        listing and the ``stat``: a file gone by then counts as not written."""
        times = []
        for path in self.recovery.glob("*.sqlite3*"):
            try:
                times.append(path.stat().st_mtime)
            except FileNotFoundError:
                continue
        return max(times, default=0.0)

    def kill9_after_snapshot(self, timeout: float = 60) -> None:
        """Wait until a snapshot is written, then ``kill -9`` at once."""
        before = self.snapshots_written()
        wait_for("a snapshot", lambda: self.snapshots_written() > before, timeout)
        self.kill9()


class Accounting(msgspec.Struct, kw_only=True):
    """What :func:`account` found; ``problems`` lists every failed expectation."""

    payments: int
    stored: int
    card_values_compared: int
    label_messages: int
    label_rows: dict[str, int]
    label_dead_letters: int
    claimed: int
    claimed_expected: int
    learned_marked: int
    newest_version: str
    newest_labels_learned: int
    versions: int
    decision_records: int = 0  # records read from the decisions topic (repeats included)
    decision_keys: int = 0  # distinct keys among them
    problems: list[str]
    implicit: int = 0  # implicit negatives claimed
    implicit_learned: int = 0  # of them, kept by negative downsampling (learned)
    corrections: int = 0
    sampled_out: int = 0  # label messages claimed but not learned

    def summary(self) -> str:
        return "\n".join(
            [
                f"payments: {self.payments} sent, {self.stored} stored; "
                f"card features compared: {self.card_values_compared} values",
                f"labels: {self.label_messages} sent; rows {self.label_rows}; "
                f"dead letters {self.label_dead_letters}",
                f"claimed {self.claimed} (expected {self.claimed_expected}); "
                f"marked learned {self.learned_marked}",
                f"newest version {self.newest_version}: labels_learned "
                f"{self.newest_labels_learned}; versions recorded {self.versions}",
                f"decisions topic: {self.decision_records} records, {self.decision_keys} keys",
                f"implicit negatives {self.implicit} ({self.implicit_learned} learned); "
                f"corrections {self.corrections}; label messages sampled out {self.sampled_out}",
                "problems: " + ("; ".join(self.problems) if self.problems else "none"),
            ]
        )


def account(
    engine: Engine,
    payments: Sequence[Payment],
    labels: Sequence[FraudLabel],
    labels_topic: str,
    decisions: tuple[str, str] | None = None,
    *,
    label_delay: timedelta | None = None,
    sample_rate: float = 1.0,
) -> Accounting:
    """Check the stored outcome of a run (see the module docstring); ``decisions``: the broker
    and the decisions topic, to check it against the stored decisions; ``label_delay``: the run
    claimed implicit negatives with this delay, and downsampled at ``sample_rate``."""
    problems: list[str] = []
    records = keys = 0
    if decisions is not None:
        latest, records = latest_decisions(*decisions)
        keys = len(latest)
        problems += check_decisions(engine, latest)
    sp, fl, mv, il = scored_payments, fraud_labels, model_versions, implicit_labels
    with engine.connect() as c:
        stored_ids = c.execute(select(sp.c.transaction_id)).scalars().all()
        rows = dict(
            c.execute(select(fl.c.status, func.count()).group_by(fl.c.status)).all()  # type: ignore[arg-type]
        )
        letters = c.execute(
            select(func.count())
            .select_from(dead_letters)
            .where(dead_letters.c.topic == labels_topic)
        ).scalar_one()
        claimed_rows = c.execute(
            select(fl.c.transaction_id, fl.c.learned_version, fl.c.is_fraud, fl.c.reason).where(
                fl.c.status == "claimed"
            )
        ).all()
        versions = c.execute(
            select(
                mv.c.version, mv.c.parent_version, mv.c.labels_learned, mv.c.origin, mv.c.metadata
            )
        ).all()
        marked = Counter(
            dict(
                c.execute(
                    select(fl.c.learned_version, func.count())
                    .where(fl.c.learned_version.is_not(None))
                    .group_by(fl.c.learned_version)
                ).all()  # type: ignore[arg-type]
            )
        )
        marked.update(
            dict(
                c.execute(
                    select(il.c.learned_version, func.count())
                    .where(il.c.learned_version.is_not(None))
                    .group_by(il.c.learned_version)
                ).all()  # type: ignore[arg-type]
            )
        )
        implicit_rows = c.execute(
            select(il.c.transaction_id, il.c.learned_version, il.c.reason)
        ).all()
        payment_labels = {
            r.transaction_id: r
            for r in c.execute(
                select(sp.c.transaction_id, sp.c.event_time, sp.c.label_is_fraud, sp.c.label_kind)
            )
        }
    claimed = [r for r in claimed_rows if not _sampled_out(r.reason)]
    learned_rows = [(r.transaction_id, r.learned_version) for r in claimed] + [
        (r.transaction_id, r.learned_version) for r in implicit_rows if not _sampled_out(r.reason)
    ]
    sent_ids = {p.transaction_id for p in payments}
    if sorted(stored_ids) != sorted(sent_ids):
        missing = sent_ids - set(stored_ids)
        extra = set(stored_ids) - sent_ids
        problems.append(f"payments: {len(missing)} missing, {len(extra)} unexpected")
    report = parity_check(engine, list(payments), prefix="card_")
    if not report.ok:
        problems.append(f"card features differ from the offline replay: {report.summary()}")
    if sum(rows.values()) + letters != len(labels):
        problems.append(
            f"{len(labels)} label messages but {sum(rows.values())} rows and {letters} dead letters"
        )
    if rows.get("waiting"):
        problems.append(f"{rows['waiting']} labels still waiting")
    first_label: dict[str, FraudLabel] = {}
    for label in labels:
        first_label.setdefault(label.transaction_id, label)
    expected = sum(1 for t in first_label if t in sent_ids)
    if label_delay is None and len(claimed_rows) != expected:
        problems.append(f"{len(claimed_rows)} labels claimed, {expected} expected")
    if label_delay is not None:
        problems += account_implicit(
            labels,
            sent_ids,
            claimed_rows,
            implicit_rows,
            payment_labels,
            label_delay=label_delay,
            sample_rate=sample_rate,
        )
    unlearned = [t for t, v in learned_rows if v is None]
    if unlearned:
        problems.append(f"{len(unlearned)} claimed labels in no version, e.g. {unlearned[:3]}")
    by_name = {v.version: v for v in versions}
    newest = max(by_name, key=version_key)
    if by_name[newest].labels_learned != len(learned_rows):
        problems.append(
            f"newest version {newest} learned {by_name[newest].labels_learned} labels, "
            f"{len(learned_rows)} claimed for the learner"
        )
    corrections = sum(1 for r in claimed if (r.reason or "").startswith("correction"))
    kept_implicit = len(learned_rows) - len(claimed)
    counts = (by_name[newest].metadata or {}).get("learner") or {}
    if label_delay is not None and by_name[newest].origin == "online":
        for kind, want in (("implicit", kept_implicit), ("correction", corrections)):
            if round(counts.get(kind, 0)) != want:
                problems.append(
                    f"newest version {newest} counts {counts.get(kind, 0):g} {kind} labels, "
                    f"the ledgers {want}"
                )
    for v in versions:
        if v.origin != "online":
            continue
        parent = by_name.get(v.parent_version)
        base = parent.labels_learned if parent is not None and parent.origin == "online" else 0
        if v.labels_learned != base + marked.get(v.version, 0):
            problems.append(
                f"{v.version} learned {v.labels_learned}, its parent {v.parent_version} "
                f"{base}, and {marked.get(v.version, 0)} labels name it"
            )
    return Accounting(
        payments=len(payments),
        stored=len(stored_ids),
        card_values_compared=report.values,
        label_messages=len(labels),
        label_rows=rows,
        label_dead_letters=letters,
        claimed=len(claimed),
        claimed_expected=expected,
        learned_marked=sum(marked.values()),
        newest_version=newest,
        newest_labels_learned=by_name[newest].labels_learned,
        versions=len(versions),
        decision_records=records,
        decision_keys=keys,
        problems=problems,
        implicit=len(implicit_rows),
        implicit_learned=kept_implicit,
        corrections=corrections,
        sampled_out=len(claimed_rows) - len(claimed),
    )


def latest_decisions(brokers: str, topic: str) -> tuple[dict[str, DecisionRecord], int]:
    """The decisions topic read whole, as a consumer that keeps the last value per key: that
    value by transaction id, and the number of records read."""
    client = {
        "bootstrap.servers": brokers,
        "group.id": f"decisions-check-{uuid.uuid4().hex[:8]}",
        "auto.offset.reset": "earliest",
        "isolation.level": "read_committed",
    }
    latest: dict[str, DecisionRecord] = {}
    records = 0
    for message in read_to_end(client, topic, seconds=120):
        records += 1
        key = (message.key() or b"").decode()
        value = message.value()
        if value is None:
            latest.pop(key, None)  # a tombstone
        else:
            latest[key] = decode_decision(value)
    return latest, records


def check_decisions(engine: Engine, latest: dict[str, DecisionRecord]) -> list[str]:
    """Problems: a stored payment whose last record on the decisions topic is missing or not its
    stored decision, or a key on the topic for no stored payment."""
    with engine.begin() as c:
        ids = c.execute(select(scored_payments.c.transaction_id)).scalars().all()
        stored = {
            r.transaction_id: r
            for r in stored_decisions(lambda sql, ps: c.exec_driver_sql(sql, tuple(ps)).all(), ids)
        }
    problems = []
    missing = sorted(set(stored) - set(latest))
    extra = sorted(set(latest) - set(stored))
    differ = sorted(t for t in set(stored) & set(latest) if stored[t] != latest[t])
    if missing:
        problems.append(
            f"{len(missing)} stored payments have no decision on the topic: {missing[:3]}"
        )
    if extra:
        problems.append(f"{len(extra)} decisions on the topic for no stored payment: {extra[:3]}")
    if differ:
        t = differ[0]
        problems.append(
            f"{len(differ)} last decisions on the topic differ from the stored ones, e.g. {t}: "
            f"topic {latest[t]}, stored {stored[t]}"
        )
    return problems


def _sampled_out(reason: str | None) -> bool:
    return (reason or "").startswith("sampled_out")


def account_implicit(
    labels: Sequence[FraudLabel],
    sent_ids: set[str],
    claimed: Sequence[Any],
    implicit: Sequence[Any],
    payments: dict[str, Any],
    *,
    label_delay: timedelta,
    sample_rate: float,
) -> list[str]:
    """Problems with the labels of a run that claimed implicit negatives (module docstring):
    ``claimed`` are the claimed ``fraud_labels`` rows (transaction_id, is_fraud, reason),
    ``implicit`` the ``implicit_labels`` rows (transaction_id, reason), ``payments`` the stored
    payments' (event_time, label_is_fraud, label_kind) by transaction id."""
    problems: list[str] = []
    by_txn = Counter(r.transaction_id for r in claimed)
    twice = [t for t, n in by_txn.items() if n > 1]
    if twice:
        problems.append(f"{len(twice)} payments with two claimed label messages, e.g. {twice[:3]}")
    implicit_ids = {r.transaction_id for r in implicit}
    claimed_by = {r.transaction_id: r for r in claimed}
    frauds_sent: dict[str, bool] = {}
    for label in labels:
        frauds_sent[label.transaction_id] = frauds_sent.get(label.transaction_id, False) or (
            label.is_fraud
        )
    for t, any_fraud in frauds_sent.items():
        if t not in sent_ids or t in claimed_by:
            continue
        if t not in implicit_ids or any_fraud:
            problems.append(f"labels of {t} neither claimed nor duplicates of an implicit negative")
    for t, row in claimed_by.items():
        correction = (row.reason or "").startswith("correction")
        if correction != (t in implicit_ids):
            problems.append(f"{t}: claimed label says correction={correction}, implicit row "
                            f"{t in implicit_ids}")  # fmt: skip
        elif correction and not row.is_fraud:
            problems.append(f"{t}: a legitimate correction")
        stored = payments.get(t)
        want = ("correction" if correction else "explicit", bool(row.is_fraud))
        if stored is not None and (stored.label_kind, bool(stored.label_is_fraud)) != want:
            problems.append(f"{t}: payment labelled {stored.label_kind}, ledger says {want}")
        if not row.is_fraud and _sampled_out(row.reason) == sampled(t, sample_rate):
            problems.append(f"{t}: sampled_out={_sampled_out(row.reason)} against the id's hash")
    for row in implicit:
        t = row.transaction_id
        stored = payments.get(t)
        if stored is None:
            problems.append(f"implicit negative {t} of no stored payment")
            continue
        if t not in claimed_by and (stored.label_kind, stored.label_is_fraud) != ("implicit", 0):
            problems.append(f"{t}: implicit row, payment labelled {stored.label_kind}")
        if _sampled_out(row.reason) == sampled(t, sample_rate):
            problems.append(
                f"implicit {t}: sampled_out={_sampled_out(row.reason)} against the hash"
            )
    if payments:
        newest = max(p.event_time for p in payments.values())
        due = [
            t
            for t, p in payments.items()
            if p.event_time + label_delay <= newest and p.label_is_fraud is None
        ]
        if due:
            problems.append(f"{len(due)} payments due as implicit negatives unlabelled: {due[:3]}")
    return problems


def all_in_versions(engine: Engine) -> bool:
    """Every label claimed for the learner (explicit, correction or implicit; not those negative
    downsampling left out) names the version that learned it: the learner has published what it
    learned (it publishes within ``PAYSCORE_PUBLISH_SECONDS``)."""
    fl, il = fraud_labels, implicit_labels
    waiting = 0
    with engine.connect() as c:
        for table, claimed in ((fl, fl.c.status == "claimed"), (il, true())):
            waiting += c.execute(
                select(func.count())
                .select_from(table)
                .where(
                    claimed,
                    table.c.learned_version.is_(None),
                    func.coalesce(table.c.reason, "").not_like("sampled_out%"),
                )
            ).scalar_one()
    return waiting == 0


def implicit_settled(engine: Engine, delay: timedelta) -> bool:
    """Every stored payment made ``delay`` before the newest one is labelled."""
    with engine.connect() as c:
        newest = c.execute(select(func.max(scored_payments.c.event_time))).scalar_one()
        if newest is None:
            return True
        due = c.execute(
            select(func.count())
            .select_from(scored_payments)
            .where(
                scored_payments.c.label_is_fraud.is_(None),
                scored_payments.c.event_time <= newest - delay,
            )
        ).scalar_one()
    return due == 0


def late_frauds(
    engine: Engine, payments: Sequence[Payment], n: int, *, after: timedelta
) -> list[FraudLabel]:
    """Fraud labels, reported ``after`` their payments, for ``n`` payments stored as implicit
    negatives (the first by transaction id): each must be learned as a correction."""
    with engine.connect() as c:
        ids = (
            c.execute(
                select(implicit_labels.c.transaction_id)
                .order_by(implicit_labels.c.transaction_id)
                .limit(n)
            )
            .scalars()
            .all()
        )
    by_id = {p.transaction_id: p for p in payments}
    return [
        FraudLabel(
            transaction_id=t,
            card_id=by_id[t].card_id,
            is_fraud=True,
            reported_at=by_id[t].event_time + after,
        )
        for t in ids
    ]


def probes(engine: Engine, after: datetime, round_: int = 0) -> list[Payment]:
    """One payment per stored terminal at ``after``, each from a new card: scored after
    everything else, its fraud-rate features show what the terminal's and merchant's state hold.
    ``round_`` > 0 names a later round of probes apart from the first."""
    tag = f"probe{round_}" if round_ else "probe"
    sp = scored_payments
    with engine.connect() as c:
        rows = c.execute(
            select(sp.c.terminal_id, func.min(sp.c.merchant_id)).group_by(sp.c.terminal_id)
        ).all()
    return [
        Payment(
            transaction_id=f"{tag}-{terminal}",
            card_id=f"{tag}-card-{terminal}",
            merchant_id=merchant,
            terminal_id=terminal,
            amount_minor=1000,
            currency="EUR",
            event_time=after,
            mcc="5411",
            channel="pos",
            country="FR",
        )
        for terminal, merchant in rows
    ]


def check_fraud_rates(engine: Engine, probe_ids: Iterable[str]) -> list[str]:
    """Problems with the probes' 30-day fraud rates: each must count exactly the claimed fraud
    labels of its terminal (and merchant) among exactly the payments stored for it."""
    ids = list(probe_ids)
    with engine.connect() as c:
        frauds = {
            (kind, key): n
            for kind in ("terminal", "merchant")
            for key, n in c.execute(
                text(
                    f"SELECT p.{kind}_id, COUNT(*) FROM fraud_labels l JOIN scored_payments p "
                    "ON p.transaction_id = l.transaction_id "
                    "WHERE l.status = 'claimed' AND l.is_fraud GROUP BY p." + kind + "_id"
                )
            ).all()
        }
        stored = c.execute(
            select(scored_payments.c.transaction_id, scored_payments.c.terminal_id,
                   scored_payments.c.merchant_id, scored_payments.c.features)
            .where(scored_payments.c.transaction_id.in_(ids))
        ).all()  # fmt: skip
    problems = []
    if len(stored) != len(ids):
        problems.append(f"{len(ids) - len(stored)} probes not stored")
    for row in stored:
        for kind, key in (("terminal", row.terminal_id), ("merchant", row.merchant_id)):
            rate = row.features[f"{kind}_fraud_rate_30d"]
            count = row.features[f"{kind}_count_30d"]
            want = frauds.get((kind, key), 0)
            got = rate * count if rate < 1.0 else None
            if (got is None and want < count) or (got is not None and round(got) != want):
                problems.append(
                    f"{kind} {key}: rate {rate} over {count:.0f} payments, {want} frauds claimed"
                )
    return problems


def probe_rounds(
    engine: Engine,
    send: Callable[[list[Payment]], None],
    after: datetime,
    *,
    rounds: int = 3,
    pause: float = 15.0,
    timeout: float = 60.0,
) -> tuple[list[Payment], list[str], int]:
    """Probe payments (:func:`probes`) at ``after``, sent with ``send``, until a round shows no
    fraud-rate problem (:func:`check_fraud_rates`), at most ``rounds`` rounds ``pause`` seconds
    apart: every probe sent, the last round's problems and the number of rounds.

    The label messages are claimed in MySQL before their fraud notes reach the terminals' and
    merchants' state, and a restarted flow first replays the notes claimed since its snapshot: a
    probe may be read before a note in flight. A later round shows the state once they have
    landed; a note counted twice, or one lost, shows in every round."""
    sent: list[Payment] = []
    problems: list[str] = []
    with engine.connect() as c:
        before = c.execute(select(func.count()).select_from(scored_payments)).scalar_one()
    round_ = 0
    for round_ in range(rounds):
        batch = probes(engine, after, round_)
        send(batch)
        sent += batch
        total = before + len(sent)

        def stored() -> bool:
            with engine.connect() as c:
                n = c.execute(select(func.count()).select_from(scored_payments)).scalar_one()
            return n == total  # noqa: B023 (read while this round's batch is the current one)

        wait_for("the probes", stored, timeout)
        problems = check_fraud_rates(engine, [p.transaction_id for p in batch])
        print(f"fraud-rate probes, round {round_ + 1}: {len(problems)} problems {problems[:3]}")
        if not problems:
            break
        time.sleep(pause)
    return sent, problems, round_ + 1


def probe_time(payments: Sequence[Payment], labels: Sequence[FraudLabel]) -> datetime:
    """A moment after every payment and every report, by an hour."""
    last = max([p.event_time for p in payments] + [label.reported_at for label in labels])
    return last + timedelta(hours=1)
