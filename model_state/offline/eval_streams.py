"""The evaluation's streams: what to simulate, how its labels come, and a cache of their replay.

A :class:`StreamSpec` names one stream: the simulator (``handbook``, :mod:`test_data.handbook`;
``generator``, :mod:`test_data.generator`), its seed, length and size, its parameters (the
handbook's, e.g. drawn by :mod:`test_data.handbook_draws`), the drift scenario
(:mod:`test_data.drift`) and the **label mode**:

``every``
    every payment labelled ``label_delay_days`` after it (the handbook's protocol);
``frauds``
    as banks send them: only frauds, each reported 1 to 60 days after
    (:data:`test_data.spec.FRAUDS_ONLY`); the evaluation then learns implicit negatives;
``own``
    the generator's own label delays (frauds about a week after the incident, legitimate
    payments confirmed after 30 days).

Replaying a full stream through the live feature code takes minutes and gives the same arrays
every time, so :func:`replayed` keeps them on disk (``--cache``), keyed by the spec and by a
digest of the code that makes them (``features/``, ``test_data/`` and the replay): a changed
feature or simulator is replayed again, never read stale. A cached replay is the fresh one,
array for array (``tests/test_evaluate.py``).
"""

from __future__ import annotations

import hashlib
import inspect
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np

from features.catalog import DAY
from features.contract import FraudLabel, Payment
from model_state.offline.eval_stream import Replayed, replay_stream, with_label_delay

STREAMS = ("handbook", "generator")
LABEL_MODES = ("every", "frauds", "own")
DEFAULT_SIZE = {"handbook": 5000, "generator": 3000}
DRIFT_CARDS_PER_DAY = {"handbook": 10, "generator": 3}
"""Cards taken over a day by the drift scenario: about as many of its frauds a day as of the
stream's others (the handbook's 5,000 customers make about 70 frauds a day, the generator's
3,000 cards about 18)."""

Events = Iterable[Payment | FraudLabel]
_ROOT = Path(__file__).resolve().parents[2]
_REPLAY_CODE = ("features", "test_data")


