"""Retrain on every labelled payment stored in MySQL: a new version the flow goes on from.

    python -m model_state.retrain [--window-days 90] [--min-frauds 50] [--validation-days 7]
        [--tolerance 0.01] [--family boosted] [--seed 7] [--model-dir DIR] [--force]
        [--candidate]

Online learning moves only the logistic regression's weights; the forest under them
(:mod:`model_state.boosted`) stays as pre-training fitted it. Run this on a schedule (weekly,
from cron or a systemd timer) to fit a new forest on everything labelled since:

1. Read every stored payment whose label has been learned and whose event time falls in the
   last ``--window-days`` (before the newest stored payment), with the features it was scored
   with (:func:`storage.labels.labelled_since`): point in time, never recomputed.
2. Refuse with a clear error when fewer than ``--min-frauds`` of them are frauds.
3. Fit a **challenger** of ``--family`` on all of them but the last ``--validation-days`` (7)
   (:func:`model_state.offline.train.fit_version`, origin ``retrained``, its parent the newest
   version in ``model_versions``, the **champion**).
4. Score those last days with both. A challenger whose average precision on them falls below
   the champion's by more than ``--tolerance`` (0.01, :data:`DEFAULT_TOLERANCE`) is refused:
   nothing changes and the command says why (exit status 3). So a store that lacks the history
   the champion learned from cannot make scoring worse.
5. Otherwise fit the new version again on every row, the last days included, write it under
   ``--model-dir`` (its metadata keeps the validation figures and the drift reference of every
   row, :func:`model_state.offline.train.with_drift_reference`) and record it in
   ``model_versions``.

``--force`` (an operator's override, e.g. when the champion's features changed) skips steps 3
and 4. ``--candidate`` keeps the new version (accepted or refused by steps 3 and 4, fitted on
every row) in ``model_candidates`` instead of publishing it: it can then shadow the champion on
live traffic and be promoted (``python -m model_state.shadow``).

Its name starts a new lineage (``v00002`` after ``v00001.000123``), which sorts after every
version before it: each process's registry scores with it within ``model_refresh_seconds``,
and the flow's learner adopts it at its next batch of labels (:mod:`dataflows.learning`) and
publishes ``v00002.000001`` and on from it. Labels the learner learns while the retrain runs
are in the old lineage only.

The evaluation (``python -m model_state.evaluate --retrain-days 7``) runs :func:`challenge`
weekly over the held-out stream; retraining is what lifts the online model above the offline
reference there.
"""

from __future__ import annotations

import argparse
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
from sklearn.metrics import average_precision_score
from sqlalchemy import Engine, func, select

from features.catalog import FEATURE_NAMES
from model_state import artifact, signing
from model_state.offline import train
from model_state.scorer import Scorer
from model_state.stored_versions import NewerVersionsInMySQL
from settings.config import Config
from storage import shadow
from storage.engine import make_engine
from storage.labels import labelled_since
from storage.rows import model_version_row
from storage.tables import model_versions, scored_payments

DEFAULT_WINDOW_DAYS = 90
DEFAULT_MIN_FRAUDS = 50
DEFAULT_VALIDATION_DAYS = 7
DEFAULT_TOLERANCE = 0.01
"""A challenger may rank this much below the champion (average precision) and still replace it.
A week of the evaluation's stream holds about 120 frauds, on which average precision has a
sampling error of roughly 0.03 (estimated as sqrt(AP (1 - AP) / frauds), not measured); a
challenger has learned from more labels. A clearly worse one is refused."""
REFUSED_EXIT_STATUS = 3


class NotEnoughLabelsError(ValueError):
    """Too few labelled frauds stored to fit a model worth scoring with."""


class Verdict(msgspec.Struct, frozen=True, kw_only=True):
    """Challenger against champion on the newest labelled days."""

    champion: str | None
    challenger_ap: float
    champion_ap: float
    tolerance: float
    rows: int
    frauds: int

    @property
    def accepted(self) -> bool:
        return self.challenger_ap >= self.champion_ap - self.tolerance

    def __str__(self) -> str:
        if self.rows == 0:
            return "not compared with the champion (forced)"
        return (
            f"average precision on the last {self.rows} labelled payments ({self.frauds} frauds):"
            f" challenger {self.challenger_ap:.4f}, champion {self.champion or '-'}"
            f" {self.champion_ap:.4f} (tolerance {self.tolerance:g})"
        )


