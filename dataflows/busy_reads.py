"""A partition reader that has just read messages asks Kafka again without waiting.

Bytewax 0.21.1's Kafka reader asks its consumer for up to a batch
(``PAYSCORE_KAFKA_BATCH_SIZE``, 1,000) with a timeout of one millisecond
(``consume(batch_size, 0.001)``, ``bytewax/connectors/kafka/__init__.py``), and librdkafka
returns when the batch is full or the timeout has passed. A tailing flow's partitions hold a few
messages at each read, so every read of every partition waited the whole millisecond, on the
worker thread, which does nothing else meanwhile. Measured with the call trace (README,
*Throughput*, "Where the pause at each close goes"): 1.2 ms a read, about 48 reads a second of
each of a process's four partitions at 1,220 payments/s: a fifth of the worker's time, in every
payment's latency and in the backlog after each epoch close.

So a read that follows one that returned messages asks for what the consumer has fetched
already (its background thread fetches ahead), without waiting; a read that follows an empty
one waits as Bytewax asks, so an idle partition still waits its millisecond in librdkafka
rather than spinning the worker. Which messages come, and in which order, does not change:
only how long a read may wait for more.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class BusyReads:
    """``consumer`` whose ``consume`` waits for nothing right after a read that returned
    messages (see the module); the rest is the consumer's own."""

    def __init__(self, consumer: Any) -> None:
        self._consumer = consumer
        self._consume: Callable[..., list[Any]] = consumer.consume
        self._busy = False

    def consume(self, num_messages: int = 1, timeout: float = -1.0) -> list[Any]:
        messages = self._consume(num_messages, 0.0 if self._busy else timeout)
        self._busy = bool(messages)
        return messages

    def __getattr__(self, name: str) -> Any:
        return getattr(self._consumer, name)
