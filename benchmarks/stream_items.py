"""The objects the flow moves between its steps, as they are at each keyed exchange, made once
from the generator's stream and cached (for the throughput-research benchmarks).

    items = load_items(payments=60_000)    # builds /dev/shm/payscore-items-<n>.pickle once

Kinds (what crosses between processes at each of the flow's keyed steps):

- ``card``: a decoded payment (``Positioned[Payment]``, no features yet), keyed by card;
- ``terminal``: the same with the card's 23 features, keyed by terminal;
- ``merchant``: with the card's and the terminal's 31 features, keyed by merchant;
- ``label``: a decoded fraud label (``Positioned[FraudLabel]``), keyed by card group;
- ``learner``: a labelled payment (``LabelledPayment``, 42 features), to the learner's key.

The cache holds plain values (JSON bytes, numbers, dicts), so a benchmark process rebuilds the
objects in a second without the features' code.
"""

from __future__ import annotations

import os
import pickle
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec

from dataflows.messages import Positioned
from dataflows.scoring import add_calendar_features
from features.card import CardHistory
from features.contract import FraudLabel, Payment
from features.entity import EntityHistory
from storage.labels import LabelledPayment
from test_data.generator import simulate
from test_data.spec import SimulationSpec

KINDS = ("card", "terminal", "merchant", "label", "learner")
CACHE_DIR = Path("/dev/shm" if os.path.isdir("/dev/shm") else "/tmp")
_encode = msgspec.json.Encoder().encode
_payment = msgspec.json.Decoder(Payment).decode
_label = msgspec.json.Decoder(FraudLabel).decode


def _build(payments: int, seed: int) -> dict[str, list[tuple[Any, ...]]]:
    """Plain values of every kind for the first ``payments`` payments of a stream."""
    cards = max(1000, payments // 6)
    sim = simulate(SimulationSpec(seed=seed, days=6, cards=cards, merchants=cards // 5))
    cards_h: dict[str, CardHistory] = {}
    terms: dict[str, EntityHistory] = {}
    merchs: dict[str, EntityHistory] = {}
    out: dict[str, list[tuple[Any, ...]]] = {k: [] for k in KINDS}
    by_id: dict[str, tuple[Payment, dict[str, float]]] = {}
    now = datetime.now(UTC).timestamp()
    offset = 0
    for event in sim.stream:
        offset += 1
        if isinstance(event, Payment):
            if len(out["card"]) >= payments:
                continue
            json = _encode(event)
            p = Positioned(event, offset % 4, offset, appended_at=now)
            out["card"].append((json, p.partition, p.offset, {}, now))
            card = cards_h.setdefault(event.card_id, CardHistory())
            p.features.update(card.observe(event))
            out["terminal"].append((json, p.partition, p.offset, dict(p.features), now))
            for key, table, kind in (
                (event.terminal_id, terms, "terminal"),
                (event.merchant_id, merchs, "merchant"),
            ):
                history = table.setdefault(key, EntityHistory(kind))
                p.features.update(history.observe(event))
                if kind == "terminal":
                    out["merchant"].append((json, p.partition, p.offset, dict(p.features), now))
            add_calendar_features(p)
            by_id[event.transaction_id] = (event, p.features)
        elif event.transaction_id in by_id and len(out["label"]) < payments:
            out["label"].append((_encode(event), offset % 4, offset, {}, now))
            payment, features = by_id[event.transaction_id]
            out["learner"].append(
                (
                    event.transaction_id,
                    event.card_id,
                    payment.merchant_id,
                    payment.terminal_id,
                    payment.event_timestamp,
                    event.reported_at.timestamp(),
                    event.is_fraud,
                    features,
                    "v00001",
                    offset % 4,
                    offset,
                )
            )
    return out


def load_plain(payments: int, seed: int = 99) -> dict[str, list[tuple[Any, ...]]]:
    """The cached plain values (built and cached on first use)."""
    path = CACHE_DIR / f"payscore-items-{seed}-{payments}.pickle"
    if path.exists():
        with path.open("rb") as f:
            return pickle.load(f)
    plain = _build(payments, seed)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    with tmp.open("wb") as f:
        pickle.dump(plain, f, protocol=pickle.HIGHEST_PROTOCOL)
    tmp.replace(path)
    return plain


def objects(kind: str, plain: list[tuple[Any, ...]]) -> list[Any]:
    """The flow's objects of ``kind`` from their plain values."""
    if kind == "learner":
        names = (
            "transaction_id", "card_id", "merchant_id", "terminal_id", "payment_time",
            "reported_at", "is_fraud", "features", "scored_by", "label_partition",
            "label_offset",
        )  # fmt: skip
        return [LabelledPayment(**dict(zip(names, row, strict=True))) for row in plain]
    decode = _label if kind == "label" else _payment
    return [
        Positioned(decode(json), partition, offset, dict(features), appended_at=at)
        for json, partition, offset, features, at in plain
    ]


def load_items(kind: str, payments: int, seed: int = 99) -> list[Any]:
    return objects(kind, load_plain(payments, seed)[kind])
