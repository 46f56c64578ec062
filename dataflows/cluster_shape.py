"""The flow's shape as ``python -m bytewax.run`` is given it (``-w``, ``-i``, ``-a``, or their
``BYTEWAX_*`` variables) must be one Bytewax can run, checked at start.

Bytewax 0.21.1 takes any integers and says nothing useful about a wrong one:

- ``-w 0``: no worker, so nothing is read; the flow exited 0 at once, having stored nothing,
  as if its topics were empty;
- ``-w -1``: ``OverflowError: can't convert negative int to unsigned``, naming no option;
- ``-i 3 -a "a:1;b:1"`` (a process id past the addresses, an operator counting from 1): a Rust
  panic (``capacity overflow``), and then the process *hung*, retrying to connect forever;
- an address named twice: two processes of the flow bound to one port.

So each of these is refused, naming the option (or variable), what came and what is expected.

>>> cluster_shape(["run.py", "dataflows.scoring:flow", "-w", "2", "-i", "1", "-a", "h:1;h:2"], {})
(2, 1, ['h:1', 'h:2'])
>>> cluster_shape(["run.py", "dataflows.scoring:flow"], {"BYTEWAX_WORKERS_PER_PROCESS": "3"})
(3, 0, [])
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from dataflows.bytewax_options import bytewax_options
from dataflows.metrics_server import ProcessIdError, process_id
from features.bounded import bounded


class ClusterShapeError(ValueError):
    """``-w``, ``-i`` or ``-a`` name a shape Bytewax cannot run."""


def cluster_shape(argv: Sequence[str], environ: Mapping[str, str]) -> tuple[int, int, list[str]]:
    """Workers per process, this process's id and the cluster's addresses (none for one
    process), as ``python -m bytewax.run`` reads them."""
    known = bytewax_options(argv)
    given = known.workers_per_process
    workers = int(given if given is not None else environ.get("BYTEWAX_WORKERS_PER_PROCESS") or 1)
    addresses = known.addresses if known.addresses is not None else environ.get("BYTEWAX_ADDRESSES")
    split = addresses.split(";") if addresses else []  # as Bytewax splits them: no stripping
    return workers, process_id(argv, environ), split


def require_cluster_shape(argv: Sequence[str], environ: Mapping[str, str]) -> None:
    """The flow's start: see the module."""
    try:
        workers, process, addresses = cluster_shape(argv, environ)
    except ProcessIdError as exc:  # says which variable, what came and what is expected
        raise ClusterShapeError(str(exc)) from None
    except ValueError as exc:  # BYTEWAX_WORKERS_PER_PROCESS=two
        raise ClusterShapeError(
            bounded(f"-w/-i (or BYTEWAX_WORKERS_PER_PROCESS/_PROCESS_ID): {exc}")
        ) from None
    if workers < 1:
        raise ClusterShapeError(
            f"-w/--workers-per-process (or BYTEWAX_WORKERS_PER_PROCESS) is {workers}; expected "
            "1 or more worker threads per process (with -w 0 the flow read nothing and exited "
            "0)"
        )
    if not addresses:
        return
    if "" in addresses:
        raise ClusterShapeError(
            bounded(
                f"-a/--addresses (or BYTEWAX_ADDRESSES) {';'.join(addresses)!r} names an empty "
                "address; expected host:port of every process, separated by ';'"
            )
        )
    if any(a != a.strip() for a in addresses):
        raise ClusterShapeError(
            bounded(
                f"-a/--addresses (or BYTEWAX_ADDRESSES) {';'.join(addresses)!r} has an address "
                "with spaces around it; expected host:port of every process, separated by ';' "
                "alone (Bytewax takes the spaces as part of the host name and cannot connect)"
            )
        )
    if not 0 <= process < len(addresses):
        raise ClusterShapeError(
            bounded(
                f"-i/--process-id (or BYTEWAX_PROCESS_ID) is {process}, but -a names "
                f"{len(addresses)} processes ({';'.join(addresses)}); expected 0 to "
                f"{len(addresses) - 1}: process ids count from 0, one a process, in the order "
                "of -a (Bytewax panicked and the process hung, retrying to connect)"
            )
        )
    twice = sorted({a for a in addresses if addresses.count(a) > 1})
    if twice:
        raise ClusterShapeError(
            bounded(
                f"-a/--addresses (or BYTEWAX_ADDRESSES) names {twice[0]} more than once; "
                "expected one host:port a process"
            )
        )
