"""Backtest: a draft rule, or a whole draft ruleset, run over the payments stored in
``scored_payments``, compared with the live ruleset and the model.

    python -m rules.backtest --rule ID "RULE" [--rule ID2 "RULE2" ...] [--since 2026-01-01]
                             [--until 2026-02-01] [--status active|shadow] [--replace] [--json]
    python -m rules.backtest --file draft.json   # [{"rule_id": ..., "text": ..., "status": ...}]

The draft is the live ruleset (the newest version, with its lists) with the draft's rules added or
replacing those of the same id; ``--replace`` makes the draft the whole ruleset. Each rule is
evaluated over every payment stored with an event time in [since, until) with the
same semantics as in the flow (:mod:`rules.vector`, property-tested against the flow's closures).
**It is exact for velocity rules**: the features are those stored with each payment
(``scored_payments.features``), what the flow computed when it scored it. The lists are the live
ones, each entry applied to payments before its expiry, whenever it was added.

It reports, per rule of the draft: payments hit, frauds caught and legitimate payments hit (the
claimed labels, ``label_is_fraud``; unlabelled hits apart), their amount in euros, precision over
the labelled hits, recall over the labelled frauds of the range, and the overlap with the model
(frauds caught that the model approved); for the whole draft: the payments whose final decision
(:mod:`rules.decisions`) changes against the live ruleset, by change, with examples; and per day,
hits and frauds caught for a chart. :class:`BacktestReport` is what the review UI shows (a table
and a chart; ``msgspec.json.encode`` it), and what the command prints.

Rows stored before ``scored_payments`` kept the payment's ``country``, ``channel``, ``mcc``,
``device_id`` and coordinates hold NULL there; a draft that reads one of them skips those rows
and says how many it skipped. Payments are read from MySQL with the C extension of
mysql-connector (rows made and taken a chunk at a time in C), only the columns the rules name;
features from the packed ``feature_vector`` (:mod:`storage.feature_vector`: one
``np.frombuffer`` a chunk), or from the JSON (msgspec, in batches) in rows stored without one;
rules evaluated over columns with NumPy: ``benchmarks/bench_backtest.py`` measures a million.

**Where it runs.** The C extension links libstdc++, which glibc cannot load into a process whose
libraries (numba's, scikit-learn's) have taken its static TLS block: the review queue's process,
or a test run's. :func:`backtest` therefore runs in the calling process when the extension loads
there (``python -m rules.backtest``, which loads it before anything else) and otherwise in a new
interpreter (this command, with ``--json``), at the cost of its start; the report is the same.
Nothing is loaded when this module is imported. The command reads MySQL as the analysts'
account (``PAYSCORE_ANALYST_MYSQL_URL``: payments, rules and lists; it writes nothing); the review
queue runs it with its own account's URL.
"""

from __future__ import annotations

import argparse
import itertools
import logging
import math
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from operator import attrgetter
from pathlib import Path
from typing import Any, Final

import msgspec
import numpy as np
from sqlalchemy.engine import make_url

from rules.decisions import ACTION_RANK
from rules.lists import ListIndex
from rules.names import CONTRACT_FIELDS, NUMBER, PROBABILITY, TYPES
from rules.ruleset import CompiledRule, Ruleset, RuleSpec, compile_ruleset
from rules.store import RulesStore
from rules.syntax import to_text
from rules.vector import Columns, evaluate
from settings.arguments import Parser, within
from settings.config import Config
from storage.engine import make_engine, refuse_another_server, same_server
from storage.feature_vector import current_sql as vector_is_current
from storage.feature_vector import unpack as unpack_vectors
from storage.refusals import refusing

log = logging.getLogger(__name__)
CHUNK = 50_000
EXAMPLES = 50
MAX_JOBS = 32  # processes of one backtest (each forked, each a MySQL connection)
MAX_DRAFT_BYTES = 64 * 1024 * 1024  # a --file draft: 16,000 rules of 4,000 characters
DAY = 86_400
CODES = ("approve", "review", "decline")
STAGES = ("read", "columns", "features", "rules")
# Kept in scored_payments only since the rules came; NULL (with country) in older rows.
LATE_FIELDS = frozenset({"mcc", "channel", "country", "device_id", "latitude", "longitude"})
EARLIEST = datetime(2000, 1, 1)
LATEST = datetime(2100, 1, 1)


class RuleFigures(msgspec.Struct):
    rule_id: str
    action: str
    status: str
    text: str
    hits: int = 0
    frauds_caught: int = 0
    legit_hit: int = 0
    unlabelled_hit: int = 0
    amount_eur_hit: float = 0.0
    amount_eur_frauds_caught: float = 0.0
    frauds_model_approved: int = 0  # frauds this rule catches that the model approved
    precision: float | None = None  # frauds caught / labelled hits
    recall: float | None = None  # frauds caught / labelled frauds of the range


