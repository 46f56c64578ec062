"""A Bytewax sink that records each published model version: in MySQL, then on disk.

Each version is signed first (:mod:`model_state.signing`): the learner's own versions here, so
that the key never sits in the learner's state or its snapshots. Then MySQL, in one transaction
(:func:`storage.versions.record_version`): the
``model_versions`` row, and the labels the version learned marked with its name in
``fraud_labels``. So a version is recorded with what it learned, or not at all, and every
process's registry finds it. Then the folder ``<model_dir>/<version>/`` with ``model.pkl`` and
``metadata.json`` (see :mod:`model_state.artifact`): disk never holds a version that MySQL lacks.

Delivery is at-least-once: a version written again after a resume is the same version (the same
name and content hash), kept as it is. A row found in a version's place (its name, or its
lineage and sequence) that the key does not vouch for — forged, or a copy of another version —
or another version under its name does not stop it: the version is signed anew under the next
free name of its lineage and recorded there, and its labels are marked as learned by that name
(checked by reading back the row's content hash), never by the row in the way, which stays (the
flow's account may add to ``model_versions``, never change or delete a row of it:
:func:`storage.versions.record_version`) and is logged as an error that names it and says why
(:func:`model_state.stored_versions.row_fault`), for the admin account to remove it. A later
version whose parent was renamed names the name it was recorded under. A lineage's root in the
way is not renamed (its deltas name it): it is logged and the flow goes on. MySQL outages are
ridden out for up to ``patience`` seconds (:mod:`storage.engine`).
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
from model_state.stored_versions import REASON_CHARS, row_fault, short
from storage.engine import make_engine, retry_transient
from storage.rows import model_version_row
from storage.versions import (
    ANOTHER_VERSION,
    Recorded,
    VersionNotRecordedError,
    record_version,
)

log = logging.getLogger(__name__)

LOGGED_KEPT = 4_096  # names of rows in the way remembered as logged


class _VersionPartition(StatelessSinkPartition[VersionRecord]):
    def __init__(
        self, engine: Engine, model_dir: Path, labels_topic: str, patience: float, key: bytes
    ) -> None:
        self._key = key
        self._engine = engine
        self._model_dir = model_dir
        self._labels_topic = labels_topic
        self._patience = patience
        self._stored_as: dict[str, str] = {}  # a published name -> the one it was recorded as
        self._logged: dict[str, None] = {}  # rows in the way, logged once (the last ones kept)

    def write_batch(self, items: list[VersionRecord]) -> None:
        for unsigned in items:
            parent = unsigned.metadata.parent_version
            if parent in self._stored_as:  # its parent was recorded under another name
                unsigned = msgspec.structs.replace(
                    unsigned,
                    metadata=msgspec.structs.replace(
                        unsigned.metadata, parent_version=self._stored_as[parent]
                    ),
                )
            record = msgspec.structs.replace(unsigned, metadata=sign(unsigned.metadata, self._key))
            published = record.metadata.version
            renamed: list[VersionRecord] = [record]

            def named(
                name: str,
                record: VersionRecord = record,
                renamed: list[VersionRecord] = renamed,
            ) -> dict[str, Any]:
                """The version's row under another name, signed anew."""
                metadata = sign(
                    msgspec.structs.replace(record.metadata, version=name, signature=""),
                    self._key,
                )
                renamed[0] = msgspec.structs.replace(record, metadata=metadata)
                return self._row(renamed[0])

            def store(
                record: VersionRecord = record, renamed: list[VersionRecord] = renamed
            ) -> Recorded:
                renamed[0] = record
                with self._engine.begin() as connection:
                    return record_version(
                        connection,
                        self._row(record),
                        labels_topic=self._labels_topic,
                        learned=record.learned,
                        learned_implicit=record.learned_implicit,
                        untrusted=self._untrusted,
                        rename=named,
                    )

            try:
                recorded = retry_transient(
                    store, patience=self._patience, what=f"recording version {published}"
                )
            except VersionNotRecordedError as exc:  # a root in the way: the flow goes on
                log.error(
                    "%s; the admin account may remove the row in its way",
                    short(str(exc), REASON_CHARS),
                    extra={"event": "version_blocked", "version": published},
                )
                continue
            for name, why in recorded.blocking:
                if why == ANOTHER_VERSION:  # one of the learner's own, recorded under this name
                    log.info(
                        "version %s is recorded as %s: %s holds another of its versions",
                        published,
                        recorded.version,
                        name,
                        extra={"event": "version_renamed", "version": recorded.version},
                    )
                    continue
                if name in self._logged:
                    continue
                self._logged[name] = None
                while len(self._logged) > LOGGED_KEPT:
                    self._logged.pop(next(iter(self._logged)))
                log.error(
                    "model_versions row %s stands where version %s goes and is not it (%s): "
                    "the version is recorded as %s instead, its labels marked learned by that "
                    "name. The flow's account may not remove a row of model_versions; the admin "
                    "account may",
                    short(name),
                    published,
                    short(why, REASON_CHARS),
                    recorded.version,
                    extra={"event": "version_blocked", "version": short(name)},
                )
            if recorded.version != published:
                self._stored_as[published] = recorded.version
                while len(self._stored_as) > 64:
                    self._stored_as.pop(next(iter(self._stored_as)))
            stored = renamed[0]
            write(stored.payload, stored.metadata, self._model_dir)

    def _row(self, record: VersionRecord) -> dict[str, Any]:
        return model_version_row(
            metadata=msgspec.to_builtins(record.metadata),
            payload=record.payload,
            artifact_path=str(self._model_dir / record.metadata.version),
        )

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
