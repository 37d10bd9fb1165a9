"""On-disk stores: PEFs streamed batch by batch, and arrays with their provenance.

Every file is written to a temporary name and renamed into place, so a killed process
leaves either the old state or the new one, never half a file. Data is safetensors
(no pickle) with JSON beside it; every store records a format version and what produced
it, and a reader refuses a store of another format or version with a message that says so.

A PEF store is a folder::

    manifest.json                 format, version, kind, provenance, parameter layout,
                                  fingerprints of the model and data, "complete"
    chunks/000000.safetensors     one batch's sparse PEFs (see fisher.PefChunk)
    chunks/000001.safetensors     ...

``write_pefs`` skips batches whose chunk is already on disk, so calling it again with
the same arguments after a crash resumes where it stopped; ``manifest.json`` says
``"complete": true`` only once every batch is written.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
from collections import deque
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.numpy import load_file, save_file

from . import __version__
from .params import ParameterLayout

logger = logging.getLogger(__name__)

PEF_FORMAT = "npeff-workbench/pefs"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
CHUNKS = "chunks"


class StoreError(ValueError):
    """A store is missing, incomplete, truncated, of another format, or mixed with an incompatible one."""


# ---------------------------------------------------------------------------------------
# Atomic files
# ---------------------------------------------------------------------------------------


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike):
    """Yields a temporary path beside ``path``; renames it into place only on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        _fsync(tmp)  # the data reaches the disk before the name does, so a power cut cannot leave an empty file
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def _fsync(path: str | os.PathLike) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# Names of temporary files: ours from atomic_path (".NAME.XXXX.tmp"), and safetensors' own, which
# writes through Rust's tempfile crate (".tmp" + 6 random characters) before it renames.
_TEMPORARY_NAME = re.compile(r"\..+\.tmp|\.tmp[A-Za-z0-9]{6}")


def is_temporary(name: str) -> bool:
    """Whether ``name`` is a temporary file a killed writer can leave behind."""
    return _TEMPORARY_NAME.fullmatch(name) is not None


def remove_temporaries(folder: str | os.PathLike) -> int:
    """Delete the temporary files a killed writer left in ``folder`` (not recursive); returns how many."""
    removed = 0
    for leftover in Path(folder).iterdir():
        if not (leftover.is_file() and is_temporary(leftover.name)):
            continue
        with contextlib.suppress(FileNotFoundError):
            leftover.unlink()
            removed += 1
    return removed


def write_json(path: str | os.PathLike, obj) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=1, sort_keys=True, default=_json_default))


def _json_default(obj):
    if isinstance(obj, (np.integer, np.floating)):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot write {type(obj).__name__} as JSON")


def read_json(path: str | os.PathLike) -> dict:
    """A JSON object written by :func:`write_json`; StoreError if missing, damaged or not an object."""
    path = Path(path)
    if not path.exists():
        raise StoreError(f"{path} does not exist")
    try:
        obj = json.loads(path.read_bytes())
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as err:
        raise StoreError(f"{path} is not valid JSON (truncated or not written by this package): {err}") from err
    if not isinstance(obj, dict):
        raise StoreError(f"{path} holds a JSON {type(obj).__name__}, not the object this package writes; re-create it")
    return obj


def write_arrays(path: str | os.PathLike, arrays: Mapping[str, np.ndarray], header: dict) -> None:
    """One safetensors file of numpy arrays, with ``header`` (JSON) as its metadata."""
    arrays = {k: np.ascontiguousarray(v) for k, v in arrays.items()}
    with atomic_path(path) as tmp:
        save_file(arrays, str(tmp), metadata={"header": json.dumps(header, default=_json_default)})


def read_arrays(path: str | os.PathLike, expected_format: str | None = None) -> tuple[dict[str, np.ndarray], dict]:
    """The arrays and header written by :func:`write_arrays`, checked for format and version."""
    with _reading_safetensors(path) as path:
        arrays = load_file(str(path))
    return arrays, read_header(path, expected_format)


