"""CPU-time meters for benchmarks on a shared, busy machine, and Bytewax 0.21.1's key routing.

Wall time on this machine depends on what the other developers run; the CPU time a process (or a
thread) was given does not, nearly. So the throughput-research benchmarks measure:

- :func:`process_cpu` -- user + system seconds of this process (all its threads), from
  ``resource.getrusage``;
- :func:`pid_cpu` and :func:`thread_cpu` -- the same for another process or one thread of it,
  from ``/proc/<pid>/stat`` and ``/proc/<pid>/task/<tid>/stat`` (clock ticks, 10 ms here);
- :func:`io_bytes` -- bytes this process wrote and read through system calls
  (``/proc/self/io``: ``wchar``, ``rchar``), which for a flow process without Kafka or MySQL is
  its traffic between processes;
- :func:`spread` -- median, min and max of repeated runs.

:func:`bytewax_worker` is the worker Bytewax 0.21.1 sends a key of a ``stateful_batch`` step to
(``src/operators.rs``: ``BuildHasherDefault::<DefaultHasher>``, i.e. SipHash-1-3 with zero keys
over the key's UTF-8 bytes and a 0xFF terminator, modulo the worker count): the same in every
process and run of one Bytewax build. ``bench_exchange.py`` checks it against the running flow.
"""

from __future__ import annotations

import os
import resource
import statistics
from collections.abc import Iterable, Sequence

from dataflows import thread_states

TICK = os.sysconf("SC_CLK_TCK")
_MASK = (1 << 64) - 1


def process_cpu() -> float:
    """User + system CPU seconds of this process so far (every thread, living or ended)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def process_sys() -> float:
    """System (kernel) CPU seconds of this process so far."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_stime


def children_cpu() -> float:
    """User + system CPU seconds of this process's children that ended and were waited for."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _stat_cpu(path: str) -> float:
    with open(path, encoding="ascii") as f:
        text = f.read()
    fields = text[text.rindex(")") + 2 :].split()  # after "pid (comm) "
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime (fields 14 and 15)


def pid_cpu(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (every thread)."""
    return _stat_cpu(f"/proc/{pid}/stat")


def thread_cpu(pid: int, tid: int) -> float:
    """User + system CPU seconds of thread ``tid`` of process ``pid`` so far."""
    return _stat_cpu(f"/proc/{pid}/task/{tid}/stat")


def threads_cpu(pid: int | None = None) -> dict[str, float]:
    """CPU seconds per thread name of a process (this one by default), summed over threads of
    one name."""
    pid = pid or os.getpid()
    out: dict[str, float] = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/comm", encoding="utf-8") as f:
                name = f.read().strip()
            out[name] = out.get(name, 0.0) + thread_cpu(pid, int(tid))
        except FileNotFoundError:  # the thread ended meanwhile
            continue
    return out


def io_bytes() -> tuple[int, int]:
    """(bytes written, bytes read) by this process's system calls so far."""
    values: dict[str, int] = {}
    with open("/proc/self/io", encoding="ascii") as f:
        for line in f:
            name, _, value = line.partition(":")
            values[name] = int(value)
    return values["wchar"], values["rchar"]


def spread(values: Iterable[float]) -> dict[str, float]:
    """Median, min, max and count of repeated measurements."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("spread of no values; expected at least one measurement")
    return {
        "median": statistics.median(ordered),
        "min": ordered[0],
        "max": ordered[-1],
        "n": len(ordered),
    }


def fmt_spread(s: dict[str, float], spec: str = ".2f") -> str:
    """``median (min-max, n runs)``."""
    return (
        f"{format(s['median'], spec)} ({format(s['min'], spec)}-{format(s['max'], spec)}, "
        f"{int(s['n'])} runs)"
    )


# ------------------------------------------------------------- a thread state per worker

# The flow's own (dataflows/thread_states.py), under the name the benchmarks use.
pin_thread_state = thread_states.pin


# --------------------------------------------------------------- Bytewax's key routing


def _rotl(x: int, b: int) -> int:
    return ((x << b) | (x >> (64 - b))) & _MASK


def _sip_round(v0: int, v1: int, v2: int, v3: int) -> tuple[int, int, int, int]:
    v0 = (v0 + v1) & _MASK
    v1 = _rotl(v1, 13) ^ v0
    v0 = _rotl(v0, 32)
    v2 = (v2 + v3) & _MASK
    v3 = _rotl(v3, 16) ^ v2
    v0 = (v0 + v3) & _MASK
    v3 = _rotl(v3, 21) ^ v0
    v2 = (v2 + v1) & _MASK
    v1 = _rotl(v1, 17) ^ v2
    v2 = _rotl(v2, 32)
    return v0, v1, v2, v3


def siphash13(data: bytes, k0: int = 0, k1: int = 0) -> int:
    """SipHash-1-3 of ``data`` (Rust's ``std::hash::DefaultHasher`` with ``new()``'s zero keys).

    >>> hex(siphash13(b""))
    '0xd1fba762150c532c'
    """
    v0 = k0 ^ 0x736F6D6570736575
    v1 = k1 ^ 0x646F72616E646F6D
    v2 = k0 ^ 0x6C7967656E657261
    v3 = k1 ^ 0x7465646279746573
    n = len(data)
    end = n - n % 8
    for i in range(0, end, 8):
        m = int.from_bytes(data[i : i + 8], "little")
        v3 ^= m
        v0, v1, v2, v3 = _sip_round(v0, v1, v2, v3)
        v0 ^= m
    last = int.from_bytes(data[end:], "little") | ((n & 0xFF) << 56)
    v3 ^= last
    v0, v1, v2, v3 = _sip_round(v0, v1, v2, v3)
    v0 ^= last
    v2 ^= 0xFF
    for _ in range(3):
        v0, v1, v2, v3 = _sip_round(v0, v1, v2, v3)
    return v0 ^ v1 ^ v2 ^ v3


def bytewax_worker(key: str, workers: int) -> int:
    """The worker index Bytewax 0.21.1 routes ``key`` of a ``stateful_batch`` step to, among
    ``workers`` workers in all (``src/timely.rs``, ``PartitionOp::partition``: the hash modulo
    the number of workers, an index into the sorted worker indices)."""
    return siphash13(key.encode() + b"\xff") % workers


def keys_for_worker(worker: int, workers: int, count: int, stem: str = "k") -> list[str]:
    """``count`` keys ``stem0``, ``stem1``, ... that Bytewax routes to ``worker``."""
    keys: list[str] = []
    i = 0
    while len(keys) < count:
        key = f"{stem}{i}"
        if bytewax_worker(key, workers) == worker:
            keys.append(key)
        i += 1
    return keys


def median_of(values: Sequence[float]) -> float:
    return statistics.median(values)