class DayFigures(msgspec.Struct):
    day: str  # YYYY-MM-DD, UTC
    payments: int
    hits: dict[str, int]  # rule id -> payments hit that day
    frauds_caught: dict[str, int]
    changed: int  # payments whose final decision changes


class BacktestReport(msgspec.Struct):
    since: str
    until: str
    live_version: int
    payments: int  # evaluated
    skipped: int  # stored before the fields the draft reads were kept
    labelled_frauds: int
    labelled_legit: int
    rules: list[RuleFigures]
    changes: dict[str, int]  # "approve -> decline": payments
    changed: int
    changed_frauds: int
    changed_legit: int
    changed_examples: list[str]  # transaction ids, at most EXAMPLES
    daily: list[DayFigures]
    seconds: float = 0.0
    # Where the time went, summed over the processes of --jobs: "read" the rows from MySQL
    # (with MySQL's time to send them), "columns" made of them, "features" unpacked (or their
    # JSON decoded), "rules" evaluated and counted; wall seconds, and this side's CPU seconds.
    stages: dict[str, float] = msgspec.field(default_factory=dict)
    stages_cpu: dict[str, float] = msgspec.field(default_factory=dict)

    def table(self) -> list[dict[str, Any]]:
        """One row per rule, as the UI's table shows it."""
        return [msgspec.structs.asdict(r) for r in self.rules]

    def lines(self) -> list[str]:
        out = [
            f"backtest of {self.payments:,} payments from {self.since} to {self.until} against "
            f"live ruleset version {self.live_version} ({self.labelled_frauds:,} labelled frauds, "
            f"{self.labelled_legit:,} labelled legitimate) in {self.seconds:.1f} s"
            + (f"; {self.skipped:,} older payments skipped" if self.skipped else ""),
            "",
            f"{'rule':<24} {'action':<8} {'status':<8} {'hits':>9} {'frauds':>7} {'legit':>7} "
            f"{'amount EUR':>13} {'precision':>9} {'recall':>7} {'model ok':>8}",
        ]
        for r in self.rules:
            out.append(
                f"{r.rule_id[:24]:<24} {r.action:<8} {r.status:<8} {r.hits:>9,} "
                f"{r.frauds_caught:>7,} {r.legit_hit:>7,} {r.amount_eur_hit:>13,.2f} "
                f"{_share(r.precision):>9} {_share(r.recall):>7} {r.frauds_model_approved:>8,}"
            )
        out += [
            "",
            f"final decision changes against the live ruleset: {self.changed:,} payments "
            f"({self.changed_frauds:,} frauds, {self.changed_legit:,} legitimate)",
        ]
        out += [f"  {change}: {n:,}" for change, n in sorted(self.changes.items())]
        if self.changed_examples:
            out.append("  e.g. " + ", ".join(self.changed_examples[:10]))
        return out


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def draft_ruleset(
    live: Sequence[RuleSpec],
    draft: Sequence[RuleSpec],
    lists: dict[str, ListIndex],
    *,
    replace: bool,
) -> Ruleset:
    """The draft's rules over the live ones (or alone), compiled; RulesetError if one is refused."""
    specs = {r.rule_id: r for r in ([] if replace else live)}
    specs.update((r.rule_id, r) for r in draft)
    return compile_ruleset(specs.values(), lists, version=-1, what="the draft")


def final_codes(model: np.ndarray, ruleset_masks: Sequence[tuple[str, np.ndarray]]) -> np.ndarray:
    """The final decision of every payment (0 approve, 1 review, 2 decline) from the model's and
    the active rules' masks, by the precedence of :func:`rules.decisions.decide`."""
    size = model.shape[0]
    fired = {action: np.zeros(size, dtype=bool) for action in ACTION_RANK}
    for action, mask in ruleset_masks:
        fired[action] |= mask
    out = model.copy()
    out = np.where(fired["review"], np.maximum(out, 1), out)  # never lowers a model decline
    out = np.where(fired["decline"], 2, out)
    return np.where(fired["allow"], 0, out)


def c_extension_loads() -> bool:
    """True when mysql-connector's C extension is (or can be) loaded into this process (see
    the module docstring)."""
    try:
        import _mysql_connector  # noqa: F401  (what its C connection is made of)
    except ImportError:
        return False
    return True


# The URL's PyMySQL options (settings.config.over_socket, the README's MySQL TLS) as
# mysql-connector names them; any other TLS option is refused rather than dropped.
_TEXT_OPTIONS: Final = {"unix_socket": "unix_socket", "ssl_ca": "ssl_ca", "ssl_cert": "ssl_cert",
                        "ssl_key": "ssl_key"}  # fmt: skip
