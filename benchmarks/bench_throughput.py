"""Throughput, latency, raw limits, profile and state size of the scoring flow, in one run.

    python benchmarks/bench_throughput.py [--days 4] [--cards 20000] [--processes 1 2]
        [--latency-rates R ...] [--latency-seconds 30] [--state-cards 3000] [--out DIR]
        [--skip-flow] [--skip-shadow] [--skip-loop] [--skip-raw] [--skip-latency]
        [--skip-profile] [--skip-state] [--skip-rules] [--rules-repeats 1] [--short]
        [--flow-args "-s 1"] [--settle-seconds 15] [--call-trace]

``--short`` checks that it runs in a few minutes (1 day, 2,000 cards, 1 process with and
without the rules, latency at 300 payments/s for 10 s; no shadow, loop, raw, profile or state).

Prints every figure below, ends with one summary table, and writes the figures as JSON to
``OUT/bench-throughput.json`` (``--out``, default ``reports/bench-throughput/``) beside the
artifacts: the flows' logs (``logs/``), the py-spy recording and its table.

1. **End to end** (``--skip-flow``): the generator's stream (seed 99, ``--days`` days,
   ``--cards`` cards, cards // 5 merchants), payments and labels in stream order, is produced
   once into fresh topics of 4 partitions (payments with ``LogAppendTime``). For each process
   count of ``--processes`` ``ops/run_flow.sh P 1`` drains the topics (``PAYSCORE_TAIL=false``)
   into a fresh scratch database, with a fresh copy of the model folder. Figures: payments
   stored, labels claimed and learned (and label rows by status), wall seconds from process
   start to exit, payments/s and labels/s on wall time, and the steady payment rate between the
   first and last ``stored_at`` ((rows - 1) / (last - first)). Unless ``--skip-shadow``, one more
   1-process run with a challenger shadowing (the start version shadows itself): the cost of
   shadow scoring. Unless ``--skip-rules``, one more 1-process run with the fifty rules of
   ``test_data/rule_examples.py`` all active and their lists (made for this stream) stored
   in its database as analysts store them: the cost of the rules against none. With
   ``--rules-repeats N``, N such pairs of 1-process runs, without and with the rules in turn:
   each side's rates, the cost on their medians and the spread of the runs without rules (the
   noise a cost must exceed). Every run also prints what its stored rows say about the score
   step (``fifty_rules.py``): its batches' sizes, the share of payments a rule fired on.
2. **The hand-written loop** (``--skip-loop``): ``benchmarks/reference_loop.py`` as a process
   over the same topics, with the same figures, and the ratios flow(1)/loop and flow(2)/flow(1).
3. **Raw limits** (``--skip-raw``): one confluent-kafka consumer reading both topics from the
   beginning to their end without decoding (messages/s); and MySQL's bulk load of the rows the
   loop stored (the last flow run's if the loop is skipped): the rows are read back (every
   column but ``stored_at``), written as LOAD DATA text in files of 1,000 rows beforehand, and
   only the ``LOAD DATA LOCAL INFILE`` statements and their commits are timed, into a fresh
   database (rows/s). Then the ratio of the 2-process flow's payments/s to the slower limit.
4. **Latency** (``--skip-latency``): for each rate (``--latency-rates``; default 2,000
   payments/s and 80 % of the 2-process steady rate of part 1) fresh topics and database, and
   ``ops/run_flow.sh 2 1`` tailing the topics in its own process group. A warm-up of
   ``--warmup-payments`` payments (with the labels between them) is sent and waited for; then
   the next part of the stream (seed 98) is sent paced so that payments arrive at the rate, for
   ``--latency-seconds``; once every payment is stored the group gets SIGTERM (exit 0
   expected). Percentiles p50, p99 and p99.9 (nearest rank, exact over every row) of
   ``stored_at - appended_at`` for the payments of the paced part. ``appended_at`` is the
   broker's append time; ``stored_at`` is when MySQL wrote the row (SYSDATE, per row) inside
   its batch's transaction: the commit follows within the batch's load. Beside it,
   **append-to-decision**: each payment's first record on the decisions topic (compacted,
   ``LogAppendTime``), its broker time minus the payment's ``appended_at`` (whole milliseconds).
   ``--flow-args`` are passed on to ``bytewax.run`` by ``ops/run_flow.sh`` (e.g. ``"-s 1"`` for
   a 1-second epoch; default none: Bytewax's 10 s). Between the warm-up and the paced part the
   flow runs ``--settle-seconds`` (15) idle: the processes' epochs come onto their shared grid
   within about ten epochs of the start (``dataflows/epochs.py``). Also printed: **the time a
   snapshot takes per epoch**, from each process's ``/metrics`` before and after the paced
   part: the seconds its stateful steps spent in ``snapshot()``
   (``payscore_snapshot_seconds_total``, by step) over the epochs its payment partitions
   closed (``payscore_epochs_closed_total``), and how long its payment partitions read nothing
   after each epoch close (``payscore_epoch_close_wait_seconds``); and every payment's
   ``appended_at``, latency
   (µs) and Kafka partition, in ``OUT/latency-series-<rate>.csv``, to see when it waited.
   With ``--call-trace`` the flow times every call into its steps (``PAYSCORE_CALL_TRACE_DIR``
   = ``OUT/call-trace-<rate>``) and the run prints, per process, where the pause after each
   epoch close of the paced part went (``benchmarks/epoch_close_trace.py``: the epoch's tail,
   each step's snapshots, sink writes, time outside the flow's Python).
5. **Per-stage profile** (``--skip-profile``): ``benchmarks/profile_stages.py --days
   --profile-days`` (4; ``--cards`` cards) and its stage table, timed without a profiler; and
   one more 1-process run of part 1, recorded by py-spy (``--nonblocking``, 50 Hz,
   ``--format raw`` into ``OUT/flow-1p.txt``; no SVG), of which the 25 functions with the most
   own samples are printed (and written to ``OUT/flow-1p-top.txt``). The recorded run is one of
   its own, so the figures of part 1 are not slowed by the recording.
6. **State bytes** (``--skip-state``): 30 days of traffic (seed 97, ``--state-cards`` cards)
   through the card and terminal steps' ``KeyedHistory`` objects (built as the flow builds
   them, fed with ``on_batch``, labels folded into the terminals), then ``len(snapshot())`` per
   key: mean and p99 bytes per active card (a payment in the last 30 days of event time) and
   per terminal.

``--flow-repo DIR`` runs the flow of another checkout instead (a ``git worktree`` of an earlier
commit, with this virtualenv), for a before/after comparison of part 1.

Topics, scratch databases and temporary model folders are removed at the end, also after an
error. A part that fails is reported (figures ``error``) and the others still run; the exit
status is then 1. A model must exist in ``PAYSCORE_MODEL_DIR`` (``python -m model_state.train``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import re
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import epoch_close_trace
import msgspec
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from fifty_rules import describe_facts, flow_run_facts, store_fifty_rules
from key_replay import KeyReplay
from sqlalchemy import Engine, func, select, text
from sqlalchemy.engine import make_url

from features.contract import Payment
from model_state import artifact, signing
from settings.config import DECISIONS_TOPIC_SETTINGS, Config
from storage import shadow
from storage.decision_records import decode as decode_decision
from storage.engine import make_engine
from storage.sink import load_data_statement, tsv_lines
from storage.tables import fraud_labels, scored_payments
from test_data.chaos import scratch_database
from test_data.delivery import Outgoing, ProduceReport
from test_data.generator import simulate
from test_data.produce import from_simulation, send
from test_data.spec import SimulationSpec
from test_data.topic_end import read_to_end

ROOT = Path(__file__).resolve().parent.parent
PYTHON = ROOT / ".venv" / "bin" / "python"
PY_SPY = ROOT / ".venv" / "bin" / "py-spy"
RUN_FLOW = ROOT / "ops" / "run_flow.sh"
PARTITIONS = 4
LOAD_BATCH_ROWS = 1000
DB_PREFIX = "payscore_tput"
TMP_DIR = "/dev/shm" if os.path.isdir("/dev/shm") else None
DAY = 86_400.0


# ------------------------------------------------------------------------------ the run


@dataclass
class Bench:
    """What the parts share: settings, the output folder, and what must be cleaned up."""

    args: argparse.Namespace
    config: Config
    out: Path
    admin: AdminClient
    results: dict[str, Any] = field(default_factory=dict)
    summary: list[tuple[str, str]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    next_port: int = 2700
    # The scratch database whose rows part 3 loads, kept (with its cleanup) until then.
    rows_dsn: str | None = None
    rows_from: str = ""
    rows_keeper: ExitStack = field(default_factory=ExitStack)

    def port(self) -> int:
        """A base port no earlier flow run of this benchmark used, whose first four ports are
        free now (another benchmark may be running on this machine)."""
        while True:
            self.next_port += 10
            if all(_free(self.next_port + i) for i in range(4)):
                return self.next_port

    def dsn(self, db_url: str) -> str:
        """The URL to connect to ``db_url`` with (the password file applied, if one is set)."""
        return Config.from_env({**_payscore_env(), "PAYSCORE_MYSQL_URL": db_url}).mysql_dsn

    def scratch_db(self, stack: ExitStack) -> str:
        """A fresh database with the schema, dropped when ``stack`` closes; the flow's URL."""
        return stack.enter_context(scratch_database(self.config, DB_PREFIX))

    def topics(self, stack: ExitStack, label: str) -> dict[str, str]:
        """Fresh payments (LogAppendTime), labels, dead-letter and decisions (compacted,
        LogAppendTime) topics of 4 partitions each, deleted when ``stack`` closes."""
        stem = f"tput-{label}-{uuid.uuid4().hex[:6]}"
        names = {k: f"{stem}-{k}" for k in ("payments", "labels", "dead", "decisions")}
        wanted = [
            NewTopic(
                names["payments"],
                num_partitions=PARTITIONS,
                config={"message.timestamp.type": "LogAppendTime"},
            ),
            NewTopic(names["labels"], num_partitions=PARTITIONS),
            NewTopic(names["dead"], num_partitions=PARTITIONS),
            NewTopic(
                names["decisions"], num_partitions=PARTITIONS, config=DECISIONS_TOPIC_SETTINGS
            ),
        ]
        created = []
        try:
            for name, future in self.admin.create_topics(wanted, request_timeout=30).items():
                future.result(timeout=60)
                created.append(name)
        finally:
            if created:
                stack.callback(_delete_topics, self.admin, created)
        if len(created) != len(wanted):
            raise RuntimeError(f"creating the topics {sorted(names.values())} failed")
        return names

    def model_copy(self, stack: ExitStack) -> Path:
        """A fresh copy of ``PAYSCORE_MODEL_DIR``, removed when ``stack`` closes."""
        source = _under_root(self.config.model_dir)
        if not source.is_dir():
            raise RuntimeError(
                f"the model folder {source} does not exist; expected the model versions "
                "(python -m model_state.train)"
            )
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="payscore-model-")))
        target = folder / "versions"
        shutil.copytree(source, target, symlinks=True)
        return target

    def env(
        self, topics: dict[str, str], db_url: str, model_dir: Path, *, tail: bool
    ) -> dict[str, str]:
        """The environment of a flow (or loop) run over ``topics`` into ``db_url``."""
        env = dict(os.environ)
        env.update(
            PAYSCORE_PAYMENTS_TOPIC=topics["payments"],
            PAYSCORE_LABELS_TOPIC=topics["labels"],
            PAYSCORE_DEAD_LETTERS_TOPIC=topics["dead"],
            PAYSCORE_DECISIONS_TOPIC=topics["decisions"],
            PAYSCORE_MYSQL_URL=db_url,
            PAYSCORE_MODEL_DIR=str(model_dir),
            PAYSCORE_TAIL="true" if tail else "false",
            FLOW_BASE_PORT=str(self.port()),
            # Metrics as in production (their cost is in the figures), on ports of their own.
            FLOW_METRICS_BASE_PORT=str(self.port()),
        )
        return env

    def producer(self, linger_ms: int) -> Producer:
        return Producer(
            {
                **self.config.kafka_client(),
                "linger.ms": linger_ms,
                "enable.idempotence": True,
                "queue.buffering.max.messages": 500_000,
            }
        )

    def keep_rows(self, run: ExitStack, dsn: str, source: str) -> None:
        """Keep this run's database (taking over its cleanup) as part 3's source of rows."""
        if self.args.skip_raw:
            return
        self.rows_keeper.close()  # drop the one kept before
        self.rows_keeper = run.pop_all()
        self.rows_dsn, self.rows_from = dsn, source

    def part(self, name: str, work: Callable[[], Any]) -> Any:
        """Run one part; a failure is printed and recorded, and the benchmark goes on."""
        _heading(name)
        try:
            result = work()
        except Exception as exc:
            traceback.print_exc()
            message = f"{type(exc).__name__}: {exc}"
            print(f"!! {name} failed: {message}", flush=True)
            self.results[name] = {"error": message}
            self.failures.append(name)
            self.summary.append((f"{name}", f"FAILED: {message[:80]}"))
            return None
        self.results[name] = result
        return result

    def add(self, label: str, value: str) -> None:
        self.summary.append((label, value))


