"""What a payment costs when Bytewax 0.21.1 moves it between two processes on loopback.

    python benchmarks/bench_exchange.py [--payments 60000] [--kinds terminal learner]
        [--repeats 5] [--json PATH]

A minimal flow that only exchanges the flow's own objects (``stream_items.py``: the decoded
payment keyed by card, the payment with its card features keyed by terminal, with card and
terminal features keyed by merchant, the label keyed by card group, the labelled payment sent to
the learner), pickled as ``dataflows/messages.py`` and ``storage/labels.py`` pickle them:

    input (4 partitions, batches of 1,000) -> key_on -> stateful_batch (hands every item on)
      -> key_rm -> output (counts)

run five ways, each ``--repeats`` times:

- **1 process** (1 worker): the exchange has one worker to go to; nothing is serialized;
- **2 processes, local**: 1 worker each; every item's key is one that Bytewax routes to the
  worker that read it (``cpu_meter.bytewax_worker``: SipHash-1-3, as ``src/operators.rs``
  hashes keys), so nothing crosses -- which also checks that the routing is predicted exactly;
- **2 processes, cross**: the same, but every key routes to the *other* worker: every item
  crosses once;
- both again with a Python thread state **pinned** in each worker thread
  (``cpu_meter.pin_thread_state``): Bytewax pickles and unpickles each crossing item under a
  ``with_gil`` of its own, which in a worker thread without a thread state creates one and
  deletes it again, every time.

Per run and process: CPU seconds (``getrusage``, all threads, from just before
``cluster_main`` to its return; and the system share), the bytes and TCP segments it sent to
the other process (``ss -tinp`` at the end of input), and how often the object was pickled
(``__reduce__`` calls) and unpickled.
Figures: µs of CPU per item (both processes together), the cost of one crossing
(cross - local, per item), bytes per crossing, pickles per crossing; plus ``pickle.dumps`` and
``loads`` of each kind alone (µs, bytes), to tell Python's share from Bytewax's (Rust, bincode,
TCP). The machine is shared: read the spread (median, min-max), not one run.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import cpu_meter
import stream_items
from bytewax import operators as op
from bytewax.dataflow import Dataflow
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from bytewax.operators import StatefulBatchLogic
from bytewax.outputs import DynamicSink, StatelessSinkPartition

ROOT = Path(__file__).resolve().parent.parent
PARTITIONS = 4
BATCH = 1000
KEYS_PER_WORKER = 64
# Keep a Python thread state alive in each worker thread (cpu_meter.pin_thread_state).
PIN_THREAD_STATE = os.environ.get("BENCH_PIN_THREAD_STATE") == "1"


# ------------------------------------------------------------------------ the child flow


class _Part(StatefulSourcePartition):
    def __init__(self, items: list[Any]) -> None:
        self._items = items
        self._at = 0

    def next_batch(self) -> list[Any]:
        if self._at >= len(self._items):
            raise StopIteration
        batch = self._items[self._at : self._at + BATCH]
        self._at += BATCH
        return batch

    def snapshot(self) -> int:
        return self._at


class ListSource(FixedPartitionedSource):
    """Every process lists the same partitions, as Kafka's source does; Bytewax assigns each to
    one worker (``src/timely.rs``, ``calc_primaries``)."""

    def __init__(self, items: list[Any], on_part: dict[str, int]) -> None:
        self._parts = {str(i): items[i::PARTITIONS] for i in range(PARTITIONS)}
        self._on_part = on_part

    def list_parts(self) -> list[str]:
        return list(self._parts)

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> _Part:
        if PIN_THREAD_STATE:
            cpu_meter.pin_thread_state()
        self._on_part[for_part] = len(self._parts[for_part])
        return _Part(self._parts[for_part])


class HandOn(StatefulBatchLogic):
    def on_batch(self, values: list[Any]) -> tuple[list[Any], bool]:
        return values, False

    def snapshot(self) -> None:
        return None


class _Counter(StatelessSinkPartition):
    def __init__(self, report: dict[str, Any], ports: list[int]) -> None:
        self._report = report
        self._ports = ports

    def write_batch(self, items: list[Any]) -> None:
        self._report["sunk"] = self._report.get("sunk", 0) + len(items)

    def close(self) -> None:
        # The communication threads still run: their CPU so far, by name.
        self._report["threads_at_close"] = cpu_meter.threads_cpu()
        if self._ports:  # the processes' connections: bytes and segments sent, both ways
            self._report["tcp"] = tcp_sent(self._ports)


class CountingSink(DynamicSink):
    def __init__(self, report: dict[str, Any], ports: list[int]) -> None:
        self._report = report
        self._ports = ports

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _Counter:
        return _Counter(self._report, self._ports)


def tcp_sent(ports: list[int]) -> dict[str, int]:
    """Bytes and segments this process has sent so far on its TCP connections to or from
    ``ports`` (the cluster's), from ``ss -tinp``."""
    text = subprocess.run(
        ["ss", "-tinpH", "state", "established"], capture_output=True, text=True, check=True
    ).stdout
    sent = segments = 0
    mine = f"pid={os.getpid()},"
    wanted = tuple(f":{p}" for p in ports)
    head = ""
    for line in text.splitlines():
        if not line[:1].isspace():
            head = line
            continue
        addresses = head.split()[2:4]
        if mine in head and any(a.endswith(wanted) for a in addresses):
            sent += int(re.search(r"bytes_sent:(\d+)", line).group(1))  # type: ignore[union-attr]
            segments += int(re.search(r"data_segs_out:(\d+)", line).group(1))  # type: ignore[union-attr]
    return {"bytes": sent, "segments": segments}


def _offset(item: Any) -> int:
    return getattr(item, "offset", None) or getattr(item, "label_offset", 0)


def child(
    kind: str, variant: str, proc: int, processes: int, ports: list[int], payments: int
) -> None:
    items = stream_items.load_items(kind, payments)
    counts = {"reduce": 0, "rebuild": 0}
    _count_pickling(counts)
    workers = processes
    target = proc if variant != "cross" else (proc + 1) % workers
    keys = cpu_meter.keys_for_worker(target, workers, KEYS_PER_WORKER)
    report: dict[str, Any] = {"parts": {}}
    flow = Dataflow("exchange")
    s = op.input("in", flow, ListSource(items, report["parts"]))
    keyed = op.key_on("key", s, lambda x: keys[_offset(x) % KEYS_PER_WORKER])
    handed = op.key_rm("unkey", op.stateful_batch("hand_on", keyed, lambda _: HandOn()))
    op.output("out", handed, CountingSink(report, ports if processes > 1 else []))
    from bytewax.testing import cluster_main

    addresses = [f"127.0.0.1:{p}" for p in ports] if processes > 1 else None
    w0, r0 = cpu_meter.io_bytes()
    s0 = cpu_meter.process_sys()
    c0 = cpu_meter.process_cpu()
    t0 = time.perf_counter()
    cluster_main(flow, addresses, proc, worker_count_per_proc=1)
    wall = time.perf_counter() - t0
    cpu = cpu_meter.process_cpu() - c0
    system = cpu_meter.process_sys() - s0
    w1, r1 = cpu_meter.io_bytes()
    report.update(cpu=cpu, sys=system, wall=wall, wrote=w1 - w0, read=r1 - r0, **counts)
    print(json.dumps(report))


def _count_pickling(counts: dict[str, int]) -> None:
    """Count ``__reduce__`` calls (pickling) and reconstructions (unpickling) of the objects."""
    from dataflows import messages
    from storage import labels

    for cls, module, rebuild in (
        (messages.Positioned, messages, "_positioned"),
        (labels.LabelledPayment, labels, "_labelled_payment"),
    ):
        reduce = cls.__reduce__

        def counted_reduce(self: Any, _reduce: Any = reduce) -> Any:
            counts["reduce"] += 1
            return _reduce(self)

        cls.__reduce__ = counted_reduce  # type: ignore[method-assign]
        original = getattr(module, rebuild)

        def counted_rebuild(*args: Any, _original: Any = original) -> Any:
            counts["rebuild"] += 1
            return _original(*args)

        counted_rebuild.__module__ = module.__name__
        counted_rebuild.__qualname__ = counted_rebuild.__name__ = rebuild
        setattr(module, rebuild, counted_rebuild)


# --------------------------------------------------------------------------- the parent


def free_ports(count: int) -> list[int]:
    """``count`` TCP ports nobody listens on now (the kernel's choice)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


VARIANTS = (  # name, processes, keys go to the other worker, a thread state pinned per worker
    ("1p", 1, False, False),
    ("local", 2, False, False),
    ("cross", 2, True, False),
    ("local-pinned", 2, False, True),
    ("cross-pinned", 2, True, True),
)


def run_variant(
    kind: str, variant: str, processes: int, pinned: bool, payments: int
) -> list[dict[str, Any]]:
    ports = ",".join(map(str, free_ports(processes)))
    command = [sys.executable, __file__, "--child", kind, variant.removesuffix("-pinned")]
    env = {**os.environ, "BENCH_PIN_THREAD_STATE": "1" if pinned else "0"}
    procs = [
        subprocess.Popen(
            [*command, str(i), str(processes), ports, str(payments)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(processes)
    ]
    out = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=900)
        if p.returncode != 0:
            raise RuntimeError(f"{kind}/{variant}: exited {p.returncode}: {stderr[-1500:]}")
        out.append(json.loads(stdout.strip().splitlines()[-1]))
    return out


def pickle_costs(items: list[Any]) -> dict[str, float]:
    """µs per ``pickle.dumps`` and ``pickle.loads`` of one object, and its pickled bytes."""
    sample = items[:20_000]
    best_d = best_l = float("inf")
    blobs: list[bytes] = []
    for _ in range(3):
        started = time.process_time()
        blobs = [pickle.dumps(x) for x in sample]
        best_d = min(best_d, time.process_time() - started)
        started = time.process_time()
        for b in blobs:
            pickle.loads(b)
        best_l = min(best_l, time.process_time() - started)
    return {
        "bytes": sum(map(len, blobs)) / len(blobs),
        "dumps_us": best_d * 1e6 / len(sample),
        "loads_us": best_l * 1e6 / len(sample),
    }


def main(argv: Iterable[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--payments", type=int, default=60_000)
    parser.add_argument("--kinds", nargs="+", default=list(stream_items.KINDS))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", type=Path, help="write every run's figures here")
    args = parser.parse_args(list(argv) if argv is not None else None)
    plain = stream_items.load_plain(args.payments)
    print(
        f"bench_exchange: up to {args.payments:,} items a kind, {args.repeats} repeats; "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    )
    everything: dict[str, Any] = {}
    for kind in args.kinds:
        items = stream_items.objects(kind, plain[kind])
        n = len(items)
        costs = pickle_costs(items)
        runs: dict[str, list[list[dict[str, Any]]]] = {v[0]: [] for v in VARIANTS}
        for _ in range(args.repeats):
            for variant, processes, _cross, pinned in VARIANTS:
                result = run_variant(kind, variant, processes, pinned, args.payments)
                if sum(r.get("sunk", 0) for r in result) != n:
                    raise RuntimeError(f"{kind}/{variant}: {result}; expected {n} items sunk")
                runs[variant].append(result)
        everything[kind] = {"items": n, "pickle": costs, "runs": runs}
        report(kind, n, costs, runs)
    if args.json:
        args.json.write_text(json.dumps(everything, indent=1) + "\n", encoding="utf-8")


def report(
    kind: str, n: int, costs: dict[str, float], runs: dict[str, list[list[dict[str, Any]]]]
) -> None:
    def total(variant: str, field: str) -> list[float]:
        return [sum(r.get(field, 0) for r in run) for run in runs[variant]]

    def us(values: list[float]) -> str:
        return cpu_meter.fmt_spread(cpu_meter.spread(v * 1e6 / n for v in values), ".1f")

    def tcp(variant: str) -> tuple[float, float]:
        sent = [sum(r.get("tcp", {}).get("bytes", 0) for r in run) for run in runs[variant]]
        segs = [sum(r.get("tcp", {}).get("segments", 0) for r in run) for run in runs[variant]]
        return cpu_meter.median_of(sent) / n, cpu_meter.median_of(segs) * 1000 / n

    print(
        f"\n{kind}: {n:,} items; pickled {costs['bytes']:.0f} B; pickle.dumps "
        f"{costs['dumps_us']:.2f} µs, pickle.loads {costs['loads_us']:.2f} µs (Python alone)"
    )
    for variant, *_ in VARIANTS:
        cpu, system = total(variant, "cpu"), total(variant, "sys")
        line = f"  {variant:<13} CPU {us(cpu)} µs per item, of which system {us(system)}"
        if variant != "1p":
            sent, segs = tcp(variant)
            unpickled, pickled = total(variant, "rebuild"), total(variant, "reduce")
            line += (
                f"; unpickled {cpu_meter.median_of(unpickled) / n:.2f}, pickled "
                f"{cpu_meter.median_of(pickled) / n:.2f} times per item; TCP {sent:.0f} B, "
                f"{segs:.1f} segments per 1,000 items"
            )
        print(line)
    for pin in ("", "-pinned"):
        cross, local = total("cross" + pin, "cpu"), total("local" + pin, "cpu")
        paired = [c - lo for c, lo in zip(cross, local, strict=True)]  # run back to back
        sent = tcp("cross" + pin)[0] - tcp("local" + pin)[0]
        print(
            f"  => one crossing{' (thread state pinned)' if pin else ''}: {us(paired)} µs of "
            f"CPU (cross - local, both processes), {sent:.0f} B on loopback"
        )


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        kind, variant, proc, processes, ports, payments = sys.argv[2:8]
        child(kind, variant, int(proc), int(processes), [int(p) for p in ports.split(",")],
              int(payments))  # fmt: skip
    else:
        main()
