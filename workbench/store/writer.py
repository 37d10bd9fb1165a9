"""Writing a PEF store: a new one, or the resume of an unfinished one, chunk by chunk.

:class:`PefStoreWriter` is the one way chunks reach a store; the PEF runs
(:func:`workbench.write_pefs`, :func:`workbench.distributed.write_pefs_sharded`) and
:func:`save_pefs` all write through it:

1. :func:`existing_manifest` reads what is at the folder (nothing, a store to resume, or a
   folder that is not a store, which is refused);
2. :meth:`PefStoreWriter.resume` checks a store on disk is the same run (a StoreError names
   what differs) and keeps its valid chunks; damaged or foreign ones are deleted, to be
   recomputed;
3. :meth:`PefStoreWriter.open` creates the folder and its manifest (incomplete), or cleans
   a resumed one;
4. :meth:`PefStoreWriter.write_chunk` (or :meth:`PefStoreWriter.in_background`) writes
   chunks, each atomically;
5. :meth:`PefStoreWriter.complete` marks the store complete, once every chunk is on disk.

Steps 3 to 5 run under :meth:`PefStoreWriter.lock`: one writer per store. Two processes writing
one store at once deleted each other's chunks, and one of them returned a store marked complete
that could not be read.

A killed writer can leave a temporary file (never renamed, so never read as a chunk;
deleted on resume), a new store folder with an empty chunks folder and no manifest (taken
for a new folder), one with a manifest and no chunks (a resume finds it), or nothing.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from safetensors.numpy import save

from ..core.arguments import cannot_write_in, check_outside_run, flag, user_path
from .. import __version__
from ..core.chunks import PefChunk
from ..core.pefs import DPefs, LrmPefs
from .files import (CHECKSUM, StoreError, StoreWriteError, check_folder, file_checksum, is_temporary, read_json,
                    remove_temporaries, write_arrays, write_json, writing)
from .fingerprints import fingerprint_pefs
from .lock import LOCK, FolderBusyError, exclusive
from .formats import PEF_CHUNK, PEF_STORE
from .pef_store import IDENTITY, CHUNKS, MANIFEST, PefStore, check_manifest, chunk_path, new_manifest, store_id

logger = logging.getLogger(__name__)


def chunk_header(index: int, store: str) -> dict:
    return {**PEF_CHUNK.header(), "chunk": index, "store": store,
            "producer": {"package": "npeff-workbench", "package_version": __version__}}


def write_chunk(root: Path, index: int, chunk: PefChunk, store: str) -> str:
    """Chunk ``index`` of the store ``store`` (its :func:`~workbench.store.pef_store.store_id`) at ``root``;
    returns the sha256 of the file, read back (from the page cache) as it now is on disk."""
    path = chunk_path(root, index)
    write_arrays(path, chunk.arrays(), chunk_header(index, store))
    return file_checksum(path)


def chunk_file_size(chunk: PefChunk, index: int) -> int:
    """Bytes the chunk's file takes on disk (serialised in memory, with a header of its real length)."""
    header = {**chunk_header(index, "0" * 16), CHECKSUM: "0" * 64}  # as write_arrays writes it
    return len(save({k: np.ascontiguousarray(v) for k, v in chunk.arrays().items()}, metadata={"header": json.dumps(header)}))


