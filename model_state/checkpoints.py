"""A Bytewax sink that records each published model version: in MySQL, then on disk.

Each version is signed first (:mod:`model_state.signing`): the learner's own versions here, so
that the key never sits in the learner's state or its snapshots. Then MySQL, in one transaction
(:func:`storage.versions.record_version`): the
``model_versions`` row, and the labels the version learned marked with its name in
``fraud_labels``. So a version is recorded with what it learned, or not at all, and every
process's registry finds it. Then the folder ``<model_dir>/<version>/`` with ``model.pkl`` and
``metadata.json`` (see :mod:`model_state.artifact`): disk never holds a version that MySQL lacks.

Delivery is at-least-once: a version written again after a resume is the same version, and both
writes keep what is there (first write wins). A row found in a version's place (its name, or its
lineage and sequence) that the key does not vouch for — forged, or a copy of another version —
is not a first write: it blocks the version, which is not stored (the flow's account may add to
``model_versions``, never change or delete a row of it: :func:`storage.versions.record_version`),
and is logged as an error that names it and says why
(:func:`model_state.stored_versions.row_fault`), for the admin account to remove it; the
learner's next version is recorded and scores as usual. MySQL outages are ridden out for up to
``patience`` seconds (:mod:`storage.engine`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import msgspec
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from sqlalchemy import Engine

from model_state.artifact import VersionRecord, write
from model_state.signing import sign
from model_state.stored_versions import row_fault, short
from storage.engine import make_engine, retry_transient
from storage.rows import model_version_row
from storage.versions import record_version

log = logging.getLogger(__name__)


class _VersionPartition(StatelessSinkPartition[VersionRecord]):
    def __init__(
        self, engine: Engine, model_dir: Path, labels_topic: str, patience: float, key: bytes
    ) -> None:
        self._key = key
        self._engine = engine
        self._model_dir = model_dir
        self._labels_topic = labels_topic
        self._patience = patience

    def write_batch(self, items: list[VersionRecord]) -> None:
        for unsigned in items:
            record = msgspec.structs.replace(unsigned, metadata=sign(unsigned.metadata, self._key))
            version = record.metadata.version
            row = model_version_row(
                metadata=msgspec.to_builtins(record.metadata),
                payload=record.payload,
                artifact_path=str(self._model_dir / version),
            )

            def store(row: dict = row, record: VersionRecord = record) -> list[tuple[str, str]]:
                with self._engine.begin() as connection:
                    return record_version(
                        connection,
                        row,
                        labels_topic=self._labels_topic,
                        learned=record.learned,
                        learned_implicit=record.learned_implicit,
                        untrusted=self._untrusted,
                    )

            blocking = retry_transient(
                store, patience=self._patience, what=f"recording version {version}"
            )
            for name, why in blocking:
                log.error(
                    "model_versions row %s stands where version %s goes and is no version the "
                    "key vouches for (%s): %s is not recorded (its labels are marked learned by "
                    "it). The flow's account may not remove a row of model_versions; the admin "
                    "account may",
                    short(name),
                    version,
                    why,
                    version,
                    extra={"event": "version_blocked", "version": short(name)},
                )
            if not blocking:
                write(record.payload, record.metadata, self._model_dir)

    def _untrusted(self, row: Any) -> str | None:
        return row_fault(row, key=self._key)

    def close(self) -> None:
        self._engine.dispose()


class ModelVersionSink(DynamicSink[VersionRecord]):
    def __init__(
        self, url: str, model_dir: Path, labels_topic: str, *, patience: float, key: bytes
    ) -> None:
        self._key = key
        self._url = url
        self._model_dir = model_dir
        self._labels_topic = labels_topic
        self._patience = patience

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _VersionPartition:
        return _VersionPartition(
            make_engine(self._url, pool_size=1),
            self._model_dir,
            self._labels_topic,
            self._patience,
            self._key,
        )