_FLAG_OPTIONS: Final = {"ssl_disabled": "ssl_disabled", "ssl_verify_cert": "ssl_verify_cert",
                        "ssl_verify_identity": "ssl_verify_identity",
                        "ssl_check_hostname": "ssl_verify_identity"}  # fmt: skip


def connection_options(url: str) -> dict[str, Any]:
    """mysql-connector's options for a ``mysql+pymysql://`` URL, with the URL's socket and TLS
    options: as PyMySQL does, a CA (``ssl_ca``) means the server's certificate and name are
    verified; ``unix_socket`` connects through the socket."""
    u = make_url(url)
    options: dict[str, Any] = {
        "user": u.username,
        "password": u.password or "",
        "host": u.host or "127.0.0.1",
        "port": u.port or 3306,
        "database": u.database,
        "charset": "utf8mb4",
        "init_command": "SET time_zone = '+00:00'",
    }
    for name, value in u.query.items():
        if not isinstance(value, str):
            raise ValueError(f"the MySQL URL gives option {name!r} more than once")
        if name in _TEXT_OPTIONS:
            options[_TEXT_OPTIONS[name]] = value
        elif name in _FLAG_OPTIONS:
            options[_FLAG_OPTIONS[name]] = value.strip().lower() in ("1", "true", "yes", "on")
        elif name.startswith("ssl"):
            raise ValueError(
                f"the backtest's MySQL reader does not know the URL's TLS option {name[:40]!r} "
                f"(known: {', '.join(sorted({*_TEXT_OPTIONS, *_FLAG_OPTIONS}))})"
            )
    if "ssl_ca" in options and not options.get("ssl_disabled"):
        options.setdefault("ssl_verify_cert", True)
        options.setdefault("ssl_verify_identity", True)
    return options


def connect(url: str) -> Any:
    """A mysql-connector connection (C extension) for a ``mysql+pymysql://`` URL, with its
    socket and TLS options (:func:`connection_options`); through a socket, the server must
    listen on the URL's port, as :func:`storage.engine.make_engine` checks."""
    import mysql.connector  # here, not at import: see c_extension_loads

    options = connection_options(url)
    try:
        connection = mysql.connector.connect(**options, use_pure=False)
    except ImportError as exc:
        # No C extension for this platform (backtest() runs elsewhere a process that cannot
        # load it): the pure-Python driver reads the same rows.
        log.warning(
            "the backtest reads with mysql-connector's pure-Python driver (slower): %s",
            str(exc)[:200],
        )
        connection = mysql.connector.connect(**options, use_pure=True)
    if "unix_socket" in options:
        try:
            same_server(options["unix_socket"], options["port"])(connection, None)
        except BaseException:
            connection.close()
            raise
    return connection


def c_reader(url: str) -> Any:
    """mysql-connector's C-level connection (its ``_mysql_connector.MySQL``) for a
    ``mysql+pymysql://`` URL, with the URL's socket and TLS options as :func:`connect` takes
    them (:func:`connection_options`), and the same check that a socket reaches the URL's
    server. Its rows are made in C."""
    import _mysql_connector  # here, not at import: see c_extension_loads

    options = connection_options(url)
    # The authentication plugins mysql-connector ships (as its own connection finds them).
    plugins = Path(_mysql_connector.__file__).resolve().parent / "mysql" / "vendor" / "plugin"
    if not plugins.exists():  # not bundled: the system's
        plugins = next(
            (p for p in map(Path, ("/usr/lib64/mysql/plugin", "/usr/lib/mysql/plugin"))
             if p.exists()), plugins
        )  # fmt: skip
    reader = _mysql_connector.MySQL(
        buffered=False,
        raw=False,
        charset_name="utf8mb4",
        use_unicode=True,
        plugin_dir=str(plugins),
    )
    tls_off = bool(options.get("ssl_disabled", False))
    tls: dict[str, Any] = {"ssl_disabled": tls_off}
    if not tls_off:  # TLS when the server offers it, verified as the URL asks
        tls.update(
            ssl_ca=options.get("ssl_ca"),
            ssl_cert=options.get("ssl_cert"),
            ssl_key=options.get("ssl_key"),
            ssl_verify_cert=bool(options.get("ssl_verify_cert", False)),
            ssl_verify_identity=bool(options.get("ssl_verify_identity", False)),
        )
    reader.connect(
        host=options["host"],
        user=options["user"],
        password=options["password"],
        database=options["database"],
        port=options["port"],
        unix_socket=options.get("unix_socket"),
        **tls,
    )
    try:
        if "unix_socket" in options:
            reader.query("SELECT @@port")
            (served,) = reader.fetch_row()
            reader.free_result()
            refuse_another_server(options["unix_socket"], options["port"], int(served))
    except BaseException:
        reader.close()
        raise
    return reader


