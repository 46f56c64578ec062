"""A recovery directory must be this flow's: its snapshots read the topics the flow reads.

Bytewax resumes every step from the snapshots in the directory given by ``-r`` (or
``BYTEWAX_RECOVERY_DIRECTORY``) and never asks whose they are. A directory copied from another
deployment, or left by a flow on other topics, would resume the card, terminal and merchant
histories, the label join and the learner of that other flow, and read this flow's topics from
the start: features and model silently built on someone else's payments. The flow therefore
reads the directory's partitions (``part-*.sqlite3``, read-only) at start and refuses
one whose Kafka readers' snapshots name another topic than the configured one, or whose
snapshots belong to another dataflow. An empty directory (``python -m bytewax.recovery DIR
N``, no run yet) is this flow's to fill; one without any partition (made with ``mkdir``, the
mount point of a volume that is not mounted) is refused naming the folder and the remedy
(Bytewax stopped with a Rust panic and "No recovery partitions found on any worker").

**One flow a directory.** Two flows started on one directory (a supervised flow and one started
by hand, two systemd units) both resumed from its snapshots and both wrote their own into it,
without a word: each scored and learned every payment and label, and the next start resumed
from a mix of the two. Each process of the flow therefore holds, while it runs, an exclusive
lock (``flock``) on a file of the directory named by its process id
(``.payscore-process-<i>.lock``, which holds its pid); a process that finds the lock held is
refused at start, naming the directory, the process id and the pid that holds it. The kernel
drops the lock when the process ends, however it ends (``kill -9`` included), so a crash
leaves nothing to clean up. A directory on a network file system without ``flock`` is not
checked (a WARNING says so).

>>> check_snapshots({"payscore.read_payments": {"0-payments"}}, "payscore",
...                 {"payscore.read_payments": "payments"}, "/r")
>>> try:
...     check_snapshots({"payscore.read_payments": {"0-other"}}, "payscore",
...                     {"payscore.read_payments": "payments"}, "/r")
... except RecoveryDirectoryError as exc:
...     print(str(exc)[:76])
recovery directory '/r' holds Kafka offsets of topic 'other' for step read_p
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import socket
import sqlite3
from collections.abc import Mapping, Sequence
from pathlib import Path

from dataflows.bytewax_options import bytewax_options
from dataflows.metrics_server import process_id
from features.bounded import bounded

log = logging.getLogger(__name__)

# Both read ranges of the snapshots' primary key (step_id, state_key, snap_epoch), never the
# whole table: a partition keeps every card's, terminal's and merchant's snapshots.
_OTHER_STEPS = "SELECT DISTINCT step_id FROM snaps WHERE step_id < ? OR step_id >= ? LIMIT 3"
_READER_KEYS = "SELECT DISTINCT state_key FROM snaps WHERE step_id = ?"


class RecoveryDirectoryError(RuntimeError):
    """The recovery directory is another flow's, or cannot be read."""


def recovery_directory(argv: Sequence[str], environ: Mapping[str, str]) -> Path | None:
    """The recovery directory as ``python -m bytewax.run`` takes it: ``-r`` /
    ``--recovery-directory``, else ``BYTEWAX_RECOVERY_DIRECTORY``; None without recovery."""
    value = bytewax_options(argv).recovery_directory or environ.get("BYTEWAX_RECOVERY_DIRECTORY")
    return Path(value) if value else None


def in_cluster(argv: Sequence[str]) -> bool:
    """True when ``python -m bytewax.run`` is given the addresses of a cluster (``-a`` /
    ``--addresses``): its processes may keep their recovery partitions on their own hosts."""
    return bool(bytewax_options(argv).addresses)


def snapshot_keys(
    directory: Path, flow_id: str, reader_steps: Sequence[str]
) -> dict[str, set[str]]:
    """What the check needs of ``directory``'s partitions: up to three step ids of other
    dataflows than ``flow_id`` (with no keys), and each of ``reader_steps`` with its state keys."""
    keys: dict[str, set[str]] = {}
    for part in sorted(directory.glob("part-*.sqlite3")):
        try:
            # absolute: a relative -r (as the README's commands give it) has no file URI
            uri = f"{part.absolute().as_uri()}?mode=ro"
            connection = sqlite3.connect(uri, uri=True, timeout=30)
            try:
                ends = (f"{flow_id}.", f"{flow_id}/")  # "/" is the byte after "."
                for (step_id,) in connection.execute(_OTHER_STEPS, ends).fetchall():
                    keys.setdefault(str(step_id), set())
                for step in reader_steps:
                    found = connection.execute(_READER_KEYS, (step,)).fetchall()
                    keys.setdefault(step, set()).update(str(key) for (key,) in found)
            finally:
                connection.close()
        except (sqlite3.Error, ValueError, OSError) as exc:
            raise RecoveryDirectoryError(
                bounded(
                    f"recovery partition {str(part)!r} cannot be read: {exc}; expected a "
                    "partition made by `python -m bytewax.recovery` (see the README, Recovery)"
                )
            ) from None
    return {step: found for step, found in keys.items() if found or step not in reader_steps}


