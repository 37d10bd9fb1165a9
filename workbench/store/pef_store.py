"""PEF stores on disk: a folder of one safetensors file per batch, and a manifest.

::

    manifest.json                 format, version, kind, provenance, parameter layout,
                                  fingerprints of the model and data, "complete", and once
                                  complete the sha256 of every chunk file ("checksums")
    chunks/000000.safetensors     one batch's sparse PEFs (a workbench.core.chunks.PefChunk)
    chunks/000001.safetensors     ...

``manifest.json`` says ``"complete": true`` only once every batch is written; every chunk
names its store (a hash of the run's identity), so chunks of different runs are never
mixed; a chunk whose bytes changed after it was written (a flipped bit on the disk or in a copy)
no longer matches its checksum and is refused by name. :class:`PefStore` reads a store and checks everything a reader relies on, so a
damaged file is a :class:`~workbench.store.files.StoreError` and never a crash later.
Writing is :mod:`workbench.store.writer`'s.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path

import numpy as np

from ..core.arguments import run_part, user_path
from ..core.chunks import PefChunk, chunks_to_pefs
from ..core.kinds import KINDS, choices
from ..core.params import ParameterLayout
from .files import StoreError, check_format, file_checksum, json_default, producer, read_arrays, read_header, read_json
from .formats import MANIFEST, PEF_CHUNK, PEF_STORE

CHUNKS = "chunks"

#: manifest keys that say which run a store belongs to (a resumed run must match all of them)
IDENTITY = ("format", "format_version", "kind", "layout", "n_examples", "n_chunks", "fingerprints")
_MANIFEST_TYPES = {"kind": str, "info": dict, "layout": dict, "n_examples": int, "n_chunks": int,
                   "fingerprints": dict, "complete": bool}
_CHUNK_DTYPES = {"values": np.float32, "indices": np.int64, "row_offsets": np.int64, "classes": np.int64,
                 "frobenius_norms": np.float32, "labels": np.int64, "logits": np.float32}


def chunk_path(root: Path, index: int) -> Path:
    return root / CHUNKS / f"{index:06d}.safetensors"


def store_id(manifest: dict) -> str:
    """A short hash of what identifies a store's run; every chunk file carries it, so chunks of
    different runs are never mixed (the package version may differ between a run and its resume)."""
    identity = {k: manifest.get(k) for k in IDENTITY}
    identity["info"] = {k: v for k, v in manifest.get("info", {}).items() if k != "package_version"}
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=json_default).encode()).hexdigest()[:16]


def check_manifest(manifest: dict, path: Path) -> None:
    check_format(manifest, PEF_STORE, path)
    where = path / MANIFEST
    for key, kind in _MANIFEST_TYPES.items():
        value = manifest.get(key)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise StoreError(f"{where} is damaged: {key!r} should be a {kind.__name__}, found {value!r}; re-create the store")
    if manifest["kind"] not in KINDS:
        raise StoreError(f"{where} is damaged: kind {manifest['kind']!r} is not {choices()}")
    if manifest["n_examples"] < 1 or manifest["n_chunks"] < 1 or manifest["n_chunks"] > manifest["n_examples"]:
        raise StoreError(f"{where} is damaged: {manifest['n_examples']} examples in {manifest['n_chunks']} chunks")
    try:
        layout = ParameterLayout.from_dict(manifest["layout"])
        n_parameters = layout.n_parameters
    except (KeyError, TypeError, ValueError) as err:
        raise StoreError(f"{where} is damaged: its parameter layout cannot be read ({err!r})") from err
    if not layout.names or len(layout.names) != len(layout.shapes) or n_parameters < 1 or any(d < 0 for s in layout.shapes for d in s):
        raise StoreError(f"{where} is damaged: its parameter layout is inconsistent")
    checksums = manifest.get("checksums")
    if manifest["format_version"] >= 2 and manifest["complete"] and checksums is None:
        raise StoreError(f"{where} is damaged: it says complete but records no chunk checksums; re-create the store")
    if checksums is not None and (not isinstance(checksums, list) or len(checksums) != manifest["n_chunks"] or not all(
            isinstance(c, str) and len(c) == 64 for c in checksums)):
        raise StoreError(f"{where} is damaged: its chunk checksums are not {manifest['n_chunks']} sha256 digests; "
                         "re-create the store")


def check_chunk(arrays: dict, kind: str, n_parameters: int, where: str) -> None:
    """Everything a reader relies on, so a damaged chunk is a StoreError and never a crash later."""
    def bad(problem: str):
        return StoreError(f"{where} is damaged ({problem}); delete it and call write_pefs again to recompute it")

    missing = set(_CHUNK_DTYPES) - set(arrays)
    if missing:
        raise bad(f"lacks {sorted(missing)}")
    for name, dtype in _CHUNK_DTYPES.items():
        if arrays[name].dtype != dtype:
            raise bad(f"{name} is {arrays[name].dtype}, not {np.dtype(dtype)}")
    values, indices, offsets = arrays["values"], arrays["indices"], arrays["row_offsets"]
    classes, norms, labels, logits = arrays["classes"], arrays["frobenius_norms"], arrays["labels"], arrays["logits"]
    if values.ndim != 1 or indices.shape != values.shape or offsets.ndim != 1 or classes.ndim != 2 or logits.ndim != 2:
        raise bad("arrays of the wrong shapes")
    b = labels.shape[0]
    if b < 1 or labels.shape != (b,) or norms.shape != (b,) or classes.shape[0] != b or logits.shape[0] != b:
        raise bad("arrays that disagree on the number of examples")
    kind = KINDS[kind]
    n_rows = b * kind.rows_per_example(classes.shape[1])
    if kind.one_row_per_slot and classes.shape[1] < 1:
        raise bad("no class slots")
    if offsets.shape != (n_rows + 1,) or offsets[0] != 0 or offsets[-1] != values.size or np.any(np.diff(offsets) < 0):
        raise bad("row offsets that do not fit the values")
    if indices.size and (indices.min() < 0 or indices.max() >= n_parameters):
        raise bad(f"parameter indices outside 0..{n_parameters - 1}")
    if not (np.isfinite(values).all() and np.isfinite(norms).all() and np.isfinite(logits).all()) or (norms < 0).any():
        raise bad("NaN, infinite or negative values")
    if kind.non_negative and (values < 0).any():
        raise bad("negative diagonal PEF values")
    if logits.shape[1] and (classes.size and (classes.min() < 0 or classes.max() >= logits.shape[1])):
        raise bad("class slots outside the model's classes")
    if labels.size and (labels.min() < -1 or (logits.shape[1] and labels.max() >= logits.shape[1])):
        raise bad("labels outside the model's classes")


@contextlib.contextmanager
def _recompute_hint():
    """A chunk that cannot be read: say how to get it back."""
    try:
        yield
    except StoreError as err:
        gone = "does not exist" in str(err)  # "delete this file" of a file already gone was no advice
        raise StoreError(f"{str(err).rstrip('.')}. {'Run' if gone else 'Delete this chunk file and run'} the command that "
                         "wrote the store again with the same arguments (write_pefs, or the run's own command): it "
                         "recomputes the missing batch") from err


class PefStore:
    """A PEF store folder on disk. ``load()`` reads it into memory."""

    def __init__(self, path: str | os.PathLike):
        self.path = user_path(path)
        if not self.path.is_dir():
            raise StoreError(f"there is no PEF store at {self.path} (it does not exist or is not a folder): check the "
                             "path, or compute the PEFs with write_pefs(...)")
        if not (self.path / MANIFEST).exists():
            raise StoreError(f"{self.path} is not a PEF store (it has no {MANIFEST}): " + (
                run_part(self.path, "pefs") or "check the path, or compute the PEFs with write_pefs(...)"))
        try:
            self.manifest = read_json(self.path / MANIFEST)
            check_manifest(self.manifest, self.path)
        except StoreError as err:
            raise StoreError(f"{str(err).rstrip('.')}. The store cannot be used: compute it again with "
                             "write_pefs(..., overwrite=True)") from err
        self.estimate = None  # set by write_pefs: the cost estimate made before the run

    @classmethod
    def being_written(cls, path: str | os.PathLike, manifest: dict) -> "PefStore":
        """The store a writer is about to write at ``path``, whose manifest is not on disk yet:
        to check the chunks already there against the run's identity."""
        store = cls.__new__(cls)
        store.path, store.manifest, store.estimate = Path(path), manifest, None
        return store

    @property
    def complete(self) -> bool:
        """Whether every chunk was written and the store marked complete."""
        return bool(self.manifest.get("complete"))

    @property
    def kind(self) -> str:
        """The kind of PEFs held: "lrm" or "d"."""
        return self.manifest["kind"]

    @property
    def n_examples(self) -> int:
        """The number of examples the store holds PEFs of."""
        return int(self.manifest["n_examples"])

    @property
    def n_chunks(self) -> int:
        """The number of chunk files (batches) the store is written in."""
        return int(self.manifest["n_chunks"])

    @property
    def layout(self) -> ParameterLayout:
        """The parameters the PEFs are over (names and shapes)."""
        return ParameterLayout.from_dict(self.manifest["layout"])

    @property
    def info(self) -> dict:
        """What the PEFs were computed with (model, its fingerprint, n_values, ...), a copy."""
        return dict(self.manifest["info"])

    @property
    def store_id(self) -> str:
        """The short hash every chunk of this store carries (chunks of other runs are refused)."""
        return store_id(self.manifest)

    def chunks_on_disk(self) -> list[int]:
        """The indices of the chunk files present (all of them once complete)."""
        return [i for i in range(self.n_chunks) if chunk_path(self.path, i).exists()]

    def _check_header(self, header: dict, index: int) -> None:
        where = chunk_path(self.path, index)
        if header.get("chunk") != index:
            raise StoreError(f"{where} says it is chunk {header.get('chunk')!r}, not {index}; re-create the store")
        if header.get("store") != self.store_id:
            raise StoreError(
                f"{where} belongs to another PEF run (store {header.get('store')!r}, this store is {self.store_id!r}): "
                "its manifest.json was changed since, or the chunk copied in from another store. Chunks of different "
                "runs cannot be mixed: restore the manifest, or re-create the store (write_pefs(..., overwrite=True))"
            )

    def check_checksum(self, index: int, checksums: list | None = None) -> None:
        """StoreError, naming the chunk, when its file's bytes are not those recorded in
        ``checksums`` (default: the manifest's; stores of format version 1 record none)."""
        checksums = self.manifest.get("checksums") if checksums is None else checksums
        if not checksums:
            return
        where = chunk_path(self.path, index)
        found = file_checksum(where)
        if found != checksums[index]:
            raise StoreError(
                f"chunk {index} of the PEF store {self.path} ({where.name}) is corrupted: its sha256 is {found[:16]}…, "
                f"the manifest recorded {checksums[index][:16]}… when it was written (the disk or a copy changed it). "
                f"Delete {where} and call write_pefs again with the same arguments: it recomputes that batch"
            )

    def chunk_is_valid(self, index: int, checksums: list | None = None) -> bool:
        """Whether chunk ``index`` is on disk, readable, of this store and, where ``checksums``
        records it, unchanged (otherwise reads its header only)."""
        try:
            self._check_header(read_header(chunk_path(self.path, index), PEF_CHUNK), index)
            if checksums:
                self.check_checksum(index, checksums)
        except StoreError:
            return False
        return True

    def read_chunk(self, index: int) -> PefChunk:
        """Chunk ``index`` (a PefChunk), checked against the manifest and its checksum (StoreError if not)."""
        where = chunk_path(self.path, index)
        with _recompute_hint():
            header = read_header(where, PEF_CHUNK)
        self._check_header(header, index)  # a chunk of another run is named as such, not as corrupted
        self.check_checksum(index)  # before its arrays are parsed: a changed byte is named as such
        with _recompute_hint():
            arrays, header = read_arrays(where, PEF_CHUNK)
        check_chunk(arrays, self.kind, self.layout.n_parameters, str(where))
        return PefChunk(**{k: arrays[k] for k in PefChunk.arrays_order})

    def load(self):
        """All PEFs in memory (:class:`LrmPefs` or :class:`DPefs`)."""
        if not self.complete:
            done = len(self.chunks_on_disk())
            raise StoreError(
                f"the PEF store {self.path} is incomplete ({done} of {self.n_chunks} batches written): "
                "call write_pefs again with the same arguments to resume it"
            )
        chunks = [self.read_chunk(i) for i in range(self.n_chunks)]
        if len({c.classes.shape[1] for c in chunks}) > 1 or len({c.logits.shape[1] for c in chunks}) > 1:
            raise StoreError(f"the chunks of {self.path} disagree on the number of classes; re-create the store")
        n = sum(c.n_examples for c in chunks)
        if n != self.n_examples:
            raise StoreError(f"{self.path} should hold {self.n_examples} examples but its chunks hold {n}")
        return chunks_to_pefs(chunks, self.kind, self.layout, self.info)

    def __repr__(self) -> str:
        state = "complete" if self.complete else "INCOMPLETE"
        return f"PefStore({str(self.path)!r}, kind={self.kind!r}, n_examples={self.n_examples}, {state})"


def load_pefs(path: str | os.PathLike):
    """Read a PEF store written by :func:`workbench.write_pefs` or :func:`save_pefs`."""
    return PefStore(path).load()


def new_manifest(kind, info, layout, n_examples, n_chunks, fingerprints, complete=False) -> dict:
    """A store's manifest (``complete`` False until every chunk is on disk)."""
    return {
        **PEF_STORE.header(),
        "producer": producer(),
        "kind": kind,
        "info": info,
        "layout": layout.to_dict(),
        "n_examples": n_examples,
        "n_chunks": n_chunks,
        "fingerprints": fingerprints,
        "complete": complete,
    }