class ChunkWriter:
    """Writes a run's chunks in order on one background thread, at most ``depth`` behind the
    computation, so that serialising and fsync-ing a chunk overlap the next batch
    (docs/design.md, "Reliability"). A failed write stops the writes after it
    and is raised by the next :meth:`submit` or at the end of the ``with`` block; leaving
    the block waits for the writes in flight, so every chunk it reports is on disk."""

    def __init__(self, out: Path, identity: str, depth: int = 2, checksums: dict | None = None):
        self.out, self.identity, self.depth = out, identity, depth
        self.checksums = {} if checksums is None else checksums  # chunk index → sha256 of what was written
        self._pending: deque = deque()
        self._failed = False
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="workbench-store")

    def __enter__(self) -> "ChunkWriter":
        return self

    def submit(self, index: int, chunk) -> None:
        while len(self._pending) >= self.depth:
            self._pending.popleft().result()
        self._pending.append(self._thread.submit(self._write, index, chunk))

    def _write(self, index: int, chunk) -> None:
        if self._failed:
            return
        try:
            self.checksums[index] = write_chunk(self.out, index, chunk, self.identity)
        except BaseException:
            self._failed = True
            raise

    def __exit__(self, exc_type, *exc) -> None:
        try:
            while self._pending:
                future = self._pending.popleft()
                if exc_type is None:
                    future.result()
                else:  # already failing: wait for the write, keep the first error
                    future.exception()
        finally:
            self._thread.shutdown(wait=True)


def existing_manifest(out: str | os.PathLike, overwrite: bool) -> dict | None:
    """The manifest of the unfinished or finished store at ``out``, to resume or to check against.

    None for a new folder, for one holding only what a writer killed before its first
    manifest left (an empty chunks folder, temporaries), and for any store when
    ``overwrite``. A folder holding anything else is never written to, not even with
    ``overwrite``: it might be the user's; nor is a folder inside a run folder that another process made.
    """
    out = check_folder(out, "the PEF store")
    overwrite = flag(overwrite, "overwrite")
    check_outside_run(out, "the PEF store", "PEFs", example="pefs")
    reason = None if (out / MANIFEST).exists() else cannot_write_in(out)  # a complete store may be read-only
    if reason:  # found before the PEFs are computed, not at the store's lock after its first batch
        raise StoreWriteError(f"cannot write the PEF store {out} ({reason}); choose a folder this user may write")
    if not out.exists():
        return None
    if (out / MANIFEST).exists():
        if overwrite:
            return None
        manifest = read_json(out / MANIFEST, fix="compute the store again with overwrite=True (--overwrite on the "
                             "command line), or choose another folder")
        check_manifest(manifest, out)
        return manifest
    leftovers = all((p.name == CHUNKS and p.is_dir()) or is_temporary(p.name) or p.name == LOCK
                    for p in out.iterdir())
    if not leftovers:
        raise StoreError(f"{out} exists and is not a PEF store; choose an empty or new folder")
    return None


