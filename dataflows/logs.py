"""The flow's logs: one line per event that matters, as text or JSON lines, at a chosen level.

``PAYSCORE_LOG_LEVEL`` (``INFO`` by default) and ``PAYSCORE_LOG_FORMAT`` (``text`` or ``json``)
are read at the entry point (:func:`dataflows.scoring.flow`). In JSON every line is one object
with ``time``, ``level``, ``logger``, ``message`` and the event's own fields: ``event`` (one of
:data:`EVENTS`) and, where they apply, ``transaction_id``, ``version``, ``table``, ``reason``,
``partition``, ``offset``. A log aggregator can then count and filter events without parsing
the sentences, which stay for people.
"""

from __future__ import annotations

import logging
import sys
from typing import Literal

from pythonjsonlogger.json import JsonFormatter

EVENTS = (
    "flow_started",  # the flow was built: its topics, model version, processes and workers
    "resumed",  # a step resumed from a recovery snapshot
    "version_adopted",  # scoring (or the learner) goes on with another model version
    "version_refused",  # a version that cannot be trusted or loaded
    "label_rejected",  # a fraud label was rejected, with its transaction id and reason
    "dead_letter",  # a stored row MySQL refused became a dead letter
    "sink_retry",  # MySQL was unavailable; the write is tried again
    "mysql_unavailable",  # past the outage bound: the flow stops
    "step_failed",  # an exception stops the flow: the step and its traceback (dataflows.failures)
    "stopping",  # a stop signal or the end of the input: the flow stops, and why
    "deleted_unread",  # a resumed partition's next messages were deleted (retention) unread
)

Format = Literal["text", "json"]
TEXT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure(level: str = "INFO", form: Format = "text") -> None:
    """Send every log line of this process to stderr in ``form``, at ``level`` and above."""
    handler = logging.StreamHandler(sys.stderr)
    if form == "json":
        handler.setFormatter(
            JsonFormatter(
                "%(asctime)s %(levelname)s %(name)s %(message)s",
                rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            )
        )
    else:
        handler.setFormatter(logging.Formatter(TEXT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # Libraries' chatter stays at WARNING whatever the flow's level.
    for noisy in ("numba", "urllib3", "sqlalchemy", "tenacity"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