def _stream(
    url: str, since: datetime, until: datetime, fields: list[str], features: list[str]
) -> Iterator[list[tuple[Any, ...]]]:
    """Chunks of rows of the payments stored in [since, until): the columns :func:`_columns`
    takes. Only what the rules read is read: no feature at all when no rule names one, and then
    the packed vector (``scored_payments.feature_vector``), or the JSON where a row has none of
    the current catalogue (rows stored before the flow packed them)."""
    columns = [
        "transaction_id",
        # the model's own decision (older rows: decision): 0 approve, 1 review, 2 decline
        "FIELD(COALESCE(model_decision, decision), 'approve', 'review', 'decline') - 1",
        "fraud_probability",
        "COALESCE(label_is_fraud, -1)",
        "TIMESTAMPDIFF(MICROSECOND, '1970-01-01', event_time)",
        *fields,
    ]
    if features:
        current = vector_is_current()
        columns += [f"IF({current}, feature_vector, NULL)", f"IF({current}, NULL, features)"]
    sql = (
        f"SELECT {', '.join(columns)} FROM scored_payments "
        "WHERE event_time >= %s AND event_time < %s"
    )
    if not c_extension_loads():  # no C extension on this platform: the pure-Python driver
        connection = connect(url)
        try:
            cursor = connection.cursor()
            cursor.execute(sql, (since, until))
            while rows := cursor.fetchmany(CHUNK):
                yield rows
            cursor.close()
        finally:
            connection.close()
        return
    # The C extension's own connection (documented as the _mysql_connector module): its rows
    # are made in C and taken CHUNK at a time in C, no Python code a row.
    reader = c_reader(url)
    try:
        reader.query("SET time_zone = '+00:00'")
        reader.query(sql % tuple(v.decode() for v in reader.convert_to_mysql(since, until)))
        fetch = reader.fetch_row
        while rows := list(itertools.islice(iter(fetch, None), CHUNK)):
            yield rows
        reader.free_result()
    finally:
        reader.close()


def _feature_decoder(features: list[str]) -> Callable[[list[Any]], np.ndarray]:
    """What turns stored features JSON (one text a payment) into a table of ``features``: an
    absent feature, or ``null`` (a non-finite number, as msgspec writes it), is NaN, missing."""
    feature_type = msgspec.defstruct(
        "StoredFeatures", [(name, float | None, math.nan) for name in features]
    )
    decode = msgspec.json.Decoder(list[feature_type])  # type: ignore[valid-type]
    read = attrgetter(*features) if len(features) > 1 else (lambda d: (getattr(d, features[0]),))

    def table(texts: list[Any]) -> np.ndarray:
        joined = b",".join(t.encode() if isinstance(t, str) else bytes(t) for t in texts)
        decoded = decode.decode(b"[" + joined + b"]")
        out = np.array(list(map(read, decoded)), dtype=float)  # None -> NaN
        return out.reshape(len(texts), len(features))

    return table


def _features(
    vectors: Sequence[Any], texts: Sequence[Any], features: list[str], decoder: Any
) -> np.ndarray:
    """The ``features`` columns of a chunk: from the packed vectors in one call, from the JSON
    for the rows that have no vector."""
    size = len(vectors)
    if None not in vectors:
        return unpack_vectors(vectors, features)
    table = np.empty((size, len(features)), dtype=float)
    old = np.equal(np.array(vectors, dtype=object), None)
    packed = np.flatnonzero(~old)
    if packed.size:
        table[packed] = unpack_vectors([vectors[i] for i in packed.tolist()], features)
    stale = np.flatnonzero(old)
    table[stale] = decoder([texts[i] for i in stale.tolist()])
    return table


def _columns(
    rows: list[tuple[Any, ...]],
    fields: list[str],
    features: list[str],
    decoder: Any,
    clock: _Stopwatch,
) -> tuple[Columns, dict[str, np.ndarray], np.ndarray]:
    cols = list(zip(*rows, strict=True))
    size = len(rows)
    fixed = {
        "transaction_id": np.array(cols[0], dtype=object),
        "model": np.array(cols[1], dtype=np.int8),
        "label": np.array(cols[3], dtype=np.int8),
    }
    if size and int(fixed["model"].min()) < 0:
        at = int(np.flatnonzero(fixed["model"] < 0)[0])
        raise ValueError(
            f"the stored payment {str(cols[0][at])[:80]!r} has a decision that is none of "
            f"{', '.join(CODES)}: it cannot be backtested"
        )
    probability = np.array(cols[2], dtype=float)
    ts = np.array(cols[4], dtype=np.int64) / 1e6  # exactly the seconds' decimal, read as float
    values: dict[str, np.ndarray] = {PROBABILITY: probability}
    for i, name in enumerate(fields, start=5):
        if TYPES[name] != NUMBER:  # strings; NULL (None) is missing
            values[name] = np.array(cols[i], dtype=object)
        else:  # NULL (None) is NaN, missing
            values[name] = np.array(cols[i], dtype=float)
    clock.lap("columns")
    if features:
        table = _features(cols[-2], cols[-1], features, decoder)
        for j, name in enumerate(features):
            values[name] = table[:, j]
        clock.lap("features")
    present = np.ones(size, dtype=bool)
    if LATE_FIELDS & set(fields):
        present = np.not_equal(values["country"], None) if "country" in values else present
    return Columns(size, values, ts), fixed, present


