"""Why a payment scored as it did: each feature's contribution and its reason codes, recomputed
with the very model version that scored it.

    python -m review.explain TXID [TXID ...] [--contributions] [--recompute]

The command reads MySQL as the analysts' account (``PAYSCORE_ANALYST_MYSQL_URL``: payments
and versions, read only), never the review queue's. The version is loaded from
``PAYSCORE_MODEL_DIR`` and, if it is not there, from ``model_versions`` in MySQL; its signature
is checked first
(:mod:`model_state.artifact`), and a row is what its signed metadata says or nothing
(:func:`model_state.stored_versions.from_row`). The contributions come from the explainer the
scorer uses (:func:`model_state.scorer.explainer_for`), so they add up to the stored
probability. A few versions are kept loaded. When the version cannot be loaded,
:func:`explain` says why and the page shows the stored features and reason codes only.

**Reasons on demand.** The flow ranks reason codes only for the payments an analyst reads; an
approval is stored with none (:func:`storage.rows.reasons_on_demand`). :meth:`Explainers.reasons`
computes them from the stored features with :meth:`model_state.scorer.Scorer.reasons`, the
flow's own code with every row explained, so they are exactly what the flow would have stored
(``tests/test_reasons_on_demand.py``). The payment page, the queue and the command above show
them, marked as computed on demand.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import msgspec
from sqlalchemy import Engine

from features.bounded import bounded
from model_state import artifact
from model_state.artifact import ModelArtifact
from model_state.scorer import Scorer, explainer_for
from model_state.signing import read_key
from model_state.stored_versions import from_row
from review import queries
from settings.arguments import Parser
from settings.config import Config
from storage.engine import make_engine
from storage.refusals import refusing
from storage.rows import reasons_on_demand
from storage.versions import fetch_version

log = logging.getLogger(__name__)
KEEP = 4


class Explanation(msgspec.Struct, frozen=True):
    contributions: list[tuple[str, float, float]]  # feature, value, contribution; largest first
    offset: float  # the log-odds of the average training payment, prior-corrected
    probability: float  # recomputed from the contributions


class Unexplained(msgspec.Struct, frozen=True):
    why: str


class ShownReasons(msgspec.Struct, frozen=True):
    """A payment's reason codes as a page or the command shows them."""

    codes: tuple[str, ...]
    on_demand: bool  # computed now from the stored features (an approval stores none)
    why: str | None = None  # on demand, but the version could not compute them: why


class Explainers:
    """Loads model versions on demand (disk first, then MySQL) and explains payments."""

    def __init__(self, model_dir: Path, key: bytes, engine: Engine) -> None:
        self._model_dir = model_dir
        self._key = key
        self._engine = engine
        self._loaded: OrderedDict[str, ModelArtifact] = OrderedDict()
        self._lock = threading.Lock()

    def explain(self, version: str, features: dict[str, float]) -> Explanation | Unexplained:
        try:
            model = self._version(version)
            split = explainer_for(model.model)
            contributions, offset = split(features)
        except Exception as exc:  # any reason the version cannot explain: say it on the page
            log.warning("cannot explain with model version %s: %s", version, exc)
            return Unexplained(f"model version {version} could not be loaded here: {exc}")
        offset -= math.log(model.metadata.positive_weight)
        log_odds = sum(contributions.values()) + offset
        ranked = sorted(contributions.items(), key=lambda kv: kv[1], reverse=True)
        return Explanation(
            [(name, float(features.get(name, math.nan)), c) for name, c in ranked],
            offset,
            1.0 / (1.0 + math.exp(-max(min(log_odds, 700.0), -700.0))),
        )

    def reasons(
        self, version: str, rows: Sequence[Mapping[str, float]]
    ) -> list[tuple[str, ...]] | Unexplained:
        """The reason codes of payments ``version`` scored, from their stored features: what
        the flow stores for a payment it explains (:meth:`Scorer.reasons`), computed now."""
        try:
            model = self._version(version)
            # The thresholds decide nothing here: every row is explained.
            scorer = Scorer(
                model.model,
                version,
                review=1.0,
                decline=1.0,
                positive_weight=model.metadata.positive_weight,
            )
            return scorer.reasons([dict(features) for features in rows])
        except Exception as exc:  # any reason the version cannot explain: say it
            log.warning("cannot compute reasons with model version %s: %s", version, exc)
            return Unexplained(bounded(f"model version {version} could not compute them: {exc}"))

    def _version(self, version: str) -> ModelArtifact:
        with self._lock:
            if version in self._loaded:
                self._loaded.move_to_end(version)
                return self._loaded[version]
        try:
            loaded = artifact.load(self._model_dir, version, key=self._key)
        except artifact.ModelNotFoundError:
            loaded = self._from_mysql(version)
        with self._lock:
            self._loaded[version] = loaded
            while len(self._loaded) > KEEP:
                self._loaded.popitem(last=False)
        return loaded

    def _from_mysql(self, version: str) -> ModelArtifact:
        with self._engine.connect() as connection:
            row = fetch_version(connection, version)
        if row is None:
            raise artifact.ModelNotFoundError(
                f"model version {version} is neither under {self._model_dir} nor in model_versions"
            )
        bases: Callable[[str], ModelArtifact] = self._version
        return from_row(row, key=self._key, bases=bases)