def main(argv: Sequence[str] | None = None) -> int:
    global RUN_FLOW
    args = parse_arguments(argv)
    if args.flow_repo is not None:
        # Another checkout's flow (a before/after comparison), run with this virtualenv and
        # this key; PAYSCORE_MODEL_DIR must hold versions that checkout can load.
        RUN_FLOW = args.flow_repo.resolve() / "ops" / "run_flow.sh"
        os.environ["FLOW_PYTHON"] = sys.executable
        key = Path(os.environ.get("PAYSCORE_MODEL_KEY_FILE", "model_state/model.key"))
        os.environ["PAYSCORE_MODEL_KEY_FILE"] = str(_under_root(str(key)))
    # SIGTERM ends the run as Ctrl-C does: flows killed, topics and databases removed.
    signal.signal(signal.SIGTERM, _interrupted)
    config = Config.from_env(os.environ)
    out: Path = args.out
    (out / "logs").mkdir(parents=True, exist_ok=True)
    bench = Bench(args, config, out, AdminClient(config.kafka_client()))
    bench.results["run"] = {
        "started_at": datetime.now(UTC).isoformat(),
        "arguments": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "cpus": os.cpu_count(),
        "load_average_at_start": os.getloadavg()[0],
    }
    print(
        f"bench_throughput: {args.days} days, {args.cards:,} cards; "
        f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores; out: {out}",
        flush=True,
    )
    try:
        with ExitStack() as stack:
            stack.callback(lambda: bench.rows_keeper.close())
            run_parts(bench, stack)
    finally:
        bench.results["run"]["finished_at"] = datetime.now(UTC).isoformat()
        bench.results["run"]["failed_parts"] = bench.failures
        print_summary(bench)
        path = out / "bench-throughput.json"
        path.write_text(json.dumps(bench.results, indent=2, default=str) + "\n", encoding="utf-8")
        print(f"figures written to {path}")
    return 1 if bench.failures else 0


def run_parts(bench: Bench, stack: ExitStack) -> None:
    args = bench.args
    with ExitStack() as e2e:  # the end-to-end topics, kept until part 3 has read them
        topics: dict[str, str] | None = None
        if not (args.skip_flow and args.skip_loop and args.skip_raw):
            topics = bench.part("produce", lambda: produce_stream(bench, e2e))
            if topics is not None:
                topics = bench.results["produce"].pop("topics")
        if topics is not None and not args.skip_flow:
            bench.part("flow", lambda: flow_runs(bench, topics))
        if topics is not None and not args.skip_loop:
            bench.part("loop", lambda: loop_run(bench, topics))
        if topics is not None and not args.skip_raw:
            bench.part("raw", lambda: raw_limits(bench, topics))
        bench.rows_keeper.close()
    if not args.skip_latency:
        bench.part("latency", lambda: latency_runs(bench))
    if not args.skip_profile:
        bench.part("profile", lambda: stage_profile(bench))
    if not args.skip_state:
        bench.part("state", lambda: state_bytes(bench))


