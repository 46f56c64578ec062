"""What a card's snapshot costs as the flow takes it, and what a compact binary state would cost.

    python benchmarks/bench_snapshot.py [--cards 3000] [--days 30] [--repeats 5] [--learner]

Bytewax 0.21.1 calls ``snapshot()`` on every key a ``stateful_batch`` step touched in an epoch,
when the epoch closes, with or without recovery (``src/operators.rs``, the epoch-close block);
without recovery the result is dropped, with recovery it is pickled again (``ser_snap`` in
``src/recovery.rs``) and written to SQLite. At thousands of payments a second nearly every
payment touches a card no other payment of its epoch touches, so a card costs one snapshot per
payment.

30 days of the generator's traffic (seed 97, ``--cards`` cards, cards / 5 merchants) go through
the card step's ``KeyedHistory`` objects (built as the flow builds them: ``CardHistory`` and the
card's 64 recent ids, fed with ``on_batch``) and the terminal step's. Then, for every active card
(a payment in the last 30 days of event time), timed over all of them with ``process_time``,
best of ``--repeats``:

- **flow today**: ``KeyedHistory.snapshot()`` (``pickle.dumps`` of the history's state, its
  last touch and the recent ids; since session 11 the card writes each column in its narrowest
  width, a pass over its values, where before it joined the buffers it keeps), plus
  Bytewax's ``pickle.dumps`` of that ``bytes`` with recovery, and the
  restore (``pickle.loads`` through the step's builder);
- **msgpack**: the state as flat tuples (``CardHistory._loose_state``, the ``__getstate__`` of
  the release before) as msgspec MessagePack;
- **packed**: the same information packed by :func:`pack_card` into one ``bytes`` (parallel
  ``array`` columns: times and coordinates as doubles, cents as 64-bit, tile indices and counts
  as 32-bit integers, strings length-prefixed): from the lists the card holds today (so the
  conversion is paid) and back (:func:`unpack_card`);
- **kept packed**: the lower bound if the card kept its columns as arrays all the time: the
  snapshot is a ``b"".join`` of their buffers.

The packed state is checked to hold the same information: every unpacked card gives the same
features as the original for the next payment of its card (or a probe payment when it has none).
Bytes per snapshot are printed for each way (mean, p99), and the same for terminals (today's
pickle only). Last, what recovery adds: the snapshots upserted into SQLite as Bytewax's recovery
writes them (one statement a snapshot, one transaction an epoch), in a file on disk. With
``--learner``, also the learner's snapshot: its time and size for the model version in
``PAYSCORE_MODEL_DIR``.
"""

from __future__ import annotations

import argparse
import math
import pickle
import sqlite3
import struct
import tempfile
import time
from array import array
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import cpu_meter
import msgspec
from key_replay import BENCH_MARK_KEY, KeyReplay
from msgspec.structs import replace

from dataflows.keyed_history import KeyedHistory, keyed_history
from dataflows.scoring import CARD_IDS_KEPT, IDLE_KEY_SECONDS
from features.card import CardHistory
from features.contract import Payment
from test_data.generator import simulate
from test_data.spec import SimulationSpec

ROOT = Path(__file__).resolve().parent.parent
DAY = 86_400.0
_HEAD = struct.Struct("<7d9I")  # lateness, watermark, last time/lat/lon, last touch, spare; sizes
_NONE = float("nan")  # a missing coordinate (the contract admits no NaN coordinate)
# A tile's index (5-minute tiles since 1970 fit 32 bits until the year 2378), count and count
# with an amount as 32-bit; its total and peak in cents as 64-bit.
_TILE_CODES = ("I", "I", "I", "q", "q")


# ------------------------------------------------------------------- the packed format


def _strings(values: Iterable[str]) -> bytes:
    encoded = [v.encode() for v in values]
    return array("H", map(len, encoded)).tobytes() + b"".join(encoded)


def _read_strings(buf: memoryview, at: int, n: int) -> tuple[list[str], int]:
    lengths = array("H")
    lengths.frombytes(buf[at : at + 2 * n])
    at += 2 * n
    out = []
    for length in lengths:
        out.append(bytes(buf[at : at + length]).decode())
        at += length
    return out, at


