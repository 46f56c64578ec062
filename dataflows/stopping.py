"""A graceful stop: SIGTERM or SIGINT ends the flow's inputs, so the flow finishes its epoch,
takes its last snapshot and exits 0.

Bytewax stops at once on SIGINT (``KeyboardInterrupt``: no final snapshot, exit 1) and not at
all on SIGTERM, which a supervisor, ``systemctl stop`` or Kubernetes send. :func:`install`
replaces both handlers with one that sets a :class:`threading.Event`; every input partition
(:mod:`dataflows.sources`) checks it before reading and then reports its end. What is in
flight is processed, every stateful step sees the end of its input and is snapshotted with the
input offsets (with recovery, ``-r``), and the process exits 0. Labels still waiting for their
payment stay waiting in the snapshot instead of being given up (:mod:`dataflows.label_join`).

A second signal while stopping restores Python's default, so a third one kills at once.
"""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType

log = logging.getLogger(__name__)


def install(stop: threading.Event) -> None:
    """Route SIGTERM and SIGINT to ``stop``; call from the main thread (the flow's entry point)."""

    def handle(signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if stop.is_set():
            log.warning("%s again while stopping: the next signal stops the flow at once", name)
            signal.signal(signal.SIGINT, signal.default_int_handler)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            return
        log.warning(
            "%s received: stopping after the current epoch (final snapshot, exit 0)",
            name,
            extra={"event": "stopping", "reason": name},
        )
        stop.set()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)