# ------------------------------------------------------------------------ 1. end to end


def produce_stream(bench: Bench, stack: ExitStack) -> dict[str, Any]:
    """Fresh topics holding the generator's stream (seed 99), payments and labels in order."""
    args = bench.args
    topics = bench.topics(stack, "e2e")
    sim = simulate(
        SimulationSpec(seed=99, days=args.days, cards=args.cards, merchants=max(args.cards // 5, 2))
    )
    report = send(
        from_simulation(sim.stream, topics["payments"], topics["labels"]),
        bench.producer(linger_ms=20),
        progress=False,
    )
    _check_sent(report, "the end-to-end stream")
    print(report.summary(), flush=True)
    bench.add("stream (seed 99)", f"{report.payments:,} payments, {report.labels:,} labels")
    return {"topics": topics, "payments": report.payments, "labels": report.labels}


def flow_runs(bench: Bench, topics: dict[str, str]) -> dict[str, Any]:
    """Part 1: one drain run of ``ops/run_flow.sh P 1`` per process count."""
    args = bench.args
    runs: dict[str, Any] = {}
    plans: list[tuple[str, int, str]] = [(str(p), p, "") for p in args.processes]
    if not args.skip_shadow:
        plans.append(("1-shadow", 1, "shadow"))  # the cost of one challenger shadowing
    if not args.skip_rules:
        plans.append(("1-rules", 1, "rules"))  # the cost of the fifty example rules, all active
        if 1 in args.processes:  # more pairs, in turn: the runs' own spread against the cost
            for k in range(2, args.rules_repeats + 1):
                pair = [(f"1#{k}", 1, ""), (f"1-rules#{k}", 1, "rules")]
                plans += pair[::-1] if k % 2 == 0 else pair  # ABBA: neither always runs first
    if not args.skip_profile:
        plans.append(("1-profiled", 1, "profile"))  # a separate run, so figures above are clean
    for key, processes, kind in plans:
        command = ["bash", str(RUN_FLOW), str(processes), "1"]
        note = ""
        if kind == "profile":
            if PY_SPY.exists():
                recording = bench.out / "flow-1p.txt"
                command = [
                    str(PY_SPY), "record", "--nonblocking", "--rate", "50", "--subprocesses",
                    "--format", "raw", "-o", str(recording), "--", *command,
                ]  # fmt: skip
                note = "recorded by py-spy (--nonblocking, 50 Hz)"
            else:
                print(f"note: py-spy missing ({PY_SPY}): no profile recorded")
                continue
        with ExitStack() as run:
            db_url = bench.scratch_db(run)
            models = bench.model_copy(run)
            env = bench.env(topics, db_url, models, tail=False)
            if kind == "shadow":
                note = shadow_itself(bench, db_url, models, env)
            if kind == "rules":
                note = fifty_rules(bench, db_url)
            name = f"flow-{key}p"
            figures = drain_run(bench, name, command, env, bench.dsn(db_url), args.run_timeout)
            if note:
                figures["note"] = note
            figures["score_step"] = flow_run_facts(bench.dsn(db_url))
            print(f"{name}: {describe_facts(figures['score_step'])}", flush=True)
            _print_drain(name, figures, bench.results["produce"]["payments"])
            runs[key] = figures
            label = f"flow {processes} process(es) x 1 worker" + (f", {kind}" if kind else "")
            label += f" (pair {key.split('#')[1]})" if "#" in key else ""
            bench.add(label, _drain_line(figures))
            if not kind and "#" not in key:
                bench.keep_rows(run, bench.dsn(db_url), name)
    if "1-profiled" in runs:
        runs["1-profiled"]["py_spy_top"] = pyspy_table(bench)
    if "1" in runs and "1-shadow" in runs:
        cost = 1 - runs["1-shadow"]["payments_per_s"] / runs["1"]["payments_per_s"]
        steady = _ratio(
            runs["1-shadow"]["steady_payments_per_s"], runs["1"]["steady_payments_per_s"]
        )
        runs["shadow_cost"] = {"wall": cost, "steady": None if steady is None else 1 - steady}
        bench.add(
            "shadow cost (1 process)",
            f"{cost:.1%} fewer payments/s on wall time"
            + (f", {1 - steady:.1%} steady" if steady is not None else ""),
        )
    if args.rules_repeats > 1 and "1" in runs and "1-rules" in runs:
        runs["rules_pairs"] = rules_pairs(bench, runs)
    if "1" in runs and "1-rules" in runs:
        cost = 1 - runs["1-rules"]["payments_per_s"] / runs["1"]["payments_per_s"]
        steady = _ratio(
            runs["1-rules"]["steady_payments_per_s"], runs["1"]["steady_payments_per_s"]
        )
        runs["rules_cost"] = {"wall": cost, "steady": None if steady is None else 1 - steady}
        bench.add(
            "50 active rules' cost (1 process)",
            f"{cost:.1%} fewer payments/s on wall time"
            + (f", {1 - steady:.1%} steady" if steady is not None else ""),
        )
    if "1" in runs and "2" in runs:
        ratio = runs["2"]["payments_per_s"] / runs["1"]["payments_per_s"]
        steady = _ratio(runs["2"]["steady_payments_per_s"], runs["1"]["steady_payments_per_s"])
        runs["ratio_2p_to_1p"] = {"wall": ratio, "steady": steady}
        print(f"flow(2)/flow(1): {ratio:.2f} on wall time, {_fmt(steady, '.2f')} steady")
        bench.add("ratio flow(2)/flow(1)", f"{ratio:.2f} wall, {_fmt(steady, '.2f')} steady")
    return runs


def rules_pairs(bench: Bench, runs: dict[str, Any]) -> dict[str, Any]:
    """``--rules-repeats`` pairs of 1-process runs without and with the rules, taken in turn:
    each side's rates, the median cost, and the spread of the runs without rules (the noise a
    cost must exceed)."""
    plain = [f["payments_per_s"] for k, f in runs.items() if k == "1" or k.startswith("1#")]
    ruled = [
        f["payments_per_s"] for k, f in runs.items() if k == "1-rules" or k.startswith("1-rules#")
    ]
    cost = 1 - statistics.median(ruled) / statistics.median(plain)
    spread = max(plain) / min(plain) - 1
    rates = (
        "/".join(f"{r:,.0f}" for r in plain)
        + " without, "
        + "/".join(f"{r:,.0f}" for r in ruled)
        + " with"
    )
    bench.add(
        f"50 active rules' cost, {len(plain)} pairs",
        f"{cost:.1%} fewer payments/s (medians; {rates}); runs without rules spread {spread:.1%}",
    )
    return {"without": plain, "with": ruled, "cost": cost, "spread_without": spread}


def shadow_itself(bench: Bench, db_url: str, models: Path, env: dict[str, str]) -> str:
    """Make the run's start version shadow itself (as a candidate): the cost of one challenger.
    Recorded as the retrain records one, with the model registry's account (the flow's may
    not write candidates)."""
    config = Config.from_env({k: v for k, v in env.items() if k.startswith("PAYSCORE_")})
    start = artifact.load(models, key=signing.read_key(Path(config.model_key_file)))
    database = make_url(db_url).database
    assert database, db_url
    engine = make_engine(bench.config.on_database(database).models_mysql_dsn)
    try:
        with engine.begin() as connection:
            shadow.record_candidate(
                connection, msgspec.to_builtins(start.metadata), start.payload, "benchmark"
            )
            shadow.record_action(connection, "shadow", start.version, by="benchmark")
    finally:
        engine.dispose()
    return f"{start.version} shadowing itself"


def fifty_rules(bench: Bench, db_url: str) -> str:
    """The fifty rules of ``test_data/rule_examples.py``, all active, and their lists (made for
    the end-to-end stream, seed 99), stored in the run's database as analysts store them."""
    return store_fifty_rules(bench.config, db_url, days=bench.args.days, cards=bench.args.cards)


def drain_run(
    bench: Bench, name: str, command: list[str], env: dict[str, str], dsn: str, timeout: float
) -> dict[str, Any]:
    """Run ``command`` to its end (it must exit 0) and read what it stored."""
    log = bench.out / "logs" / f"{name}.log"
    print(f"{name}: {' '.join(command[-4:])} (log: {log})", flush=True)
    status, seconds, output = run_group(command, env, log, timeout, capture=name == "loop")
    if status != 0:
        raise RuntimeError(f"{name} exited with status {status}; expected 0 (log: {log})")
    figures = stored_figures(dsn)
    figures["wall_seconds"] = seconds
    figures["payments_per_s"] = figures["payments"] / seconds
    figures["labels_per_s"] = figures["labels_claimed"] / seconds
    if name == "loop":
        lines = output.strip().splitlines()
        try:
            figures["loop_reported"] = json.loads(lines[-1])
        except (IndexError, json.JSONDecodeError):
            raise RuntimeError(
                f"the loop printed {output[-200:]!r}; expected one JSON line at the end"
            ) from None
    return figures


def stored_figures(dsn: str) -> dict[str, Any]:
    """Payments stored, their first and last ``stored_at``, and the label rows by status."""
    sp, fl = scored_payments, fraud_labels
    engine = make_engine(dsn)
    try:
        with engine.connect() as c:
            count, first, last = c.execute(
                select(func.count(), func.min(sp.c.stored_at), func.max(sp.c.stored_at))
            ).one()
            by_status = c.execute(select(fl.c.status, func.count()).group_by(fl.c.status))
            statuses = {status: n for status, n in by_status.all()}
            learned = c.execute(
                select(func.count())
                .select_from(fl)
                .where(fl.c.status == "claimed", fl.c.learned_version.is_not(None))
            ).scalar_one()
    finally:
        engine.dispose()
    span = (last - first).total_seconds() if count > 1 else 0.0
    return {
        "payments": count,
        "labels_claimed": statuses.get("claimed", 0),
        "labels_learned": learned,
        "label_rows": statuses,
        "first_stored_at": first,
        "last_stored_at": last,
        "steady_seconds": span,
        "steady_payments_per_s": (count - 1) / span if span > 0 else None,
    }


def loop_run(bench: Bench, topics: dict[str, str]) -> dict[str, Any]:
    """Part 2: ``benchmarks/reference_loop.py`` over the same topics, into a fresh database."""
    with ExitStack() as run:
        db_url = bench.scratch_db(run)
        env = bench.env(topics, db_url, bench.model_copy(run), tail=False)
        command = [str(PYTHON), str(ROOT / "benchmarks" / "reference_loop.py")]
        figures = drain_run(bench, "loop", command, env, bench.dsn(db_url), bench.args.run_timeout)
        _print_drain("loop", figures, bench.results["produce"]["payments"])
        bench.add("hand-written loop (1 process)", _drain_line(figures))
        bench.keep_rows(run, bench.dsn(db_url), "loop")
    flows = bench.results.get("flow") or {}
    if "1" in flows and "payments_per_s" in flows["1"]:
        wall = flows["1"]["payments_per_s"] / figures["payments_per_s"]
        steady = _ratio(flows["1"]["steady_payments_per_s"], figures["steady_payments_per_s"])
        figures["ratio_flow_1p_to_loop"] = {"wall": wall, "steady": steady}
        print(f"flow(1)/loop: {wall:.2f} on wall time, {_fmt(steady, '.2f')} steady")
        bench.add("ratio flow(1)/loop", f"{wall:.2f} wall, {_fmt(steady, '.2f')} steady")
    return figures


def _print_drain(name: str, f: dict[str, Any], produced: int) -> None:
    missing = "" if f["payments"] == produced else f"  (of {produced:,} produced!)"
    unclaimed = "" if f["labels_claimed"] == produced else f" (of {produced:,} produced!)"
    print(
        f"{name}: {f['payments']:,} payments stored{missing}, {f['labels_claimed']:,} labels "
        f"claimed{unclaimed}, {f['labels_learned']:,} learned (negative downsampling learns "
        f"a share of the legitimate ones); label rows by status {f['label_rows']}\n"
        f"{name}: {f['wall_seconds']:.1f} s wall = {f['payments_per_s']:,.0f} payments/s, "
        f"{f['labels_per_s']:,.0f} labels claimed/s; steady "
        f"{_fmt(f['steady_payments_per_s'], ',.0f')} payments/s over "
        f"{f['steady_seconds']:.1f} s of stored_at",
        flush=True,
    )


def _drain_line(f: dict[str, Any]) -> str:
    return (
        f"{f['payments_per_s']:,.0f} pay/s, {f['labels_per_s']:,.0f} labels claimed/s wall "
        f"({f['wall_seconds']:.1f} s); steady {_fmt(f['steady_payments_per_s'], ',.0f')} pay/s"
    )


# -------------------------------------------------------------------------- 3. raw limits


def raw_limits(bench: Bench, topics: dict[str, str]) -> dict[str, Any]:
    """Part 3: Kafka consume and MySQL bulk load alone, and the flow against the slower."""
    kafka = kafka_consume(bench.config, topics)
    print(
        f"Kafka consume: {kafka['messages']:,} messages ({kafka['bytes'] / 1e6:.1f} MB) in "
        f"{kafka['seconds']:.2f} s = {kafka['messages_per_s']:,.0f} messages/s (from assign; "
        f"the first batch came after {kafka['seconds_to_first_batch']:.2f} s)",
        flush=True,
    )
    bench.add("raw Kafka consume (both topics)", f"{kafka['messages_per_s']:,.0f} messages/s")
    figures: dict[str, Any] = {"kafka": kafka}
    if bench.rows_dsn is None:
        print("MySQL bulk load: skipped, no stored rows (the loop and the flow did not run)")
        figures["mysql"] = {"error": "no stored rows to load: the loop and the flow did not run"}
        return figures
    mysql = mysql_bulk_load(bench, bench.rows_dsn)
    mysql["rows_from"] = bench.rows_from
    print(
        f"MySQL bulk load ({bench.rows_from}'s rows): {mysql['rows']:,} rows in "
        f"{mysql['files']} LOAD DATA statements of {LOAD_BATCH_ROWS:,} in {mysql['seconds']:.2f} s "
        f"= {mysql['rows_per_s']:,.0f} rows/s (warnings: {mysql['warnings']})",
        flush=True,
    )
    bench.add("raw MySQL bulk load", f"{mysql['rows_per_s']:,.0f} rows/s")
    figures["mysql"] = mysql
    slowest = min(kafka["messages_per_s"], mysql["rows_per_s"])
    which = "Kafka consume" if slowest == kafka["messages_per_s"] else "MySQL bulk load"
    two = (bench.results.get("flow") or {}).get("2")
    if two and "payments_per_s" in two:
        wall = two["payments_per_s"] / slowest
        steady = _ratio(two["steady_payments_per_s"], slowest)
        figures["flow_2p_to_slowest_limit"] = {"limit": which, "wall": wall, "steady": steady}
        print(
            f"flow(2) payments/s / slowest raw limit ({which}, {slowest:,.0f}/s): "
            f"{wall:.3f} on wall time, {_fmt(steady, '.3f')} steady"
        )
        bench.add(
            "flow(2) / slowest raw limit",
            f"{wall:.3f} wall, {_fmt(steady, '.3f')} steady ({which})",
        )
    return figures


def kafka_consume(config: Config, topics: dict[str, str]) -> dict[str, Any]:
    """One consumer reads both topics from the beginning to their end; no decoding."""
    consumer = Consumer(
        {
            **config.kafka_client(),
            "group.id": f"bench-raw-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
        }
    )
    try:
        ends: dict[tuple[str, int], int] = {}
        assignment = []
        total = 0
        for topic in (topics["payments"], topics["labels"]):
            for p in consumer.list_topics(topic, timeout=10).topics[topic].partitions:
                low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
                if high > low:
                    ends[(topic, p)] = high
                    total += high - low
                    assignment.append(TopicPartition(topic, p, OFFSET_BEGINNING))
        remaining = set(ends)
        messages = size = 0
        first_at: float | None = None
        started = time.perf_counter()
        consumer.assign(assignment)
        deadline = time.monotonic() + 600
        while remaining:
            # A batch call waits for its count or its timeout: small ones end soon after the end.
            batch = consumer.consume(num_messages=1000, timeout=0.05)
            if batch and first_at is None:
                first_at = time.perf_counter()
            for m in batch:
                if m.error():
                    raise RuntimeError(f"reading {m.topic()}[{m.partition()}]: {m.error()}")
                messages += 1
                size += len(m.value() or b"")
                if m.offset() + 1 >= ends[(m.topic(), m.partition())]:
                    remaining.discard((m.topic(), m.partition()))
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"Kafka consume read {messages:,} of {total:,} messages in 600 s; "
                    "expected to reach the end of every partition"
                )
        seconds = time.perf_counter() - started
    finally:
        consumer.close()
    return {
        "messages": messages,
        "bytes": size,
        "seconds": seconds,
        "messages_per_s": messages / seconds,
        "seconds_to_first_batch": (first_at or started) - started,
    }


def mysql_bulk_load(bench: Bench, source_dsn: str) -> dict[str, Any]:
    """Time ``LOAD DATA LOCAL INFILE`` of stored rows (files written beforehand) + commits."""
    columns = [c for c in scored_payments.columns if c.name != "stored_at"]
    engine = make_engine(source_dsn)
    try:
        with engine.connect() as c:
            rows = [dict(r._mapping) for r in c.execute(select(*columns))]
    finally:
        engine.dispose()
    if not rows:
        raise RuntimeError(f"no rows in {bench.rows_from}'s scored_payments; expected its payments")
    with ExitStack() as stack:
        folder = Path(tempfile.mkdtemp(prefix="payscore-bench-load-", dir=TMP_DIR))
        stack.callback(shutil.rmtree, folder, ignore_errors=True)
        files: list[Path] = []
        names: list[str] = []
        for i in range(0, len(rows), LOAD_BATCH_ROWS):
            names, lines = tsv_lines(scored_payments, rows[i : i + LOAD_BATCH_ROWS])
            path = folder / f"batch-{len(files):06d}.tsv"
            path.write_text("\n".join(lines) + "\n", encoding="utf-8")
            files.append(path)
        statements = [load_data_statement(scored_payments, names, str(p)) for p in files]
        db_url = bench.scratch_db(stack)
        target = make_engine(bench.dsn(db_url), pool_size=1, local_infile=True)
        stack.callback(target.dispose)
        raw = target.raw_connection()
        stack.callback(raw.close)
        cursor = raw.cursor()
        warnings = 0
        started = time.perf_counter()
        for statement in statements:
            cursor.execute(statement)
            warnings += cursor.warning_count
            raw.commit()
        seconds = time.perf_counter() - started
        cursor.execute("SELECT COUNT(*) FROM scored_payments")
        loaded = cursor.fetchone()[0]
    if loaded != len(rows):
        raise RuntimeError(f"the bulk load stored {loaded:,} rows; expected {len(rows):,}")
    return {
        "rows": len(rows),
        "files": len(files),
        "seconds": seconds,
        "rows_per_s": len(rows) / seconds,
        "warnings": warnings,
    }


# ----------------------------------------------------------------------------- 4. latency


def latency_runs(bench: Bench) -> dict[str, Any]:
    """Part 4: append-to-store latency at each rate, with a tailing 2-process flow."""
    args = bench.args
    rates: list[float] = list(args.latency_rates or [])
    if not rates:
        rates = [2000.0]
        steady = ((bench.results.get("flow") or {}).get("2") or {}).get("steady_payments_per_s")
        if steady:
            rates.append(round(0.8 * steady))
        else:
            print(
                "note: no 2-process steady rate from part 1; the 80 % rate is left out "
                "(pass --latency-rates to choose rates)"
            )
    runs: dict[str, Any] = {}
    for rate in rates:
        figures = latency_run(bench, float(rate), args.latency_seconds)
        runs[f"{rate:g}"] = figures
        p = figures["percentiles_ms"]
        bench.add(
            f"latency at {rate:,.0f} pay/s (achieved {figures['achieved_payments_per_s']:,.0f})",
            f"p50 {p['p50']:.1f} ms, p99 {p['p99']:.1f} ms, p99.9 {p['p99.9']:.1f} ms",
        )
        d = figures["decision_on_topic_percentiles_ms"]
        bench.add(
            f"append-to-decision on topic at {rate:,.0f} pay/s",
            f"p50 {d['p50']:.0f} ms, p99 {d['p99']:.0f} ms, p99.9 {d['p99.9']:.0f} ms",
        )
    return runs


def latency_stream(
    cards: int, warmup_payments: int, steady_payments: int
) -> tuple[list[Outgoing], list[Outgoing]]:
    """The warm-up records and the paced part's records of a seed-98 stream, in stream order."""
    need = warmup_payments + steady_payments
    days = max(1, math.ceil(need / (cards * 1.2)) + 1)
    while True:
        sim = simulate(
            SimulationSpec(seed=98, days=days, cards=cards, merchants=max(cards // 5, 2))
        )
        if sim.n_payments >= need:
            break
        days *= 2
    warm: list[Outgoing] = []
    steady: list[Outgoing] = []
    sent = 0
    # The topic names are filled in by the caller (the records are made before the topics).
    for record in from_simulation(sim.stream, "payments", "labels"):
        if sent < warmup_payments:
            warm.append(record)
        else:
            steady.append(record)
        if record.event == "payment":
            sent += 1
            if sent == need:
                break
    return warm, steady


def latency_run(bench: Bench, rate: float, seconds: float) -> dict[str, Any]:
    args = bench.args
    steady_payments = max(1, round(rate * seconds))
    warm, steady = latency_stream(args.cards, args.warmup_payments, steady_payments)
    with ExitStack() as run:
        topics = bench.topics(run, f"lat{rate:g}")
        to_topic = {"payment": topics["payments"], "label": topics["labels"]}
        warm = [r._replace(topic=to_topic[r.event]) for r in warm]
        steady = [r._replace(topic=to_topic[r.event]) for r in steady]
        db_url = bench.scratch_db(run)
        env = bench.env(topics, db_url, bench.model_copy(run), tail=True)
        traces = bench.out / f"call-trace-{rate:g}"
        if args.call_trace:
            traces.mkdir(parents=True, exist_ok=True)
            env["PAYSCORE_CALL_TRACE_DIR"] = str(traces)
        engine = make_engine(bench.dsn(db_url))
        run.callback(engine.dispose)
        log = bench.out / "logs" / f"latency-{rate:g}.log"
        print(
            f"latency at {rate:,.0f} payments/s for {seconds:g} s: ops/run_flow.sh 2 1 "
            f"tailing (log: {log})",
            flush=True,
        )
        metrics_port = int(env["FLOW_METRICS_BASE_PORT"])
        with log.open("ab") as out:
            proc = subprocess.Popen(
                ["bash", str(RUN_FLOW), "2", "1", *shlex.split(args.flow_args)],
                env=env,
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        run.callback(_kill_group, proc)
        producer = bench.producer(linger_ms=5)
        report = send(warm, producer, progress=False)
        _check_sent(report, "the warm-up")
        warm_payments = report.payments
        _wait_stored(engine, warm_payments, proc, args.latency_timeout, "the warm-up", log)
        print(f"  warm-up: {warm_payments:,} payments stored", flush=True)
        time.sleep(args.settle_seconds)
        before = [scrape(metrics_port + i) for i in range(2)]
        part_payments = sum(r.event == "payment" for r in steady)
        messages_rate = rate * len(steady) / part_payments
        now = datetime.now(UTC).replace(tzinfo=None)
        steady_start = now.replace(microsecond=now.microsecond // 1000 * 1000)
        report = send(steady, producer, rate=messages_rate, progress=False)
        _check_sent(report, "the paced part")
        total = warm_payments + report.payments
        timeout = max(args.latency_timeout, 3 * seconds)
        _wait_stored(engine, total, proc, timeout, "the paced part", log)
        paced_end = time.time()
        after = [scrape(metrics_port + i) for i in range(2)]
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            status = proc.wait(timeout=args.stop_timeout)
        except subprocess.TimeoutExpired:
            raise RuntimeError(
                f"the flow did not exit within {args.stop_timeout:g} s of SIGTERM; expected a "
                f"graceful stop (log: {log})"
            ) from None
        if status != 0:
            print(f"  !! the flow exited with status {status} after SIGTERM; expected 0 ({log})")
        with engine.connect() as c:
            micros = sorted(
                c.execute(
                    text(
                        "SELECT TIMESTAMPDIFF(MICROSECOND, appended_at, stored_at) "
                        "FROM scored_payments WHERE appended_at >= :start"
                    ),
                    {"start": steady_start},
                ).scalars()
            )
            series = c.execute(
                text(
                    "SELECT appended_at, TIMESTAMPDIFF(MICROSECOND, appended_at, stored_at), "
                    "kafka_partition FROM scored_payments WHERE appended_at >= :start "
                    "ORDER BY appended_at, kafka_partition, kafka_offset"
                ),
                {"start": steady_start},
            ).all()
            with (bench.out / f"latency-series-{rate:g}.csv").open("w") as f:
                f.write("appended_at,latency_us,kafka_partition\n")
                for at, micro, part in series:
                    f.write(f"{at.isoformat()},{micro},{part}\n")
            appended = scored_payments.c.appended_at
            first, last = c.execute(
                select(func.min(appended), func.max(appended)).where(appended >= steady_start)
            ).one()
        decided = first_decisions_ms(bench.config, topics["decisions"], steady_start)
    if len(micros) != report.payments:
        raise RuntimeError(
            f"{len(micros):,} payments appended since the paced part began; expected "
            f"{report.payments:,} (its payments only)"
        )
    if len(decided) != report.payments:
        raise RuntimeError(
            f"{len(decided):,} decisions on the topic for payments appended since the paced part "
            f"began; expected {report.payments:,}"
        )
    percentiles = {name: nearest_rank(micros, q) / 1000 for name, q in _QUANTILES}
    on_topic = {name: nearest_rank(decided, q) for name, q in _QUANTILES}
    span = (last - first).total_seconds() if len(micros) > 1 else 0.0
    appended_rate = (len(micros) - 1) / span if span > 0 else None
    achieved = report.payments / report.seconds if report.seconds > 0 else 0.0
    figures = {
        "target_payments_per_s": rate,
        "messages_per_s_sent": messages_rate,
        "payments": report.payments,
        "messages": report.messages,
        "send_seconds": report.seconds,
        "achieved_payments_per_s": achieved,
        "appended_payments_per_s": appended_rate,
        "percentiles_ms": percentiles,
        "max_ms": micros[-1] / 1000,
        "decision_on_topic_percentiles_ms": on_topic,
        "decision_on_topic_max_ms": decided[-1],
        "exit_status_after_sigterm": status,
        "warmup_payments": warm_payments,
        "flow_args": args.flow_args,
        "snapshots_per_epoch": [
            snapshot_seconds_per_epoch(b, a, topics["payments"])
            for b, a in zip(before, after, strict=True)
        ],
    }
    p = percentiles
    print(
        f"  paced part: {report.payments:,} payments ({report.messages:,} messages at "
        f"{messages_rate:,.0f}/s) in {report.seconds:.1f} s: achieved {achieved:,.0f} payments/s "
        f"({_fmt(appended_rate, ',.0f')}/s by append time)\n"
        f"  stored_at - appended_at: p50 {p['p50']:.1f} ms, p99 {p['p99']:.1f} ms, "
        f"p99.9 {p['p99.9']:.1f} ms, max {micros[-1] / 1000:.1f} ms; "
        f"flow exit status {status}\n"
        f"  decision on topic - appended_at: p50 {on_topic['p50']:.0f} ms, p99 "
        f"{on_topic['p99']:.0f} ms, p99.9 {on_topic['p99.9']:.0f} ms, max {decided[-1]:.0f} ms "
        "(broker times, whole milliseconds)",
        flush=True,
    )
    if args.call_trace:
        since = steady_start.replace(tzinfo=UTC).timestamp()
        figures["call_trace"] = epoch_close_trace.report(traces, since, paced_end, False)
        print(f"  where the pause after each close went (call files in {traces}):")
        print("\n".join(f"    {line}" for line in figures["call_trace"]), flush=True)
    for i, snaps in enumerate(figures["snapshots_per_epoch"]):
        steps = ", ".join(f"{step} {ms:.1f}" for step, ms in snaps["ms_by_step"].items() if ms)
        print(
            f"  process {i}: snapshots {snaps['ms_per_epoch']:.1f} ms per epoch over "
            f"{snaps['epochs']:g} epochs ({steps or 'none'}); its payment partitions read "
            f"nothing for {_fmt(snaps['read_wait_after_close_ms'], '.0f')} ms after each "
            "epoch close (mean)",
            flush=True,
        )
        for topic, means in snaps["by_topic"].items():
            print(
                f"    {topic}: read nothing {_fmt(means['read_wait_ms'], '.0f')} ms after a "
                f"close, closed {_fmt(means['off_grid_ms'], '.0f')} ms from the epoch grid "
                "(means)",
                flush=True,
            )
    return figures


_SAMPLE = re.compile(
    r"^(payscore_snapshot_seconds_total|payscore_epochs_closed_total"
    r"|payscore_epoch_close_(?:wait|off_grid)_seconds_(?:sum|count))\{(.*)\} (\S+)$"
)


def scrape(port: int) -> dict[tuple[str, str], float]:
    """A flow process's snapshot seconds by step and epochs closed by ``topic/partition``,
    from its ``/metrics``."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        body = response.read().decode()
    found: dict[tuple[str, str], float] = {}
    for line in body.splitlines():
        match = _SAMPLE.match(line)
        if match:
            labels = dict(re.findall(r'(\w+)="([^"]*)"', match[2]))
            key = labels.get("step") or f"{labels.get('topic')}/{labels.get('partition', '')}"
            found[(match[1], key)] = float(match[3])
    return found


def snapshot_seconds_per_epoch(
    before: dict[tuple[str, str], float], after: dict[tuple[str, str], float], topic: str
) -> dict[str, Any]:
    """Milliseconds of ``snapshot()`` per epoch between two scrapes of one process (the epochs
    its busiest payments partition closed), in all and by step."""
    delta = {key: value - before.get(key, 0.0) for key, value in after.items()}
    epochs = max(
        (
            v
            for (name, key), v in delta.items()
            if name.startswith("payscore_epochs") and key.startswith(f"{topic}/")
        ),
        default=0.0,
    )
    by_step = {
        key: 1000 * v / epochs if epochs else 0.0
        for (name, key), v in sorted(delta.items())
        if name.startswith("payscore_snapshot")
    }
    waits = {
        name: v
        for (name, key), v in delta.items()
        if name.startswith("payscore_epoch_close_wait") and key == f"{topic}/"
    }
    count = waits.get("payscore_epoch_close_wait_seconds_count", 0.0)
    return {
        "epochs": epochs,
        "ms_per_epoch": sum(by_step.values()),
        "ms_by_step": by_step,
        "read_wait_after_close_ms": (
            1000 * waits.get("payscore_epoch_close_wait_seconds_sum", 0.0) / count
            if count
            else None
        ),
        "by_topic": {name: _close_means(delta, name) for name in sorted(_topics_closing(delta))},
    }


def _topics_closing(delta: dict[tuple[str, str], float]) -> set[str]:
    return {
        key.removesuffix("/")
        for (name, key), v in delta.items()
        if name.startswith("payscore_epoch_close_") and v
    }


def _close_means(delta: dict[tuple[str, str], float], topic: str) -> dict[str, float | None]:
    """Per topic: the mean read wait after an epoch close, and the mean distance of the closes
    from the epoch grid, in milliseconds (None: none between the scrapes)."""

    def mean(metric: str) -> float | None:
        count = delta.get((f"payscore_epoch_close_{metric}_seconds_count", f"{topic}/"), 0.0)
        total = delta.get((f"payscore_epoch_close_{metric}_seconds_sum", f"{topic}/"), 0.0)
        return 1000 * total / count if count else None

    return {"read_wait_ms": mean("wait"), "off_grid_ms": mean("off_grid")}


_QUANTILES = (("p50", 0.50), ("p99", 0.99), ("p99.9", 0.999))


def first_decisions_ms(config: Config, topic: str, since: datetime) -> list[float]:
    """Append-to-decision, sorted: for each payment appended at or after ``since`` (naive UTC),
    its first record on the decisions topic, the record's broker time (LogAppendTime, whole
    milliseconds) minus the payment's ``appended_at``, in milliseconds."""
    client = {**config.kafka_client(), "group.id": f"bench-decisions-{uuid.uuid4().hex[:6]}"}
    first: dict[str, float] = {}
    start = since.replace(tzinfo=UTC)
    for message in read_to_end(client, topic, seconds=300):
        record = decode_decision(message.value())
        if record.appended_at is None or record.transaction_id in first:
            continue
        appended = datetime.fromisoformat(record.appended_at)
        if appended < start:
            continue
        _, broker_ms = message.timestamp()
        first[record.transaction_id] = broker_ms - appended.timestamp() * 1000
    return sorted(first.values())


def nearest_rank(ordered: Sequence[float], q: float) -> float:
    """The ``q`` quantile of sorted values by nearest rank: the value at rank ceil(q * n)."""
    if not ordered:
        raise ValueError("a percentile of no values; expected at least one")
    return ordered[max(1, math.ceil(q * len(ordered))) - 1]


def _wait_stored(
    engine: Engine, want: int, proc: subprocess.Popen[bytes], timeout: float, what: str, log: Path
) -> None:
    deadline = time.monotonic() + timeout
    count = 0
    while True:
        with engine.connect() as c:
            count = c.execute(select(func.count()).select_from(scored_payments)).scalar_one()
        if count >= want:
            return
        if proc.poll() is not None:
            raise RuntimeError(
                f"the flow exited with status {proc.returncode} while {count:,} of {want:,} "
                f"payments of {what} were stored; expected it to keep tailing (log: {log})"
            )
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"{count:,} of {want:,} payments of {what} stored after {timeout:g} s; "
                f"expected all (log: {log})"
            )
        time.sleep(0.25)


# -------------------------------------------------------------------------- 5. profiling


def stage_profile(bench: Bench) -> dict[str, Any]:
    """Part 5: ``profile_stages.py`` as a process; its stage table (µs per item), timed without
    a profiler (cProfile would slow every stage: run profile_stages.py --cprofile for that)."""
    args = bench.args
    command = [
        str(PYTHON),
        str(ROOT / "benchmarks" / "profile_stages.py"),
        "--days", str(args.profile_days),
        "--cards", str(args.cards),
    ]  # fmt: skip
    print(" ".join(command[1:]), flush=True)
    done = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=args.run_timeout, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"profile_stages.py exited with status {done.returncode}; expected 0: "
            f"{done.stderr.strip()[-500:]}"
        )
    print(done.stdout.rstrip(), flush=True)
    stages: dict[str, float] = {}
    for line in done.stdout.splitlines():
        match = re.match(r"^(.+?)\s+([\d.,]+) µs per", line)
        if match:
            stages[match.group(1).strip()] = float(match.group(2).replace(",", ""))
    if "all stages" in stages:
        bench.add("per-stage profile: all stages", f"{stages['all stages']:.1f} µs per payment")
    figures: dict[str, Any] = {"stages_us": stages}
    flow_1p = (bench.results.get("flow") or {}).get("1") or {}
    if "py_spy_top" in flow_1p:
        figures["py_spy"] = str(bench.out / "flow-1p.txt")
    return figures


def pyspy_table(bench: Bench, top: int = 25) -> list[dict[str, Any]]:
    """The functions with the most own samples in the py-spy recording; printed and written."""
    path = bench.out / "flow-1p.txt"
    own: Counter[str] = Counter()
    total = 0
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        frames = re.sub(r'^(process \d+:"[^"]*";?)+', "", stack)  # the process chain
        if not frames:  # the thread ran no Python code: native code (Bytewax's Rust runtime)
            leaf = "(no Python frame: native code)"
        else:
            leaf = re.sub(r":\d+\)$", ")", frames.split(";")[-1])  # per function, not per line
        own[leaf] += int(count)
        total += int(count)
    rows = [
        {"function": name, "own_samples": n, "share": n / total} for name, n in own.most_common(top)
    ]
    lines = [f"py-spy, 1-process flow run: top {top} of {total:,} samples by own samples"]
    lines += [f"{r['own_samples']:8,} {r['share']:6.1%}  {r['function']}" for r in rows]
    table = "\n".join(lines)
    print(table, flush=True)
    (bench.out / "flow-1p-top.txt").write_text(table + "\n", encoding="utf-8")
    if rows:
        bench.add(
            "py-spy top function (flow 1 process)",
            f"{rows[0]['function']}: {rows[0]['share']:.1%} of {total:,} samples",
        )
    return rows


# ------------------------------------------------------------------------- 6. state bytes


def state_bytes(bench: Bench) -> dict[str, Any]:
    """Part 6: snapshot bytes per key after 30 days of traffic through the flow's key logic
    (``key_replay.py``)."""
    cards = bench.args.state_cards
    sim = simulate(SimulationSpec(seed=97, days=30, cards=cards, merchants=max(cards // 5, 2)))
    keys = KeyReplay()
    last_paid: dict[str, float] = {}
    payments = labels = 0
    # Stop after the last payment: the labels reported later have not arrived at day 30.
    for event in keys.replay(sim.stream, sim.n_payments):
        if isinstance(event, Payment):
            payments += 1
            last_paid[event.card_id] = max(last_paid.get(event.card_id, 0.0), event.event_timestamp)
        else:
            labels += 1
    card_keys, terminal_keys = keys.card_keys, keys.terminal_keys
    now = max(last_paid.values())
    active = [k for k, t in last_paid.items() if t >= now - 30 * DAY]
    card_bytes = sorted(len(card_keys[k].snapshot(compact=True)) for k in active)
    fast_bytes = sorted(len(card_keys[k].snapshot(compact=False)) for k in active)
    card_parts: dict[str, list[int]] = {}
    for k in active:
        for part, size in card_keys[k].state_parts().items():
            card_parts.setdefault(part, []).append(size)
    parts = {
        part: {
            "mean_bytes": sum(sizes) / len(active),
            "p99_bytes": nearest_rank(sorted(sizes), 0.99),
        }
        for part, sizes in card_parts.items()
    }
    terminal_bytes = sorted(len(t.snapshot()) for t in terminal_keys.values())
    figures = {
        "payments": payments,
        "labels_folded": labels,
        "cards": {
            "count": len(card_bytes),
            "mean_bytes": sum(card_bytes) / len(card_bytes),
            "p99_bytes": nearest_rank(card_bytes, 0.99),
            "max_bytes": card_bytes[-1],
            "parts": parts,
            "fast": {
                "mean_bytes": sum(fast_bytes) / len(fast_bytes),
                "p99_bytes": nearest_rank(fast_bytes, 0.99),
                "max_bytes": fast_bytes[-1],
            },
        },
        "terminals": {
            "count": len(terminal_bytes),
            "mean_bytes": sum(terminal_bytes) / len(terminal_bytes),
            "p99_bytes": nearest_rank(terminal_bytes, 0.99),
            "max_bytes": terminal_bytes[-1],
        },
    }
    print(f"30 days, {cards:,} cards: {payments:,} payments, {labels:,} labels folded in")
    for kind in ("cards", "terminals"):
        f = figures[kind]
        line = (
            f"{f['count']:,} {kind}: mean {f['mean_bytes']:,.0f} B, p99 {f['p99_bytes']:,} B, "
            f"max {f['max_bytes']:,} B per snapshot"
        )
        print(line)
        bench.add(f"state bytes per {'active card' if kind == 'cards' else 'terminal'}", line)
        if kind == "cards":
            fast = f["fast"]
            line = (
                f"  the same cards' fast snapshots (PAYSCORE_CARD_SNAPSHOTS=fast, the default): "
                f"mean {fast['mean_bytes']:,.0f} B, p99 {fast['p99_bytes']:,} B, max "
                f"{fast['max_bytes']:,} B; above: compact"
            )
            print(line)
            bench.add("state bytes per active card, fast snapshots", line.strip())
            print("  where an active card's bytes go (mean, p99 of each part; the means add up):")
            for part, f in parts.items():
                print(f"  {part:32s} {f['mean_bytes']:7,.0f} B  {f['p99_bytes']:7,} B")
    return figures


# ------------------------------------------------------------------------------ helpers


def run_group(
    command: list[str], env: dict[str, str], log: Path, timeout: float, *, capture: bool = False
) -> tuple[int, float, str]:
    """Run ``command`` in its own process group to its end; (status, wall seconds, stdout if
    captured). The group is killed if the run times out or is interrupted."""
    with log.open("ab") as out:
        started = time.perf_counter()
        proc = subprocess.Popen(
            command,
            env=env,
            cwd=ROOT,
            stdout=subprocess.PIPE if capture else out,
            stderr=out,
            start_new_session=True,
        )
        try:
            output, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            raise RuntimeError(
                f"{' '.join(command[-4:])} ran longer than {timeout:g} s (--run-timeout); "
                f"expected it to end (log: {log})"
            ) from None
        except BaseException:
            _kill_group(proc)
            raise
        seconds = time.perf_counter() - started
    return proc.returncode, seconds, (output or b"").decode()


def _interrupted(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"stopped by {signal.Signals(signum).name}")


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the process group ``proc`` leads, if any of it still runs."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=30)


def _delete_topics(admin: AdminClient, names: list[str]) -> None:
    for name, future in admin.delete_topics(names, request_timeout=30).items():
        try:
            future.result(timeout=60)
        except Exception as exc:
            print(f"!! deleting the topic {name} failed: {exc}", file=sys.stderr)


def _check_sent(report: ProduceReport, what: str) -> None:
    if not report.ok:
        raise RuntimeError(
            f"producing {what} failed: {report.delivered:,} of {report.messages:,} messages "
            f"acknowledged; expected all; {report.errors[:3]}"
        )


def _payscore_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k.startswith("PAYSCORE_")}


def _under_root(path: str) -> Path:
    """A setting's path as the flow sees it (``ops/run_flow.sh`` runs in the project root)."""
    p = Path(path)
    return p if p.is_absolute() else ROOT / p


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a and b else None


def _free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _fmt(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def _heading(name: str) -> None:
    print(f"\n=== {name} " + "=" * max(3, 70 - len(name)), flush=True)


def print_summary(bench: Bench) -> None:
    _heading("summary")
    width = max((len(label) for label, _ in bench.summary), default=10)
    for label, value in bench.summary:
        print(f"{label:<{width}}  {value}")
    if bench.failures:
        print(f"failed parts: {', '.join(bench.failures)}")


def parse_arguments(argv: Iterable[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=4, help="days of the end-to-end stream")
    parser.add_argument("--cards", type=int, default=20_000, help="cards of every stream")
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument(
        "--latency-rates",
        type=float,
        nargs="+",
        help="payments/s (default: 2000 and 80 %% of the 2-process steady rate)",
    )
    parser.add_argument("--latency-seconds", type=float, default=30.0)
    parser.add_argument("--warmup-payments", type=int, default=2000)
    parser.add_argument(
        "--flow-args",
        default="",
        help='latency runs: arguments for bytewax.run, e.g. "-s 1" (a 1-second epoch)',
    )
    parser.add_argument(
        "--settle-seconds",
        type=float,
        default=15.0,
        help="latency runs: seconds the flow runs between the warm-up and the paced part",
    )
    parser.add_argument(
        "--call-trace",
        action="store_true",
        help="latency runs: time every call of the flow (PAYSCORE_CALL_TRACE_DIR) and print "
        "where the pause after each epoch close went (benchmarks/epoch_close_trace.py)",
    )
    parser.add_argument(
        "--latency-timeout", type=float, default=300.0, help="seconds to wait for stored payments"
    )
    parser.add_argument("--stop-timeout", type=float, default=120.0, help="seconds after SIGTERM")
    parser.add_argument("--run-timeout", type=float, default=3600.0, help="seconds per drain run")
    parser.add_argument("--profile-days", type=int, default=4)
    parser.add_argument("--state-cards", type=int, default=3000)
    parser.add_argument("--out", type=Path, default=ROOT / "reports" / "bench-throughput")
    parser.add_argument(
        "--flow-repo",
        type=Path,
        help="run the flow of another checkout (e.g. a git worktree of an earlier commit)",
    )
    for part in ("flow", "shadow", "rules", "loop", "raw", "latency", "profile", "state"):
        parser.add_argument(f"--skip-{part}", action="store_true")
    parser.add_argument(
        "--rules-repeats",
        type=int,
        default=1,
        help="1-process runs without and with the rules, taken in turn this many times each "
        "(the cost against the runs' own spread)",
    )
    parser.add_argument(
        "--short",
        action="store_true",
        help="a quick check that it runs (1 day, 2,000 cards, 1 process with and without the "
        "rules, latency at 300 payments/s for 10 s; no shadow, loop, raw, profile or state)",
    )
    args = parser.parse_args(list(argv) if argv is not None else None)
    if args.short:
        args.days, args.cards, args.processes = 1, 2000, [1]
        args.latency_rates = args.latency_rates or [300.0]
        args.latency_seconds, args.warmup_payments = 10.0, 500
        for part in ("shadow", "loop", "raw", "profile", "state"):
            setattr(args, f"skip_{part}", True)
    if args.rules_repeats < 1:
        parser.error(f"--rules-repeats must be >= 1; got {args.rules_repeats}")
    if args.days < 1 or args.cards < 10 or args.state_cards < 10:
        parser.error("--days must be >= 1, --cards and --state-cards >= 10")
    if any(p < 1 for p in args.processes):
        parser.error(f"--processes must be >= 1 each; got {args.processes}")
    if args.latency_seconds <= 0 or any(r <= 0 for r in args.latency_rates or []):
        parser.error("--latency-seconds and --latency-rates must be > 0")
    return args


if __name__ == "__main__":
    sys.exit(main())
