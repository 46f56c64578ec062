"""Shadow scoring and promotion: a challenger scores live traffic beside the champion, the two are
compared on the payments labelled since, and an operator promotes one, or rolls back.

    python -m model_state.shadow status
    python -m model_state.shadow start VERSION [--by NAME] [--note TEXT]
    python -m model_state.shadow stop [--by NAME]
    python -m model_state.shadow compare [--version VERSION] [--top 10] [--k 100]
    python -m model_state.shadow promote VERSION [--by NAME] [--note TEXT]

- ``start``: VERSION (a recorded version, or a candidate kept by ``python -m
  model_state.retrain --candidate``) scores every payment beside the champion, in every flow
  process, within ``PAYSCORE_MODEL_REFRESH_SECONDS``. Its probability is stored with each
  payment (``scored_payments.shadow_probability``, ``shadow_version``); its decision never
  reaches the payment. One challenger at a time: starting another replaces it. The flow's
  ``PAYSCORE_SHADOW=false`` switches shadow scoring off whatever is recorded.
- ``compare``: champion and challenger side by side on the payments the challenger shadowed
  that have a label: ROC AUC, average precision, card precision@k (the Fraud Detection
  Handbook's, per day of event time), their decision rates at the flow's thresholds on every
  shadowed payment, and the payments on which their decisions differ, the widest gaps first.
  The same comparison is a page of the review queue (``/shadow``).
- ``promote``: VERSION becomes the champion. It is recorded again as a new lineage (the next
  ``vNNNNN``, its parent VERSION, origin ``promoted``, signed), in ``model_versions`` and in
  ``PAYSCORE_MODEL_DIR``: every process's registry scores with it within the refresh interval,
  and the learner goes on from it. Rolling back is promoting an older version. Promotion ends
  the shadow.

Every action is recorded in ``model_actions`` with who decided it and when.
"""

from __future__ import annotations

import argparse
import getpass
import hashlib
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
from sqlalchemy import Engine, select

from features.bounded import bounded
from model_state import artifact, signing
from model_state.offline.eval_metrics import card_precision_at_k, ranking_metrics
from model_state.offline.retrain import record
from model_state.scorer import decide
from model_state.sign import command_key
from model_state.stored_versions import identity_problems, row_fault
from settings.arguments import Parser, within
from settings.config import Config
from storage import shadow
from storage.engine import make_engine
from storage.refusals import refusing
from storage.tables import model_actions, scored_payments


@dataclass(frozen=True)
class Side:
    """One model's figures in a comparison."""

    version: str
    roc_auc: float
    average_precision: float
    card_precision: float
    rates: dict[str, float]  # decision -> share of the shadowed payments


@dataclass(frozen=True)
class Comparison:
    challenger: str
    since: datetime
    shadowed: int  # payments scored by both
    labelled: int  # of them, with a label
    frauds: int
    champion: Side
    shadow: Side
    disagreements: int  # payments whose decisions differ
    widest: list[dict[str, Any]]  # the disagreements with the widest probability gaps

    def lines(self) -> list[str]:
        c, s = self.champion, self.shadow
        out = [
            f"challenger {self.challenger} shadowing since {self.since:%Y-%m-%d %H:%M:%S} UTC: "
            f"{self.shadowed} payments scored by both, {self.labelled} labelled "
            f"({self.frauds} frauds)",
            f"{'':<26}{'champion':>16}{'challenger':>16}",
            f"{'version':<26}{c.version:>16}{s.version:>16}",
            f"{'ROC AUC':<26}{c.roc_auc:>16.4f}{s.roc_auc:>16.4f}",
            f"{'average precision':<26}{c.average_precision:>16.4f}{s.average_precision:>16.4f}",
            f"{'card precision@k':<26}{c.card_precision:>16.4f}{s.card_precision:>16.4f}",
        ]
        for decision in ("approve", "review", "decline"):
            out.append(
                f"{decision + ' rate':<26}{c.rates.get(decision, 0.0):>16.4f}"
                f"{s.rates.get(decision, 0.0):>16.4f}"
            )
        out.append(f"decisions differ on {self.disagreements} payments; the widest gaps:")
        out += [
            f"  {w['transaction_id']}: champion {w['champion']:.4f} ({w['champion_decision']}),"
            f" challenger {w['challenger']:.4f} ({w['challenger_decision']}),"
            f" label {w['label']}"
            for w in self.widest
        ]
        return out