@dataclass(frozen=True)
class StreamSpec:
    """One evaluation stream (see the module docstring)."""

    kind: str
    seed: int
    days: int = 70
    size: int | None = None
    labels: str = "every"
    label_delay_days: float = 7.0
    params: tuple[tuple[str, float], ...] = ()
    drift_start_day: int | None = None
    name: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if self.kind not in STREAMS:
            raise ValueError(f"unknown stream {self.kind!r}; choose one of {', '.join(STREAMS)}")
        if self.labels not in LABEL_MODES:
            raise ValueError(
                f"unknown label mode {self.labels!r}; choose one of {', '.join(LABEL_MODES)}"
            )
        if self.labels == "own" and self.kind != "generator":
            raise ValueError("label mode 'own' is the generator's own label delays")
        if self.params and self.kind != "handbook":
            raise ValueError(f"stream parameters {dict(self.params)} are the handbook's")
        if self.label_delay_days < 0:
            raise ValueError(f"label_delay_days must be >= 0; got {self.label_delay_days}")

    @property
    def customers(self) -> int:
        return self.size or DEFAULT_SIZE[self.kind]

    def describe(self) -> str:
        who = "customers" if self.kind == "handbook" else "cards"
        text = f"{self.kind}{' ' + self.name if self.name else ''}, seed {self.seed}, "
        text += f"{self.days} days, {self.customers} {who}"
        if self.params:
            text += " (" + ", ".join(f"{k} {v:g}" for k, v in self.params) + ")"
        text += {
            "every": f", every payment labelled {self.label_delay_days:g} days after",
            "frauds": ", frauds only, reported 1 to 60 days after",
            "own": ", its own label delays",
        }[self.labels]
        if self.drift_start_day is not None:
            text += f", new pattern from day {self.drift_start_day}"
        return text

    def build(self) -> tuple[Events, dict[str, str | None]]:
        """The events in arrival order and the truth (transaction id to scenario, or None)."""
        from test_data.drift import DriftSpec

        drift = None
        if self.drift_start_day is not None:
            drift = DriftSpec(
                start_day=self.drift_start_day, cards_per_day=DRIFT_CARDS_PER_DAY[self.kind]
            )
        delay = timedelta(days=self.label_delay_days)
        if self.kind == "generator":
            from test_data.generator import FRAUDS_ONLY, SimulationSpec, simulate

            spec = SimulationSpec(
                seed=self.seed,
                days=self.days,
                cards=self.customers,
                merchants=max(self.customers // 5, 2),
                drift=drift,
                **({"label_delays": FRAUDS_ONLY} if self.labels == "frauds" else {}),
            )
            simulation = simulate(spec)
            if self.labels in ("own", "frauds"):
                return simulation.stream, simulation.truth
            return with_label_delay(
                simulation.stream, verdicts(simulation), delay
            ), simulation.truth
        from test_data.handbook import HandbookSpec, simulate_handbook

        hb = simulate_handbook(
            HandbookSpec(
                seed=self.seed,
                days=self.days,
                n_customers=self.customers,
                n_terminals=2 * self.customers,
                label_delay_days=self.label_delay_days,
                drift=drift,
                **dict(self.params),
            )
        )
        return hb.stream(delay, mode=self.labels), hb.truth()

    def key(self) -> str:
        """What the replay depends on: the spec and the code that makes it (the feature code,
        the simulators, and the replay's own functions)."""
        own = "".join(
            inspect.getsource(f)
            for f in (Replayed, replay_stream, with_label_delay, StreamSpec.build, verdicts)
        )
        text = json.dumps(
            {"spec": asdict(self) | {"name": ""}, "code": code_digest(_REPLAY_CODE), "own": own}
        )
        return hashlib.sha256(text.encode()).hexdigest()[:24]


def verdicts(simulation: Any) -> dict[str, bool]:
    """Transaction id to is_fraud for every payment the generator labels."""
    labels = simulation.label_table
    return {
        simulation.transaction_id(int(row)): bool(fraud)
        for row, fraud in zip(labels.payment.tolist(), labels.is_fraud.tolist(), strict=True)
    }


def code_digest(paths: Iterable[str]) -> str:
    """SHA-256 over the Python sources under ``paths`` (relative to the repository)."""
    h = hashlib.sha256()
    for relative in paths:
        path = _ROOT / relative
        files = sorted(path.rglob("*.py")) if path.is_dir() else [path]
        for file in files:
            h.update(str(file.relative_to(_ROOT)).encode())
            h.update(file.read_bytes())
    return h.hexdigest()


_ARRAYS = ("features", "is_fraud", "event_time", "card", "terminal", "verdict", "reported_at",
           "schedule", "scenario")  # fmt: skip


def save_replayed(replayed: Replayed, path: Path) -> None:
    """``replayed`` as one ``.npz`` file (written to a temporary name, then renamed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial.npz")
    np.savez(
        partial,
        **{name: getattr(replayed, name) for name in _ARRAYS},
        card_ids=np.array(replayed.card_ids, dtype=np.str_),
        transaction_ids=np.array(replayed.transaction_ids, dtype=np.str_),
        scenario_names=np.array(replayed.scenario_names, dtype=np.str_),
        skipped_labels=np.array(replayed.skipped_labels),
    )
    partial.replace(path)


def load_replayed(path: Path) -> Replayed:
    with np.load(path) as data:
        return Replayed(
            **{name: data[name] for name in _ARRAYS},
            card_ids=data["card_ids"].tolist(),
            transaction_ids=data["transaction_ids"].tolist(),
            scenario_names=tuple(data["scenario_names"].tolist()),
            skipped_labels=int(data["skipped_labels"]),
        )


def replayed(spec: StreamSpec, cache: Path | None, *, progress: bool = False) -> Replayed:
    """``spec``'s stream replayed through the live feature code (:func:`replay_stream`), from
    ``cache`` when it holds this spec's replay by this code, else replayed and kept there."""
    path = cache / f"replay-{spec.key()}.npz" if cache is not None else None
    if path is not None and path.exists():
        return load_replayed(path)
    events, truth = spec.build()
    result = replay_stream(events, truth, progress=progress)
    if path is not None:
        save_replayed(result, path)
    return result


def day_of(replayed: Replayed, seconds: float) -> float:
    """Days since the stream's first UTC midnight."""
    return (seconds - np.floor(replayed.event_time.min() / DAY) * DAY) / DAY
