"""Handbook streams with parameters drawn across sensible ranges, for evaluations not designed on.

    python -m test_data.handbook_draws [--seed 20260422] [--count 5]
        [--out evaluations/handbook-streams.json]

Writes one stream at the published defaults and ``--count`` streams whose parameters are drawn,
each uniformly and independently, from :data:`RANGES`, each with a stream seed of its own (drawn
from 100 to 9,999, so none is one of the seeds 1 to 3 the project's figures were made on). The
file is the list the evaluation runs on (``python -m model_state.evaluate --streams FILE``); it
is drawn and committed before any evaluation on it is run, so that no parameter is chosen
knowing how a model fares on it.

The ranges hold the independent tester's two streams (radius 4, amount rule at 180 EUR, 3
terminals compromised a day for 21 days; 5 customers a day for 10 days at 3 times the amount)
and the handbook's defaults, with room either way:

- ``radius`` 3 to 8 grid units: about 28 to 200 terminals a customer (the default 5: 78);
- ``fraud_amount_eur`` 150 to 300 EUR (whole euros; customers' mean amounts are 5 to 100 EUR
  with a standard deviation of half the mean, so the rule takes more or fewer of the largest
  spenders' own payments);
- ``terminals_per_day`` 1 to 4 and ``terminal_days`` 14 to 35;
- ``customers_per_day`` 2 to 6 and ``customer_days`` 7 to 21;
- ``amount_factor`` 2 to 6 (two decimals): from a fraud that hides among a customer's own
  amounts to one far above them.

>>> draws = draw(seed=1, count=2)
>>> [d["name"] for d in draws], draws[0]["params"] == {}
(['defaults', 'drawn-1', 'drawn-2'], True)
>>> all(3.0 <= d["params"]["radius"] <= 8.0 for d in draws[1:])
True
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from test_data.handbook import HandbookSpec

RANGES: dict[str, tuple[float, float, str]] = {
    "radius": (3.0, 8.0, "float"),
    "fraud_amount_eur": (150.0, 300.0, "whole"),
    "terminals_per_day": (1, 4, "int"),
    "terminal_days": (14, 35, "int"),
    "customers_per_day": (2, 6, "int"),
    "customer_days": (7, 21, "int"),
    "amount_factor": (2.0, 6.0, "float"),
}
"""Parameter: (low, high, kind); ``int`` draws an integer in [low, high], ``whole`` a whole
number of euros, ``float`` a value rounded to two decimals."""

DEFAULT_SEED = 20260422
DEFAULT_OUT = Path("evaluations/handbook-streams.json")


def draw(*, seed: int, count: int) -> list[dict[str, Any]]:
    """The published defaults, then ``count`` drawn parameter sets; each with a stream seed."""
    rng = np.random.default_rng(seed)
    seeds = rng.choice(np.arange(100, 10_000), size=count + 1, replace=False).tolist()
    out: list[dict[str, Any]] = [{"name": "defaults", "seed": seeds[0], "params": {}}]
    for k in range(1, count + 1):
        params: dict[str, Any] = {}
        for name, (low, high, kind) in RANGES.items():
            if kind == "int":
                params[name] = int(rng.integers(int(low), int(high) + 1))
            elif kind == "whole":
                params[name] = float(round(rng.uniform(low, high)))
            else:
                params[name] = round(float(rng.uniform(low, high)), 2)
        out.append({"name": f"drawn-{k}", "seed": seeds[k], "params": params})
    for entry in out:  # every set makes a valid spec
        HandbookSpec(seed=entry["seed"], **entry["params"])
    return out


def load(path: Path) -> list[dict[str, Any]]:
    """The streams of a file :func:`main` wrote."""
    try:
        data = json.loads(path.read_text())
        streams = data["streams"]
        for entry in streams:
            HandbookSpec(seed=int(entry["seed"]), **entry["params"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path}: not a list of handbook streams ({exc})") from None
    return list(streams)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m test_data.handbook_draws", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--count", type=int, default=5)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    if args.count < 0:
        parser.error(f"--count must be >= 0; got {args.count}")
    streams = draw(seed=args.seed, count=args.count)
    command = " ".join(
        ["python -m test_data.handbook_draws", *(sys.argv[1:] if argv is None else argv)]
    )
    document = {
        "command": command,
        "ranges": {k: list(v) for k, v in RANGES.items()},
        "streams": streams,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(document, indent=2) + "\n")
    for entry in streams:
        print(entry["name"], entry["seed"], entry["params"] or "(published defaults)")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
