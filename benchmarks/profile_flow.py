"""Where the flow's CPU goes end to end: the flow process, MariaDB and the broker, per payment.

    python benchmarks/profile_flow.py [--days 2] [--cards 12000] [--processes 1] [--repeats 3]
        [--rate 100] [--rules] [--out reports/throughput-research] [--classify FILE]
        [--flow-repo DIR]

The generator's stream (seed 99, ``--days`` days, ``--cards`` cards, cards / 5 merchants: a few
tens of thousands of payments, each with its label, in stream order) is produced once into fresh
topics of 4 partitions (payments with ``LogAppendTime``). Then ``ops/run_flow.sh P 1`` drains them
(``PAYSCORE_TAIL=false``) into a fresh scratch database with a fresh copy of the model,
``--repeats`` times, and once more recorded by py-spy (``--native``, ``--rate`` Hz, raw format,
``OUT/flow-<P>p-pyspy.txt``). Measured per clean run, in CPU seconds (the machine is shared, so
no wall-time figure is used for a cost):

- **the flow**: its processes' user + system time (``getrusage`` of the waited-for children);
- **MariaDB, our connections**: the server threads that serve the run's database, found in
  ``information_schema.PROCESSLIST`` (its ``TID``) every quarter second by the flow's own
  account, their ``/proc/<mysqld>/task/<tid>/stat`` CPU from first to last sight (the
  foreground work of the sink, the claims and the version records, exact but for the first and
  last quarter second of each connection);
- **MariaDB and the broker, whole processes**: ``/proc/<pid>/stat`` before and after, less
  their CPU in the same number of seconds just before the run (the other developers' load,
  which varies: read these two as rough).

With ``--rules`` every variant runs twice in turn, without and with the fifty rules of
``test_data/rule_examples.py`` all active and their lists made for the stream, stored in the run's
database as analysts store them (as ``bench_throughput.py``'s rules run, ``fifty_rules.py``), and
a table sets each part's µs per payment without and with them side by side. Every run also prints
what its stored rows say about the score step: the sizes of the batches it scored (rows of one
``score`` call share their ``scored_at``) and the share of payments an active rule fired on, a
rule decided, a shadow rule hit, stored with reason codes; and the sizes of the label join's
claims (labels decided per claim transaction, from the ledger's ``resolved_at``).
``--flow-repo DIR`` runs another checkout's flow (``git worktree add /tmp/before <commit>``)
with this virtualenv, model and key, for a before/after comparison.

The py-spy recording is cut into the flow's parts by the frames of each sample
(:func:`classify`: the Kafka client, decoding, each keyed step's Python logic and Bytewax's
stateful framework around it, snapshots, scoring, the label claims, the sinks, the learner,
Bytewax's per-item Python shims, the rest). Samples of startup and samples whose innermost frame
is a wait (py-spy records a thread sleeping, polling a socket for MySQL's answer or waiting for
the GIL as if it ran) are left out, and each part's share of the rest is applied to the clean
runs' median flow CPU: µs per payment (each with its label). ``--classify FILE`` only
classifies a recording made before.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import cpu_meter
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic
from fifty_rules import describe_facts, flow_run_facts, store_fifty_rules
from sqlalchemy import text

from settings.config import DECISIONS_TOPIC_SETTINGS, Config
from storage.engine import make_engine
from test_data.chaos import scratch_database
from test_data.delivery import send
from test_data.generator import simulate
from test_data.produce import from_simulation
from test_data.spec import SimulationSpec

ROOT = Path(__file__).resolve().parent.parent
PY_SPY = ROOT / ".venv" / "bin" / "py-spy"
RUN_FLOW = ROOT / "ops" / "run_flow.sh"  # --flow-repo: another checkout's
PARTITIONS = 4


# ------------------------------------------------------------------------ classification

# (part, pattern), by priority: a sample belongs to the first part with a pattern that one of its
# frames matches, wherever in the stack (so the flow's own code decides, not the library it
# calls, and Bytewax's Rust frames count only when no Python of the flow ran). Frames are
# py-spy's: "qualified name (file:line)" for Python, "symbol (library)" for native code.
RULES: tuple[tuple[str, str], ...] = (
    ("startup (imports, building the flow)", r"^_find_and_load|^(?:build|flow) \(dataflows/sco"),
    ("Python's garbage collector", r"^gc_collect_main|^gc_collect_with_callback"),
    ("snapshots", r"\.snapshot \((?:dataflows|features)/|ser_snap|SerializedSnapshotWriter"),
    ("exchange (pickling between processes)", r"TdPyAny.*Serialize|PickleVisitor"),
    ("metrics", r"prometheus_client|\(dataflows/metrics\.py"),
    ("decisions topic", r"\(dataflows/decisions_topic\.py|\(storage/decision_records\.py"),
    ("sink: scored payments", r"\(storage/(?:sink|payments|rows)\.py"),
    ("dead letters", r"\(dataflows/dead_letter_topic\.py|\(storage/dead_letters\.py"),
    ("label claims", r"\(storage/labels\.py|\(dataflows/label_join\.py"),
    ("drain check (labels accounted for)", r"LabelsAccountedFor"),
    ("learner", r"\(model_state/learner\.py|\(dataflows/learning\.py|\(river/"),
    ("model versions", r"\(model_state/(?:checkpoints|artifact|stored_versions|signing)\.py"),
    ("model registry", r"\(dataflows/model_registry\.py"),
    ("rules: the watch thread (look-ups, loads)", r"\(rules/(?:loader|store)\.py"),
    ("rules: deciding", r"\(rules/"),
    ("scoring: reasons of rule hits, split again", r"^Scorer\.reasons \(model_state/scorer\.py"),
    ("scoring: reason codes ranked", r"top_positive"),
    ("scoring", r"\(model_state/|\(dataflows/drift_watch\.py|^score \(dataflows/scoring\.py"),
    ("card features (logic)", r"\(features/(?:card|windows|geo|currency)\.py"),
    ("terminal and merchant features (logic)", r"\(features/entity\.py"),
    ("keyed steps' own Python (on_batch, duplicates)", r"\(dataflows/keyed_history\.py"),
    ("calendar features", r"\(features/calendar\.py|add_calendar_features"),
    ("decode", r"\(dataflows/messages\.py|\(features/contract\.py"),
    ("Kafka client", r"\(bytewax/connectors/kafka|confluent_kafka|rdkafka|rd_kafka"),
    ("Kafka client", r"\(dataflows/sources\.py"),
    ("Bytewax Python shims (map, filter, key_on, ...)", r"\(bytewax/operators/__init__\.py"),
    ("flow glue (scoring.py lambdas, failures.py)", r"\(dataflows/(?:scoring|failures)\.py"),
    ("MySQL client (other)", r"pymysql|sqlalchemy"),
    ("Bytewax stateful framework (Rust)", r"StatefulBatchOp|StatefulBatchLogic"),
    ("Bytewax input (Rust)", r"partitioned_input|FixedPartitionedSource"),
    ("Bytewax output (Rust)", r"dynamic_output|DynamicOutputOp|StatelessPartition"),
    ("Bytewax flat_map_batch and branch (Rust)", r"FlatMapBatchOp|BranchOp"),
    ("Bytewax timely runtime (Rust)", r"timely::|timely_communication|bytewax::"),
)
_COMPILED = tuple((part, re.compile(pattern)) for part, pattern in RULES)
OTHER = "other (the interpreter, the main thread's signal checks)"
STARTUP = RULES[0][0]
# py-spy pauses the process to sample it and cannot always tell a waiting thread from a running
# one: a sample whose innermost frame is a wait (a sleep, a poll on a socket, a condition
# variable, a lock -- waiting for MySQL's answer or for the GIL) is time, not CPU.
WAITING = "waiting (not CPU: sleeps, socket polls, the GIL)"
_WAIT_LEAF = re.compile(
    r"^(?:clock_nanosleep|nanosleep|poll|ppoll|__poll|select|epoll_wait|pthread_cond_timedwait"
    r"|pthread_cond_wait|__futex\w*|futex\w*|sem_wait|sem_timedwait|recv|recvfrom|__libc_recv"
    r"|accept|do_futex_wait\w*|PySSL_select) "
)
_UNRESOLVED_LIBC = re.compile(r"^0x[0-9a-f]+ \(libc\.so")
_WAITS_ABOVE = re.compile(
    r"GILGuard::acquire|take_gil|PyThread_acquire_lock|PyEval_RestoreThread|PyGILState_Ensure"
    r"|pthread_cond|Thread::sleep|park"
)


def waiting(frames: list[str]) -> bool:
    """Whether a sample's innermost frame is a wait (see ``WAITING``)."""
    leaf = frames[-1] if frames else ""
    if _WAIT_LEAF.search(leaf):
        return True
    return bool(_UNRESOLVED_LIBC.search(leaf)) and any(_WAITS_ABOVE.search(f) for f in frames)


