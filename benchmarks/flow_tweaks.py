"""Runs the flow as ``python -m bytewax.run ...`` does, with tweaks a benchmark wants to price.

    FLOW_TWEAKS=gc,pin python benchmarks/flow_tweaks.py -m bytewax.run dataflows.scoring:flow -w 1

``profile_flow.py --variant`` points ``ops/run_flow.sh`` here (``FLOW_PYTHON``) to measure what
two changes outside the flow's logic would save, before anyone builds them:

- ``gc``: after the flow is built (imports done, model loaded), ``gc.freeze()`` moves every
  object made so far out of the collector's sight, and the collector's thresholds go from
  CPython's (700, 10, 10) to (50,000, 20, 100): far fewer collections, each over young objects;
- ``pin``: each worker thread keeps a Python thread state for good
  (``cpu_meter.pin_thread_state``, called when the thread builds its first Kafka partition
  reader), so that Bytewax's ``with_gil`` calls stop creating and deleting one every time
  (the flow does both itself since: ``dataflows/collector.py``, ``dataflows/thread_states.py``;
  the tweaks remain to measure builds from before);
- ``nospin``: a Kafka partition reader that just read a batch asks to be woken 0.5 ms later
  instead of at once (``next_awake``). Bytewax re-activates an input immediately after a
  non-empty batch (``src/inputs.rs`` 537-550), also while backpressure keeps it from reading
  (``src/inputs.rs`` 433-438): a worker waiting for another process spins on its input.

Nothing here changes what the flow computes or stores. The flow now does ``gc`` itself
(``dataflows/collector.py``); the tweak stays for measuring checkouts from before.
"""

from __future__ import annotations

import gc
import os
import runpy
import sys
from typing import Any

import cpu_meter

THRESHOLDS = (50_000, 20, 100)


NOSPIN_SECONDS = 0.0005


def apply(tweaks: set[str]) -> None:
    if "gc" in tweaks:
        from dataflows import scoring

        build = scoring.flow

        def flow() -> Any:
            built = build()
            gc.collect()
            gc.freeze()
            gc.set_threshold(*THRESHOLDS)
            return built

        scoring.flow = flow  # type: ignore[assignment]
    if "pin" in tweaks:
        from dataflows.sources import FlowKafkaSource

        build_part = FlowKafkaSource.build_part

        def pinned(self: FlowKafkaSource, step_id: str, for_part: str, resume: Any) -> Any:
            cpu_meter.pin_thread_state()
            return build_part(self, step_id, for_part, resume)

        FlowKafkaSource.build_part = pinned  # type: ignore[method-assign]
    if "nospin" in tweaks:
        from datetime import UTC, datetime, timedelta

        from dataflows.sources import _Reader

        awake = _Reader.next_awake
        pause = timedelta(seconds=NOSPIN_SECONDS)

        def next_awake(self: _Reader) -> datetime | None:
            return awake(self) or datetime.now(UTC) + pause

        _Reader.next_awake = next_awake  # type: ignore[method-assign]


def main() -> None:
    args = sys.argv[1:]
    if args[:2] != ["-m", "bytewax.run"]:
        raise SystemExit(f"flow_tweaks.py: expected '-m bytewax.run ...'; got {args[:2]}")
    tweaks = {t for t in os.environ.get("FLOW_TWEAKS", "").split(",") if t}
    if unknown := tweaks - {"gc", "pin", "nospin"}:
        raise SystemExit(
            f"flow_tweaks.py: FLOW_TWEAKS may hold gc, pin and nospin; got {sorted(unknown)}"
        )
    sys.argv = ["bytewax.run", *args[2:]]
    apply(tweaks)
    runpy.run_module("bytewax.run", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
