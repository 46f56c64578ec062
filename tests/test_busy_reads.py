"""``dataflows/busy_reads.py``: a read right after one that returned messages waits for
nothing; any other waits as Bytewax asks; the messages are the consumer's, untouched."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from dataflows.busy_reads import BusyReads


class _Consumer:
    """Hands out the batches it was given, one a call, and records each call's timeout."""

    def __init__(self, batches: list[list[int]]) -> None:
        self._batches = iter(batches)
        self.timeouts: list[float] = []
        self.topic = "payments"

    def consume(self, num_messages: int, timeout: float) -> list[int]:
        self.timeouts.append(timeout)
        return next(self._batches)


@given(st.lists(st.lists(st.integers(), max_size=3), min_size=1, max_size=30))
def test_only_a_read_after_messages_skips_the_wait(batches: list[list[int]]) -> None:
    consumer = _Consumer(batches)
    reads = BusyReads(consumer)
    got = [reads.consume(1000, 0.001) for _ in batches]
    assert got == batches  # the same messages, in the same order
    expected = [0.001] + [0.0 if before else 0.001 for before in batches[:-1]]
    assert consumer.timeouts == expected


def test_everything_else_is_the_consumers() -> None:
    consumer: Any = _Consumer([])
    assert BusyReads(consumer).topic == "payments"