def classify(path: Path) -> tuple[Counter[str], int]:
    """Samples per part of a py-spy raw recording; and the samples in all."""
    parts: Counter[str] = Counter()
    total = 0
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = [f for f in stack.split(";") if not f.startswith("process ")]
        if waiting(frames):
            parts[WAITING] += n
            continue
        part = next((p for p, rx in _COMPILED if any(rx.search(f) for f in frames)), OTHER)
        parts[part] += n
    return parts, total


# ------------------------------------------------------------------------------- the runs


@contextmanager
def fresh_topics(config: Config) -> Iterator[dict[str, str]]:
    admin = AdminClient(config.kafka_client())
    stem = f"prof-{uuid.uuid4().hex[:8]}"
    names = {k: f"{stem}-{k}" for k in ("payments", "labels", "dead", "decisions")}
    wanted = [
        NewTopic(
            names["payments"],
            num_partitions=PARTITIONS,
            config={"message.timestamp.type": "LogAppendTime"},
        ),
        NewTopic(names["labels"], num_partitions=PARTITIONS),
        NewTopic(names["dead"], num_partitions=PARTITIONS),
        NewTopic(names["decisions"], num_partitions=PARTITIONS, config=DECISIONS_TOPIC_SETTINGS),
    ]
    for future in admin.create_topics(wanted, request_timeout=30).values():
        future.result(timeout=60)
    try:
        yield names
    finally:
        for future in admin.delete_topics(list(names.values()), request_timeout=30).values():
            try:
                future.result(timeout=60)
            except Exception as exc:
                print(f"!! deleting a topic failed: {exc}", file=sys.stderr)


