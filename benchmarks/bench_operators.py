"""Bytewax 0.21.1's own cost per item for each kind of operator, in one process and one worker.

    python benchmarks/bench_operators.py [--items 200000] [--chain 20] [--batch 1000 20]
        [--repeats 5] [--callgrind]

Each variant is a flow of its own, run in a fresh process over ``--items``
small items (a tuple of a card id, as the stream's cards repeat, and a number), read from a
source of 4 partitions in batches of ``--batch`` items (1,000 is what a drained Kafka partition
gives; a tailing flow at a few thousand payments per second gets batches of a few items):

- ``base``: input -> output (a sink that counts);
- ``map``, ``filter``, ``branch``, ``flat_map_batch``: ``--chain`` operators of that kind that
  do nothing (``lambda x: x``, ``lambda x: True``, the branch's trues, ``lambda xs: xs``);
- ``key_on+key_rm``: ``--chain``/2 pairs;
- ``stateful per card``: key_on (the card id) -> stateful_batch (hands its values on) -> key_rm,
  ``--chain``/4 times -- the shape of the card, terminal and merchant steps;
- ``stateful per group``: the same with 16 keys (cards hashed into groups), as the label join;
- ``stateful one key``: the same with one key, as the learner.

The worker is a Bytewax worker thread (``cluster_main`` with one worker), as in each process of a
multi-process flow. Each variant runs twice: as is, and with a Python thread state pinned in
the worker thread (``cpu_meter.pin_thread_state``; every activation of an operator otherwise
creates and deletes one). (``bytewax.run -w 1`` without addresses runs its one worker on the
main thread instead, which keeps its thread state.)

Figure: (CPU of the variant - CPU of ``base``) / items / operators, in µs per item per operator
(a stateful step counted as its three operators), median and spread of ``--repeats`` runs.
``--callgrind`` also counts instructions (valgrind): the same difference between runs of two
sizes, in instructions per item per operator -- immune to the machine's load.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import zlib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import cpu_meter

ROOT = Path(__file__).resolve().parent.parent
PARTITIONS = 4
VARIANTS = (
    "base",
    "map",
    "filter",
    "branch",
    "flat_map_batch",
    "key_on+key_rm",
    "stateful per card",
    "stateful per group",
    "stateful one key",
)


# ------------------------------------------------------------------------ the child flow


def child(variant: str, items: int, chain: int, batch: int, pinned: bool) -> None:
    from bytewax import operators as op
    from bytewax.dataflow import Dataflow, Stream
    from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
    from bytewax.operators import StatefulBatchLogic
    from bytewax.outputs import DynamicSink, StatelessSinkPartition
    from bytewax.testing import cluster_main

    cards = max(items // 6, 1)
    data = [(f"card-{(i * 7919) % cards:07d}", i) for i in range(items)]

    class Part(StatefulSourcePartition):
        def __init__(self, rows: list[Any]) -> None:
            self._rows, self._at = rows, 0

        def next_batch(self) -> list[Any]:
            if self._at >= len(self._rows):
                raise StopIteration
            self._at += batch
            return self._rows[self._at - batch : self._at]

        def snapshot(self) -> int:
            return self._at

    class Source(FixedPartitionedSource):
        def list_parts(self) -> list[str]:
            return [str(i) for i in range(PARTITIONS)]

        def build_part(self, step_id: str, for_part: str, resume_state: Any) -> Part:
            if pinned:
                cpu_meter.pin_thread_state()
            return Part(data[int(for_part) :: PARTITIONS])

    sunk = [0]

    class Counter(StatelessSinkPartition):
        def write_batch(self, values: list[Any]) -> None:
            sunk[0] += len(values)

    class Sink(DynamicSink):
        def build(self, step_id: str, worker_index: int, worker_count: int) -> Counter:
            return Counter()

    class HandOn(StatefulBatchLogic):
        def on_batch(self, values: list[Any]) -> tuple[list[Any], bool]:
            return values, False

        def snapshot(self) -> None:
            return None

    def stateful(name: str, s: Stream, key: Callable[[Any], str]) -> Stream:
        keyed = op.key_on(f"key_{name}", s, key)
        return op.key_rm(f"unkey_{name}", op.stateful_batch(name, keyed, lambda _: HandOn()))

    flow = Dataflow("operators")
    s = op.input("in", flow, Source())
    if variant == "map":
        for i in range(chain):
            s = op.map(f"m{i}", s, lambda x: x)
    elif variant == "filter":
        for i in range(chain):
            s = op.filter(f"f{i}", s, lambda x: True)
    elif variant == "branch":
        for i in range(chain):
            s = op.branch(f"b{i}", s, lambda x: True).trues
    elif variant == "flat_map_batch":
        for i in range(chain):
            s = op.flat_map_batch(f"fmb{i}", s, lambda xs: xs)
    elif variant == "key_on+key_rm":
        for i in range(chain // 2):
            s = op.key_rm(f"r{i}", op.key_on(f"k{i}", s, lambda x: x[0]))
    elif variant.startswith("stateful"):
        key: Callable[[Any], str] = {
            "stateful per card": lambda x: x[0],
            "stateful per group": lambda x: str(zlib.crc32(x[0].encode()) % 16),
            "stateful one key": lambda x: "learner",
        }[variant]
        for i in range(chain // 4):
            s = stateful(f"s{i}", s, key)
    op.output("out", s, Sink())
    started = cpu_meter.process_cpu()
    # A worker thread, as each process of a multi-process flow runs (run_main would run the
    # worker on the main thread, which keeps its Python thread state).
    cluster_main(flow, None, 0, worker_count_per_proc=1)
    cpu = cpu_meter.process_cpu() - started
    if sunk[0] != items:
        raise RuntimeError(f"{variant}: {sunk[0]} items came out; expected {items}")
    print(json.dumps({"cpu": cpu}))


# --------------------------------------------------------------------------- the parent


def operators_in(variant: str, chain: int) -> int:
    if variant == "base":
        return 0
    if variant.startswith("stateful"):
        return 3 * (chain // 4)
    if variant == "key_on+key_rm":
        return 2 * (chain // 2)
    return chain


def run(variant: str, items: int, chain: int, batch: int, pinned: bool, wrap: list[str]) -> str:
    command = [
        *wrap, sys.executable, __file__, "--child", variant, str(items), str(chain), str(batch),
        "1" if pinned else "0",
    ]  # fmt: skip
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{variant}: exited {done.returncode}: {done.stderr[-1500:]}")
    return done.stdout + done.stderr


def cpu_of(output: str) -> float:
    return float(json.loads(output.strip().splitlines()[-1])["cpu"])


def instructions(variant: str, items: int, chain: int, batch: int, pinned: bool) -> int:
    """Instructions valgrind counts for the whole child run."""
    with tempfile.TemporaryDirectory() as tmp:
        out = run(
            variant, items, chain, batch, pinned,
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={tmp}/cg.out"],
        )  # fmt: skip
    match = re.search(r"Collected : (\d+)", out)
    if not match:
        raise RuntimeError(f"no instruction count in valgrind's output: {out[-500:]}")
    return int(match.group(1))


def main(argv: Iterable[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=200_000)
    parser.add_argument("--chain", type=int, default=20)
    parser.add_argument("--batch", type=int, nargs="+", default=[1000, 20])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS))
    parser.add_argument("--callgrind", action="store_true", help="count instructions too")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(list(argv) if argv is not None else None)
    variants = ["base", *[v for v in args.variants if v != "base"]]
    print(
        f"bench_operators: {args.items:,} items, chains of {args.chain}, {args.repeats} repeats; "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    )
    results: dict[str, Any] = {}
    for batch in args.batch:
        for pinned in (False, True):
            label = f"batch {batch}" + (", thread state pinned" if pinned else "")
            cpu: dict[str, list[float]] = {v: [] for v in variants}
            for _ in range(args.repeats):
                for v in variants:
                    cpu[v].append(cpu_of(run(v, args.items, args.chain, batch, pinned, [])))
            print(f"\n{label}: µs per item per operator (CPU, variant - base)")
            base = cpu["base"]
            whole = cpu_meter.spread(c * 1e6 / args.items for c in base)
            print(f"  {'base (input, output)':<22} {cpu_meter.fmt_spread(whole)} µs per item, all")
            row: dict[str, Any] = {"base_us": [c * 1e6 / args.items for c in base]}
            for v in variants[1:]:
                ops = operators_in(v, args.chain)
                per = cpu_meter.spread(
                    (c - b) * 1e6 / args.items / ops for c, b in zip(cpu[v], base, strict=True)
                )
                row[v] = per
                print(f"  {v:<22} {cpu_meter.fmt_spread(per)}")
            results[label] = row
    if args.callgrind:
        small, large = args.items // 20, args.items // 10
        batch = args.batch[0]
        print(f"\ninstructions per item per operator (valgrind; {small:,} vs {large:,} items)")
        counts = {
            v: tuple(instructions(v, n, args.chain, batch, False) for n in (small, large))
            for v in variants
        }
        b_small, b_large = counts["base"]
        print(f"  {'base (input, output)':<22} {(b_large - b_small) / (large - small):,.0f}")
        for v in variants[1:]:
            s, lg = counts[v]
            per = ((lg - s) - (b_large - b_small)) / (large - small) / operators_in(v, args.chain)
            print(f"  {v:<22} {per:,.0f}")
            results.setdefault("instructions", {})[v] = per
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        variant, items, chain, batch, pinned = sys.argv[2:7]
        child(variant, int(items), int(chain), int(batch), pinned == "1")
    else:
        main()
