"""Reading and writing the original NPEFF implementation's HDF5 layouts (method notes, section 8).

These files carry no parameter names; pass ``layout=`` when reading to restore them,
otherwise the parameters get one anonymous flat name. The original layout stores the same
number of entries for every example; examples with fewer non-zeros are padded with zeros
after their last class's offset, and reading drops those.

An LRM-PEF file with a slot for every class holds them in class order (slot s is class s); one
with fewer slots than classes holds the top classes by descending logit. That is what the
original ``compute_pefs.py`` writes (it sorts the logits only for a top-k), and what the
writer here writes whatever order the PEFs keep their slots in.
"""

from __future__ import annotations

import contextlib
import json
import os

import h5py
import numpy as np
import scipy.sparse as sp
from sklearn.utils.validation import check_is_fitted

from ..core.arguments import user_path
from ..core.validation import as_labels, check_label_range
from ..core.params import ParameterLayout
from ..core.pefs import DPefs, LrmPefs
from ..store.files import StoreError, atomic_path, json_default
from .lrm import LrmNpeff


#: The original layout stores parameter indices as int32.
MAX_PARAMETERS = int(np.iinfo(np.int32).max) + 1


def _check_int32_indices(n_parameters: int, what: str) -> None:
    if n_parameters > MAX_PARAMETERS:  # they were written wrapped to negative numbers
        raise ValueError(f"{what} spans {n_parameters:,} parameters, but the original layout stores parameter indices "
                         f"as int32 (at most {MAX_PARAMETERS:,} parameters): select fewer parameters (include=), or "
                         "keep the workbench's own store, which has no such limit")


def _check_integer(array: np.ndarray, name: str, path) -> None:
    if not np.issubdtype(array.dtype, np.integer):  # 2.7 was cut to 2: another parameter, or another slot
        raise StoreError(f"{path}: its {name} are {array.dtype}, not integer indices: the file is damaged, or was "
                         "written by something else")


def _padded_rows(matrix: sp.csr_matrix, n_examples: int, n_slots: int):
    """Per example: its entries slot by slot, padded to the longest example.

    Returns values (n, nnz), indices (n, nnz), offsets (n, n_slots + 1).
    """
    counts = np.diff(matrix.indptr).reshape(n_examples, n_slots)
    per_example = counts.sum(axis=1)
    width = max(int(per_example.max()), 1)
    values = np.zeros((n_examples, width), dtype=np.float32)
    indices = np.zeros((n_examples, width), dtype=np.int32)
    offsets = np.zeros((n_examples, n_slots + 1), dtype=np.int32)
    offsets[:, 1:] = np.cumsum(counts, axis=1)
    for i in range(n_examples):
        lo, hi = matrix.indptr[i * n_slots], matrix.indptr[(i + 1) * n_slots]
        values[i, : hi - lo] = matrix.data[lo:hi]
        indices[i, : hi - lo] = matrix.indices[lo:hi]
    return values, indices, offsets


def _rows_from_padded(values, indices, offsets, n_parameters: int, path) -> sp.csr_matrix:
    _check_integer(indices, "parameter indices", path)
    n, n_slots = offsets.shape[0], offsets.shape[1] - 1
    counts = np.diff(offsets, axis=1).ravel()
    # offsets run from 0 in each example's row: a first offset of 1 shifted every entry to another slot
    if (counts < 0).any() or (offsets[:, -1] > values.shape[1]).any() or (offsets[:, 0] != 0).any():
        raise StoreError(f"{path}: its offsets do not fit its values (damaged, or not an NPEFF PEF file)")
    keep = np.arange(values.shape[1])[None, :] < offsets[:, -1:]
    data, cols = values[keep], indices[keep].astype(np.int64)
    if cols.size and (cols.min() < 0 or cols.max() >= n_parameters):
        raise StoreError(f"{path}: its parameter indices fall outside 0..{n_parameters - 1} (damaged)")
    indptr = np.concatenate([[0], np.cumsum(counts)])
    matrix = sp.csr_matrix((data.astype(np.float32), cols, indptr), shape=(n * n_slots, n_parameters))
    matrix.sum_duplicates()
    matrix.eliminate_zeros()
    return matrix