class _Stopwatch:
    """Wall and CPU (this thread's) seconds by stage: each lap is charged to one stage."""

    def __init__(self, wall: dict[str, float], cpu: dict[str, float]) -> None:
        self.wall, self.cpu = wall, cpu
        self._wall, self._cpu = time.perf_counter(), time.thread_time()

    def lap(self, stage: str) -> None:
        wall, cpu = time.perf_counter(), time.thread_time()
        self.wall[stage] += wall - self._wall
        self.cpu[stage] += cpu - self._cpu
        self._wall, self._cpu = wall, cpu


@dataclass
class _Partial:
    """What one scan of a time range counted; partials of ranges add up."""

    rules: dict[str, RuleFigures]
    evaluated: int = 0
    skipped: int = 0
    frauds: int = 0
    legit: int = 0
    changed: int = 0
    changed_frauds: int = 0
    changed_legit: int = 0
    changes: dict[str, int] = field(default_factory=dict)
    examples: list[str] = field(default_factory=list)
    days: dict[int, dict[str, Any]] = field(default_factory=dict)
    stages: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))
    stages_cpu: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))

    def add(self, other: _Partial) -> None:
        for name in ("evaluated", "skipped", "frauds", "legit", "changed", "changed_frauds",
                     "changed_legit"):  # fmt: skip
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for rule_id, theirs in other.rules.items():
            mine = self.rules[rule_id]
            for name in ("hits", "frauds_caught", "legit_hit", "unlabelled_hit", "amount_eur_hit",
                         "amount_eur_frauds_caught", "frauds_model_approved"):  # fmt: skip
                setattr(mine, name, getattr(mine, name) + getattr(theirs, name))
        for key, n in other.changes.items():
            self.changes[key] = self.changes.get(key, 0) + n
        for key in STAGES:
            self.stages[key] += other.stages[key]
            self.stages_cpu[key] += other.stages_cpu[key]
        self.examples = (self.examples + other.examples)[:EXAMPLES]
        for d, theirs_day in other.days.items():
            entry = self.days.setdefault(d, {"payments": 0, "hits": {}, "frauds": {}, "changed": 0})
            entry["payments"] += theirs_day["payments"]
            entry["changed"] += theirs_day["changed"]
            for key in ("hits", "frauds"):
                for rule_id, n in theirs_day[key].items():
                    entry[key][rule_id] = entry[key].get(rule_id, 0) + n


@dataclass
class _Plan:
    """What every scan needs: both rulesets compiled, the lists, the columns to read."""

    url: str
    live: Ruleset
    proposed: Ruleset
    lists: dict[str, ListIndex]
    fields: list[str]
    features: list[str]


_PLAN: _Plan | None = None  # for the worker processes of a parallel backtest (forked)


def backtest(
    url: str,
    draft: Sequence[RuleSpec],
    *,
    since: datetime = EARLIEST,
    until: datetime = LATEST,
    replace: bool = False,
    store: RulesStore | None = None,
    jobs: int = 1,
    timeout: float | None = None,
) -> BacktestReport:
    """Run ``draft`` over the payments stored in [since, until) (naive UTC or aware), reading the
    database of ``url`` (the rules and lists through ``store`` if given).

    ``jobs`` > 1 splits the range into that many spans of equal time, each read and evaluated
    by a forked process (a command line's choice: do not fork a threaded server). Where the
    MySQL reader's C extension cannot load, it all runs in a new interpreter (module docstring).
    With a ``timeout`` (seconds) it always runs in a new interpreter, killed when the time is up
    (:class:`BacktestTimeoutError`): what a server does, whose threads cannot be stopped.
    """
    if timeout is None and c_extension_loads():
        return backtest_here(
            url, draft, since=since, until=until, replace=replace, store=store, jobs=jobs
        )
    return _in_a_new_interpreter(
        url, draft, since, until, replace=replace, jobs=jobs, timeout=timeout
    )