def read_header(path: str | os.PathLike, expected_format: str | None = None) -> dict:
    """Only the JSON header of a file written by :func:`write_arrays` (cheap: no array is read)."""
    with _reading_safetensors(path) as path, safe_open(str(path), framework="np") as f:
        metadata = f.metadata() or {}
    header = _parse_header(metadata.get("header", "{}"), path)
    if expected_format is not None:
        check_format(header, expected_format, path)
    return header


@contextlib.contextmanager
def _reading_safetensors(path: str | os.PathLike):
    """Turns whatever safetensors raises on a missing or damaged file into a StoreError that names it."""
    path = Path(path)
    if not path.exists():
        raise StoreError(f"{path} does not exist")
    try:
        yield path
    except Exception as err:  # safetensors raises several types for damaged files; all mean the same here
        raise StoreError(
            f"{path} cannot be read as a safetensors file (truncated, or not written by this package): {err}"
        ) from err
    except BaseException as err:  # a Rust panic inside safetensors (pyo3's PanicException) on hostile bytes
        if type(err).__name__ != "PanicException":
            raise
        raise StoreError(f"{path} is damaged: safetensors could not parse it ({err})") from err


def _parse_header(text: str, path) -> dict:
    try:
        header = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as err:
        raise StoreError(f"{path} has a damaged header: {err}") from err
    if not isinstance(header, dict):
        raise StoreError(f"{path} has a damaged header: a JSON {type(header).__name__}, not an object")
    return header


def check_format(header: dict, expected_format: str, path) -> None:
    found = header.get("format") if isinstance(header, dict) else None
    if found != expected_format:
        raise StoreError(f"{path} holds {found or 'an unknown format'!s}, not {expected_format}")
    version = header.get("format_version")
    if version != FORMAT_VERSION:
        raise StoreError(
            f"{path} has format version {version}; this package (version {__version__}) reads version "
            f"{FORMAT_VERSION}. Re-create it with this version of the package."
        )


def producer() -> dict:
    return {"package": "npeff-workbench", "package_version": __version__, "torch": torch.__version__}


# ---------------------------------------------------------------------------------------
# Fingerprints: is a resumed run the same run?
# ---------------------------------------------------------------------------------------


def fingerprint_tensors(tensors: Mapping[str, torch.Tensor] | torch.Tensor) -> str:
    h = hashlib.sha256()
    items = {"": tensors} if isinstance(tensors, torch.Tensor) else dict(sorted(tensors.items()))
    for name, t in items.items():
        t = t.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        h.update(t.view(torch.uint8).numpy().reshape(-1).data if t.numel() else b"")  # hashed in place, no copy
    return h.hexdigest()


def fingerprint_model(model: torch.nn.Module) -> str:
    return fingerprint_tensors(dict(model.state_dict()))


def fingerprint_arrays(arrays: Mapping[str, np.ndarray]) -> str:
    """sha256 of named numpy arrays (names, dtypes, shapes and bytes)."""
    h = hashlib.sha256()
    for name, a in sorted(arrays.items()):
        a = np.ascontiguousarray(a)
        h.update(f"{name}:{a.dtype.str}:{a.shape};".encode())
        h.update(a.view(np.uint8).reshape(-1).data if a.size else b"")
    return h.hexdigest()


def fingerprint_pefs(pefs) -> str:
    """What a decomposition or checkpoint records of the PEFs it was fitted to."""
    matrix = pefs.X if pefs.kind == "lrm" else pefs.F
    arrays = {"data": matrix.data, "indices": matrix.indices.astype(np.int64), "indptr": matrix.indptr.astype(np.int64),
              "frobenius_norms": pefs.frobenius_norms, "shape": np.array(matrix.shape, dtype=np.int64)}
    if pefs.kind == "lrm":
        arrays["classes"] = pefs.classes
    return fingerprint_arrays(arrays)


