"""Fingerprints: is a resumed run the same run, and do a model, its PEFs and a decomposition belong together?

sha256 over names, dtypes, shapes and bytes. A PEF store records those of the model's
weights, the inputs and the labels; a decomposition and a fit checkpoint those of the
PEFs (or the prepared matrix) they were fitted to.
"""

from __future__ import annotations

import hashlib
import weakref
from collections.abc import Mapping

import numpy as np
import scipy.sparse as sp
import torch

from ..core.kinds import kind
from ..core.provenance import model_name
from ..core.validation import dtype_name
from .files import StoreError


def fingerprint_tensors(tensors: Mapping[str, torch.Tensor] | torch.Tensor, cast: torch.dtype | None = None) -> str:
    """``cast``: the fingerprint the tensors would have with their floating ones in that dtype (one at a time)."""
    h = hashlib.sha256()
    items = {"": tensors} if isinstance(tensors, torch.Tensor) else dict(sorted(tensors.items()))
    for name, t in items.items():
        t = t.detach().cpu()
        t = (t.to(cast) if cast is not None and t.is_floating_point() else t).contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        # hashed in place, no copy; flat first, as a 0-d tensor (BatchNorm's counter) has no byte view
        h.update(t.reshape(-1).view(torch.uint8).numpy().data if t.numel() else b"")
    return h.hexdigest()


def fingerprint_model(model: torch.nn.Module) -> str:
    """sha256 of the model's state (names, dtypes, shapes, bytes), computed once per state.

    Hashing moves every weight to the host: 0.39 s of a 1.0 s bert-base PEF call on a GPU.
    So the digest is kept with the model and reused while its state looks unchanged: each
    tensor's address, layout and version counter (which every in-place change, an optimizer
    step or ``load_state_dict`` included, increments) are what they were, and so are 16
    evenly spaced entries of each, which catch a change made through ``.data`` (it bypasses
    the version counter) wherever it touches them, as an update of a whole tensor does."""
    state = model.state_dict(keep_vars=True)
    key = tuple((name, t.data_ptr(), t._version, t.dtype, tuple(t.shape), t.stride(), str(t.device)) for name, t in state.items())
    key += (_sampled_bytes(state.values()),)
    cached = _fingerprints.get(model)
    if cached is not None and cached[0] == key:
        return cached[1]
    digest = fingerprint_tensors(dict(state))
    _fingerprints[model] = (key, digest)
    return digest


def _sampled_bytes(tensors) -> bytes:
    """16 evenly spaced entries of every tensor, as bytes: one move to the host per dtype."""
    by_dtype: dict[torch.dtype, list[torch.Tensor]] = {}
    for t in tensors:
        flat = t.detach().reshape(-1)
        by_dtype.setdefault(t.dtype, []).append(flat[:: max(1, flat.numel() // 16)])
    return b"".join(torch.cat(parts).cpu().reshape(-1).view(torch.uint8).numpy().tobytes() for parts in by_dtype.values())


_fingerprints: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> (state key, digest)


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
    matrix = pefs.matrix
    arrays = {"data": matrix.data, "indices": matrix.indices.astype(np.int64), "indptr": matrix.indptr.astype(np.int64),
              "frobenius_norms": pefs.frobenius_norms, "shape": np.array(matrix.shape, dtype=np.int64)}
    if kind(pefs.kind).one_row_per_slot:
        arrays["classes"] = pefs.slot_classes
    return fingerprint_arrays(arrays)


def fingerprint_matrix(matrix: sp.csr_matrix, kept_columns: np.ndarray, squared_norm: float) -> str:
    """The prepared data a fit sees (after pruning and normalising)."""
    return fingerprint_arrays({
        "data": matrix.data, "indices": matrix.indices.astype(np.int64), "indptr": matrix.indptr.astype(np.int64),
        "shape": np.array(matrix.shape, dtype=np.int64), "kept": kept_columns.astype(np.int64),
        "squared_norm": np.array([squared_norm], dtype=np.float64),
    })


def check_same_model(recorded: Mapping, model: torch.nn.Module, what: str) -> None:
    """Refuse ``model`` when ``recorded`` (a PEF store's info or a decomposition's pef_info) names another one.

    Records without a model fingerprint (PEFs made outside a model) are accepted.
    """
    expected = recorded.get("model_fingerprint")
    if not expected or fingerprint_model(model) == expected:
        return
    state = model.state_dict()
    here = "/".join(sorted({dtype_name(t.dtype) for t in state.values() if t.is_floating_point()}))
    # the fingerprint covers the dtype (a resumed run must be the same run), so a cast after the fit, or the model
    # loaded in float16, reads as another model: found by the cast that gives the recorded fingerprint back
    was = next((d for d in PEF_DTYPES if any(t.is_floating_point() and t.dtype != d for t in state.values())
                and fingerprint_tensors(dict(state), cast=d) == expected), None)
    if was is not None:
        raise StoreError(
            f"{what} was computed from this model in {dtype_name(was)}, and its weights are {here} now (cast after "
            f"the fit, or loaded in {here}); the weights fingerprint covers their dtype: cast the model back with "
            f"model.to(torch.{dtype_name(was)}), or load it as it was, in {dtype_name(was)}")
    if {t.dtype for t in state.values() if t.is_floating_point()} - set(PEF_DTYPES):
        raise StoreError(
            f"{what} was computed from float32 or float64 weights (fingerprint {expected[:12]}; PEFs are not computed "
            f"in half precision), and the model given ({model_name(model)}) holds {here} weights: the fingerprint "
            "covers their dtype, so load the model as it was when its PEFs were computed, in float32 (e.g. "
            f"from_pretrained(folder, torch_dtype=torch.float32); model.float() does not give back what {here} "
            "rounded), or, if it is another model, recompute the PEFs and decomposition with it")
    raise StoreError(
        f"{what} was computed from another model ({recorded.get('model', 'unnamed')!s}, weights fingerprint "
        f"{expected[:12]}) than the one given ({model_name(model)}, {fingerprint_model(model)[:12]}): "
        "use the model it was made from, or recompute the PEFs and decomposition with this one"
    )


# The dtypes PEFs are computed in (half precision is refused: fisher.gradients), so the ones a recorded model had
PEF_DTYPES = (torch.float32, torch.float64)

