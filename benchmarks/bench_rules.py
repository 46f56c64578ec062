"""What rules and lists cost: a 1,000,000-entry list loaded from MySQL, and 50 rules a payment.

    python benchmarks/bench_rules.py [--entries 1000000] [--days 4] [--cards 5000]
        [--batch-sizes N ...] [--skip-list]

1. **A list of ``--entries`` card ids** is stored in a throwaway database
   ``payscore_bench_<random>`` (created and dropped) on the server of ``PAYSCORE_MYSQL_URL``
   through :class:`rules.store.RulesStore` (rows and packed form, as ``python -m rules import``
   does), with a rule naming it, then loaded and compiled as the flow's loader does
   (:meth:`RulesStore.load`, :func:`compile_ruleset`) in a fresh process (this script again,
   everything imported and connected first): wall and CPU time of the load and compilation;
   the process's RSS growth by the load's end and after a full collection, and its peak during
   the load (``VmHWM``, reset just before); what ``tracemalloc`` counts as held (every byte
   Python and NumPy allocated and still hold, in a second load); and the time of one look-up.
2. **50 active rules** (``test_data/rule_examples.py``: velocity, amounts, lists with the
   million-entry card list, BIN prefixes, countries, MCCs, night) decide a simulated stream
   (``--days`` days of ``--cards`` cards, features from the flow's own feature code; the model's
   probability drawn from a skewed distribution, 7 % above 0.5): µs per payment of
   ``Ruleset.decide_batch``, best of 5, against evaluating every rule whole; wall time, and the
   process's CPU time (what it costs when other processes share the cores; the load average is
   printed too). With ``--batch-sizes``, the same stream decided again in batches of each size
   (as the flow's score step gets them: what a batch arrives with), CPU µs a payment.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

from sqlalchemy.engine import make_url

from features.replay import replay
from rules.lists import ListIndex
from rules.ruleset import RuleSpec, compile_ruleset
from rules.store import NewEntry, RulesStore
from settings.config import Config
from storage.engine import make_engine
from test_data.chaos import scratch_database
from test_data.generator import simulate
from test_data.rule_examples import RULES, example_lists
from test_data.spec import SimulationSpec

LOAD_URL = "BENCH_RULES_LOAD_URL"


def python_speed() -> str:
    """CPU ms of a plain 2,000,000-iteration Python loop here: how fast this machine runs Python
    now, to compare figures across machines and loads."""
    best = float("inf")
    for _ in range(3):
        started, total = time.process_time(), 0
        for i in range(2_000_000):
            total += i
        best = min(best, time.process_time() - started)
    return f"a plain 2,000,000-iteration Python loop takes {best * 1000:.0f} ms of CPU here"


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_rss_bytes() -> int:
    """The process's peak RSS (``VmHWM``) since it started or since :func:`reset_peak_rss`."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def reset_peak_rss() -> bool:
    """Reset ``VmHWM`` to the current RSS (Linux: ``5`` into ``/proc/self/clear_refs``)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True


def load_in_fresh_process(url: str) -> dict[str, float]:
    """Run in a fresh interpreter (``--load-fresh``, the URL in ``$BENCH_RULES_LOAD_URL``):
    what loading the newest ruleset version costs a process that has nothing yet: the RSS
    before (everything imported, the connection made), right after the load, and after a full
    collection; the peak during the load; the load's wall and CPU time; then what
    ``tracemalloc`` counts as held by a second load."""
    engine = make_engine(url)
    store = RulesStore(engine, patience=30)
    store.newest_version()  # the connection and the driver's first buffers are no part of it
    gc.collect()
    before = rss_bytes()
    reset = reset_peak_rss()
    started, started_cpu = time.perf_counter(), time.process_time()
    snapshot, lists = store.load()  # as RulesWatch.refresh does: load, then compile
    ruleset = compile_ruleset(snapshot.rules, lists, version=snapshot.version)
    seconds, cpu = time.perf_counter() - started, time.process_time() - started_cpu
    after, peak = rss_bytes(), peak_rss_bytes()
    gc.collect()
    settled = rss_bytes()
    sizes = {name: float(index.size) for name, index in lists.items()}
    sizes["rules"] = float(len(ruleset.rules))
    del lists, ruleset
    gc.collect()
    tracemalloc.start()
    snapshot, kept = store.load()  # held while tracemalloc counts
    _ruleset = compile_ruleset(snapshot.rules, kept, version=snapshot.version)
    held, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    engine.dispose()
    return {
        "seconds": seconds,
        "cpu": cpu,
        "before": before,
        "after": after,
        "settled": settled,
        "peak": peak if reset else float("nan"),
        "held": held,
        **{f"size:{name}": size for name, size in sizes.items()},
    }


def bench_list(entries: int) -> None:
    config = Config.from_env(os.environ)
    with scratch_database(config, "payscore_bench") as url:
        # The analysts' account stores the list; the flow's loads it, as in the product.
        on_it = config.on_database(str(make_url(url).database))
        writer = make_engine(on_it.review_mysql_dsn)
        engine = make_engine(url)
        store = RulesStore(writer, patience=30)
        store.create_list("compromised_cards", "card", by="bench")
        rng = random.Random(1)
        values = [f"c-{rng.getrandbits(64):016x}" for _ in range(entries)]
        started = time.perf_counter()
        store.add_entries(
            "compromised_cards", [NewEntry(v, None, "feed") for v in values], by="bench"
        )
        stored = time.perf_counter() - started
        print(f"stored {entries:,} entries (rows and packed form) in {stored:.1f} s")
        store.add_rule(  # compiled with the list in the fresh process, as the flow does
            "compromised", "decline if card_id in @compromised_cards", by="bench", status="active"
        )
        ran = subprocess.run(
            [sys.executable, __file__, "--load-fresh"],
            check=True,
            capture_output=True,
            text=True,
            env={
                **os.environ,
                "PYTHONPATH": str(Path(__file__).resolve().parent.parent),
                LOAD_URL: url,  # not in the command line, which anyone on the host can read
            },
        )
        m = json.loads(ran.stdout.strip().splitlines()[-1])
        assert m["size:compromised_cards"] == entries and m["size:rules"] == 1
        _, lists = RulesStore(engine, patience=30).load()
        index = lists["compromised_cards"]
        assert index.contains(values[12345], 0.0)
        probes = [f"c-{rng.getrandbits(64):016x}" for _ in range(100_000)] + values[:100_000]
        started = time.process_time()
        hits = sum(index.contains(v, 0.0) for v in probes)
        per_lookup = (time.process_time() - started) / len(probes)
        assert hits == 100_000
        mb = 1e6
        print(
            f"list of {entries:,} card ids and a rule naming it, loaded from MySQL and compiled "
            "in a fresh process: "
            f"{m['seconds']:.2f} s (CPU {m['cpu']:.2f} s); RSS {m['before'] / mb:.0f} MB before, "
            f"grew {(m['after'] - m['before']) / mb:.1f} MB by the load's end, "
            f"{(m['settled'] - m['before']) / mb:.1f} MB after a collection, "
            f"peak {(m['peak'] - m['before']) / mb:.1f} MB above before; "
            f"held {m['held'] / mb:.1f} MB (tracemalloc); ListIndex.contains "
            f"{per_lookup * 1e9:.0f} ns of CPU ({type(index.hashes).__name__}); "
            f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
        )
        engine.dispose()
        writer.dispose()


def bench_rules(days: int, cards: int, padding: int, batch_sizes: list[int]) -> None:
    sim = simulate(SimulationSpec(seed=5, days=days, cards=cards, merchants=max(cards // 5, 10)))
    rows = list(replay(sim.stream))
    payments = [p for p, _ in rows]
    features = [f for _, f in rows]
    rng = random.Random(3)
    probabilities = [rng.random() ** 12 for _ in rows]
    decisions = [
        "decline" if q >= 0.9 else "review" if q >= 0.5 else "approve" for q in probabilities
    ]
    raw = example_lists(payments, padding=padding)
    lists = {name: ListIndex.build(name, kind, entries) for name, (kind, entries) in raw.items()}
    ruleset = compile_ruleset(
        [RuleSpec(rule_id, text, "active") for rule_id, text in RULES], lists, version=1
    )

    def timed(work: object) -> tuple[float, float]:
        """µs a payment, best of 5: wall time, and CPU time of this process (what the work
        costs when other processes share the cores)."""
        wall = cpu = float("inf")
        for _ in range(5):
            started, started_cpu = time.perf_counter(), time.process_time()
            work()  # type: ignore[operator]
            wall = min(wall, time.perf_counter() - started)
            cpu = min(cpu, time.process_time() - started_cpu)
        return wall / len(rows) * 1e6, cpu / len(rows) * 1e6

    indexed = timed(lambda: ruleset.decide_batch(payments, features, probabilities, decisions))
    whole = timed(
        lambda: [
            ruleset.fired_whole(p, f, q)
            for p, f, q in zip(payments, features, probabilities, strict=True)
        ]
    )
    outcomes = ruleset.decide_batch(payments, features, probabilities, decisions)
    fired = sum(1 for o in outcomes if o.rules_fired)
    changed = sum(1 for o, d in zip(outcomes, decisions, strict=True) if o.decision != d)
    assert all(
        sorted(x.rule_id for x in ruleset.fired(p, f, q))
        == sorted(x.rule_id for x in ruleset.fired_whole(p, f, q))
        for p, f, q in zip(payments, features, probabilities, strict=True)
    )
    print(
        f"{len(ruleset.rules)} active rules over {len(rows):,} payments ({days} days, {cards:,} "
        f"cards; lists: {', '.join(f'@{n} {i.size:,}' for n, i in lists.items())}): "
        f"{indexed[0]:.2f} µs a payment (decide_batch; CPU {indexed[1]:.2f} µs); every rule "
        f"whole {whole[0]:.2f} µs (CPU {whole[1]:.2f} µs); "
        f"{fired / len(rows):.2%} of payments fire a rule, {changed / len(rows):.2%} change "
        f"decision; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; "
        f"{python_speed()}"
    )
    for size in batch_sizes:

        def in_batches(size: int = size) -> None:
            for i in range(0, len(rows), size):
                ruleset.decide_batch(
                    payments[i : i + size],
                    features[i : i + size],
                    probabilities[i : i + size],
                    decisions[i : i + size],
                )

        wall, cpu = timed(in_batches)
        print(
            f"  in batches of {size}: {wall:.2f} µs a payment (CPU {cpu:.2f} µs); load average "
            f"{os.getloadavg()[0]:.1f}",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=4)
    parser.add_argument("--cards", type=int, default=5000)
    parser.add_argument("--skip-list", action="store_true", help="only the rules' cost")
    parser.add_argument(
        "--batch-sizes", type=int, nargs="*", default=[], help="also decide in batches of these"
    )
    parser.add_argument("--load-fresh", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.load_fresh:  # the fresh process of part 1
        print(json.dumps(load_in_fresh_process(os.environ[LOAD_URL])))
        return
    bench_rules(args.days, args.cards, padding=args.entries, batch_sizes=args.batch_sizes)
    if not args.skip_list:
        bench_list(args.entries)


if __name__ == "__main__":
    main()
