"""Each flow process serves its Prometheus metrics itself, at ``/metrics`` on
``PAYSCORE_METRICS_HOST`` (127.0.0.1) and port ``PAYSCORE_METRICS_PORT`` + its process id.

It serves prometheus_client's default registry: the ``payscore_*`` series
(:mod:`dataflows.metrics`), Bytewax's Kafka consumer lag (``bytewax_kafka_consumer_lag``, a
prometheus_client gauge of ``bytewax.connectors.kafka``), and the client's ``process_*`` and
``python_*`` collectors. It writes no file.

Bytewax's own API server (on whenever ``BYTEWAX_DATAFLOW_API_ENABLED`` is set, to any value,
"0" and "false" included) is not used, and the flow refuses to start while the variable is set:
it binds every interface (0.0.0.0) with no setting to say otherwise, and writes the flow's graph
to ``dataflow.json`` in a folder named by a setting, following a link planted there. What it
showed besides is left out: its ``/dataflow`` graph (``PAYSCORE_METRICS_PORT=0 python -m
bytewax.visualize dataflows.scoring:flow`` draws it offline) and Bytewax's per-step series
(``bytewax_item_inp_count``, ``bytewax_*_duration_seconds``, kept in Bytewax's Rust registry,
which only that server reads); the dashboard, the alerts and the health probe use neither.

>>> process_id(["run.py", "dataflows.scoring:flow", "-w", "2", "-i", "1", "-a", "h:1;h:2"], {})
1
>>> process_id(["run.py", "dataflows.scoring:flow", "--process-id=3"], {})
3
>>> process_id(["run.py", "dataflows.scoring:flow"], {"BYTEWAX_PROCESS_ID": "2"})
2
>>> process_id(["run.py", "dataflows.scoring:flow", "-w", "2"], {})
0
>>> process_id(["run.py", "f"], {"BYTEWAX_POD_NAME": "flow-2", "BYTEWAX_STATEFULSET_NAME": "flow"})
2
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

from prometheus_client import start_http_server

from dataflows.bytewax_options import bytewax_options
from features.bounded import bounded

log = logging.getLogger(__name__)

BYTEWAX_API = "BYTEWAX_DATAFLOW_API_ENABLED"


class MetricsServerError(RuntimeError):
    """The metrics cannot be served as configured."""


def process_id(argv: Sequence[str], environ: Mapping[str, str]) -> int:
    """This process's id as ``python -m bytewax.run`` takes it: ``-i/--process-id``, else
    ``BYTEWAX_PROCESS_ID``, else the pod's ordinal (Bytewax's Helm chart), else 0."""
    known = bytewax_options(argv)
    if known.process_id is not None:
        return int(known.process_id)
    if environ.get("BYTEWAX_PROCESS_ID"):
        given = environ["BYTEWAX_PROCESS_ID"]
        return _number(
            given, f"BYTEWAX_PROCESS_ID is '{bounded(given, 64)}'", "this process's id, 0 to n-1"
        )
    pod, statefulset = environ.get("BYTEWAX_POD_NAME"), environ.get("BYTEWAX_STATEFULSET_NAME")
    if pod and statefulset:
        # As Bytewax's run.py computes it (so that both agree whenever Bytewax runs at all).
        ordinal = pod.replace(statefulset + "-", "")
        return _number(
            ordinal,
            f"BYTEWAX_POD_NAME is '{bounded(pod, 64)}' and BYTEWAX_STATEFULSET_NAME "
            f"'{bounded(statefulset, 64)}', which leaves '{bounded(ordinal, 64)}' as the "
            "process id",
            "the pod name to be the StatefulSet's name, '-' and the pod's ordinal "
            f"('{bounded(statefulset, 64)}-0'), or -i/--process-id or BYTEWAX_PROCESS_ID set",
        )
    return 0


class ProcessIdError(ValueError):
    """The process id, as Bytewax takes it from its options or variables, is no number."""


def _number(text: str, what: str, expected: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ProcessIdError(
            f"{what}, which is no number (Bytewax stops on it with a bare ValueError); "
            f"expected {expected}"
        ) from None


def refuse_bytewax_api(environ: Mapping[str, str]) -> None:
    """Bytewax's API server is on: stop with what to do instead. Bytewax 0.21.1 turns it on
    whenever the variable is set, whatever its value ("0", "false" and "" included)."""
    if BYTEWAX_API in environ:
        value = bounded(environ[BYTEWAX_API], 64)
        raise MetricsServerError(
            f"{BYTEWAX_API} is set to '{value}': Bytewax turns its API server on for any value "
            "of it, and that server listens on every interface (0.0.0.0) and writes the flow's "
            "graph to a file of a predictable path; payscore serves /metrics itself "
            f"(PAYSCORE_METRICS_HOST, PAYSCORE_METRICS_PORT): unset {BYTEWAX_API}"
        )


def serve_metrics(host: str, base_port: int, process: int) -> int | None:
    """Serve ``/metrics`` on ``host``:``base_port`` + ``process`` from a daemon thread; the port,
    or None when ``base_port`` is 0 (no metrics)."""
    if base_port == 0:
        return None
    port = base_port + process
    where = f"PAYSCORE_METRICS_HOST={host}, PAYSCORE_METRICS_PORT={base_port} + process {process}"
    if port > 65535:
        raise MetricsServerError(f"no metrics port {port} ({where}): ports end at 65535")
    try:
        start_http_server(port, addr=host)
    except OSError as exc:
        raise MetricsServerError(
            f"cannot serve metrics on {host}:{port} ({where}): {exc.strerror or exc}; give each "
            "process a free port, or PAYSCORE_METRICS_PORT=0 for none"
        ) from None
    log.info("metrics on http://%s:%d/metrics", host, port, extra={"event": "metrics_served"})
    return port