def _slot_classes(logits: np.ndarray, n_slots: int) -> np.ndarray:
    """Class order when every class has a slot, else the top classes by descending logit (the module's docstring)."""
    if logits.shape[1] > n_slots:
        return np.argsort(-logits, axis=1, kind="stable")[:, :n_slots]
    return np.tile(np.arange(n_slots), (logits.shape[0], 1))


def _rows_in_file_order(pefs: LrmPefs) -> np.ndarray:
    """The rows of ``pefs.X`` in the order the file holds its slots (:func:`_slot_classes`)."""
    n, k = pefs.n_examples, pefs.n_slots
    n_classes = pefs.logits.shape[1] or k  # PEFs without logits (from_dense) have one slot per class
    if k == n_classes:
        order = np.argsort(pefs.classes, axis=1, kind="stable")
        if not (np.take_along_axis(pefs.classes, order, axis=1) == np.arange(k)).all():
            raise ValueError(f"these PEFs have {k} slots for {k} classes, but not one slot per class: they cannot be "
                             "written in the original layout, which holds them in class order")
    else:
        kept = np.take_along_axis(pefs.logits, pefs.classes, axis=1)
        top = -np.sort(-pefs.logits, axis=1)[:, :k]
        if k > n_classes or not np.array_equal(kept, top):
            raise ValueError(f"these PEFs keep {k} slots of {n_classes} classes that are not the top {k} by logit in "
                             "descending order, the only slots a top-k file of the original layout can hold")
        order = np.tile(np.arange(k), (n, 1))
    return (np.arange(n)[:, None] * k + order).ravel()


@contextlib.contextmanager
def _reading(path: str | os.PathLike):
    """The HDF5 file open for reading; what h5py raises on a missing, truncated or other file, or
    on a missing attribute, is a StoreError that names the file."""
    path = user_path(path)
    if not path.is_file():
        raise StoreError(f"{path} is {'a folder' if path.is_dir() else 'not there'}; give the .h5 file of the original "
                         "NPEFF layout")
    try:
        with h5py.File(path, "r") as f:
            yield f
    except (OSError, KeyError) as err:
        raise StoreError(f"{path} cannot be read as a file of the original NPEFF layout (truncated, or another "
                         f"layout): {err}") from err
    except IndexError as err:  # an array of fewer dimensions than the layout's (a 1-D W, values or offsets)
        raise StoreError(f"{path} holds arrays of other shapes than the original NPEFF layout's ({err}): the file "
                         "is damaged, or was written by something else") from err


def _require(group, names, path):
    missing = [n for n in names if n not in group]
    if missing:
        raise StoreError(f"{path} lacks {missing}: it is not in the original NPEFF layout")


def _expect_pefs(pefs, cls, writer: str) -> None:
    if not isinstance(pefs, cls):
        other = {LrmPefs: "write_lrm_pefs_h5", DPefs: "write_d_pefs_h5"}.get(type(pefs))
        raise TypeError(f"{writer} writes {cls.__name__}, got {type(pefs).__name__}"
                        + (f"; write those with {other}" if other else "; compute PEFs with compute_pefs or load a store with load_pefs"))


@contextlib.contextmanager
def _writing_h5(path: str | os.PathLike):
    """A new HDF5 file, written whole at ``path`` or not at all. HDF5 writes through a Python file object: a full
    disk met by HDF5's own writes crashed the process (a segmentation fault in h5py's close, after a flood of
    "Exception ignored" tracebacks), where Python's write raises the OSError that ``atomic_path`` names."""
    with atomic_path(path) as tmp, open(tmp, "wb") as handle, h5py.File(handle, "w") as f:
        yield f