class BacktestTimeoutError(TimeoutError):
    """A backtest that did not finish in its time (its process was killed)."""


def _in_a_new_interpreter(
    url: str,
    draft: Sequence[RuleSpec],
    since: datetime,
    until: datetime,
    *,
    replace: bool,
    jobs: int,
    timeout: float | None = None,
) -> BacktestReport:
    """:func:`backtest` run by ``python -m rules.backtest --json`` (the draft in a file, the URL
    in its environment: never on a command line)."""
    started = time.perf_counter()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAYSCORE_")}
    env["PAYSCORE_ANALYST_MYSQL_URL"] = url  # the URL it was given (the review queue's, its own)
    with tempfile.TemporaryDirectory(prefix="payscore-backtest-") as work:
        drafted = Path(work) / "draft.json"
        drafted.write_bytes(msgspec.json.encode(msgspec.to_builtins(list(draft))))
        command = [sys.executable, "-m", "rules.backtest", "--file", str(drafted), "--json"]
        command += ["--since", _utc(since).isoformat(), "--until", _utc(until).isoformat()]
        command += ["--jobs", str(jobs), *(["--replace"] if replace else [])]
        try:
            done = subprocess.run(
                command, env=env, capture_output=True, check=False, timeout=timeout
            )
        except subprocess.TimeoutExpired:  # run() killed it
            raise BacktestTimeoutError(
                f"the backtest from {_utc(since):%Y-%m-%d %H:%M} to {_utc(until):%Y-%m-%d %H:%M} "
                f"did not finish in {timeout:g} s and was stopped: backtest a shorter range"
            ) from None
    said = done.stderr.decode(errors="replace").strip()
    if done.returncode == 2 and said.startswith("refused: "):
        raise ValueError(said.removeprefix("refused: ")[:2000])
    if done.returncode != 0:
        raise RuntimeError(
            f"python -m rules.backtest exited with status {done.returncode}: {said[-2000:]}"
        )
    report = msgspec.json.decode(done.stdout, type=BacktestReport)
    return msgspec.structs.replace(report, seconds=time.perf_counter() - started)


def backtest_here(
    url: str,
    draft: Sequence[RuleSpec],
    *,
    since: datetime = EARLIEST,
    until: datetime = LATEST,
    replace: bool = False,
    store: RulesStore | None = None,
    jobs: int = 1,
) -> BacktestReport:
    """:func:`backtest` in this process (see there)."""
    global _PLAN
    if not 1 <= jobs <= MAX_JOBS:
        raise ValueError(f"jobs: expected 1 to {MAX_JOBS} processes; got {jobs}")
    started = time.perf_counter()
    since, until = _utc(since), _utc(until)
    engine = make_engine(url) if store is None else None
    store = store or RulesStore(engine)  # type: ignore[arg-type]
    try:
        snapshot, lists = store.load()
    finally:
        if engine is not None:
            engine.dispose()
    live = compile_ruleset(snapshot.rules, lists, version=snapshot.version)
    proposed = draft_ruleset(snapshot.rules, draft, lists, replace=replace)
    names = set(live.names) | set(proposed.names) | {"amount_eur"}
    fields = sorted(n for n in names if n in CONTRACT_FIELDS)
    if LATE_FIELDS & set(fields) and "country" not in fields:
        fields.append("country")
    features = sorted(n for n in names if n not in CONTRACT_FIELDS and n != PROBABILITY)
    plan = _Plan(url, live, proposed, lists, fields, features)
    spans = _spans(url, since, until, jobs)
    if len(spans) <= 1:
        total = _scan(plan, since, until)
    else:
        _PLAN = plan
        try:
            with multiprocessing.get_context("fork").Pool(len(spans)) as pool:
                partials = pool.starmap(_scan_planned, spans)
        finally:
            _PLAN = None
        total = partials[0]
        for other in partials[1:]:
            total.add(other)
    figures = [total.rules[r.rule_id] for r in proposed.rules]
    for f in figures:
        labelled = f.frauds_caught + f.legit_hit
        f.precision = f.frauds_caught / labelled if labelled else None
        f.recall = f.frauds_caught / total.frauds if total.frauds else None
    daily = [
        DayFigures(
            (date(1970, 1, 1) + timedelta(days=d)).isoformat(),
            e["payments"],
            e["hits"],
            e["frauds"],
            e["changed"],
        )
        for d, e in sorted(total.days.items())
    ]
    return BacktestReport(
        since.isoformat(sep=" "),
        until.isoformat(sep=" "),
        snapshot.version,
        total.evaluated,
        total.skipped,
        total.frauds,
        total.legit,
        figures,
        dict(sorted(total.changes.items())),
        total.changed,
        total.changed_frauds,
        total.changed_legit,
        total.examples,
        daily,
        time.perf_counter() - started,
        {k: round(v, 3) for k, v in total.stages.items()},
        {k: round(v, 3) for k, v in total.stages_cpu.items()},
    )