def feature_values(features: dict[str, Any]) -> list[tuple[str, float]]:
    """The stored features in name order (when contributions cannot be recomputed)."""
    return sorted((name, float(value)) for name, value in features.items())


def reasons_shown(
    explainers: Explainers, rows: Iterable[Any], features: Mapping[str, Mapping[str, float]]
) -> dict[str, ShownReasons]:
    """Each stored row's reason codes by transaction id (``rows`` have ``transaction_id``,
    ``decision``, ``reason_codes`` and ``model_version``): the stored ones, or, for an approval
    stored without any, computed on demand from ``features[transaction_id]``, one batch per
    model version."""
    shown: dict[str, ShownReasons] = {}
    wanted: dict[str, list[str]] = {}
    for row in rows:
        if reasons_on_demand(row.decision, row.reason_codes):
            wanted.setdefault(row.model_version, []).append(row.transaction_id)
        else:
            shown[row.transaction_id] = ShownReasons(tuple(row.reason_codes), on_demand=False)
    for version, listed in wanted.items():
        for txid in (t for t in listed if t not in features):  # gone since the page was read
            shown[txid] = ShownReasons((), on_demand=True, why="its stored features were not found")
        ids = [t for t in listed if t in features]
        computed = explainers.reasons(version, [features[t] for t in ids]) if ids else []
        for i, txid in enumerate(ids):
            shown[txid] = (
                ShownReasons((), on_demand=True, why=computed.why)
                if isinstance(computed, Unexplained)
                else ShownReasons(computed[i], on_demand=True)
            )
    return shown


# ---------------------------------------------------------------------------- command line


@refusing("python -m review.explain", "analyst")
def main(argv: list[str] | None = None) -> int:
    """``python -m review.explain``: the reason codes of stored payments, by transaction id."""
    parser = Parser(
        prog="python -m review.explain",
        description=(
            "Print the reason codes of stored payments: stored ones, or for an approval (stored "
            "without any) computed on demand with the model version that scored it."
        ),
    )
    parser.add_argument("transaction_ids", nargs="+", metavar="TXID")
    parser.add_argument(
        "--contributions", action="store_true", help="also every feature's contribution"
    )
    parser.add_argument(
        "--recompute",
        action="store_true",
        help="compute the reasons of every payment named, stored or not (they must agree)",
    )
    args = parser.parse_args(argv)
    try:
        config = Config.from_env(os.environ)
        key = read_key(Path(config.model_key_file))
        engine = make_engine(config.analyst_mysql_dsn)  # storage/accounts.py: analyst
    except (ValueError, OSError) as exc:
        print(f"review.explain: cannot start: {exc}", file=sys.stderr)
        return 2
    try:
        return explain_command(
            Explainers(Path(config.model_dir), key, engine),
            engine,
            args.transaction_ids,
            contributions=args.contributions,
            recompute=args.recompute,
        )
    finally:
        engine.dispose()


def explain_command(
    explainers: Explainers,
    engine: Engine,
    transaction_ids: Sequence[str],
    *,
    contributions: bool = False,
    recompute: bool = False,
    out: Any = None,
    err: Any = None,
) -> int:
    """What ``main`` prints, on ``out`` (standard output) and ``err`` (standard error): one line
    per payment, ``TXID  DECISION  VERSION  reasons: A, B, C  (stored|on demand)``. Returns 1
    if a payment is not stored, its reasons cannot be computed, or (``recompute``) they differ
    from the stored ones; else 0."""
    out, err = out or sys.stdout, err or sys.stderr
    with engine.connect() as connection:
        found = queries.stored_reasons(connection, transaction_ids)
    status = 0
    for txid in transaction_ids:
        row = found.get(txid)
        if row is None:
            print(f"{bounded(txid, 200)}: no scored payment with this transaction id", file=err)
            status = 1
            continue
        if recompute:
            computed = explainers.reasons(row.model_version, [dict(row.features)])
            shown = (
                ShownReasons((), on_demand=True, why=computed.why)
                if isinstance(computed, Unexplained)
                else ShownReasons(computed[0], on_demand=True)
            )
        else:
            shown = reasons_shown(explainers, [row], {txid: row.features})[txid]
        if shown.why is not None:
            print(f"{bounded(txid, 200)}: {shown.why}", file=err)
            status = 1
            continue
        how = "on demand" if shown.on_demand else "stored"
        stored = list(row.reason_codes)
        if recompute and not reasons_on_demand(row.decision, stored):
            how = "recomputed, as stored"
            if list(shown.codes) != stored:
                how = f"recomputed; stored differ: {', '.join(stored) or 'none'}"
                status = 1
        print(
            f"{txid}  {row.decision}  {row.model_version}  "
            f"reasons: {', '.join(shown.codes) or 'none'}  ({how})",
            file=out,
        )
        if contributions:
            explained = explainers.explain(row.model_version, dict(row.features))
            if isinstance(explained, Explanation):
                for name, value, push in explained.contributions:
                    print(f"    {name:<32} {value:>14.6g} {push:+.4f}", file=out)
            else:
                print(f"{txid}: contributions not shown: {explained.why}", file=err)
                status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