def check_same_model(recorded: Mapping, model: torch.nn.Module, what: str) -> None:
    """Refuse ``model`` when ``recorded`` (a PEF store's info or a decomposition's pef_info) names another one.

    Records without a model fingerprint (PEFs made outside a model) are accepted.
    """
    expected = recorded.get("model_fingerprint")
    if expected and fingerprint_model(model) != expected:
        from .fisher import model_name

        raise StoreError(
            f"{what} was computed from another model ({recorded.get('model', 'unnamed')!s}, weights fingerprint "
            f"{expected[:12]}) than the one given ({model_name(model)}, {fingerprint_model(model)[:12]}): "
            "use the model it was made from, or recompute the PEFs and decomposition with this one"
        )


# ---------------------------------------------------------------------------------------
# PEF stores
# ---------------------------------------------------------------------------------------

#: manifest keys that say which run a store belongs to (a resumed run must match all of them)
_IDENTITY = ("format", "format_version", "kind", "layout", "n_examples", "n_chunks", "fingerprints")
_MANIFEST_TYPES = {"kind": str, "info": dict, "layout": dict, "n_examples": int, "n_chunks": int,
                   "fingerprints": dict, "complete": bool}
_CHUNK_DTYPES = {"values": np.float32, "indices": np.int64, "row_offsets": np.int64, "classes": np.int64,
                 "frobenius_norms": np.float32, "labels": np.int64, "logits": np.float32}


def _chunk_path(root: Path, index: int) -> Path:
    return root / CHUNKS / f"{index:06d}.safetensors"


def store_id(manifest: dict) -> str:
    """A short hash of what identifies a store's run; every chunk file carries it, so chunks of
    different runs are never mixed (the package version may differ between a run and its resume)."""
    identity = {k: manifest.get(k) for k in _IDENTITY}
    identity["info"] = {k: v for k, v in manifest.get("info", {}).items() if k != "package_version"}
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=_json_default).encode()).hexdigest()[:16]


def _check_manifest(manifest: dict, path: Path) -> None:
    check_format(manifest, PEF_FORMAT, path)
    where = path / MANIFEST
    for key, kind in _MANIFEST_TYPES.items():
        value = manifest.get(key)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise StoreError(f"{where} is damaged: {key!r} should be a {kind.__name__}, found {value!r}; re-create the store")
    if manifest["kind"] not in ("lrm", "d"):
        raise StoreError(f"{where} is damaged: kind {manifest['kind']!r} is neither 'lrm' nor 'd'")
    if manifest["n_examples"] < 1 or manifest["n_chunks"] < 1 or manifest["n_chunks"] > manifest["n_examples"]:
        raise StoreError(f"{where} is damaged: {manifest['n_examples']} examples in {manifest['n_chunks']} chunks")
    try:
        layout = ParameterLayout.from_dict(manifest["layout"])
        n_parameters = layout.n_parameters
    except (KeyError, TypeError, ValueError) as err:
        raise StoreError(f"{where} is damaged: its parameter layout cannot be read ({err!r})") from err
    if not layout.names or len(layout.names) != len(layout.shapes) or n_parameters < 1 or any(d < 0 for s in layout.shapes for d in s):
        raise StoreError(f"{where} is damaged: its parameter layout is inconsistent")


def _check_chunk(arrays: dict, kind: str, n_parameters: int, where: str) -> None:
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
    n_rows = b * classes.shape[1] if kind == "lrm" else b
    if kind == "lrm" and classes.shape[1] < 1:
        raise bad("no class slots")
    if offsets.shape != (n_rows + 1,) or offsets[0] != 0 or offsets[-1] != values.size or np.any(np.diff(offsets) < 0):
        raise bad("row offsets that do not fit the values")
    if indices.size and (indices.min() < 0 or indices.max() >= n_parameters):
        raise bad(f"parameter indices outside 0..{n_parameters - 1}")
    if not (np.isfinite(values).all() and np.isfinite(norms).all() and np.isfinite(logits).all()) or (norms < 0).any():
        raise bad("NaN, infinite or negative values")
    if kind == "d" and (values < 0).any():
        raise bad("negative diagonal PEF values")
    if logits.shape[1] and (classes.size and (classes.min() < 0 or classes.max() >= logits.shape[1])):
        raise bad("class slots outside the model's classes")
    if labels.size and (labels.min() < -1 or (logits.shape[1] and labels.max() >= logits.shape[1])):
        raise bad("labels outside the model's classes")


