"""What landed in MySQL: scored payments by decision and model version, labels learned, every
label message by outcome, model versions, and dead letters with their reasons.

python -m storage.report               # text, on standard output
python -m storage.report --html PATH   # a one-page HTML report (storage/report_html.py)
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from sqlalchemy import Engine, Integer, cast, func, select

from features.bounded import bounded
from settings.arguments import Parser
from settings.config import Config
from storage.engine import make_engine
from storage.refusals import REFUSED, refusing
from storage.report_data import read_report
from storage.report_html import render
from storage.rows import reasons_on_demand
from storage.tables import dead_letters, fraud_labels, model_versions, scored_payments


def report(engine: Engine) -> str:
    sp, dl = scored_payments, dead_letters
    lines = []
    with engine.connect() as c:
        total = c.execute(select(func.count()).select_from(sp)).scalar_one()
        lines.append(f"scored payments: {total}")
        by = c.execute(
            select(
                sp.c.model_version, sp.c.decision, func.count(), func.avg(sp.c.fraud_probability)
            )
            .group_by(sp.c.model_version, sp.c.decision)
            .order_by(sp.c.model_version, sp.c.decision)
        )
        for version, decision, n, mean in by:
            lines.append(f"  model {version}  {decision:<8} {n:>8}  mean probability {mean:.4f}")
        top = c.execute(
            select(
                sp.c.transaction_id,
                sp.c.card_id,
                sp.c.fraud_probability,
                sp.c.decision,
                sp.c.reason_codes,
            )
            .order_by(sp.c.fraud_probability.desc())
            .limit(5)
        )
        lines.append("  highest scores:")
        for txn, card, p, decision, reasons in top:
            why = (
                f"on demand (python -m review.explain {txn})"
                if reasons_on_demand(decision, reasons)
                else ", ".join(reasons)
            )
            lines.append(f"    {txn:<28} card {card:<16} p={p:.4f}  reasons {why}")
        labelled = c.execute(
            select(func.count(), func.sum(cast(sp.c.label_is_fraud, Integer))).where(
                sp.c.label_is_fraud.is_not(None)
            )
        ).one()
        lines.append(f"labels learned: {labelled[0]} ({labelled[1] or 0} fraud)")
        fl = fraud_labels
        outcomes = c.execute(
            select(fl.c.status, func.substring_index(fl.c.reason, ":", 1), func.count())
            .group_by(fl.c.status, func.substring_index(fl.c.reason, ":", 1))
            .order_by(fl.c.status)
        ).all()
        lines.append(f"label messages: {sum(n for *_, n in outcomes)}")
        for status, reason, n in outcomes:
            lines.append(f"  {status:<9} {reason or '':<24} {n:>8}")
        mv = model_versions
        versions = c.execute(
            select(mv.c.version, mv.c.origin, mv.c.parent_version, mv.c.labels_learned).order_by(
                mv.c.lineage, mv.c.sequence
            )
        ).all()
        lines.append(f"model versions: {len(versions)}")
        for version, origin, parent, learned in versions:
            lines.append(
                f"  {version:<16} {origin:<10} parent {parent or '-':<16} labels {learned}"
            )
        letters = c.execute(select(func.count()).select_from(dl)).scalar_one()
        lines.append(f"dead letters: {letters}")
        rows = c.execute(
            select(dl.c.topic, dl.c.kafka_partition, dl.c.kafka_offset, dl.c.error)
            .order_by(dl.c.topic, dl.c.kafka_partition, dl.c.kafka_offset)
            .limit(40)
        )
        for topic, partition, offset, error in rows:
            lines.append(f"  {topic}[{partition}]@{offset}: {error[:100]}")
    return "\n".join(lines)


@refusing("python -m storage.report", "flow")
def main(argv: list[str] | None = None) -> None:
    parser = Parser(
        prog="python -m storage.report",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--html", type=Path, metavar="PATH", help="write a one-page HTML report to PATH"
    )
    args = parser.parse_args(argv)
    engine = make_engine(Config.from_env(os.environ).mysql_dsn)
    try:
        if args.html is None:
            print(report(engine))
            return
        page = render(read_report(engine))
        try:
            args.html.parent.mkdir(parents=True, exist_ok=True)
            args.html.write_text(page, encoding="utf-8")
        except OSError as exc:  # a directory, a file in the way, no right: was a traceback
            print(f"python -m storage.report: refused: {bounded(str(exc))}", file=sys.stderr)
            raise SystemExit(REFUSED) from None
        print(f"wrote {args.html} ({len(page):,} bytes)")
    finally:
        engine.dispose()


if __name__ == "__main__":
    main()
