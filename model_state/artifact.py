"""Versioned model artifacts on disk: ``<model_dir>/<version>/model.pkl`` beside ``metadata.json``.

A version is written once and never changed. Its metadata records where it came from (parent
version, training window, row and fraud counts, validation metrics, library versions) and the
SHA-256 of ``model.pkl``. Loading checks the artifact against the running code (feature names,
River's version, the hash) and says exactly what does not match.

Versions are ``v00001``, ``v00002``, ... and online ones ``v00001.000001``, ...; they are
ordered by :func:`storage.versions.version_key`, as numbers (up to 18 digits each, stored as
64-bit integers: a learner publishing every second would need 30 billion years to run out).

**Online versions are deltas.** A lineage's root (``v00002``) holds its frozen expansion by
value: the ``boosted`` family's 500-tree forest, about 1.5 MB. An online version
(``v00002.000017``) pickles the same pipeline with that expansion written as a *reference* to the
root (:func:`dumps`: pickle's persistent ids, ``("expansion", root version, root SHA-256)``),
so it holds only what learning changes: the logistic regression's weights, kilobytes. Its
metadata names the root in ``base_version`` (signed with the rest). Loading one
(:func:`from_bytes`, :func:`load`) resolves the reference through a ``bases`` look-up of the
root, checked under the same key and against the SHA-256 the delta recorded.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import platform
import shutil
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any

import msgspec

from features.catalog import FEATURE_NAMES
from model_state.signing import sign, verify
from storage.versions import version_key

MODEL_FILE = "model.pkl"
METADATA_FILE = "metadata.json"


class ModelNotFoundError(FileNotFoundError):
    """No model version exists where the flow looks for one."""


class ModelMismatchError(ValueError):
    """A stored model does not fit the running code."""

    def __init__(self, message: str, version: str = "") -> None:
        super().__init__(message)
        self.version = version


class ModelMetadata(msgspec.Struct, frozen=True, kw_only=True):
    version: str
    parent_version: str | None
    origin: str  # "pretrained" (simulated history), "history", "stored", "retrained", "online"
    created_at: datetime
    feature_names: tuple[str, ...]
    model_description: str
    training_window: tuple[datetime, datetime] | None = None
    rows: int = 0
    frauds: int = 0
    labels_learned: int = 0
    # A fraud example weighs this much when learning; the scorer corrects for it.
    positive_weight: float = 1.0
    metrics: dict[str, float] = {}
    library_versions: dict[str, str] = {}
    content_hash: str = ""
    # An online version: the learner's counters, so that a learner can go on from it.
    learner: dict[str, float] = {}
    # An online version: the lineage root whose frozen expansion its pickle refers to, and the
    # SHA-256 of that root's pickle.
    base_version: str = ""
    base_hash: str = ""
    # Per drift subject, the bins of its training distribution and each bin's share
    # (model_state.drift.reference); an online version carries its lineage root's. Empty for a
    # version trained before drift was recorded.
    drift_reference: dict[str, dict[str, list[float]]] = {}
    # HMAC-SHA256 of everything above under the model signing key (model_state.signing).
    signature: str = ""


def library_versions() -> dict[str, str]:
    """Versions of what a model artifact depends on."""
    return {
        "python": platform.python_version(),
        "river": package_version("river"),
        "bytewax": package_version("bytewax"),
        "numpy": package_version("numpy"),
    }


def version_name(number: int) -> str:
    return f"v{number:05d}"


def version_number(version: str) -> int:
    if not (version.startswith("v") and version[1:].isdigit()):
        raise ValueError(f"model version must look like 'v00001'; got {version!r}")
    return int(version[1:])


def list_versions(model_dir: Path) -> list[str]:
    """Complete versions under ``model_dir`` (those with metadata), oldest first."""
    if not model_dir.is_dir():
        return []
    return sorted(
        (
            p.name
            for p in model_dir.iterdir()
            if _is_version(p.name) and (p / METADATA_FILE).is_file()
        ),
        key=version_key,
    )


def _is_version(name: str) -> bool:
    try:
        version_key(name)
    except ValueError:
        return False
    return True


def next_version(model_dir: Path) -> str:
    existing = list_versions(model_dir)
    return version_name(version_number(existing[-1].partition(".")[0]) + 1 if existing else 1)


class VersionRecord(msgspec.Struct, frozen=True):
    """A version as it is stored: its metadata, the pickled model and, for an online version,
    the labels it learned since its parent (``(partition, offset)`` on the labels topic) and
    the implicit negatives it learned since its parent (their transaction ids)."""

    metadata: ModelMetadata
    payload: bytes
    learned: tuple[tuple[int, int], ...] = ()
    learned_implicit: tuple[str, ...] = ()


class ModelArtifact(msgspec.Struct, frozen=True):
    """A loaded model, its metadata, and the pickled bytes it was loaded from."""

    model: Any
    metadata: ModelMetadata
    payload: bytes

    @property
    def version(self) -> str:
        return self.metadata.version

    @property
    def record(self) -> VersionRecord:
        return VersionRecord(self.metadata, self.payload)


EXPANSION = "expansion"
Bases = Callable[[str], ModelArtifact]
"""Looks a lineage root up by version: loaded, its signature checked."""


def expansion_of(model: Any) -> Any | None:
    """The frozen expansion of a ``basis`` or ``boosted`` pipeline (its first step's function),
    or None for a model without one."""
    steps = getattr(model, "steps", None)
    first = next(iter(steps.values()), None) if steps else None
    return getattr(first, "func", None)


def root_of(version: ModelArtifact) -> tuple[str, str]:
    """(version, SHA-256) of the lineage root holding ``version``'s expansion."""
    if version.metadata.base_version:
        return version.metadata.base_version, version.metadata.base_hash
    return version.version, version.metadata.content_hash


def dumps(model: Any, base: tuple[str, str] | None = None) -> bytes:
    """Pickle ``model``; with ``base`` (its lineage root's version and SHA-256), ``model``'s
    expansion is written as a reference to the root instead of by value. The two expansions
    must be equal: the caller keeps the root's frozen forest
    (:class:`model_state.learner.OnlineLearner`)."""
    buffer = io.BytesIO()
    pickler = pickle.Pickler(buffer, protocol=pickle.HIGHEST_PROTOCOL)
    shared = expansion_of(model) if base is not None else None
    if shared is not None and base is not None:
        ref = (EXPANSION, *base)
        pickler.persistent_id = lambda obj: ref if obj is shared else None  # type: ignore[method-assign]
    pickler.dump(model)
    return buffer.getvalue()


def loads(payload: bytes, metadata: ModelMetadata, bases: Bases | None, *, where: str) -> Any:
    """Unpickle ``payload``, resolving a reference to a lineage root through ``bases``."""
    unpickler = pickle.Unpickler(io.BytesIO(payload))

    def persistent_load(ref: Any) -> Any:
        if not (isinstance(ref, tuple) and len(ref) == 3 and ref[0] == EXPANSION):
            raise ModelMismatchError(
                f"model {metadata.version} at {where} refers to {ref!r}; expected a reference "
                f"('{EXPANSION}', root version, SHA-256)",
                metadata.version,
            )
        _, version, content_hash = ref
        if version != metadata.base_version:
            raise ModelMismatchError(
                f"model {metadata.version} at {where} refers to root {version}, but its signed "
                f"metadata names {metadata.base_version or 'none'}",
                metadata.version,
            )
        if bases is None:
            raise ModelNotFoundError(
                f"model {metadata.version} at {where} is a delta on {version}, and nothing was "
                "given to look that root up"
            )
        root = bases(version)
        if root.metadata.base_version:
            raise ModelMismatchError(
                f"model {metadata.version} at {where} refers to {version}, a delta itself; a "
                "root must hold its expansion",
                metadata.version,
            )
        if root.metadata.content_hash != content_hash:
            raise ModelMismatchError(
                f"model {metadata.version} at {where} was learned on root {version} with SHA-256 "
                f"{content_hash[:12]}…, but that root now has {root.metadata.content_hash[:12]}…",
                metadata.version,
            )
        expansion = expansion_of(root.model)
        if expansion is None:
            raise ModelMismatchError(
                f"model {metadata.version} at {where} refers to the expansion of {version}, "
                "which has none",
                metadata.version,
            )
        return expansion

    unpickler.persistent_load = persistent_load  # type: ignore[method-assign]
    return unpickler.load()


def make(model: Any, metadata: ModelMetadata, *, key: bytes) -> ModelArtifact:
    """``model`` as version ``metadata.version``: pickled whole, hashed and signed with
    ``key``."""
    payload = dumps(model)
    metadata = msgspec.structs.replace(
        metadata,
        content_hash=hashlib.sha256(payload).hexdigest(),
        library_versions=metadata.library_versions or library_versions(),
    )
    return ModelArtifact(model, sign(metadata, key), payload)


class VersionExistsError(FileExistsError):
    """A version folder of that name exists already: nothing was written."""


def save(
    model: Any, metadata: ModelMetadata, model_dir: Path, *, key: bytes, new: bool = False
) -> ModelArtifact:
    """:func:`make` the version and write it under ``model_dir``. With ``new`` (the training
    commands), :class:`VersionExistsError` if a version of its name is there already: two
    trainings at once on one folder both named theirs :func:`next_version`, and the second was
    returned, and reported, as saved, a model no folder held; without it, a version of that name
    is left as it is (never overwritten)."""
    version = make(model, metadata, key=key)
    if not write(version.payload, version.metadata, model_dir) and new:
        raise VersionExistsError(
            f"model version {metadata.version} exists already in {str(model_dir)[:300]} "
            "(another training or retrain wrote it meanwhile?); nothing was written or "
            "overwritten: run again for the next version"
        )
    return version


def write(payload: bytes, metadata: ModelMetadata, model_dir: Path) -> bool:
    """Write a pickled model and its metadata as a version folder; False if it already exists.

    The folder is written under a temporary name and renamed, so a reader never sees half a
    version, and a version is never overwritten. A new ``model_dir`` and every version folder
    are readable by their owner alone (0700).
    """
    model_dir.mkdir(mode=0o700, parents=True, exist_ok=True)  # models hold card histories' traces
    target = model_dir / metadata.version
    if target.exists():
        return False
    staging = Path(tempfile.mkdtemp(prefix=f".{metadata.version}-", dir=model_dir))
    (staging / MODEL_FILE).write_bytes(payload)
    (staging / METADATA_FILE).write_bytes(msgspec.json.format(msgspec.json.encode(metadata)))
    try:
        os.rename(staging, target)
    except OSError:  # another writer got there first
        shutil.rmtree(staging, ignore_errors=True)
        return False
    return True


class ModelDirError(OSError):
    """The model folder cannot take the versions the learner publishes."""


def require_writable(model_dir: Path, variable: str = "PAYSCORE_MODEL_DIR") -> None:
    """Refuse a ``model_dir`` this process cannot write a file into: the flow's start.

    The learner writes every version it publishes here (:func:`write`), the first at its first
    labels. On a folder mounted read-only (or owned by another user, or on a full disk) the flow
    started, scored, recorded its first version in MySQL and then stopped at the folder, on
    every restart again. A file is created and removed to find out (a dot file, which
    :func:`list_versions` never takes for a version). A folder that does not exist is
    :func:`load`'s to name."""
    if not model_dir.is_dir():
        return
    try:
        fd, name = tempfile.mkstemp(prefix=".payscore-write-check-", dir=model_dir)
        try:
            os.write(fd, b"x")
        finally:
            os.close(fd)
            os.unlink(name)
    except OSError as exc:
        raise ModelDirError(
            f"{variable}={str(model_dir)[:300]!r} cannot be written ({exc.strerror or exc}): "
            "the learner writes every version it publishes there, and the flow stopped at its "
            "first one; expected a folder this process may write (mount it read-write, give "
            "the flow's user the right to it, or free space on its disk)"
        ) from None


def load(model_dir: Path, version: str | None = None, *, key: bytes) -> ModelArtifact:
    """Load ``version`` (default: the newest) from ``model_dir``, checking its signature under
    ``key`` and that it fits this code; a delta's root comes from the same folder."""
    versions = list_versions(model_dir)
    if not versions:
        raise ModelNotFoundError(
            f"no model version under {model_dir}: train one with "
            "`python -m model_state.train` (see README, 'Training a model'), "
            "or point PAYSCORE_MODEL_DIR at a folder that holds one"
        )
    version = version or versions[-1]
    folder = model_dir / version
    if version not in versions:
        raise ModelNotFoundError(
            f"model version {version} not found under {model_dir}; have {versions}"
        )
    metadata = msgspec.json.decode((folder / METADATA_FILE).read_bytes(), type=ModelMetadata)
    if metadata.version != version:  # a copied folder would roll the model back unnoticed
        raise ModelMismatchError(
            f"model folder {folder} holds version {metadata.version!r}: a version's folder must "
            "be named after it; remove the folder or rename it",
            version,
        )
    payload = (folder / MODEL_FILE).read_bytes()
    bases = _folder_bases(model_dir, key)
    return from_bytes(payload, metadata, where=str(folder), key=key, bases=bases)


# (folder, version, key digest): the roots loaded last, verified under that key.
_ROOTS: dict[tuple[str, str, str], ModelArtifact] = {}


def _folder_bases(model_dir: Path, key: bytes) -> Bases:
    def base(version: str) -> ModelArtifact:
        slot = (str(model_dir), version, hashlib.sha256(key).hexdigest())
        cached = _ROOTS.get(slot)
        if cached is None:
            cached = load(model_dir, version, key=key)
            while len(_ROOTS) >= 4:  # a few lineages at most are in use at a time
                _ROOTS.pop(next(iter(_ROOTS)))
            _ROOTS[slot] = cached
        return cached

    return base


def from_bytes(
    payload: bytes,
    metadata: ModelMetadata,
    *,
    where: str,
    key: bytes,
    bases: Bases | None = None,
) -> ModelArtifact:
    """Unpickle a stored model after checking its signature under ``key`` (first: nothing is
    unpickled before), then it against its metadata and the running code. A delta's root is
    looked up through ``bases`` (see the module docstring)."""
    verify(metadata, key, where=where)
    check(metadata, hashlib.sha256(payload).hexdigest(), where=where)
    try:
        model = loads(payload, metadata, bases, where=where)
    except (AttributeError, ImportError) as exc:  # a class the pickle names is not in this code
        raise ModelMismatchError(
            f"model {metadata.version} at {where} does not fit the running code: unpickling it "
            f"failed with {type(exc).__name__}: {exc}. Retrain with `python -m model_state.train`.",
            metadata.version,
        ) from exc
    return ModelArtifact(model, metadata, payload)


def check(metadata: ModelMetadata, content_hash: str, *, where: str) -> None:
    """Raise :class:`ModelMismatchError` naming each way ``metadata`` does not fit this code."""
    problems = []
    if content_hash != metadata.content_hash:
        problems.append(
            f"{MODEL_FILE} has SHA-256 {content_hash[:12]}…, metadata says "
            f"{metadata.content_hash[:12]}… (the file was changed or truncated)"
        )
    if tuple(metadata.feature_names) != FEATURE_NAMES:
        missing = sorted(set(FEATURE_NAMES) - set(metadata.feature_names))
        extra = sorted(set(metadata.feature_names) - set(FEATURE_NAMES))
        problems.append(
            "feature names differ from features.catalog.FEATURE_NAMES "
            f"(the code lacks {extra or 'none'}, the model lacks {missing or 'none'}"
            + (", same names in another order" if not missing and not extra else "")
            + ")"
        )
    want_river = metadata.library_versions.get("river", "?")
    have_river = package_version("river")
    if want_river.split(".")[:2] != have_river.split(".")[:2]:
        problems.append(f"trained with river {want_river}, running river {have_river}")
    if problems:
        raise ModelMismatchError(
            f"model {metadata.version} at {where} does not fit the running code: "
            + "; ".join(problems)
            + ". Retrain with `python -m model_state.train`.",
            metadata.version,
        )


def now_utc() -> datetime:
    return datetime.now(UTC)