class PefStoreWriter:
    """Writes one run's chunks into the store folder ``out``; ``manifest`` is the run's
    (:func:`~workbench.store.pef_store.new_manifest`), identifying it."""

    def __init__(self, out: str | os.PathLike, manifest: dict, existing: dict | None = None):
        self.path = check_folder(out, "the PEF store")
        if existing is not None and existing.get("format_version") in PEF_STORE.reads:
            # a store begun by an older version is resumed in its own format version, so its chunks
            # (which name the store by a hash that includes the version) stay valid
            manifest = dict(manifest, format_version=existing["format_version"])
        self.manifest = manifest
        self.store_id = store_id(manifest)
        self.checksums: dict[int, str] = {}  # of the chunks this writer wrote

    @property
    def n_chunks(self) -> int:
        return int(self.manifest["n_chunks"])

    @contextlib.contextmanager
    def lock(self, seen: bytes | None):
        """Hold the store's lock while writing; :class:`FolderBusyError` when another process holds it,
        or wrote the store since this one read its manifest (``seen``: the manifest's bytes then, or None)."""
        with exclusive(self.path, "a PEF store"):
            if manifest_bytes(self.path) != seen:
                raise FolderBusyError(f"another process wrote a PEF store into {self.path} while this one was preparing "
                                      "its run: call again to resume (or check) what it wrote, or choose another folder")
            yield

    def resume(self, existing: dict) -> set[int]:
        """The batches of a store on disk (``existing``, its manifest) that need no recomputing.

        StoreError, naming what differs, when the store is not this run; damaged chunks and
        chunks of another run are deleted (and the store marked incomplete)."""
        self.check_same_run(existing)
        store = PefStore.being_written(self.path, self.manifest)
        checksums = existing.get("checksums")  # a complete store's: a chunk changed since is recomputed
        valid, invalid = set(), []
        for index in store.chunks_on_disk():
            (valid.add(index) if store.chunk_is_valid(index, checksums) else invalid.append(index))
        if invalid:
            logger.warning("chunks %s of %s are damaged or from another run; they are recomputed", invalid, self.path)
            if existing.get("complete"):  # its checksums were checked above; complete() records them again
                write_json(self.path / MANIFEST, {k: v for k, v in existing.items() if k != "checksums"} | {"complete": False})
            for index in invalid:
                chunk_path(self.path, index).unlink()
        return valid

    def check_same_run(self, existing: dict) -> None:
        """The store on disk must be the same run; anything else is an error that names what differs."""
        out, manifest = self.path, self.manifest
        differ = [k for k in IDENTITY if existing.get(k) != manifest.get(k)]
        old_info = existing.get("info", {})
        new_info = manifest["info"]
        if new_info.get("model_fingerprint") and old_info.get("model_fingerprint") == new_info["model_fingerprint"]:
            # the same weights, loaded through another spelling of their folder (relative or absolute, another
            # working folder, a run folder moved): the same run, which resumed from 0 when the name differed
            new_info["model"] = old_info.get("model", new_info.get("model"))
        differ += [f"info.{k}" for k in sorted(set(manifest["info"]) | set(old_info))
                   if k != "package_version" and old_info.get(k) != manifest["info"].get(k)]
        if differ:
            state = "a complete" if existing.get("complete") else "an unfinished"
            raise StoreError(
                f"{out} already holds {state} PEF store made with other arguments (differs: {', '.join(differ)}); "
                "pass overwrite=True (--overwrite on the command line) to replace it, or choose another folder"
            )

    def open(self, existing: dict | None, done: set[int]) -> None:
        """A new store (``existing`` None): folder and chunks folder, then manifest (incomplete),
        then chunks; an older store there is replaced, its files only (a file of the user's in
        the folder stays). A resumed one: stale temporaries removed, and no longer complete
        while chunks are missing."""
        out = self.path
        if existing is None:
            with writing(out):
                self._remove_store_files()
                (out / CHUNKS).mkdir(parents=True)
            write_json(out / MANIFEST, self.manifest)
            return
        (out / CHUNKS).mkdir(exist_ok=True)  # a run killed between its manifest and its chunks folder
        removed = remove_temporaries(out) + remove_temporaries(out / CHUNKS)
        if removed:
            logger.info("removed %d temporary files a killed run left in %s", removed, out)
        if existing.get("complete") and len(done) < self.n_chunks:
            write_json(out / MANIFEST, self.manifest)  # chunks are missing: no longer complete until they are back

    def write_chunk(self, index: int, chunk: PefChunk) -> None:
        self.checksums[index] = write_chunk(self.path, index, chunk, self.store_id)

    def in_background(self, depth: int = 2) -> ChunkWriter:
        """A context manager whose ``submit(index, chunk)`` writes on a background thread."""
        return ChunkWriter(self.path, self.store_id, depth, self.checksums)

    def chunks_on_disk(self) -> list[int]:
        return PefStore.being_written(self.path, self.manifest).chunks_on_disk()

    def complete(self) -> PefStore:
        """Mark the store complete (every chunk must be on disk) and open it for reading.

        The manifest records the sha256 of every chunk file: as written, for the chunks this
        writer wrote; as on disk, for those of an earlier process or another rank (checked
        against their headers when the run resumed)."""
        manifest = dict(self.manifest, complete=True)
        if manifest["format_version"] >= 2:
            # also the chunks this writer wrote: another process's overwrite deleted them, and the store read complete
            missing = [i for i in range(self.n_chunks) if not chunk_path(self.path, i).exists()]
            if missing:
                raise StoreError(f"chunks {missing[:10]} of {self.path} are missing: the store cannot be marked complete; "
                                 "call write_pefs again with the same arguments to compute them")
            manifest["checksums"] = [self.checksums.get(i) or file_checksum(chunk_path(self.path, i))
                                     for i in range(self.n_chunks)]
        write_json(self.path / MANIFEST, manifest)
        return PefStore(self.path)

    def remove(self) -> None:
        """Delete the store this writer created (bad input found mid-run: nothing that looks usable
        is left), and its folder if nothing else is in it."""
        self._remove_store_files()
        (self.path / LOCK).unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            self.path.rmdir()

    def _remove_store_files(self) -> None:
        """The manifest, the chunks folder and temporaries: the files a writer writes, no others."""
        if not self.path.exists():
            return
        (self.path / MANIFEST).unlink(missing_ok=True)
        shutil.rmtree(self.path / CHUNKS, ignore_errors=True)
        remove_temporaries(self.path)


