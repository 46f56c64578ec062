"""The payment table: one numpy column per field, shared by traffic, fraud scenarios and labels.

Rows are payments in no particular order until :func:`test_data.generator.simulate` sorts them by
event time; then row ``i`` is transaction ``i``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import numpy.typing as npt

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

LEGITIMATE = 0
NO_DEVICE = -1
NO_INCIDENT = -1


@dataclass(frozen=True, eq=False)
class Payments:
    """Payments as parallel columns; indices point into the :class:`~test_data.population.World`."""

    card: IntArray
    merchant: IntArray
    terminal: IntArray
    place: IntArray  # city whose clock the event time is told in (where the payer is)
    at_ms: IntArray  # event time, UTC milliseconds
    amount_minor: IntArray  # in the currency of the merchant's country
    channel: IntArray  # index into catalogue.CHANNELS
    device: IntArray  # device number, NO_DEVICE for card-present payments
    latitude: FloatArray  # NaN where no location is reported
    longitude: FloatArray
    scenario: IntArray  # LEGITIMATE, or 1 + index into spec.SCENARIOS
    incident: IntArray  # fraud incident number, NO_INCIDENT for legitimate payments

    def __post_init__(self) -> None:
        lengths = {f.name: len(getattr(self, f.name)) for f in fields(self)}
        if len(set(lengths.values())) > 1:
            raise ValueError(f"Payments columns differ in length: {lengths}")

    def __len__(self) -> int:
        return len(self.card)

    def take(self, rows: IntArray | npt.NDArray[np.bool_]) -> Payments:
        """The payments at ``rows`` (indices or a mask), in that order."""
        return Payments(**{f.name: getattr(self, f.name)[rows] for f in fields(self)})

    @classmethod
    def concat(cls, parts: list[Payments]) -> Payments:
        if not parts:
            return cls.empty()
        return cls(
            **{f.name: np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(cls)}
        )

    @classmethod
    def empty(cls) -> Payments:
        return cls(
            **{
                f.name: np.empty(0, dtype=np.float64 if f.name in _FLOAT else np.int64)
                for f in fields(cls)
            }
        )


_FLOAT = frozenset({"latitude", "longitude"})