def write_lrm_pefs_h5(pefs: LrmPefs, path: str | os.PathLike) -> None:
    _expect_pefs(pefs, LrmPefs, "write_lrm_pefs_h5")
    _check_int32_indices(pefs.n_parameters, "these PEFs")
    rows = _rows_in_file_order(pefs)
    values, indices, offsets = _padded_rows(pefs.X[rows], pefs.n_examples, pefs.n_slots)
    with _writing_h5(path) as f:
        data = f.create_group("data")
        data["values"] = values
        data["row_indices"] = indices
        data["col_offsets"] = offsets
        data["labels"] = pefs.labels.astype(np.int32)
        data["logits"] = pefs.logits.astype(np.float32)
        data["pef_frobenius_norms"] = pefs.frobenius_norms.astype(np.float32)
        data.attrs["n_classes"] = pefs.n_slots
        data.attrs["n_parameters"] = pefs.n_parameters


def read_lrm_pefs_h5(path: str | os.PathLike, layout: ParameterLayout | None = None) -> LrmPefs:
    with _reading(path) as f:
        _require(f, ["data"], path)
        data = f["data"]
        _require(data, ["values", "row_indices", "col_offsets", "labels", "logits", "pef_frobenius_norms"], path)
        n_parameters = int(data.attrs["n_parameters"])
        offsets = data["col_offsets"][()]
        _check_integer(offsets, "col_offsets", path)
        offsets = offsets.astype(np.int64)
        X = _rows_from_padded(data["values"][()], data["row_indices"][()], offsets, n_parameters, path)
        logits = data["logits"][()].astype(np.float32)
        norms = data["pef_frobenius_norms"][()].astype(np.float32)
        n_examples, n_slots = offsets.shape[0], offsets.shape[1] - 1
        lengths = {"labels": len(data["labels"]), "logits": len(logits), "pef_frobenius_norms": len(norms)}
        if any(length != n_examples for length in lengths.values()) \
                or int(data.attrs.get("n_classes", n_slots)) != n_slots:
            raise StoreError(f"{path} is damaged: its col_offsets hold {n_examples} examples of {n_slots} classes, but "
                             f"{lengths} entries and n_classes={data.attrs.get('n_classes')}; compute the PEFs again")
        if not (np.isfinite(X.data).all() and np.isfinite(norms).all() and np.isfinite(logits).all()):
            raise StoreError(f"{path} holds NaN or infinite PEF values, norms or logits: the file is damaged, or the "
                             "PEFs it holds came from a diverged or half-precision model; compute them again")
        if (norms <= 0).any() or logits.ndim != 2:
            raise StoreError(f"{path} holds PEF norms that are not positive, or logits that are no (examples, classes) "
                             "table: the file is damaged, or holds something other than LRM-PEFs")
        labels = _file_labels(data["labels"][()], logits.shape[1] or n_slots, path)  # no logits: a slot per class
        return LrmPefs(
            X=X,
            classes=_slot_classes(logits, offsets.shape[1] - 1),
            frobenius_norms=norms,
            labels=labels,
            logits=logits,
            layout=_checked_layout(layout, n_parameters),
            info={"source": str(path)},
        )


def _file_labels(values: np.ndarray, n_classes: int, path) -> np.ndarray:
    """A file's labels checked as write_pefs checks a user's: whole class indices in range, -1 unknown
    (a label 0.5 was cut to 0, a label 7 of 2 classes taken)."""
    try:
        labels = as_labels(values, len(values))
        check_label_range(labels, n_classes)
    except (TypeError, ValueError) as error:
        raise StoreError(f"{path} holds labels that are no class indices of its {n_classes} classes: {error}") from None
    return labels.numpy()


def write_d_pefs_h5(pefs: DPefs, path: str | os.PathLike) -> None:
    _expect_pefs(pefs, DPefs, "write_d_pefs_h5")
    _check_int32_indices(pefs.n_parameters, "these PEFs")
    values, indices, _ = _padded_rows(pefs.F, pefs.n_examples, 1)
    with _writing_h5(path) as f:
        data = f.create_group("data")
        fisher = data.create_group("fisher")
        fisher["values"] = values
        fisher["indices"] = indices
        fisher.attrs["dense_fisher_size"] = pefs.n_parameters
        data["dense_fisher_norms"] = pefs.frobenius_norms.astype(np.float32)
        data["labels"] = pefs.labels.astype(np.int32)
        data["predicted_logits"] = pefs.logits.astype(np.float32)