class PefStore:
    """A PEF store folder on disk. ``load()`` reads it into memory."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if not self.path.is_dir():
            raise StoreError(f"there is no PEF store at {self.path} (it does not exist or is not a folder): check the "
                             "path, or compute the PEFs with write_pefs(...)")
        if not (self.path / MANIFEST).exists():
            raise StoreError(f"{self.path} is not a PEF store (it has no {MANIFEST}): check the path, or compute the "
                             "PEFs with write_pefs(...)")
        try:
            self.manifest = read_json(self.path / MANIFEST)
            _check_manifest(self.manifest, self.path)
        except StoreError as err:
            raise StoreError(f"{err}. The store cannot be used: compute it again with write_pefs(..., overwrite=True)") from err
        self.estimate = None  # set by write_pefs: the cost estimate made before the run

    @property
    def complete(self) -> bool:
        return bool(self.manifest.get("complete"))

    @property
    def kind(self) -> str:
        return self.manifest["kind"]

    @property
    def n_examples(self) -> int:
        return int(self.manifest["n_examples"])

    @property
    def n_chunks(self) -> int:
        return int(self.manifest["n_chunks"])

    @property
    def layout(self) -> ParameterLayout:
        return ParameterLayout.from_dict(self.manifest["layout"])

    @property
    def info(self) -> dict:
        return dict(self.manifest["info"])

    @property
    def store_id(self) -> str:
        return store_id(self.manifest)

    def chunks_on_disk(self) -> list[int]:
        return [i for i in range(self.n_chunks) if _chunk_path(self.path, i).exists()]

    def _check_header(self, header: dict, index: int) -> None:
        where = _chunk_path(self.path, index)
        if header.get("chunk") != index:
            raise StoreError(f"{where} says it is chunk {header.get('chunk')!r}, not {index}; re-create the store")
        if header.get("store") != self.store_id:
            raise StoreError(
                f"{where} belongs to another PEF run (store {header.get('store')!r}, this store is {self.store_id!r}); "
                "chunks of different runs cannot be mixed: delete it and call write_pefs again"
            )

    def chunk_is_valid(self, index: int) -> bool:
        """Whether chunk ``index`` is on disk, readable and of this store (reads its header only)."""
        try:
            self._check_header(read_header(_chunk_path(self.path, index), PEF_FORMAT + "/chunk"), index)
        except StoreError:
            return False
        return True

    def read_chunk(self, index: int):
        from .fisher import PefChunk

        where = _chunk_path(self.path, index)
        try:
            arrays, header = read_arrays(where, PEF_FORMAT + "/chunk")
        except StoreError as err:
            raise StoreError(f"{err}. Delete this chunk file and call write_pefs again with the same arguments: "
                             "it recomputes the missing batch") from err
        self._check_header(header, index)
        _check_chunk(arrays, self.kind, self.layout.n_parameters, str(where))
        return PefChunk(**{k: arrays[k] for k in PefChunk.arrays_order})

    def load(self):
        """All PEFs in memory (:class:`LrmPefs` or :class:`DPefs`)."""
        from .fisher import chunks_to_pefs

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
    """Read a PEF store written by :func:`write_pefs` or :func:`save_pefs`."""
    return PefStore(path).load()


def _manifest(kind, info, layout, n_examples, n_chunks, fingerprints, complete) -> dict:
    return {
        "format": PEF_FORMAT,
        "format_version": FORMAT_VERSION,
        "producer": producer(),
        "kind": kind,
        "info": info,
        "layout": layout.to_dict(),
        "n_examples": n_examples,
        "n_chunks": n_chunks,
        "fingerprints": fingerprints,
        "complete": complete,
    }


def _write_chunk(root: Path, index: int, chunk, store: str) -> None:
    header = {"format": PEF_FORMAT + "/chunk", "format_version": FORMAT_VERSION, "chunk": index, "store": store,
              "producer": {"package": "npeff-workbench", "package_version": __version__}}
    write_arrays(_chunk_path(root, index), chunk.arrays(), header)


class _ChunkWriter:
    """Writes a run's chunks in order on one background thread, at most ``depth`` behind the
    computation, so that serialising and fsync-ing a chunk overlap the next batch (on the
    embedded model they were a tenth of a run). A failed write stops the writes after it
    and is raised by the next :meth:`submit` or at the end of the ``with`` block; leaving
    the block waits for the writes in flight, so every chunk it reports is on disk."""

    def __init__(self, out: Path, identity: str, depth: int = 2):
        self.out, self.identity, self.depth = out, identity, depth
        self._pending: deque = deque()
        self._failed = False
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="workbench-store")

    def __enter__(self) -> "_ChunkWriter":
        return self

    def submit(self, index: int, chunk) -> None:
        while len(self._pending) >= self.depth:
            self._pending.popleft().result()
        self._pending.append(self._thread.submit(self._write, index, chunk))

    def _write(self, index: int, chunk) -> None:
        if self._failed:
            return
        try:
            _write_chunk(self.out, index, chunk, self.identity)
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


def save_pefs(pefs, path: str | os.PathLike, examples_per_chunk: int = 1024) -> PefStore:
    """Write in-memory PEFs (e.g. from ``LrmPefs.from_dense``) as a store, replacing ``path``."""
    from .fisher import PefChunk

    path = Path(path)
    n = pefs.n_examples
    if n == 0:
        raise ValueError("the PEF set is empty: there is nothing to save")
    starts = list(range(0, n, examples_per_chunk))
    manifest = _manifest(pefs.kind, pefs.info, pefs.layout, n, len(starts), {"pefs": fingerprint_pefs(pefs)}, False)
    _reset_folder(path)
    write_json(path / MANIFEST, manifest)
    for index, start in enumerate(starts):
        part = pefs[start : start + examples_per_chunk]
        matrix = part.X if pefs.kind == "lrm" else part.F
        chunk = PefChunk(
            values=matrix.data.astype(np.float32),
            indices=matrix.indices.astype(np.int64),
            row_offsets=matrix.indptr.astype(np.int64),
            classes=part.classes if pefs.kind == "lrm" else np.zeros((part.n_examples, 0), np.int64),
            frobenius_norms=part.frobenius_norms,
            labels=part.labels,
            logits=part.logits,
        )
        _write_chunk(path, index, chunk, store_id(manifest))
    write_json(path / MANIFEST, dict(manifest, complete=True))
    return PefStore(path)


def _reset_folder(path: Path) -> None:
    if path.exists():
        shutil.rmtree(path)
    (path / CHUNKS).mkdir(parents=True)


def write_pefs(
    out: str | os.PathLike,
    model: torch.nn.Module,
    inputs,
    labels=None,
    *,
    kind: str = "lrm",
    n_values: int | None = 65536,
    top_k_classes: int | None = None,
    include=None,
    exclude=None,
    batch_size: int | None = None,
    method: str = "hooks",
    device: str | torch.device | None = None,
    progress: bool = True,
    overwrite: bool = False,
    provenance: Mapping | None = None,
    check_resources: bool = True,
) -> PefStore:
    """Compute PEFs batch by batch and stream them to the store folder ``out``.

    Memory holds one batch at a time. If ``out`` holds an unfinished store made with the
    same model, data and arguments, only the missing batches are computed (resume; also
    after the process was killed). A store made with anything else is refused unless
    ``overwrite=True``. Arguments as in :func:`workbench.fisher.compute_pefs`, and:

    batch_size: examples per batch and per chunk file; None chooses it from the memory
        available (recorded in the manifest, so a resume reuses it).
    provenance: JSON-able facts recorded with the PEFs (e.g. ``{"model_path": ..., "seed": ...}``).
    check_resources: before anything is written, estimate the disk, peak memory and time
        of the run (from timing its first batch) and refuse, with the numbers, when the disk
        or memory will not hold it (:class:`workbench.estimate.InsufficientResourcesError`).
        The estimate is shown in the progress bar and kept as ``store.estimate``.
    """
    from . import estimate as est
    from .device import resolve_device
    from .fisher import PefConfig, eval_mode, make_plan, n_inputs, split_labels

    out = Path(out)
    device = resolve_device(device) if device is not None else next(model.parameters()).device
    inputs, labels = split_labels(inputs, labels)
    existing = _existing_manifest(out, overwrite)
    if batch_size is None and existing is not None:
        batch_size = existing["info"].get("batch_size")  # a resume keeps the chunking it started with
    config = PefConfig(kind, n_values, top_k_classes, include, exclude, est.PROBE_BATCH if batch_size is None else batch_size, method)
    model.to(device)
    plan = make_plan(model, config)
    n = n_inputs(inputs)
    with eval_mode(model):
        # Everything that bad input can make fail happens here, before anything is written.
        probe = None
        if batch_size is None:
            probe = est.probe_batch(model, inputs, labels, config, plan, device, 0)
            config = dataclasses.replace(config, batch_size=est.choose_batch_size(probe, n, device, plan.layout.n_parameters))
        manifest = _new_manifest(model, inputs, labels, config, plan, n, provenance)
        if existing is not None:
            _check_resume(out, existing, manifest)
        done = _valid_chunks(out, manifest, existing) if existing is not None else set()
        missing = [b for b in range(manifest["n_chunks"]) if b not in done]
        estimate = None
        if missing:
            if probe is None or probe.size != config.batch_size:  # the probe must be a batch of the run
                probe = est.probe_batch(model, inputs, labels, config, plan, device, missing[0], warm_up=probe is None)
            est.check_probe(probe, labels)
            n_done = sum(_batch_len(b, config.batch_size, n) for b in done)
            estimate = est.estimate_pef_run(probe, config, plan, n, n_done=n_done, out=out, in_memory=False, device=device)
            if check_resources:
                estimate.check()
        else:
            probe = None  # the store is complete on disk: nothing to compute

        created = existing is None
        _open_store(out, manifest, created)
        if not created and existing.get("complete") and missing:
            write_json(out / MANIFEST, manifest)  # chunks are missing: no longer complete until they are back
        try:
            _stream(out, manifest, model, inputs, labels, config, plan, device, done, probe, estimate, progress)
        except (ValueError, TypeError):
            if created:  # bad input found mid-run: leave nothing behind that looks like a usable store
                shutil.rmtree(out, ignore_errors=True)
            raise
    write_json(out / MANIFEST, dict(manifest, complete=True))
    store = PefStore(out)
    store.estimate = estimate
    return store


def _stream(out, manifest, model, inputs, labels, config, plan, device, done, probe, estimate, progress) -> None:
    """Write the probe's chunk, then compute and write every other missing one, in order."""
    from tqdm.auto import tqdm

    from .estimate import check_chunk_finite
    from .fisher import iter_pef_chunks

    n, identity = manifest["n_examples"], store_id(manifest)
    with tqdm(total=n, initial=sum(_batch_len(b, config.batch_size, n) for b in done), desc="PEFs", unit="ex",
              disable=not progress) as bar, _ChunkWriter(out, identity) as writer:
        if estimate is not None:
            logger.info("PEF run %s: %s", out, estimate)
            bar.set_postfix_str(estimate.postfix(), refresh=False)
        if probe is not None:
            writer.submit(probe.index, probe.chunk)
            bar.update(probe.size)
        skip = done | ({probe.index} if probe is not None else set())
        for index, size, chunk in iter_pef_chunks(model, inputs, labels, config, plan, device, skip=skip.__contains__):
            if chunk is not None:
                check_chunk_finite(chunk, index * config.batch_size)
                writer.submit(index, chunk)
                bar.update(size)


