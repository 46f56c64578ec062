"""A liveness and readiness probe for one flow process, from its metrics endpoint.

    python -m dataflows.health PORT [--live] [--host 127.0.0.1] [--max-lag N]

- **live**: the process answers ``/metrics`` within 5 s (its metrics server,
  :mod:`dataflows.metrics_server`, is a thread of the flow's process, so a dead process, or one
  that holds Python's interpreter, fails it). ``--host`` is the process's
  ``PAYSCORE_METRICS_HOST`` (127.0.0.1 unless set).
- **ready** (the default): live, a model version is loaded (``payscore_model_info``), and, with
  ``--max-lag N``, no partition it reads is more than N messages behind.

Exit status 0 when the check passes, 1 otherwise, with one line saying why: what Kubernetes'
``exec`` probes, systemd's ``ExecStartPost`` or a supervisor need. A port outside 1-65535 or a
``--max-lag`` that is not a finite number from 0 is a usage error (status 2), not a verdict.
For an HTTP probe, point it at ``/metrics`` of the process (liveness).
"""

from __future__ import annotations

import argparse
import math
import sys
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from features.bounded import bounded
from settings.arguments import Parser


def check(host: str, port: int, *, live_only: bool, max_lag: float | None) -> tuple[bool, str]:
    url = f"http://{host}:{port}/metrics"
    try:
        body = urllib.request.urlopen(url, timeout=5).read()
    except OSError as exc:
        return False, f"not live: {url} did not answer ({exc})"
    if live_only:
        return True, f"live: {url} answered"
    try:  # another server on the port: a page of HTML, or bytes, was a traceback
        families = text_string_to_metric_families(body.decode())
        samples = [s for family in families for s in family.samples]
    except ValueError as exc:  # UnicodeDecodeError is one too
        said = bounded(str(exc), 200)
        return False, f"not ready: {url} did not answer Prometheus metrics ({said})"
    versions = [s.labels["version"] for s in samples if s.name == "payscore_model_info" and s.value]
    if not versions:
        return False, f"not ready: {url} shows no model version in use (payscore_model_info)"
    if max_lag is not None:
        behind = [
            (s.labels.get("topic"), s.labels.get("partition"), s.value)
            for s in samples
            if s.name == "bytewax_kafka_consumer_lag" and s.value > max_lag
        ]
        if behind:
            topic, partition, lag = max(behind, key=lambda b: b[2])
            return False, (
                f"not ready: {topic}[{partition}] is {lag:.0f} messages behind "
                f"(more than --max-lag {max_lag:.0f})"
            )
    return True, f"ready: scoring with {versions[0]}"


def _port(text: str) -> int:
    """A port from 1 to 65535: 99999 or -1 was "not live" (status 1), a probe's misconfiguration
    read as a dead process, restarted for ever; now a usage error (status 2)."""
    if not text.isdigit() or not 1 <= int(text) <= 65_535:
        raise argparse.ArgumentTypeError(f"expected a port from 1 to 65535; got {text[:40]!r}")
    return int(text)


def _lag(text: str) -> float:
    """Messages behind, a finite number from 0: ``nan`` passed every lag (ready, 5,000 behind),
    a negative one none."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 <= value < math.inf:
        raise argparse.ArgumentTypeError(
            f"expected a finite number of messages from 0; got {text[:40]!r}"
        )
    return value


def main(argv: list[str] | None = None) -> None:
    parser = Parser(prog="python -m dataflows.health", description=__doc__)
    parser.add_argument("port", type=_port, help="the process's metrics port")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--live", action="store_true", help="liveness only")
    parser.add_argument("--max-lag", type=_lag, help="readiness: most messages behind")
    args = parser.parse_args(argv)
    ok, why = check(args.host, args.port, live_only=args.live, max_lag=args.max_lag)
    print(why)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