def read_d_pefs_h5(path: str | os.PathLike, layout: ParameterLayout | None = None) -> DPefs:
    with _reading(path) as f:
        _require(f, ["data"], path)
        data = f["data"]
        _require(data, ["fisher", "dense_fisher_norms", "labels", "predicted_logits"], path)
        _require(data["fisher"], ["values", "indices"], path)
        n_parameters = int(data["fisher"].attrs["dense_fisher_size"])
        values = data["fisher/values"][()]
        # Zero padding is dropped below, so every stored entry counts as this example's.
        offsets = np.stack([np.zeros(values.shape[0]), np.full(values.shape[0], values.shape[1])], axis=1)
        F = _rows_from_padded(values, data["fisher/indices"][()], offsets.astype(np.int64), n_parameters, path)
        if (F.data < 0).any() or not np.isfinite(F.data).all():
            raise StoreError(f"{path} holds negative or non-finite D-PEF values: a diagonal Fisher is a sum of squares; "
                             "the file is damaged, or holds something other than D-PEFs")
        logits = data["predicted_logits"][()].astype(np.float32)
        norms = data["dense_fisher_norms"][()].astype(np.float32)
        if norms.shape != (values.shape[0],) or logits.ndim != 2 or len(logits) != values.shape[0]:
            raise StoreError(f"{path} holds norms of shape {norms.shape} or logits of shape {logits.shape} for "
                             f"{values.shape[0]} examples: the file is damaged, or holds something other than D-PEFs")
        if not (np.isfinite(norms).all() and np.isfinite(logits).all()) or (norms <= 0).any():
            raise StoreError(f"{path} holds NaN, infinite or non-positive norms (dense_fisher_norms), or NaN or "
                             "infinite logits (predicted_logits): the file is damaged, or the PEFs came from a diverged "
                             "or half-precision model; compute them again")
        return DPefs(
            F=F,
            frobenius_norms=norms,
            labels=_file_labels(data["labels"][()], logits.shape[1], path),
            logits=logits,
            layout=_checked_layout(layout, n_parameters),
            info={"source": str(path)},
        )


#: The fit settings that change what a fitted decomposition computes (``transform``, ``component``), kept in an
#: attribute the original's reader does not look at: a G fitted with normalize=False came back read as normalised,
#: and transform() of the same PEFs moved by 92%.
SETTINGS = ("normalize", "min_nonzero_per_col", "n_iters_transform", "n_iters_g_only", "n_iters_joint",
            "learning_rate", "orthogonal_reg", "tol", "seed", "solver")
SETTINGS_ATTRIBUTE = "workbench_settings"


def write_lrm_decomposition_h5(model: LrmNpeff, path: str | os.PathLike) -> None:
    check_is_fitted(model)
    _check_int32_indices(model.n_parameters_, "this decomposition")
    settings = json.dumps({name: getattr(model, name) for name in SETTINGS}, default=json_default)  # seed=np.int64(3)
    with _writing_h5(path) as f:
        data = f.create_group("data")
        data["W"] = model.W_.astype(np.float32)
        data["G"] = model.G_.astype(np.float32)
        data["new_to_old_col_indices"] = model.kept_columns_.astype(np.int32)
        data.attrs["n_parameters"] = model.n_parameters_
        data.attrs["n_classes"] = model.n_slots_  # the original layout's name for the slots
        data.attrs[SETTINGS_ATTRIBUTE] = settings
        losses = f.create_group("losses")
        for phase, name in (("g_only", "G_only"), ("joint", "joint")):
            history = model.loss_history_.get(phase, np.zeros((0, 2)))
            losses[name] = history[:, 1].astype(np.float32)
            # the fit also logs each phase's last step, off the frequency: its iteration numbers, beside the
            # original layout's losses (whose reader rebuilt them as index × frequency)
            losses[f"{name}_iterations"] = history[:, 0].astype(np.int64)
        losses.attrs["log_loss_frequency"] = model.log_every


