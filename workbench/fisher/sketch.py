"""Sketched PEFs of a batch, and the products that map a sketched fit back to the parameters.

A sketched LRM-PEF is S A_i, (k × d) per example, with S the count sketch of
:mod:`workbench.core.sketch`: each example's gradients are written out (as the dense path
of :mod:`.sparsify` writes them, a group of examples at a time) and every parameter's
value is added, with its sign, into its bucket: O(m) per example and slot, and every
parameter counts. The norm kept is the exact ‖A_iᵀ A_i‖_F of the unsketched PEF, as
for top-n PEFs (the fit normalises by it). On a CPU with numba one compiled pass per group
does both (:mod:`._sketch_compiled`, hashes packed in 4 bytes per parameter); elsewhere
torch's ``index_add_`` and Gram products (12 bytes of hashes per parameter).

:func:`gradient_products` is the other direction: Σ_rows C[row]ᵀ A[row] over a batch's
exact gradients, (r, m), for coefficients C of its rows: one pass over the gradients,
and nothing of size m per example is kept. :func:`workbench.runner.sketch.parameter_products`
runs it over every batch.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

from ..core import compiled
from ..core.sketch import CountSketch
from .gradients import BatchGradients
from .sparsify import ExamplePef, written_groups

_GRAM_COLUMNS = 1 << 12  # columns per float32 partial Gram, summed in float64 (as the dense path's)


@lru_cache(maxsize=4)
def _hashes_on(sketch: CountSketch, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The sketch's buckets (int64) and signs (float32) of every parameter, on ``device``:
    computed once per run (12 bytes per parameter), not once per batch; the torch path's (GPUs, or no numba)."""
    buckets, signs = sketch.hashes()
    return torch.from_numpy(buckets).to(device), torch.from_numpy(signs).to(device)


@lru_cache(maxsize=2)
def _codes(sketch: CountSketch) -> np.ndarray:
    """The compiled kernel's (m,) uint32 bucket << 1 | (sign = −1): 4 bytes per parameter, once per run."""
    if sketch.dim >= 2**31:
        raise ValueError(f"sketch={sketch.dim} is too large (at most 2**31 - 1)")
    buckets, signs = sketch.hashes()
    return ((buckets.astype(np.uint32) << np.uint32(1)) | (signs < 0).astype(np.uint32)).astype(np.uint32)


@lru_cache(maxsize=1)
def _compiled():
    from . import _sketch_compiled

    return _sketch_compiled


def sketch_with_grams(A_t: torch.Tensor, sketch: CountSketch) -> tuple[torch.Tensor, torch.Tensor]:
    """(S applied to every row of A_t (e, k, m): (e, k, d) float32, A_iᵀA_i of each example (e, k, k) float64).
    On a CPU with numba one compiled pass (examples split between the torch threads); else torch."""
    if A_t.device.type != "cpu" or not compiled.available():
        return sketch_rows(A_t, sketch), _grams(A_t)
    codes = _codes(sketch)
    A = np.ascontiguousarray(A_t.numpy())
    e, k, _ = A.shape
    out = np.zeros((e, k, sketch.dim), dtype=np.float32)
    grams = np.zeros((e, k, k), dtype=np.float64)
    n_threads = min(compiled.n_threads(), e)
    bounds = np.linspace(0, e, n_threads + 1).astype(int).tolist()
    ranges = [(a, b) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]
    args = (A, codes, out, grams)
    compiled.run(_compiled().sketch_and_grams, ranges, *[args] * len(ranges))
    return torch.from_numpy(out), torch.from_numpy(grams)


def _grams(A_t: torch.Tensor) -> torch.Tensor:
    """(e, k, k) float64: A_iᵀ A_i of each written-out example, A_t (e, k, m)."""
    grams = torch.zeros((A_t.shape[0], A_t.shape[1], A_t.shape[1]), dtype=torch.float64, device=A_t.device)
    for start in range(0, A_t.shape[2], _GRAM_COLUMNS):
        part = A_t[:, :, start : start + _GRAM_COLUMNS]
        grams += (part @ part.transpose(1, 2)).double()
    return grams


def sketch_rows(A_t: torch.Tensor, sketch: CountSketch) -> torch.Tensor:
    """S applied to every row of A_t (..., m): (..., d), float32."""
    buckets, signs = _hashes_on(sketch, str(A_t.device))
    out = torch.zeros((*A_t.shape[:-1], sketch.dim), dtype=torch.float32, device=A_t.device)
    return out.index_add_(A_t.ndim - 1, buckets, A_t * signs)


def sketch_pefs(grads: BatchGradients, sketch: CountSketch) -> list[ExamplePef]:
    """Each example's sketched LRM-PEF: positions s·d + b on its (slots, d) grid (exact zeros
    dropped), values (S A_i)[b, s], and the exact norm of its unsketched PEF."""
    if sketch.n_parameters != grads.plan.layout.n_parameters:
        raise ValueError(f"the sketch sketches {sketch.n_parameters} parameters, the run selects {grads.plan.layout.n_parameters}")
    pefs = []
    for rows, A_t in written_groups(grads, None):
        sketched, grams = sketch_with_grams(A_t, sketch)
        if grads.slot_scales is not None:  # a two-class model's slots are multiples of one gradient, and S is linear
            scales = grads.slot_scales[rows].float()  # (e, 2)
            sketched = sketched * scales[:, :, None]
            grams = grams * (scales[:, :, None] * scales[:, None, :]).double()
        norms = torch.linalg.matrix_norm(grams).tolist()
        flat = sketched.reshape(sketched.shape[0], -1)
        for values, norm in zip(flat, norms):
            positions = torch.nonzero(values).reshape(-1)
            pefs.append(ExamplePef(positions, values[positions], norm))
    return pefs


def gradient_products(grads: BatchGradients, coefficients: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """Adds to ``out`` (r, m) Σ over the batch's (example, slot) rows of coefficients[i, s] ⊗ A_i[:, s],
    for ``coefficients`` (b, k, r) on the gradients' device. float32, as the gradients are:
    a float64 (r, m) would take 1.5 GB at r = 8 on MiniLM's 22.7 M parameters."""
    m = grads.plan.layout.n_parameters
    r = coefficients.shape[2]
    for rows, A_t in written_groups(grads, None):
        C = coefficients[rows].double()  # (e, k, r)
        if grads.slot_scales is not None:  # one written row per example; slot s is slot_scales[i, s] times it
            C = (C * grads.slot_scales[rows].double()[:, :, None]).sum(dim=1, keepdim=True)
        out.addmm_(C.reshape(-1, r).T.float(), A_t.reshape(-1, m))
    return out