def check_snapshots(
    keys: Mapping[str, set[str]], flow_id: str, readers: Mapping[str, str], directory: str
) -> None:
    """Refuse snapshots of another dataflow than ``flow_id``, or of a Kafka reader (step id ->
    its topic, in ``readers``) on another topic. A reader's state key is ``<partition>-<topic>``."""
    others = sorted(step for step in keys if not step.startswith(f"{flow_id}."))
    if others:
        raise RecoveryDirectoryError(
            bounded(
                f"recovery directory {directory!r} holds snapshots of steps of another dataflow "
                f"({', '.join(others[:3])}); expected only steps of {flow_id!r}: give this "
                "flow its own recovery directory"
            )
        )
    for step, topic in sorted(readers.items()):
        found = sorted({key.partition("-")[2] for key in keys.get(step, set())} - {topic})
        if found:
            raise RecoveryDirectoryError(
                bounded(
                    f"recovery directory {directory!r} holds Kafka offsets of topic {found[0]!r} "
                    f"for step {step.removeprefix(flow_id + '.')}; expected topic {topic!r}: it "
                    "is another flow's (it would resume that flow's features and model), give "
                    "this flow its own recovery directory"
                )
            )


def require_own_recovery(
    argv: Sequence[str], environ: Mapping[str, str], flow_id: str, readers: Mapping[str, str]
) -> None:
    """The flow's start: a recovery directory, if one is given, is this flow's (the module)."""
    directory = recovery_directory(argv, environ)
    if directory is None or not directory.is_dir():
        return  # none, or missing: Bytewax says so itself (ops/run_flow.sh creates it)
    if not any(directory.glob("part-*.sqlite3")):
        said = bounded(
            f"recovery directory {str(directory)!r} holds no recovery partition "
            "(part-*.sqlite3): expected the folder `python -m bytewax.recovery DIR N` made "
            "(ops/run_flow.sh makes it when the folder does not exist). Is it the mount "
            "point of a volume that is not mounted, or a folder made with mkdir? Mount it, "
            "name the right folder, or, for a flow that starts afresh, run `python -m "
            "bytewax.recovery` on it"
        )
        if not in_cluster(argv):
            raise RecoveryDirectoryError(said)
        # A cluster (-a) may keep its partitions on other hosts' disks: Bytewax counts them over
        # every process, and refuses the start itself when no process holds any.
        log.warning("%s (fine if other hosts of the cluster hold them)", said)
        return
    keys = snapshot_keys(directory, flow_id, sorted(readers))
    check_snapshots(keys, flow_id, readers, str(directory))
    hold(directory, process_id(argv, environ))


# The locks this process holds (their open files), by (directory, process id): held until the
# process ends; taken once however often the flow is built in one process (the tests).
_HELD: dict[tuple[Path, int], int] = {}


def lock_file(directory: Path, process: int) -> Path:
    return directory / f".payscore-process-{process}.lock"


def hold(directory: Path, process: int) -> None:
    """Lock ``directory`` for flow process ``process`` until this process ends, or refuse (the
    module: one flow a directory)."""
    key = (directory.resolve(), process)
    if key in _HELD:
        return
    path = lock_file(directory, process)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise RecoveryDirectoryError(
            bounded(
                f"recovery directory {str(directory)!r}: its lock file {path.name} cannot be "
                f"opened ({exc.strerror}); expected a folder this flow may write (it writes its "
                "snapshots there)"
            )
        ) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        holder = _holder(fd)
        os.close(fd)
        if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            log.warning(
                "recovery directory %r not locked (%s): a second flow on it would not be refused",
                str(directory),
                exc.strerror,
            )
            return
        raise RecoveryDirectoryError(
            bounded(
                f"recovery directory {str(directory)!r} is in use by another flow: its process "
                f"{process} runs{holder} and holds {path.name}; two flows on one directory "
                "resume from and write over the same snapshots. Stop the other flow first, or "
                "give this one its own recovery directory (on NFSv3 a lock can outlive a host "
                "that died: if that host is gone for good, delete the lock file)"
            )
        ) from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()} {socket.gethostname()}\n".encode())
    _HELD[key] = fd


def _holder(fd: int) -> str:
    """`` (pid N on host H)`` from a lock file another process holds, or nothing."""
    try:
        text = os.pread(fd, 300, 0).decode("utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return ""
    pid, _, host = text.partition(" ")
    if not pid.isdigit():
        return ""
    return f" (pid {pid} on host {bounded(host, 64)!r})" if host else f" (pid {pid})"