def compare(
    engine: Engine,
    *,
    review: float,
    decline: float,
    version: str | None = None,
    k: int = 100,
    top: int = 10,
) -> Comparison:
    """The comparison of the module docstring, for the challenger shadowing now (or the last
    shadow of ``version``)."""
    sp, ma = scored_payments, model_actions
    with engine.connect() as connection:
        active = shadow.challenger(connection)
        if version is None:
            if active is None:
                raise SystemExit("no challenger is shadowing; name one with --version")
            version, since = active
        else:
            since = connection.execute(
                select(ma.c.decided_at)
                .where(ma.c.action == "shadow", ma.c.version == version)
                .order_by(ma.c.id.desc())
                .limit(1)
            ).scalar_one_or_none()
            if since is None:
                raise SystemExit(f"{version} never shadowed the champion (model_actions)")
        rows = connection.execute(
            select(
                sp.c.transaction_id,
                sp.c.card_id,
                sp.c.event_time,
                sp.c.model_version,
                sp.c.fraud_probability,
                sp.c.shadow_probability,
                sp.c.label_is_fraud,
            ).where(sp.c.shadow_version == version, sp.c.scored_at >= since)
        ).all()
    if not rows:
        raise SystemExit(f"no payment was scored by {version} in its shadow since {since}")
    champion_p = np.array([r.fraud_probability for r in rows])
    shadow_p = np.array([r.shadow_probability for r in rows])
    champion_d = [decide(p, review=review, decline=decline) for p in champion_p.tolist()]
    shadow_d = [decide(p, review=review, decline=decline) for p in shadow_p.tolist()]
    labelled = np.array([r.label_is_fraud is not None for r in rows])
    truth = np.array([bool(r.label_is_fraud) for r in rows])[labelled]
    days = np.array([r.event_time.toordinal() for r in rows])[labelled]
    cards = np.unique([r.card_id for r in rows], return_inverse=True)[1].ravel()[labelled]
    champions = sorted({r.model_version for r in rows})

    def side(name: str, p: np.ndarray, decisions: list[str]) -> Side:
        ranked = ranking_metrics(truth, p[labelled])
        cp = card_precision_at_k(days, cards, p[labelled], truth, k) if labelled.any() else []
        return Side(
            version=name,
            roc_auc=ranked["roc_auc"],
            average_precision=ranked["average_precision"],
            card_precision=float(np.mean(cp)) if len(cp) else float("nan"),
            rates={d: decisions.count(d) / len(decisions) for d in set(decisions)},
        )

    differ = [i for i, (a, b) in enumerate(zip(champion_d, shadow_d, strict=True)) if a != b]
    differ.sort(key=lambda i: -abs(champion_p[i] - shadow_p[i]))
    return Comparison(
        challenger=version,
        since=since,
        shadowed=len(rows),
        labelled=int(labelled.sum()),
        frauds=int(truth.sum()),
        champion=side(",".join(champions), champion_p, champion_d),
        shadow=side(version, shadow_p, shadow_d),
        disagreements=len(differ),
        widest=[
            {
                "transaction_id": rows[i].transaction_id,
                "champion": float(champion_p[i]),
                "champion_decision": champion_d[i],
                "challenger": float(shadow_p[i]),
                "challenger_decision": shadow_d[i],
                "label": rows[i].label_is_fraud
                if rows[i].label_is_fraud is None
                else bool(rows[i].label_is_fraud),
            }
            for i in differ[:top]
        ],
    )


def promote(
    engine: Engine, model_dir: Path, version: str, *, key: bytes, by: str, note: str | None
) -> artifact.ModelArtifact:
    """Record ``version`` again as the next lineage (see the module docstring)."""
    with engine.connect() as connection:
        row = shadow.fetch_any(connection, version)
        lineage = shadow.newest_lineage(connection, lambda r: row_fault(r, key=key))
    if row is None:
        raise SystemExit(f"no recorded version or candidate is named {version}")
    metadata = msgspec.convert(row.metadata, artifact.ModelMetadata, strict=False)
    # Refuse what the key does not vouch for, before anything is recorded.
    signing.verify(metadata, key, where=f"model version {version}")
    problems = identity_problems(row, metadata)
    if problems:
        raise SystemExit(f"{version}: {'; '.join(problems)}; refusing to promote it")
    if hashlib.sha256(row.artifact).hexdigest() != metadata.content_hash:
        raise SystemExit(f"{version}: its stored artifact does not match its signed content hash")
    on_disk = artifact.version_number(artifact.next_version(model_dir)) if model_dir.exists() else 1
    with engine.connect() as connection:  # past rows forged at the next numbers
        name = artifact.version_name(shadow.free_lineage(connection, max(lineage + 1, on_disk)))
    promoted = signing.sign(
        msgspec.structs.replace(
            metadata,
            version=name,
            parent_version=version,
            origin="promoted",
            created_at=datetime.now(UTC),
            signature="",
        ),
        key,
    )
    made = artifact.ModelArtifact(None, promoted, row.artifact)
    # MySQL first, as a retrain does: a version on disk is always one every process can find.
    record(engine, made, str(model_dir / name))
    artifact.write(row.artifact, promoted, model_dir)
    with engine.begin() as connection:
        shadow.record_action(connection, "promote", version, by=by, note=note, promoted_as=name)
    return made


