"""The one-page HTML report of what landed in MySQL, for readers without Grafana: pure
functions from :class:`storage.report_data.ReportData` to HTML.

Every value read from the database goes through :func:`html.escape`; the page loads nothing
(inline CSS and SVG, a Content-Security-Policy that forbids scripts and remote resources), so it
works offline and a transaction id like ``<script>`` shows as text. Elements carrying the
figures have a ``data-testid``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from html import escape
from math import isnan

from storage.report_data import HOURS_SHOWN, PROBABILITY_BINS, ReportData
from storage.svg_charts import bar_chart, stacked_shares

DECISIONS = ("approve", "review", "decline")
COLORS = {"approve": "#4c9a5b", "review": "#e0a030", "decline": "#c8453a"}

STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 24px auto; max-width: 1000px; color: #222; }
h1 { font-size: 22px; } h2 { font-size: 17px; margin-top: 28px; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: 8px 0; }
th, td { padding: 3px 10px; border-bottom: 1px solid #e4e4e4; text-align: left; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
.cards { display: flex; flex-wrap: wrap; gap: 12px; }
.card { border: 1px solid #ddd; border-radius: 6px; padding: 8px 14px; min-width: 120px; }
.card b { display: block; font-size: 20px; }
.note { color: #666; font-size: 12px; }
"""
CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"


def render(data: ReportData) -> str:
    """The whole page."""
    body = [
        f"<h1>payscore: what landed in MySQL (database {escape(data.database)})</h1>",
        f'<p class="note">Generated {escape(data.generated_at.strftime("%Y-%m-%d %H:%M:%S"))}'
        " UTC. Times are UTC.</p>",
        _summary(data),
        _by_version(data),
        _hourly(data),
        _probabilities(data),
        _top_scores(data),
        _labels(data),
        _versions(data),
        _dead_letters(data),
        _latency(data),
    ]
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        '<link rel="icon" href="data:,">'
        f"<title>payscore report: {escape(data.database)}</title>"
        f"<style>{STYLE}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n"
    )


def number(value: int, testid: str) -> str:
    return f'<span data-testid="{escape(testid)}">{value:,}</span>'


def table(
    headers: Sequence[str], rows: Iterable[Sequence[str]], *, testid: str, numeric: set[int]
) -> str:
    """A table; ``rows`` hold HTML already escaped, columns in ``numeric`` align right."""
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    lines = [
        '<tr data-testid="{}">{}</tr>'.format(
            escape(testid),
            "".join(
                f'<td class="n">{cell}</td>' if i in numeric else f"<td>{cell}</td>"
                for i, cell in enumerate(row)
            ),
        )
        for row in rows
    ]
    if not lines:
        return '<p class="note">none</p>'
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(lines)}</tbody></table>"


def _summary(data: ReportData) -> str:
    decisions = data.decisions()
    cards = [("scored payments", number(data.scored, "scored-total"))]
    cards += [
        (f"{d}", number(decisions.get(d, 0), f"decision-{d}"))
        for d in [*DECISIONS, *sorted(set(decisions) - set(DECISIONS))]
    ]
    cards += [
        ("labels learned", number(data.labelled, "labels-learned")),
        ("of them fraud", number(data.labelled_fraud, "labels-learned-fraud")),
        ("label messages", number(data.label_messages, "label-messages")),
        ("model versions", number(len(data.versions), "model-versions")),
        ("dead letters", number(data.dead_letters, "dead-letters")),
    ]
    inner = "".join(
        f'<div class="card"><b>{value}</b>{escape(name)}</div>' for name, value in cards
    )
    return f'<h2 id="summary">Summary</h2><div class="cards">{inner}</div>'


def _by_version(data: ReportData) -> str:
    rows = [
        (
            escape(r.model_version),
            escape(r.decision),
            f"{r.payments:,}",
            f"{r.mean_probability:.4f}",
        )
        for r in data.by_version_decision
    ]
    return '<h2 id="by-version">Scored payments by model version and decision</h2>' + table(
        ["model version", "decision", "payments", "mean probability"],
        rows,
        testid="version-decision",
        numeric={2, 3},
    )