def produce(
    config: Config, topics: dict[str, str], days: int, cards: int, *, labels: bool = True
) -> tuple[int, int]:
    """The stream into ``topics`` (without its labels unless ``labels``)."""
    sim = simulate(SimulationSpec(seed=99, days=days, cards=cards, merchants=max(cards // 5, 2)))
    producer = Producer(
        {**config.kafka_client(), "linger.ms": 20, "enable.idempotence": True,
         "queue.buffering.max.messages": 500_000}
    )  # fmt: skip
    records = from_simulation(sim.stream, topics["payments"], topics["labels"])
    if not labels:
        records = (r for r in records if r.event == "payment")
    report = send(records, producer, progress=False)
    if not report.ok:
        raise RuntimeError(f"producing the stream failed: {report.errors[:3]}")
    return report.payments, report.labels


class ServerThreads:
    """CPU of the MariaDB threads serving database ``name``, watched every quarter second."""

    def __init__(self, dsn: str, name: str, mysqld: int) -> None:
        self._engine = make_engine(dsn, pool_size=1)
        self._name = name
        self._mysqld = mysqld
        self._seen: dict[tuple[int, int], list[float]] = {}  # (id, tid) -> [first, last]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self) -> ServerThreads:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._engine.dispose()

    def _watch(self) -> None:
        with self._engine.connect() as c:
            me = c.execute(text("SELECT CONNECTION_ID()")).scalar_one()
            while not self._stop.is_set():
                rows = c.execute(
                    text("SELECT ID, TID FROM information_schema.PROCESSLIST WHERE DB = :db"),
                    {"db": self._name},
                ).all()
                for cid, tid in rows:
                    if cid == me:
                        continue
                    try:
                        cpu = cpu_meter.thread_cpu(self._mysqld, int(tid))
                    except (FileNotFoundError, ProcessLookupError):
                        continue
                    self._seen.setdefault((cid, tid), [cpu, cpu])[1] = cpu
                self._stop.wait(0.25)

    def cpu(self) -> float:
        return sum(last - first for first, last in self._seen.values())

    def connections(self) -> int:
        return len(self._seen)


def pid_of(pattern: str) -> int:
    out = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True, check=False)
    pids = [int(p) for p in out.stdout.split()]
    if not pids:
        raise RuntimeError(f"no process matches {pattern!r}; expected the shared service")
    return min(pids)


def mysqld_pid() -> int:
    try:
        return int(Path("/run/mysqld/mysqld.pid").read_text().strip())
    except FileNotFoundError:
        return pid_of("mariadbd|mysqld")


def flow_env(config: Config, topics: dict[str, str], dsn_url: str, models: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        PAYSCORE_PAYMENTS_TOPIC=topics["payments"],
        PAYSCORE_LABELS_TOPIC=topics["labels"],
        PAYSCORE_DEAD_LETTERS_TOPIC=topics["dead"],
        PAYSCORE_DECISIONS_TOPIC=topics["decisions"],
        PAYSCORE_MYSQL_URL=dsn_url,
        PAYSCORE_MODEL_DIR=str(models),
        PAYSCORE_TAIL="false",
        FLOW_BASE_PORT=str(free_port()),
        FLOW_METRICS_BASE_PORT=str(free_port()),
    )
    return env


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stored(dsn: str) -> tuple[int, int]:
    engine = make_engine(dsn, pool_size=1)
    try:
        with engine.connect() as c:
            payments = c.execute(text("SELECT COUNT(*) FROM scored_payments")).scalar_one()
            learned = c.execute(
                text(
                    "SELECT COUNT(*) FROM fraud_labels WHERE status = 'claimed' "
                    "AND learned_version IS NOT NULL"
                )
            ).scalar_one()
    finally:
        engine.dispose()
    return int(payments), int(learned)


def claim_sizes(dsn: str) -> dict[str, float]:
    """The label join's claims, from the ledger the run left: every claim transaction stamps
    the rows it decides with one ``resolved_at`` (``storage.labels.claim_labels``'s moment), so
    the rows per distinct ``resolved_at`` are the labels each claim decided (a label still
    waiting in a claim is left out, and counted in the claim that decides it)."""
    engine = make_engine(dsn, pool_size=1)
    try:
        with engine.connect() as c:
            sizes = sorted(
                int(n)
                for (n,) in c.execute(
                    text(
                        "SELECT COUNT(*) FROM fraud_labels WHERE resolved_at IS NOT NULL "
                        "GROUP BY resolved_at ORDER BY resolved_at"
                    )
                )
            )
    finally:
        engine.dispose()
    if not sizes:
        return {"claims": 0, "labels": 0}
    return {
        "claims": len(sizes),
        "labels": sum(sizes),
        "mean": sum(sizes) / len(sizes),
        "p10": sizes[len(sizes) // 10],
        "median": sizes[len(sizes) // 2],
        "p90": sizes[len(sizes) * 9 // 10],
        "max": sizes[-1],
        "labels_in_claims_of_100_or_more": sum(n for n in sizes if n >= 100) / sum(sizes),
    }


def describe_claims(claims: dict[str, float]) -> str:
    if not claims["claims"]:
        return "no label claim decided a label"
    return (
        f"label claims: {claims['claims']:,} deciding {claims['labels']:,} labels, "
        f"{claims['mean']:.0f} a claim on average (p10 {claims['p10']}, median "
        f"{claims['median']}, p90 {claims['p90']}, max {claims['max']}); "
        f"{claims['labels_in_claims_of_100_or_more']:.0%} of the labels in claims of 100 or more"
    )


def one_run(
    config: Config,
    topics: dict[str, str],
    processes: int,
    out: Path,
    wrap: list[str],
    name: str,
    tweaks: str = "",
    rules: tuple[int, int] | None = None,
) -> dict[str, Any]:
    """One drain run; ``rules`` (days, cards): with the fifty rules and their lists made for
    that stream stored in its database first."""
    mysqld, broker = mysqld_pid(), pid_of(r"kafka\.Kafka")
    with ExitStack() as stack:
        db_url = stack.enter_context(scratch_database(config, "payscore_prof"))
        if rules is not None:
            store_fifty_rules(config, db_url, days=rules[0], cards=rules[1])
        dsn = Config.from_env({**_payscore_env(), "PAYSCORE_MYSQL_URL": db_url}).mysql_dsn
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="payscore-model-")))
        models = folder / "versions"
        shutil.copytree(ROOT / config.model_dir, models, symlinks=True)
        env = flow_env(config, topics, db_url, models)
        if tweaks:  # run_flow.sh starts benchmarks/flow_tweaks.py instead of python
            wrapper = folder / "python"
            wrapper.write_text(
                f'#!/bin/sh\nexec "{sys.executable}" "{ROOT / "benchmarks" / "flow_tweaks.py"}" '
                '"$@"\n'
            )
            wrapper.chmod(0o755)
            env.update(FLOW_PYTHON=str(wrapper), FLOW_TWEAKS=tweaks.replace("+", ","))
        database = db_url.rsplit("/", 1)[-1].split("?")[0]
        # The services' background: their CPU in 10 s just before the run.
        m0, b0 = cpu_meter.pid_cpu(mysqld), cpu_meter.pid_cpu(broker)
        time.sleep(10)
        idle_m = (cpu_meter.pid_cpu(mysqld) - m0) / 10
        idle_b = (cpu_meter.pid_cpu(broker) - b0) / 10
        command = [*wrap, "bash", str(RUN_FLOW), str(processes), "1"]
        log = out / f"{name}.log"
        with ServerThreads(dsn, database, mysqld) as threads, log.open("wb") as sink:
            m0, b0, c0 = cpu_meter.pid_cpu(mysqld), cpu_meter.pid_cpu(broker), _children()
            started = time.perf_counter()
            proc = subprocess.Popen(
                command, env=env, cwd=ROOT, stdout=sink, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
            try:
                status = proc.wait(timeout=3600)
            except BaseException:
                os.killpg(proc.pid, signal.SIGKILL)
                raise
            wall = time.perf_counter() - started
            m1, b1, c1 = cpu_meter.pid_cpu(mysqld), cpu_meter.pid_cpu(broker), _children()
        if status != 0:
            raise RuntimeError(f"{name}: the flow exited {status}; expected 0 (log: {log})")
        payments, learned = stored(dsn)
        facts = flow_run_facts(dsn)
        claims = claim_sizes(dsn)
    return {
        "score_step": facts,
        "claims": claims,
        "payments": payments,
        "labels_learned": learned,
        "wall": wall,
        "flow_cpu": c1 - c0,
        "mysqld_cpu": m1 - m0,
        "mysqld_background": idle_m * wall,
        "mysqld_our_threads": threads.cpu(),
        "mysqld_connections": threads.connections(),
        "broker_cpu": b1 - b0,
        "broker_background": idle_b * wall,
    }


def _children() -> float:
    return cpu_meter.children_cpu()


def _payscore_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k.startswith("PAYSCORE_")}


# ------------------------------------------------------------------------------ the report


def print_parts(parts: Counter[str], total: int, flow_us: float | None) -> dict[str, Any]:
    """Each part's share of the samples after startup that are not waits, and ``flow_us`` (the
    flow's CPU per payment after startup) shared out by them."""
    rows: dict[str, Any] = {}
    startup = parts.pop(STARTUP, 0)
    waits = parts.pop(WAITING, 0)
    steady = total - startup - waits
    print(
        f"py-spy: {total:,} samples; left out below: {startup:,} of startup, {waits:,} waiting "
        "(sleeps, socket polls, the GIL)"
    )
    for part, n in parts.most_common():
        share = n / steady
        rows[part] = {"samples": n, "share": share}
        us = ""
        if flow_us is not None:
            rows[part]["us_per_payment"] = share * flow_us
            us = f"{share * flow_us:7.1f} µs"
        print(f"  {share:6.1%} {us}  {part}")
    return rows


def describe(r: dict[str, Any], fixed: float) -> str:
    n = r["payments"]
    return (
        f"{n:,} payments stored, {r['labels_learned']:,} labels learned; wall {r['wall']:.0f} s; "
        f"flow {r['flow_cpu'] * 1e6 / n:.0f} µs CPU per payment "
        f"({(r['flow_cpu'] - fixed) * 1e6 / n:.0f} after the empty run's {fixed:.1f} s); "
        f"MariaDB our threads {r['mysqld_our_threads'] * 1e6 / n:.0f} µs "
        f"({r['mysqld_connections']} connections), whole process "
        f"{(r['mysqld_cpu'] - r['mysqld_background']) * 1e6 / n:.0f} µs "
        f"(raw {r['mysqld_cpu'] * 1e6 / n:.0f}); broker "
        f"{(r['broker_cpu'] - r['broker_background']) * 1e6 / n:.0f} µs "
        f"(raw {r['broker_cpu'] * 1e6 / n:.0f}) per payment"
    )


def compare_rules(variant: str, plain: dict[str, Any], ruled: dict[str, Any]) -> None:
    """Each part's µs per payment without and with the rules, side by side, and the flow's CPU,
    MariaDB's and the broker's (medians of the clean runs)."""

    def median(entry: dict[str, Any], figure: str) -> float:
        runs = entry["runs"]
        if figure == "flow":
            return cpu_meter.median_of(entry["flow_us"])
        if figure == "mysqld":
            return cpu_meter.median_of(
                [r["mysqld_our_threads"] * 1e6 / r["payments"] for r in runs]
            )
        return cpu_meter.median_of(
            [(r["broker_cpu"] - r["broker_background"]) * 1e6 / r["payments"] for r in runs]
        )

    print(f"[{variant}] without / with the fifty rules, µs of CPU per payment with its label:")
    for figure, name in (
        ("flow", "the flow (after startup)"),
        ("mysqld", "MariaDB, our connections' threads"),
        ("broker", "the broker, less its background"),
    ):
        a, b = median(plain, figure), median(ruled, figure)
        print(f"  {a:8.1f} {b:8.1f} {b - a:+8.1f}  {name}")
    if "parts" in plain and "parts" in ruled:
        print("  by the py-spy recordings' parts:")
        names = sorted(
            {*plain["parts"], *ruled["parts"]},
            key=lambda n: (
                -abs(
                    ruled["parts"].get(n, {}).get("us_per_payment", 0.0)
                    - plain["parts"].get(n, {}).get("us_per_payment", 0.0)
                )
            ),
        )
        for name in names:
            a = plain["parts"].get(name, {}).get("us_per_payment", 0.0)
            b = ruled["parts"].get(name, {}).get("us_per_payment", 0.0)
            print(f"  {a:8.1f} {b:8.1f} {b - a:+8.1f}  {name}")


def main(argv: Iterable[str] | None = None) -> None:
    global RUN_FLOW
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=2)
    parser.add_argument("--cards", type=int, default=12_000)
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--variants",
        nargs="+",
        default=["plain"],
        choices=["plain", "gc", "pin", "nospin", "gc+pin", "gc+pin+nospin"],
        help="plain: the flow as it is; others: with benchmarks/flow_tweaks.py's tweaks",
    )
    parser.add_argument("--no-pyspy", action="store_true")
    parser.add_argument(
        "--split",
        action="store_true",
        help="also run each variant over the payments alone: the label path is the difference",
    )
    parser.add_argument(
        "--rules",
        action="store_true",
        help="run every variant also with the fifty example rules active (their lists made for "
        "the stream), and compare the parts",
    )
    parser.add_argument("--rate", type=int, default=100, help="py-spy samples per second")
    parser.add_argument("--out", type=Path, default=ROOT / "reports" / "throughput-research")
    parser.add_argument("--classify", type=Path, help="only classify this py-spy recording")
    parser.add_argument(
        "--flow-repo",
        type=Path,
        help="run the flow of another checkout (a git worktree of an earlier commit) with this "
        "virtualenv, this model and this key: a before/after comparison",
    )
    parser.add_argument("--flow-us", type=float, help="with --classify: flow µs per payment")
    args = parser.parse_args(list(argv) if argv is not None else None)
    if args.classify:
        print_parts(*classify(args.classify), args.flow_us)
        return
    args.out.mkdir(parents=True, exist_ok=True)
    if args.flow_repo is not None:
        RUN_FLOW = args.flow_repo.resolve() / "ops" / "run_flow.sh"
        os.environ["FLOW_PYTHON"] = sys.executable
        key = Path(os.environ.get("PAYSCORE_MODEL_KEY_FILE", "model_state/model.key"))
        os.environ["PAYSCORE_MODEL_KEY_FILE"] = str(key if key.is_absolute() else ROOT / key)
    config = Config.from_env(os.environ)
    results: dict[str, Any] = {"arguments": vars(args) | {"out": str(args.out)}}

    def show(values: list[float], spec: str = ".0f") -> str:
        return cpu_meter.fmt_spread(cpu_meter.spread(values), spec)

    with ExitStack() as topic_sets:
        topics = topic_sets.enter_context(fresh_topics(config))
        empty = topic_sets.enter_context(fresh_topics(config))
        alone = topic_sets.enter_context(fresh_topics(config)) if args.split else None
        sent_payments, sent_labels = produce(config, topics, args.days, args.cards)
        if alone is not None:
            produce(config, alone, args.days, args.cards, labels=False)
        print(
            f"profile_flow: {sent_payments:,} payments and {sent_labels:,} labels; "
            f"{args.processes} process(es) x 1 worker; load average {os.getloadavg()[0]:.1f}",
            flush=True,
        )
        # A kind is a variant, or a variant with the rules ("plain+rules").
        kinds = [k for v in args.variants for k in ((v, f"{v}+rules") if args.rules else (v,))]
        tag = {k: f"{args.processes}p-{k.replace('+', '-')}" for k in kinds}
        base = {k: k.removesuffix("+rules") for k in kinds}
        tweaks = {k: "" if base[k] == "plain" else base[k] for k in kinds}
        with_rules = {k: (args.days, args.cards) if k.endswith("+rules") else None for k in kinds}
        fixed: dict[str, float] = {}
        runs: dict[str, list[dict[str, Any]]] = {k: [] for k in kinds}
        for v in kinds:
            blank = one_run(
                config, empty, args.processes, args.out, [], f"empty-{tag[v]}", tweaks[v],
                with_rules[v],
            )  # fmt: skip
            fixed[v] = blank["flow_cpu"]
            print(f"[{v}] empty topics: the flow's fixed CPU {fixed[v]:.2f} s", flush=True)
        alone_runs: dict[str, list[dict[str, Any]]] = {k: [] for k in kinds}
        for i in range(args.repeats):  # the variants take turns: the load changes over time
            for v in kinds:
                r = one_run(
                    config, topics, args.processes, args.out, [], f"{tag[v]}-{i}", tweaks[v],
                    with_rules[v],
                )  # fmt: skip
                runs[v].append(r)
                print(f"[{v}] run {i}: {describe(r, fixed[v])}", flush=True)
                print(f"[{v}] run {i}: {describe_facts(r['score_step'])}", flush=True)
                print(f"[{v}] run {i}: {describe_claims(r['claims'])}", flush=True)
                if alone is not None:
                    r = one_run(
                        config, alone, args.processes, args.out, [], f"{tag[v]}-alone-{i}",
                        tweaks[v], with_rules[v],
                    )  # fmt: skip
                    alone_runs[v].append(r)
                    print(f"[{v}] run {i}, payments alone: {describe(r, fixed[v])}", flush=True)
        for v in kinds:
            flow_us = [(r["flow_cpu"] - fixed[v]) * 1e6 / r["payments"] for r in runs[v]]
            ours = [r["mysqld_our_threads"] * 1e6 / r["payments"] for r in runs[v]]
            whole = [
                (r["mysqld_cpu"] - r["mysqld_background"]) * 1e6 / r["payments"] for r in runs[v]
            ]
            broker = [
                (r["broker_cpu"] - r["broker_background"]) * 1e6 / (sent_payments + sent_labels)
                for r in runs[v]
            ]
            print(f"[{v}] flow CPU per payment with its label (after startup): "
                  f"{show(flow_us)} µs")  # fmt: skip
            print(f"[{v}] MariaDB: our connections' threads {show(ours)} µs per payment; "
                  f"the whole process, less its background, {show(whole)} µs")  # fmt: skip
            print(f"[{v}] broker: {show(broker, '.1f')} µs per message read (less its "
                  "background)")  # fmt: skip
            entry: dict[str, Any] = {"fixed_cpu": fixed[v], "runs": runs[v]}
            if alone_runs[v]:
                paths = [
                    ((a["flow_cpu"] - fixed[v]) * 1e6 / a["payments"],
                     a["mysqld_our_threads"] * 1e6 / a["payments"])
                    for a in alone_runs[v]
                ]  # fmt: skip
                pay = [f for f, _ in paths]
                labels = [t - f for t, f in zip(flow_us, pay, strict=True)]
                server_labels = [t - s for t, (_, s) in zip(ours, paths, strict=True)]
                print(f"[{v}] split: the payment path {show(pay)} µs of flow CPU and "
                      f"{show([s for _, s in paths])} µs of MariaDB per payment; the label path "
                      f"{show(labels)} µs of flow CPU and {show(server_labels)} µs of MariaDB "
                      "per label (with its run's difference)")  # fmt: skip
                entry["alone_runs"] = alone_runs[v]
            if PY_SPY.exists() and not args.no_pyspy:
                recording = args.out / f"flow-{tag[v]}-pyspy.txt"
                wrap = [
                    str(PY_SPY), "record", "--native", "--rate", str(args.rate),
                    "--subprocesses", "--format", "raw", "-o", str(recording), "--",
                ]  # fmt: skip
                entry["pyspy_run"] = one_run(
                    config, topics, args.processes, args.out, wrap, f"{tag[v]}-pyspy", tweaks[v],
                    with_rules[v],
                )  # fmt: skip
                parts, total = classify(recording)
                entry["parts"] = print_parts(parts, total, cpu_meter.median_of(flow_us))
            entry["flow_us"] = flow_us
            results[v] = entry
        if args.rules:
            for v in args.variants:
                compare_rules(v, results[v], results[f"{v}+rules"])
    path = args.out / f"profile-flow-{args.processes}p.json"
    path.write_text(json.dumps(results, indent=1, default=str) + "\n", encoding="utf-8")
    print(f"figures written to {path}")


if __name__ == "__main__":
    main()
