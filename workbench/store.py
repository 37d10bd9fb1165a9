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
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.numpy import load_file, save_file

from . import __version__
from .params import ParameterLayout

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
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


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
    path = Path(path)
    if not path.exists():
        raise StoreError(f"{path} does not exist")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise StoreError(f"{path} is not valid JSON (truncated or not written by this package): {err}") from err


def write_arrays(path: str | os.PathLike, arrays: Mapping[str, np.ndarray], header: dict) -> None:
    """One safetensors file of numpy arrays, with ``header`` (JSON) as its metadata."""
    arrays = {k: np.ascontiguousarray(v) for k, v in arrays.items()}
    with atomic_path(path) as tmp:
        save_file(arrays, str(tmp), metadata={"header": json.dumps(header, default=_json_default)})


def read_arrays(path: str | os.PathLike, expected_format: str | None = None) -> tuple[dict[str, np.ndarray], dict]:
    """The arrays and header written by :func:`write_arrays`, checked for format and version."""
    path = Path(path)
    if not path.exists():
        raise StoreError(f"{path} does not exist")
    try:
        arrays = load_file(str(path))
        with safe_open(str(path), framework="np") as f:
            metadata = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as err:
        raise StoreError(
            f"{path} cannot be read as a safetensors file (truncated, or not written by this package): {err}"
        ) from err
    try:
        header = json.loads(metadata.get("header", "{}"))
    except json.JSONDecodeError as err:
        raise StoreError(f"{path} has a damaged header: {err}") from err
    if expected_format is not None:
        check_format(header, expected_format, path)
    return arrays, header


def check_format(header: dict, expected_format: str, path) -> None:
    found = header.get("format")
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
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def fingerprint_model(model: torch.nn.Module) -> str:
    return fingerprint_tensors(dict(model.state_dict()))


# ---------------------------------------------------------------------------------------
# PEF stores
# ---------------------------------------------------------------------------------------


def _chunk_path(root: Path, index: int) -> Path:
    return root / CHUNKS / f"{index:06d}.safetensors"


class PefStore:
    """A PEF store folder on disk. ``load()`` reads it into memory."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.manifest = read_json(self.path / MANIFEST)
        check_format(self.manifest, PEF_FORMAT, self.path)

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

    def chunks_on_disk(self) -> list[int]:
        return [i for i in range(self.n_chunks) if _chunk_path(self.path, i).exists()]

    def read_chunk(self, index: int):
        from .fisher import PefChunk

        arrays, header = read_arrays(_chunk_path(self.path, index), PEF_FORMAT + "/chunk")
        if header.get("chunk") != index:
            raise StoreError(f"chunk file {index} of {self.path} says it is chunk {header.get('chunk')}")
        missing = set(PefChunk.arrays_order) - set(arrays)
        if missing:
            raise StoreError(f"chunk {index} of {self.path} lacks {sorted(missing)}")
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
        pefs = chunks_to_pefs(chunks, self.kind, self.layout, self.info)
        if pefs.n_examples != self.n_examples:
            raise StoreError(f"{self.path} should hold {self.n_examples} examples but its chunks hold {pefs.n_examples}")
        return pefs

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


def _write_chunk(root: Path, index: int, chunk) -> None:
    header = {"format": PEF_FORMAT + "/chunk", "format_version": FORMAT_VERSION, "chunk": index}
    write_arrays(_chunk_path(root, index), chunk.arrays(), header)


def save_pefs(pefs, path: str | os.PathLike, examples_per_chunk: int = 1024) -> PefStore:
    """Write in-memory PEFs (e.g. from ``LrmPefs.from_dense``) as a store."""
    from .fisher import PefChunk

    path = Path(path)
    n = pefs.n_examples
    starts = list(range(0, n, examples_per_chunk))
    _reset_folder(path)
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
        _write_chunk(path, index, chunk)
    write_json(path / MANIFEST, _manifest(pefs.kind, pefs.info, pefs.layout, n, len(starts), {}, True))
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
    batch_size: int = 16,
    method: str = "hooks",
    device: str | torch.device | None = None,
    progress: bool = True,
    overwrite: bool = False,
) -> PefStore:
    """Compute PEFs batch by batch and stream them to the store folder ``out``.

    Memory holds one batch at a time. If ``out`` holds an unfinished store made with the
    same model, data and arguments, only the missing batches are computed (resume). A
    store made with anything else is refused unless ``overwrite=True``. Arguments as in
    :func:`workbench.fisher.compute_pefs`.
    """
    from tqdm.auto import tqdm

    from .device import resolve_device
    from .fisher import PefConfig, eval_mode, iter_pef_chunks, make_plan, n_inputs, pef_info, split_labels

    out = Path(out)
    config = PefConfig(kind, n_values, top_k_classes, include, exclude, batch_size, method)
    device = resolve_device(device) if device is not None else next(model.parameters()).device
    model.to(device)
    inputs, labels = split_labels(inputs, labels)
    plan = make_plan(model, config)
    n = n_inputs(inputs)
    n_chunks = -(-n // batch_size)
    fingerprints = {
        "model": fingerprint_model(model),
        "inputs": fingerprint_tensors(inputs),
        "labels": fingerprint_tensors(labels),
    }
    manifest = _manifest(kind, pef_info(model, config, plan, n), plan.layout, n, n_chunks, fingerprints, False)
    _start_or_resume(out, manifest, overwrite)
    done = set(PefStore(out).chunks_on_disk())
    with eval_mode(model), tqdm(total=n, desc="PEFs", unit="ex", disable=not progress) as bar:
        for index, size, chunk in iter_pef_chunks(model, inputs, labels, config, plan, device, skip=done.__contains__):
            if chunk is not None:
                _write_chunk(out, index, chunk)
            bar.update(size)
    write_json(out / MANIFEST, dict(manifest, complete=True))
    return PefStore(out)


def _start_or_resume(out: Path, manifest: dict, overwrite: bool) -> None:
    """A new store, or the same unfinished one again; anything else is an error."""
    if not (out / MANIFEST).exists() or overwrite:
        if out.exists() and any(out.iterdir()) and not overwrite and not (out / MANIFEST).exists():
            raise StoreError(f"{out} exists and is not a PEF store; choose an empty or new folder")
        _reset_folder(out)
        write_json(out / MANIFEST, manifest)
        return
    existing = read_json(out / MANIFEST)
    keys = ("format", "format_version", "kind", "layout", "n_examples", "n_chunks", "fingerprints")
    differ = [k for k in keys if existing.get(k) != manifest.get(k)]
    differ += [f"info.{k}" for k in manifest["info"] if k != "package_version" and existing.get("info", {}).get(k) != manifest["info"][k]]
    if differ:
        state = "a complete" if existing.get("complete") else "an unfinished"
        raise StoreError(
            f"{out} already holds {state} PEF store made with other arguments (differs: {', '.join(differ)}); "
            "pass overwrite=True to replace it, or choose another folder"
        )