def _spans(
    url: str, since: datetime, until: datetime, jobs: int
) -> list[tuple[datetime, datetime]]:
    """[since, until) cut into ``jobs`` spans of equal time between the first and the last
    payment stored in it."""
    if jobs <= 1:
        return [(since, until)]
    connection = connect(url)
    try:
        cursor = connection.cursor()
        cursor.execute(
            "SELECT MIN(event_time), MAX(event_time) FROM scored_payments "
            "WHERE event_time >= %s AND event_time < %s",
            (since, until),
        )
        first, last = cursor.fetchone()
        cursor.close()
    finally:
        connection.close()
    if first is None or first == last:
        return [(since, until)]
    step = (last - first) / jobs
    cuts = [first + step * i for i in range(1, jobs)]
    bounds = [since, *cuts, until]
    return list(itertools.pairwise(bounds))


def _scan_planned(since: datetime, until: datetime) -> _Partial:
    assert _PLAN is not None, "a worker of a parallel backtest runs in a forked process"
    return _scan(_PLAN, since, until)


def _scan(plan: _Plan, since: datetime, until: datetime) -> _Partial:
    """Read and evaluate the payments stored in [since, until)."""
    live, proposed, lists = plan.live, plan.proposed, plan.lists
    total = _Partial(
        {
            r.rule_id: RuleFigures(r.rule_id, r.rule.action, r.status, _text(r))
            for r in proposed.rules
        }
    )
    decoder = _feature_decoder(plan.features) if plan.features else None
    clock = _Stopwatch(total.stages, total.stages_cpu)
    for rows in _stream(plan.url, since, until, plan.fields, plan.features):
        clock.lap("read")
        cols, fixed, present = _columns(rows, plan.fields, plan.features, decoder, clock)
        if not present.all():
            total.skipped += int((~present).sum())
            keep = np.flatnonzero(present)
            cols = Columns(
                keep.size,
                {k: v[keep] for k, v in cols.columns.items()},
                cols.event_ts[keep] if cols.event_ts is not None else None,
            )
            fixed = {k: v[keep] for k, v in fixed.items()}
        if cols.size == 0:
            clock.lap("rules")
            continue
        total.evaluated += cols.size
        label, model = fixed["label"], fixed["model"]
        is_fraud, is_legit = label == 1, label == 0
        total.frauds += int(is_fraud.sum())
        total.legit += int(is_legit.sum())
        amount = np.nan_to_num(cols.columns["amount_eur"])
        day = (cols.event_ts // DAY).astype(np.int64)  # type: ignore[operator]
        masks = {}
        for r in proposed.rules:
            mask = evaluate(r.rule.condition, cols, lists)
            masks[r.rule_id] = mask
            f = total.rules[r.rule_id]
            f.hits += int(mask.sum())
            caught = mask & is_fraud
            f.frauds_caught += int(caught.sum())
            f.legit_hit += int((mask & is_legit).sum())
            f.unlabelled_hit += int((mask & (label < 0)).sum())
            f.amount_eur_hit += float(amount[mask].sum())
            f.amount_eur_frauds_caught += float(amount[caught].sum())
            f.frauds_model_approved += int((caught & (model == 0)).sum())
        live_masks = [
            (
                r.rule.action,
                masks[r.rule_id] if _same(r, proposed) else evaluate(r.rule.condition, cols, lists),
            )
            for r in live.rules
            if r.status == "active"
        ]
        draft_masks = [
            (r.rule.action, masks[r.rule_id]) for r in proposed.rules if r.status == "active"
        ]
        before, after = final_codes(model, live_masks), final_codes(model, draft_masks)
        moved = before != after
        total.changed += int(moved.sum())
        total.changed_frauds += int((moved & is_fraud).sum())
        total.changed_legit += int((moved & is_legit).sum())
        if moved.any():
            pairs = before[moved].astype(np.int64) * 3 + after[moved]
            for code, n in zip(*np.unique(pairs, return_counts=True), strict=True):
                key = f"{CODES[code // 3]} -> {CODES[code % 3]}"
                total.changes[key] = total.changes.get(key, 0) + int(n)
            if len(total.examples) < EXAMPLES:
                ids = fixed["transaction_id"][moved][: EXAMPLES - len(total.examples)]
                total.examples += [i.decode() if isinstance(i, bytes) else str(i) for i in ids]
        _count_days(total.days, day, moved, masks, is_fraud)
        clock.lap("rules")
    clock.lap("read")  # the end of the rows
    return total


def _count_days(
    days: dict[int, dict[str, Any]],
    day: np.ndarray,
    moved: np.ndarray,
    masks: dict[str, np.ndarray],
    is_fraud: np.ndarray,
) -> None:
    first = int(day.min())
    at = day - first
    span = int(at.max()) + 1
    per_day = np.bincount(at, minlength=span).tolist()
    moved_per_day = np.bincount(at[moved], minlength=span).tolist()
    hits_per_day = {i: np.bincount(at[m], minlength=span).tolist() for i, m in masks.items()}
    frauds_per_day = {
        i: np.bincount(at[m & is_fraud], minlength=span).tolist() for i, m in masks.items()
    }
    for k in range(span):
        if not per_day[k]:
            continue
        entry = days.setdefault(first + k, {"payments": 0, "hits": {}, "frauds": {}, "changed": 0})
        entry["payments"] += per_day[k]
        entry["changed"] += moved_per_day[k]
        for rule_id in masks:
            entry["hits"][rule_id] = entry["hits"].get(rule_id, 0) + hits_per_day[rule_id][k]
            entry["frauds"][rule_id] = entry["frauds"].get(rule_id, 0) + frauds_per_day[rule_id][k]


def _same(rule: CompiledRule, proposed: Ruleset) -> bool:
    other = next((r for r in proposed.rules if r.rule_id == rule.rule_id), None)
    return other is not None and other.rule == rule.rule


def _text(rule: CompiledRule) -> str:
    return to_text(rule.rule)


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment


def _moment(text: str) -> datetime:
    try:
        return _utc(datetime.fromisoformat(text))
    except (ValueError, OverflowError):  # OverflowError: an offset that leaves the years 1-9999
        raise argparse.ArgumentTypeError(
            f"expected an ISO 8601 date or time (UTC unless it has an offset) within the years 1 "
            f"to 9999; got {text[:40]!r}"
        ) from None


def _jobs(text: str) -> int:
    return int(within(int, 1, MAX_JOBS, of="processes")(text))


class DraftRule(msgspec.Struct, forbid_unknown_fields=True):
    """One rule of a ``--file`` draft."""

    rule_id: str
    text: str
    status: str = "active"


@refusing("python -m rules.backtest", "analyst")
def main(argv: list[str] | None = None) -> int:
    parser = Parser(
        prog="python -m rules.backtest",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--rule", nargs=2, action="append", default=[], metavar=("ID", "RULE"))
    parser.add_argument("--file", type=Path, help="a JSON list of {rule_id, text, status}")
    parser.add_argument(
        "--status", default="active", choices=("active", "shadow"), help="of --rule drafts"
    )
    parser.add_argument("--since", type=_moment, default=EARLIEST)
    parser.add_argument("--until", type=_moment, default=LATEST)
    parser.add_argument("--replace", action="store_true", help="the draft is the whole ruleset")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument(
        "--jobs",
        type=_jobs,
        default=1,
        help=f"processes, each reading a span of the range (1; at most {MAX_JOBS})",
    )
    args = parser.parse_args(argv)
    draft = [RuleSpec(rule_id, text, args.status) for rule_id, text in args.rule]
    try:
        if args.file:
            try:
                with args.file.open("rb") as file:  # no further: /dev/zero never ends
                    data = file.read(MAX_DRAFT_BYTES + 1)
                if len(data) > MAX_DRAFT_BYTES:
                    raise ValueError(
                        f"--file {str(args.file)[:200]}: more than {MAX_DRAFT_BYTES:,} bytes; "
                        f"expected a JSON list of rules of at most {MAX_DRAFT_BYTES:,} bytes"
                    )
                drafted = msgspec.json.decode(data, type=list[DraftRule])
            except msgspec.DecodeError as exc:  # the wrong shape said where, not a traceback
                raise ValueError(
                    f"--file {str(args.file)[:200]}: expected a JSON list of "
                    f'{{"rule_id": ..., "text": ..., "status": ...}}: {str(exc)[:300]}'
                ) from None
            draft += [RuleSpec(d.rule_id, d.text, d.status) for d in drafted]
        if not draft and not args.replace:
            parser.error("give a draft: --rule ID RULE (repeatable) or --file draft.json")
        config = Config.from_env(os.environ)
        report = backtest_here(
            config.analyst_mysql_dsn,
            draft,
            since=args.since,
            until=args.until,
            replace=args.replace,
            jobs=args.jobs,
        )
    except (ValueError, KeyError, OSError, msgspec.DecodeError) as exc:
        print(f"refused: {str(exc)[:2000]}", file=sys.stderr)
        return 2
    if args.json:
        print(msgspec.json.encode(report).decode())
    else:
        print("\n".join(report.lines()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
