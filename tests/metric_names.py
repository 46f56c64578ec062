"""The flow's Prometheus metrics as the dashboard and the alert rules may use them (issue 14), and
a check of the metric names and label matchers a PromQL expression refers to.

A counter ``x`` is exposed as ``x_total``; a histogram ``h`` as ``h_bucket``, ``h_sum`` and
``h_count``; a gauge under its own name. Every series also carries ``job`` and ``instance``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Metric:
    kind: str  # counter (named with its _total suffix), histogram or gauge
    labels: dict[str, frozenset[str] | None] = field(default_factory=dict)  # None: any value


DECISIONS = frozenset({"approve", "review", "decline"})
OUTCOMES = frozenset(
    {
        "claimed",
        "replayed",
        "waiting",
        "rejected_duplicate",
        "rejected_contradicts",
        "rejected_not_found",
        "rejected_card_mismatch",
        "rejected_reported_before_payment",
    }
)

METRICS: dict[str, Metric] = {
    "payscore_payments_scored_total": Metric("counter", {"decision": DECISIONS}),
    "payscore_append_to_commit_seconds": Metric("histogram"),
    "payscore_fraud_probability": Metric("histogram"),
    "payscore_dead_letters_total": Metric(
        "counter",
        {
            "source": frozenset({"payments", "labels", "reused_ids", "refused_rows"}),
            "reason": None,
        },
    ),
    "payscore_labels_total": Metric("counter", {"outcome": OUTCOMES}),
    "payscore_sink_retries_total": Metric("counter", {"table": None}),
    "payscore_sink_failures_total": Metric("counter", {"table": None}),
    "bytewax_kafka_consumer_lag": Metric(
        "gauge", {"step_id": None, "topic": None, "partition": None}
    ),
    "payscore_model_info": Metric("gauge", {"version": None}),
    "payscore_model_published_timestamp_seconds": Metric("gauge"),
    "payscore_model_checked_timestamp_seconds": Metric("gauge"),
    "payscore_model_behind_since_timestamp_seconds": Metric("gauge"),
    "payscore_model_versions_refused_total": Metric(
        "counter", {"reason": frozenset({"identity", "signature", "missing", "mismatch"})}
    ),
    "payscore_labels_learned_total": Metric("counter"),
    "payscore_learner_backlog": Metric("gauge"),
    "payscore_psi": Metric("gauge", {"subject": None}),
    "payscore_last_scored_timestamp_seconds": Metric("gauge"),
    "payscore_rule_decisions_total": Metric("counter", {"rule": None, "decision": DECISIONS}),
    "payscore_ruleset_version": Metric("gauge"),
    "payscore_epoch_close_off_grid_seconds": Metric("histogram", {"topic": None}),
    "payscore_epoch_close_wait_seconds": Metric("histogram", {"topic": None}),
}
TARGET_LABELS = ("job", "instance")


def exposed_series() -> dict[str, str]:
    """Every series name a scrape shows -> the metric it belongs to."""
    names: dict[str, str] = {}
    for name, metric in METRICS.items():
        if metric.kind == "histogram":
            for suffix in ("_bucket", "_sum", "_count"):
                names[name + suffix] = name
        else:
            names[name] = name
    return names


_NAME = re.compile(r"\b(?:payscore|bytewax_kafka)_[a-z0-9_]+\b")
_SELECTOR = re.compile(r"\b((?:payscore|bytewax_kafka)_[a-z0-9_]+)\s*\{([^}]*)\}")
_MATCHER = re.compile(r'\s*([a-zA-Z_]\w*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"\s*(?:,|$)')


def referenced(expr: str) -> set[str]:
    """The metrics (as named in :data:`METRICS`) that ``expr`` refers to; a name no scrape shows
    raises ``ValueError`` saying which and where."""
    series = exposed_series()
    found = set()
    for name in _NAME.findall(expr):
        if name not in series:
            raise ValueError(
                f"unknown metric {name!r} in expression {expr!r}: expected one of {sorted(series)}"
            )
        found.add(series[name])
    for name, body in _SELECTOR.findall(expr):
        _check_matchers(name, series[name], body, expr)
    return found


def _check_matchers(series: str, metric: str, body: str, expr: str) -> None:
    allowed = dict(METRICS[metric].labels) | dict.fromkeys(TARGET_LABELS)
    if series.endswith("_bucket"):
        allowed["le"] = None
    rest = body.strip()
    while rest:
        m = _MATCHER.match(rest)
        if m is None:
            raise ValueError(f"cannot read the label matchers {body!r} of {series} in {expr!r}")
        label, op, value = m.groups()
        if label not in allowed:
            raise ValueError(
                f"{series} has no label {label!r} (in {expr!r}): its labels are {sorted(allowed)}"
            )
        values = allowed[label]
        wanted = value.split("|") if op in ("=~", "!~") else [value]
        if values is not None and not value.startswith("$"):
            for v in wanted:
                if not any(re.fullmatch(v, known) for known in values):
                    raise ValueError(
                        f"{series}{{{label}{op}{value!r}}} matches none of {label}'s values "
                        f"{sorted(values)} (in {expr!r})"
                    )
        rest = rest[m.end() :]