def tuple_state(card: CardHistory) -> tuple[Any, ...]:
    """The card's state as flat tuples (``__getstate__`` of the release before; the card keeps
    its columns packed since, and gives that form only for values beyond 64 bits)."""
    return card._loose_state()


def pack_card(card: CardHistory, last_touch: float, recent: dict[int, int] | None) -> bytes:
    """The card's whole state, its last touch and its recent ids as one ``bytes``."""
    s = tuple_state(card)
    (lateness, watermark, ts, cents, merchant, country, lat, lon, tiles, merchants, seen, days,
     codes, counts, last_time, last_lat, last_lon) = s  # fmt: skip
    ids = recent or {}
    head = _HEAD.pack(
        lateness, watermark, last_time,
        _NONE if last_lat is None else last_lat, _NONE if last_lon is None else last_lon,
        last_touch, 0.0,
        len(ts), *(len(level[0]) for level in tiles), len(merchants), len(days), len(ids),
        1 if recent is not None else 0, 0,
    )  # fmt: skip
    parts = [
        head,
        array("d", ts).tobytes(),
        array("q", cents).tobytes(),
        array("d", [_NONE if v is None else v for v in lat]).tobytes(),
        array("d", [_NONE if v is None else v for v in lon]).tobytes(),
        _strings(merchant),
        "".join(country).encode(),
    ]
    for level in tiles:
        for code, column in zip(_TILE_CODES, level, strict=True):
            parts.append(array(code, column).tobytes())
    parts += [
        _strings(merchants),
        array("d", seen).tobytes(),
        array("I", days).tobytes(),
        "".join(codes).encode(),
        array("I", counts).tobytes(),
        array("Q", ids.keys()).tobytes(),
        array("I", ids.values()).tobytes(),
    ]
    return b"".join(parts)


def unpack_card(blob: bytes) -> tuple[CardHistory, float, dict[int, int] | None]:
    """What :func:`pack_card` packed."""
    buf = memoryview(blob)
    (lateness, watermark, last_time, last_lat, last_lon, last_touch, _, n, t0, t1, t2, nm, nd,
     nr, has_recent, _) = _HEAD.unpack_from(buf)  # fmt: skip
    at = _HEAD.size

    def column(code: str, count: int) -> list[Any]:
        nonlocal at
        a = array(code)
        a.frombytes(buf[at : at + a.itemsize * count])
        at += a.itemsize * count
        return a.tolist()

    def codes(count: int) -> list[str]:
        nonlocal at
        text = bytes(buf[at : at + 2 * count]).decode()
        at += 2 * count
        return [text[i : i + 2] for i in range(0, 2 * count, 2)]

    ts, cents = column("d", n), column("q", n)
    lat = [None if math.isnan(v) else v for v in column("d", n)]
    lon = [None if math.isnan(v) else v for v in column("d", n)]
    merchant, at = _read_strings(buf, at, n)
    country = codes(n)
    tiles = tuple(tuple(column(c, size) for c in _TILE_CODES) for size in (t0, t1, t2))
    merchants, at = _read_strings(buf, at, nm)
    seen, days = column("d", nm), column("I", nd)
    country_codes, counts = codes(nd), column("I", nd)
    keys, marks = column("Q", nr), column("I", nr)
    card = CardHistory.__new__(CardHistory)
    card.__setstate__(
        (lateness, watermark, ts, cents, merchant, country, lat, lon, tiles, merchants, seen,
         days, country_codes, counts, last_time,
         None if math.isnan(last_lat) else last_lat, None if math.isnan(last_lon) else last_lon)
    )  # fmt: skip
    return card, last_touch, dict(zip(keys, marks, strict=True)) if has_recent else None


COLUMNS = 29  # a packed card's parts: the head, 6 tail columns, 15 of tiles, 7 others