DECIDER_CHARS = 64  # model_actions.decided_by holds 128
NOTE_CHARS = 2_000  # model_actions.note: a TEXT of 65,535 bytes


def _decider(text: str) -> str:
    """``--by``: 1 to 64 printable characters (200 of them were MySQL's "Data too long for
    column 'decided_by'", a traceback after the command had checked everything else)."""
    if not 1 <= len(text) <= DECIDER_CHARS or not text.isprintable():
        raise argparse.ArgumentTypeError(
            f"expected 1 to {DECIDER_CHARS} printable characters; got {bounded(text, 80)!r}"
        )
    return text


def _note(text: str) -> str:
    """``--note``: at most 2,000 characters (70,000 were MySQL's "Data too long for column
    'note'", a traceback)."""
    if len(text) > NOTE_CHARS:
        raise argparse.ArgumentTypeError(
            f"expected at most {NOTE_CHARS:,} characters; got {len(text):,}"
        )
    return text


@refusing("python -m model_state.shadow", "models")
def main(argv: list[str] | None = None) -> None:
    parser = Parser(
        prog="python -m model_state.shadow",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("status", help="the challenger shadowing now, if any")
    start = commands.add_parser("start", help="VERSION shadows the champion")
    start.add_argument("version")
    stop = commands.add_parser("stop", help="end the shadow")
    versus = commands.add_parser("compare", help="champion and challenger side by side")
    versus.add_argument("--version", help="a challenger that shadowed before (default: now)")
    versus.add_argument(
        "--top", type=within(int, 0, 10_000), default=10, help="disagreements listed"
    )
    versus.add_argument(
        "--k", type=within(int, 1, 1_000_000), default=100, help="cards checked a day"
    )
    up = commands.add_parser("promote", help="VERSION becomes the champion (or a rollback)")
    up.add_argument("version")
    for sub in (start, stop, up):
        sub.add_argument(
            "--by", type=_decider, default=getpass.getuser(), help="who decides (recorded)"
        )
        sub.add_argument("--note", type=_note, default=None)
    args = parser.parse_args(argv)
    config = Config.from_env(os.environ)
    engine = make_engine(config.models_mysql_dsn)
    try:
        run(args, config, engine)
    finally:
        engine.dispose()


def run(args: argparse.Namespace, config: Config, engine: Engine) -> None:
    if args.command == "status":
        with engine.connect() as connection:
            active = shadow.challenger(connection)
        print(f"{active[0]} shadows since {active[1]:%Y-%m-%d %H:%M:%S} UTC" if active else "none")
    elif args.command == "start":
        with engine.begin() as connection:
            if shadow.fetch_any(connection, args.version) is None:
                raise SystemExit(f"no recorded version or candidate is named {args.version}")
            shadow.record_action(connection, "shadow", args.version, by=args.by, note=args.note)
        print(f"{args.version} shadows the champion from now (every process within "
              f"{config.model_refresh_seconds:g} s)")  # fmt: skip
    elif args.command == "stop":
        with engine.begin() as connection:
            active = shadow.challenger(connection)
            if active is None:
                raise SystemExit("no challenger is shadowing")
            shadow.record_action(connection, "unshadow", active[0], by=args.by, note=args.note)
        print(f"{active[0]} stops shadowing")
    elif args.command == "compare":
        comparison = compare(
            engine,
            review=config.review_threshold,
            decline=config.decline_threshold,
            version=args.version,
            k=args.k,
            top=args.top,
        )
        print("\n".join(comparison.lines()))
    elif args.command == "promote":
        made = promote(
            engine,
            Path(config.model_dir),
            args.version,
            key=command_key("python -m model_state.shadow", Path(config.model_key_file)),
            by=args.by,
            note=args.note,
        )
        print(
            f"{args.version} promoted as {made.version}: every process scores with it within "
            f"{config.model_refresh_seconds:g} s"
        )