def _hourly(data: ReportData) -> str:
    hours = sorted({h.hour for h in data.hourly})
    names = [*DECISIONS, *sorted({h.decision for h in data.hourly} - set(DECISIONS))]
    index = {hour: i for i, hour in enumerate(hours)}
    series = {name: [0] * len(hours) for name in names}
    for h in data.hourly:
        series[h.decision][index[h.hour]] += h.payments
    legend = " ".join(
        f'<span style="color:{COLORS.get(n, "#888")}">&#9632;</span> {escape(n)}' for n in names
    )
    chart = (
        stacked_shares(hours, series, COLORS, title="Decision shares per hour")
        if hours
        else '<p class="note">no payments</p>'
    )
    return (
        '<h2 id="hourly">Decision rates per hour</h2>'
        f'<p class="note">Share of each decision among the payments of each hour of event time '
        f"(the last {HOURS_SHOWN} hours with payments: {len(hours)} shown). {legend}</p>"
        f'<div data-testid="hourly-chart">{chart}</div>'
    )


def _probabilities(data: ReportData) -> str:
    width = 1 / PROBABILITY_BINS
    labels = [f"{i * width:.2f}" for i in range(PROBABILITY_BINS)]
    chart = bar_chart(
        data.probability_bins, labels, title="Payments per fraud probability", color="#5470a8"
    )
    rows = [
        (f"{i * width:.2f} to {(i + 1) * width:.2f}", f"{n:,}")
        for i, n in enumerate(data.probability_bins)
        if n
    ]
    return (
        '<h2 id="probabilities">Fraud probability distribution</h2>'
        f'<div data-testid="probability-chart">{chart}</div>'
        + table(["fraud probability", "payments"], rows, testid="probability-bin", numeric={1})
    )


def _top_scores(data: ReportData) -> str:
    rows = [
        (
            escape(s.transaction_id),
            escape(s.card_id),
            f"{s.fraud_probability:.4f}",
            escape(s.decision),
            (
                f"on demand: python -m review.explain {escape(s.transaction_id)}"
                if s.reasons_on_demand
                else escape(", ".join(s.reason_codes))
            ),
        )
        for s in data.top_scores
    ]
    return '<h2 id="top-scores">Highest scores</h2>' + table(
        ["transaction", "card", "probability", "decision", "reason codes"],
        rows,
        testid="top-score",
        numeric={2},
    )


def _labels(data: ReportData) -> str:
    rows = [
        (escape(o.status), escape(o.reason or "-"), f"{o.labels:,}") for o in data.label_outcomes
    ]
    return (
        '<h2 id="labels">Fraud label messages by status and reason</h2>'
        f'<p class="note">Every label message read has one row in fraud_labels; '
        f"{data.labelled:,} payments carry a learned label, {data.labelled_fraud:,} of them "
        "fraud.</p>"
        + table(["status", "reason", "labels"], rows, testid="label-outcome", numeric={2})
    )


def _versions(data: ReportData) -> str:
    rows = [
        (
            escape(v.version),
            escape(v.origin),
            escape(v.parent_version or "-"),
            escape(v.created_at.strftime("%Y-%m-%d %H:%M:%S")),
            f"{v.labels_learned:,}",
            f"{v.payments_scored:,}",
        )
        for v in data.versions
    ]
    return '<h2 id="versions">Model versions</h2>' + table(
        ["version", "origin", "parent", "created (UTC)", "labels learned", "payments scored"],
        rows,
        testid="model-version",
        numeric={4, 5},
    )


def _dead_letters(data: ReportData) -> str:
    rows = [
        (
            escape(e.topic),
            escape(e.error_class),
            f"{e.letters:,}",
            f"<small>{escape(e.example[:200])}</small>",
        )
        for e in data.dead_letter_classes
    ]
    return '<h2 id="dead-letters">Dead letters by error class</h2>' + table(
        ["source topic", "error class", "letters", "example"],
        rows,
        testid="dead-letter-class",
        numeric={2},
    )


def _latency(data: ReportData) -> str:
    head = '<h2 id="latency">Kafka append to MySQL commit</h2>'
    lat = data.latency
    if lat is None:
        return head + (
            '<p class="note" data-testid="latency-missing">Not recorded: scored_payments has no '
            "payment with a Kafka record time (appended_at) and a stored_at time.</p>"
        )

    def bound(b: float) -> str:
        return "no payments" if isnan(b) else ("over 60 s" if b == float("inf") else f"≤ {b:g} s")

    rows = [(bound(b), f"{n:,}") for b, n in lat.buckets if n]
    return (
        head + f"<p>{number(lat.payments, 'latency-payments')} payments; median "
        f'<span data-testid="latency-p50">{bound(lat.p50)}</span>, 99th percentile '
        f'<span data-testid="latency-p99">{bound(lat.p99)}</span>.</p>'
        + table(["append to commit", "payments"], rows, testid="latency-bucket", numeric={1})
    )
