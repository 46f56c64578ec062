"""Retrain on every labelled payment stored in MySQL: a new version the flow goes on from.

    python -m model_state.retrain [--window-days 90] [--min-frauds 50] [--validation-days 7]
        [--label-delay-days D] [--min-gain 1] [--tolerance 0] [--family boosted] [--seed 7]
        [--model-dir DIR] [--force] [--candidate]

Online learning moves only the logistic regression's weights; the forest under them
(:mod:`model_state.boosted`) stays as pre-training fitted it. Run this on a schedule (weekly,
from cron or a systemd timer) to fit a new forest on everything labelled since:

1. Read every stored payment whose label has been learned and whose event time falls in the
   last ``--window-days`` (before the newest stored payment), with the features it was scored
   with (:func:`storage.labels.labelled_since`): point in time, never recomputed; and the
   probability the flow gave it then.
2. Keep the **training set** (:func:`model_state.offline.train.training_mask`): mature
   payments only, made at least ``--label-delay-days`` (``PAYSCORE_LABEL_DELAY_DAYS``) before
   the newest stored payment (their labels are final; a fraud reported sooner is the online
   learner's), and none of the history's first 30 days (its warm-up, when every feature window
   was filling) once enough mature frauds come after them. Refuse with a clear error when fewer
   than ``--min-frauds`` of them are frauds.
3. Fit a **challenger** of ``--family`` on those made before the **most recent mature labels**,
   the ``--validation-days`` (7) that end ``--label-delay-days`` before the newest payment
   (:func:`validate`).
4. Compare it there with the **champion** (the newest version in ``model_versions``) as the
   flow actually ranked those payments: the probability it stored when it scored them
   (:mod:`model_state.offline.gate`). A challenger whose average precision on them does not
   beat the champion's by ``--min-gain`` (1) standard errors of the difference (a paired
   bootstrap), less ``--tolerance`` (0), is refused: nothing changes and the command says why
   (exit status 3).
5. Otherwise fit the new version again on the whole training set, the most recent mature days
   included, write it under ``--model-dir`` (its metadata keeps the validation figures and the
   drift reference of every row, :func:`model_state.offline.train.with_drift_reference`) and
   record it in ``model_versions``.

Why the champion is judged by its stored scores (issue 22): scored anew, today's champion has
learned those payments' labels online since, and the previous retrain, fitted on the very rows
the challenger is fitted on, meets its own twin; the gate then accepted every retrain, and the
refits it let through ranked later weeks worse (their training sets held the stream's warm-up).
The stored scores are what the versions of those days knew: the challenger must rank better
than the flow did, on payments neither had learned.

``--force`` (an operator's override, e.g. when the champion's features changed) skips steps 3
and 4. ``--candidate`` keeps the new version (accepted or refused by steps 3 and 4, fitted on
every row) in ``model_candidates`` instead of publishing it: it can then shadow the champion on
live traffic and be promoted (``python -m model_state.shadow``).

Its name starts a new lineage (``v00002`` after ``v00001.000123``), which sorts after every
version before it: each process's registry scores with it within ``model_refresh_seconds``,
and the flow's learner adopts it at its next batch of labels (:mod:`dataflows.learning`) and
publishes ``v00002.000001`` and on from it. Labels the learner learns while the retrain runs
are in the old lineage only.

The evaluation (``python -m model_state.evaluate --retrain-days 7``) runs the same steps, by
these functions, weekly over the held-out stream.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
from sqlalchemy import Engine, func, select

from features.catalog import FEATURE_NAMES
from model_state import artifact
from model_state.offline import train
from model_state.offline.gate import (
    DEFAULT_MIN_GAIN,
    DEFAULT_TOLERANCE,
    NotEnoughLabelsError,
    Verdict,
    judge,
)
from model_state.sign import command_key
from model_state.stored_versions import NewerVersionsInMySQL, row_fault
from settings.arguments import Parser, within
from settings.config import Config
from storage import shadow
from storage.engine import LockBusyError, make_engine, named_lock
from storage.labels import labelled_since
from storage.refusals import refusing
from storage.rows import model_version_row
from storage.tables import model_versions, scored_payments

DEFAULT_WINDOW_DAYS = 90
DEFAULT_MIN_FRAUDS = 50
DEFAULT_VALIDATION_DAYS = 7
DEFAULT_MATURITY_DAYS = 7.0
"""With ``--label-delay-days``: a payment's label is final (mature) once it is this old; the
gate's hold-out ends here. The command's default is ``PAYSCORE_LABEL_DELAY_DAYS``."""
REFUSED_EXIT_STATUS = 3


class Validation(msgspec.Struct, frozen=True, kw_only=True):
    """A challenger fitted on the rows before the hold-out and measured on it."""

    average_precision: float | None  # None: no hold-out, or it lacks a class
    hold_out: list[tuple[datetime, dict[str, float], bool]]
    hold_out_index: list[int]  # where each hold-out row is in the rows validated
    scores: list[float]  # the challenger's probability of each hold-out row
    metrics: dict[str, float]


def mature_split(
    rows: train.Rows, *, now: datetime, maturity: timedelta, validation_days: int
) -> tuple[list[int], list[int]]:
    """The gate's hold-out, the **most recent mature labels**: the rows (indices into ``rows``)
    of the ``validation_days`` that end ``maturity`` before ``now`` (older payments' labels are
    final: a fraud is reported within the label delay, or the payment was learned as
    legitimate); and the rows before them, that the challenger it is measured with learns."""
    stop = now - maturity
    begin = stop - timedelta(days=validation_days)
    learn = [i for i, r in enumerate(rows) if r[0] < begin]
    hold_out = [i for i, r in enumerate(rows) if begin <= r[0] < stop]
    return learn, hold_out


def validate(
    rows: train.Rows,
    model_dir: Path,
    *,
    now: datetime,
    maturity: timedelta,
    validation_days: int = DEFAULT_VALIDATION_DAYS,
    family: train.Family = train.DEFAULT_FAMILY,
    seed: int = 7,
) -> Validation:
    """A challenger fitted on the rows before the hold-out (:func:`mature_split`), measured on
    it."""
    learn, hold_out = mature_split(
        rows, now=now, maturity=maturity, validation_days=validation_days
    )
    held = [rows[i] for i in hold_out]
    if not learn or not hold_out:
        return Validation(
            average_precision=None, hold_out=held, hold_out_index=hold_out, scores=[], metrics={}
        )
    model, _, _ = train.fit_version(
        [rows[i] for i in learn], model_dir, validation_days=0, seed=seed, family=family,
        version="-",
    )  # fmt: skip
    metrics = train.evaluate(model, held, 1.0)
    scores = train.probabilities(model, [r[1] for r in held], 1.0)
    return Validation(
        average_precision=metrics.get("average_precision"), hold_out=held,
        hold_out_index=hold_out, scores=scores, metrics=metrics,
    )  # fmt: skip


def fit_final(
    rows: train.Rows,
    model_dir: Path,
    *,
    version: str,
    parent_version: str | None,
    metrics: dict[str, float],
    family: train.Family = train.DEFAULT_FAMILY,
    seed: int = 7,
) -> tuple[Any, artifact.ModelMetadata]:
    """The new version fitted on every row, the newest included, with the validation's
    figures and the drift reference of every row; not signed yet."""
    model, metadata, _ = train.fit_version(
        rows,
        model_dir,
        validation_days=0,
        seed=seed,
        family=family,
        origin="retrained",
        parent_version=parent_version,
        version=version,
    )
    metadata = msgspec.structs.replace(metadata, metrics=metrics)
    return model, train.with_drift_reference(model, metadata, rows)


def challenge(
    rows: train.Rows,
    champion: artifact.ModelArtifact | None,
    model_dir: Path,
    *,
    key: bytes,
    version: str,
    now: datetime,
    maturity: timedelta,
    validation_days: int = DEFAULT_VALIDATION_DAYS,
    tolerance: float = DEFAULT_TOLERANCE,
    family: train.Family = train.DEFAULT_FAMILY,
    seed: int = 7,
    force: bool = False,
    live: Sequence[float | None] | None = None,
    min_gain: float = DEFAULT_MIN_GAIN,
) -> tuple[artifact.ModelArtifact | None, Verdict]:
    """Steps 3 to 5: the new version ``version`` (signed, not written yet), or None if the
    challenger ranks below the champion on the most recent mature labels by more than
    ``tolerance``; and the verdict. ``rows`` is the training set
    (:func:`model_state.offline.train.training_set`), ``live`` what the flow scored each of
    them (:func:`judge`).

    ``force`` (an operator's override) learns from every row without comparing.
    """
    nan = float("nan")
    verdict = Verdict(
        champion=None, challenger_ap=nan, champion_ap=nan, tolerance=nan, rows=0, frauds=0
    )
    metrics: dict[str, float] = {}
    if not force:
        validation = validate(
            rows,
            model_dir,
            now=now,
            maturity=maturity,
            validation_days=validation_days,
            family=family,
            seed=seed,
        )
        verdict = judge(validation, champion, tolerance, live, min_gain=min_gain)
        if not verdict.accepted:
            return None, verdict
        metrics = validation.metrics | {"champion_average_precision": verdict.champion_ap}
    model, metadata = fit_final(
        rows,
        model_dir,
        version=version,
        parent_version=champion.version if champion else None,
        metrics=metrics,
        family=family,
        seed=seed,
    )
    return artifact.make(model, metadata, key=key), verdict


class Stored(msgspec.Struct, frozen=True, kw_only=True):
    """What a retrain reads: labelled payments of its window, what the flow scored each of
    them, and the history's first payment (where its warm-up began)."""

    rows: list[tuple[datetime, dict[str, float], bool]]
    live: list[float | None]
    skipped: int  # rows whose stored features miss a catalogue feature
    newest: datetime | None  # the newest stored payment's event time (None: nothing stored)
    first: datetime | None  # the oldest stored payment's


def stored_rows(engine: Engine, window: timedelta) -> Stored:
    """Labelled payments of the last ``window`` before the newest stored payment."""
    with engine.connect() as connection:
        newest, first = connection.execute(
            select(func.max(scored_payments.c.event_time), func.min(scored_payments.c.event_time))
        ).one()
        if newest is None:
            return Stored(rows=[], live=[], skipped=0, newest=None, first=None)
        newest, first = newest.replace(tzinfo=UTC), first.replace(tzinfo=UTC)
        examples = labelled_since(connection, newest - window)
    rows: train.Rows = []
    live: list[float | None] = []
    skipped = 0
    for e in examples:
        if all(name in e.features for name in FEATURE_NAMES):
            rows.append((e.event_time.replace(tzinfo=UTC), e.features, e.is_fraud))
            live.append(e.probability)
        else:
            skipped += 1
    return Stored(rows=rows, live=live, skipped=skipped, newest=newest, first=first)


def retrain(
    engine: Engine,
    model_dir: Path,
    *,
    key: bytes,
    window: timedelta = timedelta(days=DEFAULT_WINDOW_DAYS),
    min_frauds: int = DEFAULT_MIN_FRAUDS,
    validation_days: int = DEFAULT_VALIDATION_DAYS,
    maturity: timedelta = timedelta(days=DEFAULT_MATURITY_DAYS),
    family: train.Family = train.DEFAULT_FAMILY,
    tolerance: float = DEFAULT_TOLERANCE,
    min_gain: float = DEFAULT_MIN_GAIN,
    seed: int = 7,
    force: bool = False,
    candidate: bool = False,
) -> tuple[artifact.ModelArtifact | None, Verdict]:
    """Steps 1-5 of the module docstring: the new version (None if refused) and the verdict.

    The champion is the newest version in ``model_versions``. With ``candidate`` the version
    (fitted on every row, accepted by the gate or not) is kept in ``model_candidates`` with the
    verdict instead: it may shadow the champion and be promoted, but never scores by itself.

    Two retrains on one database run one after the other (a MySQL named lock, waited for up
    to :data:`RETRAIN_LOCK_SECONDS`): at once, both chose the same new lineage and the second
    to finish stopped at its insert, ``(1062, "Duplicate entry 'v00002' ...")``, its work lost.
    The second now starts after the first has recorded, and its champion is the first's.
    """
    with named_lock(engine, "retrain", RETRAIN_LOCK_SECONDS, "another retrain"):
        return _retrain(
            engine, model_dir, key=key, window=window, min_frauds=min_frauds,
            validation_days=validation_days, maturity=maturity, family=family,
            tolerance=tolerance, min_gain=min_gain, seed=seed, force=force, candidate=candidate,
        )  # fmt: skip


RETRAIN_LOCK_SECONDS = 3600  # how long a retrain waits for another on the same database


def _retrain(
    engine: Engine,
    model_dir: Path,
    *,
    key: bytes,
    window: timedelta,
    min_frauds: int,
    validation_days: int,
    maturity: timedelta,
    family: train.Family,
    tolerance: float,
    min_gain: float,
    seed: int,
    force: bool,
    candidate: bool,
) -> tuple[artifact.ModelArtifact | None, Verdict]:
    stored = stored_rows(engine, window)
    frauds = sum(1 for r in stored.rows if r[2])
    if frauds < min_frauds:
        raise NotEnoughLabelsError(
            f"retrain: {len(stored.rows)} labelled payments stored in the last {window.days} "
            f"days, {frauds} of them frauds; at least {min_frauds} frauds are needed "
            f"({stored.skipped} rows skipped for missing features)"
        )
    assert stored.first is not None and stored.newest is not None
    keep = train.training_mask(
        np.array([r[0].timestamp() for r in stored.rows]),
        np.array([r[2] for r in stored.rows], dtype=bool),
        first=stored.first.timestamp(),
        now=stored.newest.timestamp(),
        maturity=maturity.total_seconds(),
    ).tolist()
    rows = [r for r, k in zip(stored.rows, keep, strict=True) if k]
    live = [p for p, k in zip(stored.live, keep, strict=True) if k]
    mature_frauds = sum(1 for r in rows if r[2])
    if mature_frauds < min_frauds or mature_frauds == len(rows):
        raise NotEnoughLabelsError(
            f"retrain: {len(rows)} of the {len(stored.rows)} labelled payments are mature (made "
            f"at least {maturity.total_seconds() / 86_400:g} days, the label delay, before the "
            f"newest stored payment) and past the history's warm-up, {mature_frauds} of them "
            f"frauds; at least {min_frauds} frauds and some legitimate payments are needed"
        )
    url = engine.url.render_as_string(hide_password=False)
    champion = NewerVersionsInMySQL(url, engine, key=key)(None)  # the newest version recorded
    # A new lineage, after every version on disk and every one the flow has recorded.
    lineages = [artifact.version_number(artifact.next_version(model_dir))]
    if champion is not None:
        lineages.append(artifact.version_number(champion.version.partition(".")[0]) + 1)
    with engine.connect() as connection:  # candidates hold lineage numbers too; refused rows none
        lineages.append(shadow.newest_lineage(connection, lambda r: row_fault(r, key=key)) + 1)
        lineages.append(shadow.free_lineage(connection, max(lineages)))

    def fit(*, force: bool) -> tuple[artifact.ModelArtifact | None, Verdict]:
        return challenge(
            rows,
            champion,
            model_dir,
            key=key,
            version=artifact.version_name(max(lineages)),
            now=stored.newest,
            maturity=maturity,
            validation_days=validation_days,
            tolerance=tolerance,
            family=family,
            seed=seed,
            force=force,
            live=live,
            min_gain=min_gain,
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


@refusing("python -m model_state.retrain", "models")
def main(argv: list[str] | None = None) -> None:
    parser = Parser(
        prog="python -m model_state.retrain",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--window-days", type=within(int, 1, 36_500), default=DEFAULT_WINDOW_DAYS)
    parser.add_argument("--min-frauds", type=within(int, 1, 10**9), default=DEFAULT_MIN_FRAUDS)
    parser.add_argument(
        "--validation-days", type=within(int, 1, 36_500), default=DEFAULT_VALIDATION_DAYS
    )
    parser.add_argument("--tolerance", type=within(float, -1, 1), default=DEFAULT_TOLERANCE)
    parser.add_argument(
        "--min-gain",
        type=within(float, -1_000, 1_000),
        default=DEFAULT_MIN_GAIN,
        help="the challenger must beat the champion by this many standard errors of the AP "
        "difference (paired bootstrap over the hold-out; 0: any gain)",
    )
    parser.add_argument(
        "--label-delay-days",
        type=within(float, 0, 36_500),  # 0: every stored label final at once
        default=None,
        help="a payment's label is final once it is this old: the gate compares on the "
        "--validation-days that end here (default: PAYSCORE_LABEL_DELAY_DAYS)",
    )
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
    parser.add_argument("--seed", type=within(int, 0, train.MOST_SEED), default=7)
    parser.add_argument("--model-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    config = Config.from_env(os.environ)
    engine = make_engine(config.models_mysql_dsn)
    try:
        fitted, verdict = retrain(
            engine,
            args.model_dir or Path(config.model_dir),
            key=command_key("python -m model_state.retrain", Path(config.model_key_file)),
            window=timedelta(days=args.window_days),
            min_frauds=args.min_frauds,
            validation_days=args.validation_days,
            maturity=timedelta(
                days=config.label_delay_days
                if args.label_delay_days is None
                else args.label_delay_days
            ),
            tolerance=args.tolerance,
            min_gain=args.min_gain,
            family=args.family,
            seed=args.seed,
            force=args.force,
            candidate=args.candidate,
        )
    except (NotEnoughLabelsError, LockBusyError) as exc:
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
