"""A Bytewax sink that checkpoints each published model version under ``model_state/``.

Each version becomes a folder ``<model_dir>/<version>/`` with ``model.pkl`` and
``metadata.json`` (see :mod:`model_state.artifact`). A version that is already there is left as
it is, so a replay after recovery changes nothing (at-least-once delivery, first write wins).
"""

from __future__ import annotations

from pathlib import Path

from bytewax.outputs import DynamicSink, StatelessSinkPartition

from model_state.artifact import VersionRecord, write


class _CheckpointPartition(StatelessSinkPartition[VersionRecord]):
    def __init__(self, model_dir: Path) -> None:
        self._model_dir = model_dir

    def write_batch(self, items: list[VersionRecord]) -> None:
        for record in items:
            write(record.payload, record.metadata, self._model_dir)


class ModelCheckpointSink(DynamicSink[VersionRecord]):
    def __init__(self, model_dir: Path) -> None:
        self._model_dir = model_dir

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _CheckpointPartition:
        return _CheckpointPartition(self._model_dir)