def _batch_len(index: int, batch_size: int, n: int) -> int:
    return min(batch_size, n - index * batch_size)


def _new_manifest(model, inputs, labels, config, plan, n, provenance) -> dict:
    from .fisher import pef_info

    fingerprints = {
        "model": fingerprint_model(model),
        "inputs": fingerprint_tensors(inputs),
        "labels": fingerprint_tensors(labels),
    }
    info = dict(pef_info(model, config, plan, n), model_fingerprint=fingerprints["model"])
    if provenance:
        info["provenance"] = json.loads(json.dumps(dict(provenance), default=_json_default))
    n_chunks = -(-n // config.batch_size)
    return _manifest(config.kind, info, plan.layout, n, n_chunks, fingerprints, False)


def _existing_manifest(out: Path, overwrite: bool) -> dict | None:
    """The manifest of the unfinished or finished store at ``out``, to resume or to check against.

    None for a new folder, for one holding only what a writer killed before its first
    manifest left (an empty chunks folder, temporaries), and for any store when
    ``overwrite``. A folder holding anything else is never written to, not even with
    ``overwrite``: it might be the user's.
    """
    if not out.exists():
        return None
    if not out.is_dir():
        raise StoreError(f"{out} is a file, not a folder; choose a new or empty folder for the PEF store")
    if (out / MANIFEST).exists():
        if overwrite:
            return None
        manifest = read_json(out / MANIFEST)
        _check_manifest(manifest, out)
        return manifest
    leftovers = all((p.name == CHUNKS and p.is_dir()) or is_temporary(p.name)
                    for p in out.iterdir())
    if not leftovers:
        raise StoreError(f"{out} exists and is not a PEF store; choose an empty or new folder")
    return None


def _check_resume(out: Path, existing: dict, manifest: dict) -> None:
    """The store on disk must be the same run; anything else is an error that names what differs."""
    differ = [k for k in _IDENTITY if existing.get(k) != manifest.get(k)]
    old_info = existing.get("info", {})
    differ += [f"info.{k}" for k in sorted(set(manifest["info"]) | set(old_info))
               if k != "package_version" and old_info.get(k) != manifest["info"].get(k)]
    if differ:
        state = "a complete" if existing.get("complete") else "an unfinished"
        raise StoreError(
            f"{out} already holds {state} PEF store made with other arguments (differs: {', '.join(differ)}); "
            "pass overwrite=True to replace it, or choose another folder"
        )


def _valid_chunks(out: Path, manifest: dict, existing: dict) -> set[int]:
    """Chunks already on disk that belong to this run; damaged or foreign ones are deleted (recomputed)."""
    store = PefStore.__new__(PefStore)
    store.path, store.manifest = out, manifest
    valid, invalid = set(), []
    for index in store.chunks_on_disk():
        (valid.add(index) if store.chunk_is_valid(index) else invalid.append(index))
    if invalid:
        logger.warning("chunks %s of %s are damaged or from another run; they are recomputed", invalid, out)
        if existing.get("complete"):
            write_json(out / MANIFEST, dict(existing, complete=False))
        for index in invalid:
            _chunk_path(out, index).unlink()
    return valid


def _open_store(out: Path, manifest: dict, created: bool) -> None:
    """A new store: folder, then manifest (incomplete), then chunks. A resumed one: stale temporaries removed."""
    if created:
        if out.exists():
            shutil.rmtree(out)
        out.mkdir(parents=True)
        write_json(out / MANIFEST, manifest)
        (out / CHUNKS).mkdir()
    else:
        removed = remove_temporaries(out) + remove_temporaries(out / CHUNKS)
        if removed:
            logger.info("removed %d temporary files a killed run left in %s", removed, out)
        (out / CHUNKS).mkdir(exist_ok=True)