def read_lrm_decomposition_h5(path: str | os.PathLike, layout: ParameterLayout | None = None) -> LrmNpeff:
    """A fitted :class:`LrmNpeff` from the original layout (its fit settings are not stored there)."""
    with _reading(path) as f:
        _require(f, ["data"], path)
        data = f["data"]
        if "H" in data:
            raise StoreError(f"{path} holds a D-NPEFF decomposition (data/H) of the original code, which the workbench "
                             "does not read; fit D-NPEFF here (DNpeff) from the D-PEFs (read_d_pefs_h5)")
        if "W" in data and "G" not in data:
            raise StoreError(f"{path} holds coefficients only (data/W, written with --write_G_to_output=false): read W "
                             "with h5py, or give the file of the decomposition they were fitted with, which holds G")
        _require(data, ["W", "G", "new_to_old_col_indices"], path)
        W, G = data["W"][()].astype(np.float32), data["G"][()].astype(np.float32)
        kept = data["new_to_old_col_indices"][()]
        if not np.issubdtype(kept.dtype, np.integer):  # 0.5, 1.5 ... were cut to other columns
            raise StoreError(f"{path}: its kept columns (new_to_old_col_indices) are {kept.dtype}, not the integer "
                             "indices of parameters: the file is damaged")
        n_parameters, n_slots = int(data.attrs["n_parameters"]), int(data.attrs["n_classes"])
        if W.ndim != 2 or G.ndim != 2 or W.shape[1] != G.shape[0]:
            raise StoreError(f"{path}: W of shape {W.shape} and G of shape {G.shape} are no decomposition (W is "
                             "(examples, components), G (components, kept parameters))")
        if kept.shape != (G.shape[1],) or kept.size and (kept.min() < 0 or kept.max() >= n_parameters) \
                or len(np.unique(kept)) != kept.size:
            raise StoreError(f"{path}: its kept columns (new_to_old_col_indices, shape {kept.shape}) are not "
                             f"{G.shape[1]} distinct parameters of its {n_parameters}: the file is damaged")
        if not (np.isfinite(W).all() and np.isfinite(G).all()) or (W < 0).any() or n_slots < 1:
            raise StoreError(f"{path} holds NaN, infinite or negative coefficients, or {n_slots} classes: the file is "
                             "damaged, or the fit that wrote it diverged")
        frequency = int(f["losses"].attrs.get("log_loss_frequency", 1)) if "losses" in f else 1
        model = LrmNpeff(n_components=int(G.shape[0]), log_every=max(frequency, 1), progress=False,
                         **_settings(data.attrs.get(SETTINGS_ATTRIBUTE), path))
        model.W_, model.G_ = W, G
        model.kept_columns_ = kept.astype(np.int64)
        model.n_parameters_ = n_parameters
        model.n_slots_ = n_slots
        model.layout_ = _checked_layout(layout, model.n_parameters_)
        model.pef_info_ = {"source": str(path)}
        model.loss_history_ = {}
        for phase, name in (("g_only", "G_only"), ("joint", "joint")):
            losses = f["losses"][name][()] if "losses" in f and name in f["losses"] else np.zeros(0)
            logged = f"losses/{name}_iterations"
            iterations = f[logged][()] if logged in f and f[logged].shape == losses.shape else np.arange(losses.size) * frequency
            model.loss_history_[phase] = np.stack([iterations, losses], axis=1).astype(np.float64)
        return model


def _settings(text, path) -> dict:
    """The fit settings a file of the workbench kept (:data:`SETTINGS`); {} for the original's files, whose
    settings are the defaults (the original normalises every PEF)."""
    if text is None:
        return {}
    try:
        settings = json.loads(text)
    except (TypeError, ValueError):
        settings = None
    if not isinstance(settings, dict) or set(settings) - set(SETTINGS):
        raise StoreError(f"{path}: its {SETTINGS_ATTRIBUTE} attribute is not the fit settings the workbench writes "
                         f"({', '.join(SETTINGS)}): the file is damaged")
    return settings


def _checked_layout(layout: ParameterLayout | None, n_parameters: int) -> ParameterLayout:
    if layout is None:
        return ParameterLayout.anonymous(n_parameters)
    if layout.n_parameters != n_parameters:
        raise ValueError(f"the layout has {layout.n_parameters} parameters but the file has {n_parameters}")
    return layout
