"""CPU kernels for the sparse products of the NPEFF fits, compiled with numba.

Each fit iteration multiplies the PEF matrix X (rows: examples × slots, columns:
parameters) by thin dense matrices both ways: X·Mᵀ with M of shape (r, m), and Xᵀ·B with
B of shape (n, r). torch's CSR product X·Mᵀ reads M's columns at random across millions
of parameters (cache misses), its product with a transposed CSR is slower still,
and scipy's are single-threaded. Both kernels here instead stream once through Xᵀ
stored as its own CSR matrix (one row per parameter) and keep the small side (n × r) in
cache:

- :func:`csr_times_dense` (Xᵀ·B): each parameter's row of the result is a sum of rows of B;
  :func:`csr_times_dense_t` writes it transposed, (r, m), the layout of G.
- :func:`csr_transposed_times_dense` (X·Mᵀ = (Xᵀ)ᵀ·Mᵀ): each parameter's column of M is
  added into the rows of the examples that use it; each thread adds into its own copy
  of the (n × r) result, and the copies are summed.
- :func:`row_gram` (X·Xᵀ in float64, once per fit by the dual solver,
  :mod:`workbench.npeff.solvers`): each example's row of the result sums the columns of Xᵀ
  it uses.

Rows are split into ranges of equal numbers of entries, one per torch thread
(:mod:`workbench.core.compiled` runs them and switches the kernels off).

Hand-written because no maintained library offers these products multithreaded on CPU
(docs/design.md, "Fast fits"). Without numba, or on another device, the products fall
back to torch (:class:`workbench.npeff.data.FitData`) and X·Xᵀ to scipy.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

import numpy as np
import torch

from ..core import compiled


@lru_cache(maxsize=1)
def _compiled():
    from . import _compiled

    return _compiled


def _ranges(n_rows: int, indptr: np.ndarray) -> list[tuple[int, int]]:
    """Row ranges of about equal numbers of entries, one per torch thread."""
    n_threads = compiled.n_threads()
    if n_threads == 1 or indptr[-1] < 1 << 16:
        return [(0, n_rows)]
    cuts = np.searchsorted(indptr, np.linspace(0, indptr[-1], n_threads + 1)[1:-1])
    bounds = [0, *cuts.tolist(), n_rows]
    return [(a, b) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]


def _csr_arrays(matrix: torch.Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return matrix.crow_indices().numpy(), matrix.col_indices().numpy(), matrix.values().numpy()


def csr_times_dense(matrix: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
    """matrix @ B for a CPU CSR float32 matrix (p, q) and a dense float32 B (q, r): (p, r)."""
    out = np.empty((matrix.shape[0], B.shape[1]), dtype=np.float32)
    return _row_product(_compiled().csr_times_dense, matrix, B, out)


def csr_times_dense_t(matrix: torch.Tensor, B: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """(matrix @ B)ᵀ, contiguous, for a CPU CSR float32 matrix (p, q) and a dense float32 B (q, r): (r, p);
    written into ``out`` when given (a contiguous float32 (r, p) tensor)."""
    shape = (B.shape[1], matrix.shape[0])
    if out is None or tuple(out.shape) != shape or not out.is_contiguous() or out.dtype != torch.float32:
        out = torch.empty(shape, dtype=torch.float32)
    return _row_product(_compiled().csr_times_dense_t, matrix, B, out.numpy())


def _row_product(kernel, matrix: torch.Tensor, B: torch.Tensor, out: np.ndarray) -> torch.Tensor:
    """Runs a kernel that fills ``out`` row range by row range of ``matrix`` (threads split the rows)."""
    indptr, indices, data = _csr_arrays(matrix)
    B = np.ascontiguousarray(B.numpy())
    ranges = _ranges(matrix.shape[0], indptr)
    compiled.run(kernel, ranges, *[(indptr, indices, data, B, out)] * len(ranges))
    return torch.from_numpy(out)


def csr_transposed_times_dense(matrix: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
    """matrixᵀ @ B for a CPU CSR float32 matrix (p, q) and a dense float32 B (p, r): (q, r).

    B may be a transposed view (e.g. Mᵀ of an (r, p) matrix); it is read as it lies. Each
    thread adds into its own (q, r) result; they are summed at the end."""
    indptr, indices, data = _csr_arrays(matrix)
    B = B.numpy()
    ranges = _ranges(matrix.shape[0], indptr)
    partial = np.empty((len(ranges), matrix.shape[1], B.shape[1]), dtype=np.float32)
    compiled.run(_compiled().csr_transposed_times_dense, ranges, *[(indptr, indices, data, B, partial[t]) for t in range(len(ranges))])
    return torch.from_numpy(partial.sum(axis=0, dtype=np.float32) if len(ranges) > 1 else partial[0])


def row_gram(matrix: torch.Tensor, matrix_t: torch.Tensor, on_rows_done: Callable[[int], None] | None = None) -> torch.Tensor:
    """matrix @ matrixᵀ in float64, dense (p, p), for a CPU CSR float32 matrix (p, q) and its
    transpose stored as its own CSR matrix (q, p) with sorted indices.

    Each thread fills the upper triangle of its own rows; the lower triangle is mirrored.
    With ``on_rows_done``, the rows go in 32 rounds of equal work, and it is called with the
    number of rows each round finished (for a progress bar)."""
    indptr, indices, data = _csr_arrays(matrix)
    t_indptr, t_indices, t_data = _csr_arrays(matrix_t)
    n = matrix.shape[0]
    out = np.zeros((n, n), dtype=np.float64)
    n_threads = compiled.n_threads()
    rounds = 32 if on_rows_done is not None else 1
    # Row i does the work of its columns' entries at or after i: about (n - i) / n of them.
    work = np.concatenate([[0.0], np.cumsum(np.diff(indptr) * (n - np.arange(n)), dtype=np.float64)])
    bounds = np.searchsorted(work, np.linspace(0, work[-1], rounds * n_threads + 1), side="left")
    bounds[0], bounds[-1] = 0, n
    args = (indptr, indices, data, t_indptr, t_indices, t_data, out)
    for r in range(rounds):
        cuts = bounds[r * n_threads : (r + 1) * n_threads + 1].tolist()
        ranges = [(a, b) for a, b in zip(cuts[:-1], cuts[1:]) if b > a]
        if ranges:
            compiled.run(_compiled().row_gram_upper, ranges, *[args] * len(ranges))
        if on_rows_done is not None:
            on_rows_done(cuts[-1] - cuts[0])
    return torch.from_numpy(out + np.triu(out, 1).T)  # the kernel wrote the upper triangle only