def challenge(
    rows: train.Rows,
    champion: artifact.ModelArtifact | None,
    model_dir: Path,
    *,
    key: bytes,
    version: str,
    validation_days: int = DEFAULT_VALIDATION_DAYS,
    tolerance: float = DEFAULT_TOLERANCE,
    family: train.Family = train.DEFAULT_FAMILY,
    seed: int = 7,
    force: bool = False,
) -> tuple[artifact.ModelArtifact | None, Verdict]:
    """Steps 3 to 5: the new version ``version`` (signed, not written yet), or None if the
    challenger ranks below the champion by more than ``tolerance``; and the verdict.

    ``force`` (an operator's override) learns from every row without comparing.
    """
    options: dict[str, Any] = {
        "seed": seed,
        "family": family,
        "origin": "retrained",
        "parent_version": champion.version if champion else None,
        "version": version,
    }
    nan = float("nan")
    verdict = Verdict(
        champion=None, challenger_ap=nan, champion_ap=nan, tolerance=nan, rows=0, frauds=0
    )
    metrics: dict[str, float] = {}
    if not force:
        _, metadata, hold_out = train.fit_version(
            rows, model_dir, validation_days=validation_days, **options
        )
        truth = [r[2] for r in hold_out]
        frauds = sum(truth)
        if not 0 < frauds < len(truth):
            raise NotEnoughLabelsError(
                f"retrain: the last {validation_days} days hold {len(truth)} labelled payments, "
                f"{frauds} of them frauds: nothing to compare challenger and champion on"
            )
        champion_ap = float("-inf")
        if champion is not None:
            scorer = Scorer(
                champion.model,
                champion.version,
                review=1.0,
                decline=1.0,
                positive_weight=champion.metadata.positive_weight,
            )
            scores = [s.probability for s in scorer.score_batch([r[1] for r in hold_out])]
            champion_ap = float(average_precision_score(truth, scores))
        verdict = Verdict(
            champion=champion.version if champion else None,
            challenger_ap=metadata.metrics["average_precision"],
            champion_ap=champion_ap,
            tolerance=tolerance,
            rows=len(truth),
            frauds=frauds,
        )
        if not verdict.accepted:
            return None, verdict
        metrics = metadata.metrics | {"champion_average_precision": champion_ap}
    # Accepted: learn from every row, the newest days included; keep the validation figures.
    model, metadata, _ = train.fit_version(rows, model_dir, validation_days=0, **options)
    metadata = msgspec.structs.replace(metadata, metrics=metrics)
    metadata = train.with_drift_reference(model, metadata, rows)
    return artifact.make(model, metadata, key=key), verdict


def stored_rows(engine: Engine, window: timedelta) -> tuple[train.Rows, int]:
    """Labelled payments of the last ``window`` before the newest stored payment, and how many
    rows were skipped because their stored features miss a catalogue feature."""
    with engine.connect() as connection:
        newest = connection.execute(select(func.max(scored_payments.c.event_time))).scalar()
        if newest is None:
            return [], 0
        examples = labelled_since(connection, newest.replace(tzinfo=UTC) - window)
    rows: train.Rows = []
    skipped = 0
    for e in examples:
        if all(name in e.features for name in FEATURE_NAMES):
            rows.append((e.event_time.replace(tzinfo=UTC), e.features, e.is_fraud))
        else:
            skipped += 1
    return rows, skipped