def kept_columns(blob: bytes) -> list[array]:
    """The packed card as the ``COLUMNS`` arrays it would keep all the time (the lower bound)."""
    step = -(-len(blob) // COLUMNS)
    return [array("B", blob[i : i + step]) for i in range(0, len(blob), step)]


# ----------------------------------------------------------------------------- the run


def build_state(cards: int, days: int) -> tuple[dict[str, KeyedHistory], dict, list[str], dict]:
    """Feed the stream through the card and terminal steps' key logic, as the state-bytes part of
    ``bench_throughput.py`` does (``key_replay.py``); the active cards and each card's next
    payment (a probe)."""
    sim = simulate(SimulationSpec(seed=97, days=days, cards=cards, merchants=max(cards // 5, 2)))
    keys = KeyReplay()
    last: dict[str, Payment] = {}
    for event in keys.replay(sim.stream, sim.n_payments):
        if isinstance(event, Payment):
            last[event.card_id] = event
    now = max(p.event_timestamp for p in last.values())
    active = [k for k, p in last.items() if p.event_timestamp >= now - 30 * DAY]
    return keys.card_keys, keys.terminal_keys, active, last


def sqlite_write(blobs: list[bytes], repeats: int) -> float:
    """Seconds to upsert ``blobs`` as Bytewax's recovery upserts snapshots (``src/recovery.rs``,
    ``SerializedSnapshotWriter``: one ``INSERT ... ON CONFLICT DO UPDATE`` a snapshot, one
    transaction a batch), into a file on disk; best of ``repeats``, each a new epoch."""
    with tempfile.TemporaryDirectory(dir=ROOT) as folder:
        db = sqlite3.connect(Path(folder) / "snaps.sqlite3")
        db.execute(
            "CREATE TABLE snaps (step_id TEXT, state_key TEXT, snap_epoch INTEGER, ser_change "
            "BLOB, PRIMARY KEY (step_id, state_key, snap_epoch))"
        )
        seconds = math.inf
        for epoch in range(repeats):
            rows = [("card_features", str(i), epoch, b) for i, b in enumerate(blobs)]
            started = time.process_time()
            with db:
                db.executemany(
                    "INSERT INTO snaps VALUES (?1, ?2, ?3, ?4) ON CONFLICT (step_id, state_key, "
                    "snap_epoch) DO UPDATE SET ser_change = EXCLUDED.ser_change",
                    rows,
                )
            seconds = min(seconds, time.process_time() - started)
        db.close()
    return seconds


def best(repeats: int, work: Callable[[], Any]) -> tuple[float, Any]:
    seconds, out = math.inf, None
    for _ in range(repeats):
        started = time.process_time()
        out = work()
        seconds = min(seconds, time.process_time() - started)
    return seconds, out


def sizes(blobs: list[bytes]) -> str:
    lengths = sorted(map(len, blobs))
    p99 = lengths[max(1, math.ceil(0.99 * len(lengths))) - 1]
    return f"mean {sum(lengths) / len(lengths):,.0f} B, p99 {p99:,} B"


def main(argv: Iterable[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cards", type=int, default=3000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--learner",
        action="store_true",
        help="also the learner's snapshot (the model version in PAYSCORE_MODEL_DIR)",
    )
    args = parser.parse_args(list(argv) if argv is not None else None)
    card_keys, terminal_keys, active, last = build_state(args.cards, args.days)
    logics = [card_keys[k] for k in active]
    n = len(logics)
    print(f"{args.days} days, {args.cards:,} cards: {n:,} active cards, {len(terminal_keys):,} "
          f"terminals; µs per key, best of {args.repeats} (process_time)")  # fmt: skip

    def us(seconds: float) -> str:
        return f"{seconds * 1e6 / n:6.2f} µs"

    t_snap, snaps = best(args.repeats, lambda: [k.snapshot() for k in logics])
    t_ser, _ = best(args.repeats, lambda: [pickle.dumps(s) for s in snaps])
    build = keyed_history(CardHistory, IDLE_KEY_SECONDS, CARD_IDS_KEPT, mark_key=BENCH_MARK_KEY)
    t_load, _ = best(args.repeats, lambda: [build(s) for s in snaps])
    print(f"flow today   snapshot() {us(t_snap)}; Bytewax's pickle of it (recovery) "
          f"{us(t_ser)}; restore {us(t_load)}; {sizes(snaps)} (fast, the default)")  # fmt: skip
    t_small, smalls = best(args.repeats, lambda: [k.snapshot(compact=True) for k in logics])
    t_small_load, _ = best(args.repeats, lambda: [build(s) for s in smalls])
    print(f"compact      snapshot() {us(t_small)}; restore {us(t_small_load)}; {sizes(smalls)} "
          "(PAYSCORE_CARD_SNAPSHOTS=compact)")  # fmt: skip

    states = [tuple_state(k._history) for k in logics]
    encode, decode = msgspec.msgpack.Encoder().encode, msgspec.msgpack.Decoder().decode
    t_state, _ = best(args.repeats, lambda: [tuple_state(k._history) for k in logics])
    t_mp, packs = best(args.repeats, lambda: [encode(s) for s in states])
    t_mpl, _ = best(args.repeats, lambda: [decode(b) for b in packs])
    print(f"msgpack      state tuple {us(t_state)} + encode {us(t_mp)} = "
          f"{us(t_state + t_mp)}; decode {us(t_mpl)} (+ setstate); {sizes(packs)}")  # fmt: skip

    def pack_all() -> list[bytes]:
        return [pack_card(k._history, k._last_touch, k._recent_ids) for k in logics]

    t_pack, packed = best(args.repeats, pack_all)
    t_unpack, restored = best(args.repeats, lambda: [unpack_card(b) for b in packed])
    print(f"packed       pack {us(t_pack)}; unpack {us(t_unpack)}; {sizes(packed)}")
    columns = [kept_columns(b) for b in packed]
    t_kept, _ = best(args.repeats, lambda: [b"".join(c) for c in columns])
    print(f"kept packed  join of the columns' buffers {us(t_kept)} (the lower bound)")

    same = 0
    for key, (card, _, _) in zip(active, restored, strict=True):
        original = card_keys[key]._history.__copy__()
        probe = replace(last[key], event_time=last[key].event_time)
        if original.observe(probe) != card.observe(probe):
            raise RuntimeError(f"card {key}: the unpacked state gives other features")
        same += 1
    print(f"checked: {same:,} unpacked cards give the same features as the originals")

    for label, blobs in (("pickles (today)", snaps), ("packed", packed)):
        t_sql = sqlite_write(blobs, args.repeats)
        print(f"SQLite write of the {label}, one transaction an epoch as Bytewax's recovery "
              f"writes its snapshots: {us(t_sql)}")  # fmt: skip

    terminal_logics = list(terminal_keys.values())
    m = len(terminal_logics)
    t_term, tsnaps = best(args.repeats, lambda: [k.snapshot() for k in terminal_logics])
    print(f"terminals    snapshot() {t_term * 1e6 / m:6.2f} µs; {sizes(tsnaps)}")
    print(
        "spread: "
        + cpu_meter.fmt_spread(
            cpu_meter.spread(
                best(1, lambda: [k.snapshot() for k in logics])[0] * 1e6 / n
                for _ in range(args.repeats)
            )
        )
        + " µs per card snapshot() over repeated runs"
    )
    if args.learner:
        learner_snapshot(args.repeats)


def learner_snapshot(repeats: int) -> None:
    """The learner's key: ``LearnStep.snapshot()`` of a learner new from the version in
    ``PAYSCORE_MODEL_DIR`` (the pickled ``OnlineLearner``, its frozen forest included), taken
    at every epoch close in which labels reached it, and Bytewax's pickle of it (recovery)."""
    import os

    from dataflows.learning import LearnStep
    from model_state import artifact, signing
    from model_state.learner import OnlineLearner
    from settings.config import Config

    config = Config.from_env({k: v for k, v in os.environ.items() if k.startswith("PAYSCORE_")})
    start = artifact.load(Path(config.model_dir), key=signing.read_key(Path(config.model_key_file)))
    step = LearnStep(OnlineLearner(start, config.publish_every_labels), 0.0, 60.0, None)
    t_snap, blob = best(repeats, step.snapshot)
    t_again, _ = best(repeats, lambda: pickle.dumps(blob, protocol=pickle.HIGHEST_PROTOCOL))
    print(
        f"learner      snapshot() of {start.version} {t_snap * 1000:.2f} ms, "
        f"{len(blob) / 1e6:.2f} MB; Bytewax's pickle of it (recovery) {t_again * 1000:.2f} ms"
    )


if __name__ == "__main__":
    main()
