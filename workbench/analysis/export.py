"""Tidy exports: results as long-format tables (Parquet or CSV), components as safetensors.

One call per result, the file format taken from the suffix (``.parquet`` or ``.csv``):

- :func:`export_components`: the component table (:func:`workbench.analysis.component_table`),
  one row per component;
- :func:`export_coefficients`: per-example coefficients, one row per (example, component);
- :func:`export_top_examples`: each component's top examples with their token scores,
  one row per (component, rank, token position);
- :func:`export_perturbations`: perturbation checks (results or an ``epsilon_sweep``
  frame), one row per (component, ε, set, sign);
- :func:`export_components_safetensors`: a decomposition's components as full
  parameter-space tensors keyed by parameter name, ``name -> (n_components, *shape)``,
  readable with plain ``safetensors`` (no need for this package).

Each replaces only a file an export wrote (their checksums are kept in the folder's hidden
:data:`EXPORT_RECORD`): a file of the same name that is the user's is refused, never replaced.

In CSV files, text that a spreadsheet would run as a formula gets a leading apostrophe (see
:func:`spreadsheet_safe`); Parquet files keep every text as it is. Every file is written atomically (temporary name, then rename); :func:`export_run` writes them all
into one folder, each file over the earlier export's.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from safetensors.numpy import save_file
from sklearn.utils.validation import check_is_fitted

from ..core.arguments import component_indices, user_path
from ..core.disk import naming_disk_errors
from ..core.staging import remove_dead_staging, staging_path
from ..store.files import StoreWriteError, atomic_path, file_checksum, producer, write_json
from ..store.formats import COMPONENTS
from .highlights import real_positions, token_scores
from .tables import top_examples

logger = logging.getLogger(__name__)
_SUFFIXES = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv"}


# ---------------------------------------------------------------------------------------
# Tables
# ---------------------------------------------------------------------------------------


def _plain_cells(frame: pd.DataFrame, as_text: bool) -> pd.DataFrame:
    """Multi-valued cells (tuples, lists, arrays) as lists (Parquet) or "a|b" text (CSV); CSV
    text cells a spreadsheet would run as a formula get a leading apostrophe."""
    frame = frame.copy()
    for column in frame.columns[[isinstance(dtype, pd.CategoricalDtype) for dtype in frame.dtypes]]:
        frame[column] = frame[column].astype(object)  # its categories are text a spreadsheet reads like any other
    if as_text:
        frame.columns = [spreadsheet_safe(str(name)) for name in frame.columns]
    for column in frame.columns[[dtype == object or pd.api.types.is_string_dtype(dtype) for dtype in frame.dtypes]]:
        values = frame[column]
        if values.map(lambda v: isinstance(v, (tuple, list, np.ndarray))).any():
            if as_text:
                frame[column] = values.map(lambda v: "|".join(map(str, v)) if isinstance(v, (tuple, list, np.ndarray)) else v)
            else:
                frame[column] = values.map(lambda v: list(v) if isinstance(v, (tuple, list, np.ndarray)) else [v])
        elif not as_text and values.map(type).nunique() > 1:  # mixed scalars (e.g. str and None): Parquet needs one type
            frame[column] = values.map(lambda v: None if v is None or (isinstance(v, float) and np.isnan(v)) else str(v))
        if as_text:
            frame[column] = frame[column].map(spreadsheet_safe)
    return frame


_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(value):
    """``value`` with a leading apostrophe where it is text a spreadsheet would run as a formula.

    The texts and tokens come from data sets and models, so a cell like ``=HYPERLINK(...)``
    would run when a CSV export is opened in Excel or LibreOffice (OWASP's "CSV injection").
    Single characters ("-", "+") and numbers ("-0.5") stay as they are: no formula there.
    """
    if not isinstance(value, str) or len(value) < 2 or not value.startswith(_FORMULA_STARTS):
        return value
    try:
        float(value)
    except ValueError:
        return "'" + value
    return value


def write_table(frame: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write a DataFrame as Parquet or CSV (by the suffix); a named index becomes a column."""
    path = user_path(path)
    kind = _SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise ValueError(f"{path.name}: choose a .parquet or .csv file name (the suffix picks the format)")
    if any(name is not None for name in frame.index.names):
        frame = frame.reset_index()
    frame = _plain_cells(frame, as_text=kind == "csv")
    with _export_file(path) as tmp:
        if kind == "parquet":
            frame.to_parquet(tmp, index=False)
        else:
            frame.to_csv(tmp, index=False)
    return path


@contextlib.contextmanager
def _export_file(path: Path):
    """A temporary path for one exported file, renamed to ``path`` on success and recorded in the folder's
    :data:`EXPORT_RECORD`: a file there that no export wrote (the user's notes.csv, their model's
    components.safetensors) is refused, never replaced, as :func:`export_run` refuses it."""
    path = user_path(path)
    if path.exists() and not path.is_dir() and file_checksum(path) not in _exported_files(path.parent).get(path.name, ()):
        raise FileExistsError(f"{path} is not a file an export wrote (or it was changed since), and the export would "
                              f"replace it; choose another file name, such as {path.with_stem(path.stem + '-export')}, "
                              "or move the file away")
    with atomic_path(path) as tmp:
        yield tmp
        # the new file is listed beside the earlier one before the rename: a kill in between leaves either exportable
        earlier = _exported_files(path.parent)
        written = file_checksum(tmp)
        write_json(path.parent / EXPORT_RECORD, {"files": {**earlier, path.name: earlier.get(path.name, []) + [written]}})
    write_json(path.parent / EXPORT_RECORD, {"files": {**_exported_files(path.parent), path.name: [written]}})


def components_frame(table: pd.DataFrame) -> pd.DataFrame:
    """The component table with ``component`` as a column."""
    return table.reset_index() if "component" not in table.columns else table.reset_index(drop=True)


def export_components(table: pd.DataFrame, path: str | os.PathLike) -> Path:
    """The component table (one row per component) to Parquet or CSV."""
    return write_table(components_frame(table), path)


def coefficients_frame(W, *, example_ids: Sequence | None = None, drop_zeros: bool = False) -> pd.DataFrame:
    """Long format: columns ``example``, ``component``, ``coefficient``; example-major order.

    W: (n_examples, n_components) coefficients, or a fitted decomposition (its ``W_``).
    example_ids: labels for the examples (default 0..n-1). drop_zeros: leave out exact zeros.
    """
    W = np.asarray(getattr(W, "W_", W))
    if W.ndim != 2:
        raise ValueError(f"W must be (n_examples, n_components), got shape {W.shape}")
    n, r = W.shape
    ids = np.arange(n) if example_ids is None else np.asarray(example_ids)
    if ids.shape != (n,):
        raise ValueError(f"example_ids has {ids.shape[0] if ids.ndim else 0} entries; W has {n} examples")
    frame = pd.DataFrame({
        "example": np.repeat(ids, r),
        "component": np.tile(np.arange(r), n),
        "coefficient": W.reshape(-1),
    })
    return frame[frame["coefficient"] != 0].reset_index(drop=True) if drop_zeros else frame


def export_coefficients(W, path: str | os.PathLike, **kwargs) -> Path:
    """Per-example coefficients in long format (see :func:`coefficients_frame`) to Parquet or CSV."""
    return write_table(coefficients_frame(W, **kwargs), path)


def top_examples_frame(
    model,
    decomposition,
    inputs: Mapping,
    tokenizer=None,
    *,
    components: Iterable[int] | None = None,
    n_top: int = 10,
    **token_score_kwargs,
) -> pd.DataFrame:
    """Each component's top examples with their token scores, one row per token.

    Columns: ``component``, ``rank`` (0 = largest coefficient), ``example`` (row of
    ``inputs``), ``coefficient``, ``token_position``, ``token`` (from ``tokenizer``, else
    the token id), ``score`` (the token's share of the example's Fisher mass along the
    component, :mod:`workbench.analysis.highlights`) and ``head_share`` (the share through layers
    without a token axis; the same on every row of one example).
    """
    rows = []
    components = range(decomposition.n_components) if components is None else components
    for j in components:
        top = top_examples(decomposition.W_, j, n_top)
        if len(top) == 0:
            continue
        selected = {k: v[top] for k, v in inputs.items()}
        for rank, (i, scores) in enumerate(zip(top, token_scores(model, decomposition, j, selected, **token_score_kwargs))):
            ids = inputs["input_ids"][i, real_positions(inputs, i)].tolist()
            tokens = tokenizer.convert_ids_to_tokens(ids) if tokenizer is not None else [str(t) for t in ids]
            for position, (token, score) in enumerate(zip(tokens, scores.scores)):
                rows.append((int(j), rank, int(i), float(decomposition.W_[i, j]), position, token, float(score),
                             scores.head_share))
    columns = ["component", "rank", "example", "coefficient", "token_position", "token", "score", "head_share"]
    return pd.DataFrame(rows, columns=columns)


def export_top_examples(path: str | os.PathLike, model, decomposition, inputs: Mapping, tokenizer=None, **kwargs) -> Path:
    """Top examples with token scores in long format (see :func:`top_examples_frame`) to Parquet or CSV."""
    return write_table(top_examples_frame(model, decomposition, inputs, tokenizer, **kwargs), path)


def perturbation_frame(results) -> pd.DataFrame:
    """Perturbation checks in long format (:meth:`PerturbationResult.to_frame`: each mean KL and ``kl_ratio`` with
    their 95% intervals, the spread the panel shows beside them): a PerturbationResult, a list of them, or a frame
    from ``epsilon_sweep`` (returned as it is)."""
    if isinstance(results, pd.DataFrame):
        return results.reset_index(drop=True)
    frames = [r if isinstance(r, pd.DataFrame) else r.to_frame() for r in perturbation_results(results)]
    if not frames:
        raise ValueError("no perturbation results to export")
    return pd.concat(frames, ignore_index=True)


def export_perturbations(results, path: str | os.PathLike) -> Path:
    """Perturbation results (see :func:`perturbation_frame`) to Parquet or CSV."""
    return write_table(perturbation_frame(results), path)


# ---------------------------------------------------------------------------------------
# Components as tensors
# ---------------------------------------------------------------------------------------


def components_by_parameter(decomposition, components: Sequence[int] | None = None) -> dict[str, np.ndarray]:
    """{parameter name: (n_components, *parameter shape)} float32, zeros where pruned."""
    selected = np.arange(decomposition.n_components) if components is None else \
        np.array(component_indices(components, decomposition.n_components), dtype=np.int64)
    vectors = np.asarray(decomposition.components_, dtype=np.float32)[selected]  # (r, n_kept)
    kept = np.asarray(decomposition.kept_columns_, dtype=np.int64)
    if np.any(np.diff(kept) < 0):  # decompositions read from other layouts may list columns unsorted
        order = np.argsort(kept, kind="stable")
        kept, vectors = kept[order], vectors[:, order]
    layout = decomposition.layout_
    offsets = layout.offsets
    tensors = {}
    for k, (name, shape) in enumerate(zip(layout.names, layout.shapes)):
        lo, hi = np.searchsorted(kept, [offsets[k], offsets[k + 1]])  # kept columns inside this parameter
        block = np.zeros((len(selected), offsets[k + 1] - offsets[k]), dtype=np.float32)
        block[:, kept[lo:hi] - offsets[k]] = vectors[:, lo:hi]
        tensors[name] = block.reshape(len(selected), *shape)
    return tensors


def export_components_safetensors(decomposition, path: str | os.PathLike, components: Sequence[int] | None = None) -> Path:
    """Components as safetensors keyed by parameter name: ``name -> (n_components, *shape)``.

    Row j of every tensor is component j (g_j for LRM-NPEFF, h_j for D-NPEFF) in that
    parameter, zeros where the fit pruned the parameter. The metadata (all strings, as
    safetensors requires) records the format, the kind, the model, the component indices
    and the producer. Read it anywhere with ``safetensors.numpy.load_file(path)``.
    """
    check_is_fitted(decomposition)
    selected = list(range(decomposition.n_components)) if components is None else \
        component_indices(components, decomposition.n_components)  # once: a generator is read once
    tensors = components_by_parameter(decomposition, selected)
    metadata = {
        "format": COMPONENTS.name,
        "format_version": str(COMPONENTS.version),  # safetensors metadata holds text only
        "kind": decomposition.kind,
        "model": str(decomposition.pef_info_.get("model", "")),
        "components": json.dumps(selected),
        "parameter_order": json.dumps(list(decomposition.layout_.names)),
        "producer": json.dumps(producer()),
    }
    path = user_path(path)
    with _export_file(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
    return path


def perturbation_results(perturbations) -> list:
    """The perturbation results given to ``export``, checked, so a placeholder gives a clear error."""
    if isinstance(perturbations, (pd.DataFrame, str)) or not hasattr(perturbations, "__iter__"):
        perturbations = [perturbations]
    items = list(perturbations)
    for item in items:
        if not isinstance(item, pd.DataFrame) and not hasattr(item, "to_frame"):
            raise TypeError(f"perturbations must hold results of RunExplorer.perturb or frames of RunExplorer.sweep, "
                            f"got {item!r}; e.g. ex.export(format='csv', perturbations=[ex.perturb(3)])")
    return items


#: The names and checksums of the files an export wrote into its folder: only those are its to replace.
EXPORT_RECORD = ".npeff-export.json"


def _exported_files(folder: Path) -> dict[str, list[str]]:
    """{file name: [sha256, ...]} of what exports into ``folder`` wrote (empty where none did)."""
    try:
        return {name: list(sums) for name, sums in json.loads((folder / EXPORT_RECORD).read_text())["files"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}


def check_export_folder(folder: Path, names: list[str]) -> None:
    """``folder`` can hold the export's files: no file stands where it or one of its parents would be,
    no folder where one of the files would be, and no file of the export's names that an earlier
    export did not write as it is now (a user's own perturbations.parquet was deleted, their
    components.parquet replaced)."""
    existing = next(p for p in (folder, *folder.absolute().parents) if p.exists())
    if not existing.is_dir():
        raise FileExistsError(f"cannot export into {folder}: {existing} is a file, not a folder; choose another "
                              "folder (the export writes several files into one), or move the file away")
    exported = _exported_files(folder) if folder.is_dir() else {}
    for name in names:
        path = folder / name
        if path.is_dir():
            raise IsADirectoryError(f"cannot export into {folder}: {path} is a folder where the export writes "
                                    "a file; choose another folder, or move that folder away")
        if path.exists() and file_checksum(path) not in exported.get(name, ()):
            raise FileExistsError(f"cannot export into {folder}: {path} is not a file an earlier export wrote there "
                                  "(or it was changed since), and the export would replace it; choose another folder, "
                                  f"such as {folder / 'export'}, or move the file away")


#: What an export not made leaves in its folder
EXPORT_KEPT = "the files there are whole (the earlier export's, or this one's), and nothing half-written is left"


def export_run(folder: Path, table: pd.DataFrame, W, decomposition, *, format: str = "parquet",
               perturbations: Sequence = ()) -> dict[str, Path]:
    """A run's results as tidy files in ``folder``: the component table, the coefficients (zeros left
    out), the perturbation results given, all as ``format``, and the component vectors as safetensors;
    returns {what: path}. The files of an earlier export there are replaced; a file of the same name that
    no export wrote (:data:`EXPORT_RECORD` keeps their checksums) is refused, never replaced."""
    # Every argument is checked before the first file is written: a bad one leaves no half export.
    if format not in ("parquet", "csv"):
        raise ValueError(f"format must be 'parquet' or 'csv', got {format!r}")
    frames = [p if isinstance(p, pd.DataFrame) else perturbation_frame(p) for p in perturbation_results(perturbations)]
    names = [f"components.{format}", f"coefficients.{format}", "components.safetensors", f"perturbations.{format}"]
    check_export_folder(folder, names)
    # a full disk named as the folder asked for: the store's error named the hidden temporary file written
    # (exp/.export.tmp-…/components.csv), and spoke of PEF runs resuming
    with naming_disk_errors(folder, EXPORT_KEPT, raising=StoreWriteError, doing="export into", choose="folder"):
        folder.mkdir(parents=True, exist_ok=True)
        # Written aside, then each file moved over the earlier export's (one rename each): a killed export leaves
        # every file whole, the earlier one's or the new one's. Deleting the earlier files first left an empty folder.
        remove_dead_staging(folder / "export")
        (staging := staging_path(folder / "export")).mkdir()
        try:
            written = {
                "components": export_components(table, staging / f"components.{format}"),
                "coefficients": export_coefficients(W, staging / f"coefficients.{format}", drop_zeros=True),
                "component vectors": export_components_safetensors(decomposition, staging / "components.safetensors"),
            }
            if frames:
                written["perturbations"] = export_perturbations(pd.concat(frames, ignore_index=True),
                                                                staging / f"perturbations.{format}")
            checksums = {path.name: [file_checksum(path)] for path in written.values()}
            # the earlier export's files stay listed until all are replaced: a kill in between leaves it exportable
            earlier = _exported_files(folder)
            write_json(folder / EXPORT_RECORD,
                       {"files": {**earlier, **{n: earlier.get(n, []) + checksums.get(n, []) for n in names}}})
            for path in written.values():
                os.replace(path, folder / path.name)
            for name in set(names) - set(checksums):  # an earlier export's perturbations (checked to be its)
                (folder / name).unlink(missing_ok=True)
            # the files that single exports wrote there stay theirs to replace
            others = {n: sums for n, sums in earlier.items() if n not in names}
            write_json(folder / EXPORT_RECORD, {"files": {**others, **checksums}})
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    logger.info("exported %s to %s", ", ".join(written), folder)
    return {what: folder / path.name for what, path in written.items()}