def retrain(
    engine: Engine,
    model_dir: Path,
    *,
    key: bytes,
    window: timedelta = timedelta(days=DEFAULT_WINDOW_DAYS),
    min_frauds: int = DEFAULT_MIN_FRAUDS,
    validation_days: int = DEFAULT_VALIDATION_DAYS,
    family: train.Family = train.DEFAULT_FAMILY,
    tolerance: float = DEFAULT_TOLERANCE,
    seed: int = 7,
    force: bool = False,
    candidate: bool = False,
) -> tuple[artifact.ModelArtifact | None, Verdict]:
    """Steps 1-5 of the module docstring: the new version (None if refused) and the verdict.

    The champion is the newest version in ``model_versions``. With ``candidate`` the version
    (fitted on every row, accepted by the gate or not) is kept in ``model_candidates`` with the
    verdict instead: it may shadow the champion and be promoted, but never scores by itself.
    """
    rows, skipped = stored_rows(engine, window)
    frauds = sum(1 for r in rows if r[2])
    if frauds < min_frauds:
        raise NotEnoughLabelsError(
            f"retrain: {len(rows)} labelled payments stored in the last {window.days} days, "
            f"{frauds} of them frauds; at least {min_frauds} frauds are needed "
            f"({skipped} rows skipped for missing features)"
        )
    url = engine.url.render_as_string(hide_password=False)
    champion = NewerVersionsInMySQL(url, engine, key=key)(None)  # the newest version recorded
    # A new lineage, after every version on disk and every one the flow has recorded.
    lineages = [artifact.version_number(artifact.next_version(model_dir))]
    if champion is not None:
        lineages.append(artifact.version_number(champion.version.partition(".")[0]) + 1)
    with engine.connect() as connection:  # candidates hold lineage numbers too
        lineages.append(shadow.newest_lineage(connection) + 1)

    def fit(*, force: bool) -> tuple[artifact.ModelArtifact | None, Verdict]:
        return challenge(
            rows,
            champion,
            model_dir,
            key=key,
            version=artifact.version_name(max(lineages)),
            validation_days=validation_days,
            tolerance=tolerance,
            family=family,
            seed=seed,
            force=force,
        )

    fitted, verdict = fit(force=force)
    if candidate:
        if fitted is None:  # refused by the gate: fitted on every row all the same
            fitted, _ = fit(force=True)
        assert fitted is not None
        with engine.begin() as connection:
            shadow.record_candidate(
                connection, msgspec.to_builtins(fitted.metadata), fitted.payload, str(verdict)
            )
        return fitted, verdict
    if fitted is not None:
        # MySQL first: a version on disk is always one every process can find.
        record(engine, fitted, str(model_dir / fitted.version))
        artifact.write(fitted.payload, fitted.metadata, model_dir)
    return fitted, verdict


def record(engine: Engine, version: artifact.ModelArtifact, artifact_path: str) -> None:
    """``version`` as a row of ``model_versions``, where every process's registry finds it."""
    row = model_version_row(
        metadata=msgspec.to_builtins(version.metadata),
        payload=version.payload,
        artifact_path=artifact_path,
    )
    with engine.begin() as connection:
        connection.execute(model_versions.insert(), [row])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m model_state.retrain",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--window-days", type=int, default=DEFAULT_WINDOW_DAYS)
    parser.add_argument("--min-frauds", type=int, default=DEFAULT_MIN_FRAUDS)
    parser.add_argument("--validation-days", type=int, default=DEFAULT_VALIDATION_DAYS)
    parser.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE)
    parser.add_argument(
        "--force",
        action="store_true",
        help="learn from every row and publish without comparing with the champion",
    )
    parser.add_argument(
        "--candidate",
        action="store_true",
        help="keep the new version as a candidate to shadow the champion (python -m "
        "model_state.shadow), accepted by the gate or not, instead of publishing it",
    )
    parser.add_argument("--family", choices=train.FAMILIES, default=train.DEFAULT_FAMILY)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--model-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    config = Config.from_env(os.environ)
    engine = make_engine(config.models_mysql_dsn)
    try:
        fitted, verdict = retrain(
            engine,
            args.model_dir or Path(config.model_dir),
            key=signing.read_key(Path(config.model_key_file)),
            window=timedelta(days=args.window_days),
            min_frauds=args.min_frauds,
            validation_days=args.validation_days,
            tolerance=args.tolerance,
            family=args.family,
            seed=args.seed,
            force=args.force,
            candidate=args.candidate,
        )
    except NotEnoughLabelsError as exc:
        raise SystemExit(str(exc)) from None
    finally:
        engine.dispose()
    now = f"{datetime.now(UTC):%Y-%m-%d %H:%M:%S}"
    if args.candidate and fitted is not None:
        print(
            f"{now} kept {fitted.metadata.version} as a candidate (model_candidates); shadow it "
            f"with python -m model_state.shadow start {fitted.metadata.version}; {verdict}"
        )
        return
    if fitted is None:
        print(f"{now} retrain refused, the champion stays: {verdict}")
        raise SystemExit(REFUSED_EXIT_STATUS)
    m = fitted.metadata
    print(
        f"{now} wrote {m.version} (parent {m.parent_version}): {m.rows} rows, {m.frauds} frauds,"
        f" recorded in model_versions; {verdict}"
    )


if __name__ == "__main__":
    main()