def manifest_bytes(out: Path) -> bytes | None:
    """The store's manifest as it is on disk (None: none), to tell whether another process wrote it since."""
    try:
        return (Path(out) / MANIFEST).read_bytes()
    except (FileNotFoundError, NotADirectoryError):
        return None


def save_pefs(pefs, path: str | os.PathLike, examples_per_chunk: int = 1024, *, overwrite: bool = False) -> PefStore:
    """Write in-memory PEFs (e.g. from ``LrmPefs.from_dense``) as a store in the folder ``path``:
    a new or empty folder, or with ``overwrite`` one holding a PEF store (replaced). A folder
    holding anything else is refused: it might be the user's."""
    if not isinstance(pefs, (LrmPefs, DPefs)):
        raise TypeError(f"save_pefs writes LrmPefs or DPefs, got {type(pefs).__name__}; from a dense array, make them "
                        "with LrmPefs.from_dense(array) or DPefs.from_dense(array)")
    path = user_path(path)
    n = pefs.n_examples
    if n == 0:
        raise ValueError("the PEF set is empty: there is nothing to save")
    if not isinstance(examples_per_chunk, (int, np.integer)) or examples_per_chunk < 1:
        raise ValueError(f"examples_per_chunk must be a positive integer, got {examples_per_chunk!r}")
    if not (np.isfinite(pefs.matrix.data).all() and np.isfinite(pefs.frobenius_norms).all()):
        raise ValueError("the PEFs hold NaN or infinite values; a store keeps finite PEFs only: find where they "
                         "came from (a model in half precision, a diverged training) and compute them again")
    seen = manifest_bytes(path)
    if existing_manifest(path, overwrite) is not None:
        raise StoreError(f"{path} already holds a PEF store; pass overwrite=True (--overwrite on the command line) to replace it, or choose another folder")
    starts = list(range(0, n, examples_per_chunk))
    writer = PefStoreWriter(path, new_manifest(pefs.kind, pefs.info, pefs.layout, n, len(starts), {"pefs": fingerprint_pefs(pefs)}))
    with writer.lock(seen):
        writer.open(None, set())
        for index, start in enumerate(starts):
            _save_chunk(writer, pefs, index, start, examples_per_chunk)
        return writer.complete()


def _save_chunk(writer: PefStoreWriter, pefs, index: int, start: int, examples_per_chunk: int) -> None:
    part = pefs[start : start + examples_per_chunk]
    matrix = part.matrix
    chunk = PefChunk(
        values=matrix.data.astype(np.float32),
        indices=matrix.indices.astype(np.int64),
        row_offsets=matrix.indptr.astype(np.int64),
        classes=part.slot_classes,
        frobenius_norms=part.frobenius_norms,
        labels=part.labels,
        logits=part.logits,
    )
    writer.write_chunk(index, chunk)
