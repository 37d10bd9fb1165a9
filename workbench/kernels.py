"""CPU kernels for the sparse products of the NPEFF fits, compiled with numba.

Each fit iteration multiplies the PEF matrix X (rows: examples × slots, columns:
parameters) by thin dense matrices both ways: X·Mᵀ with M of shape (r, m), and Xᵀ·B with
B of shape (n, r). torch's CSR product X·Mᵀ reads M's columns at random across millions
of parameters (cache misses), its product with a transposed CSR is another 10× slower,
and scipy's are single-threaded. Both kernels here instead stream once through Xᵀ
stored as its own CSR matrix (one row per parameter) and keep the small side (n × r) in
cache:

- :func:`csr_times_dense` (Xᵀ·B): each parameter's row of the result is a sum of rows of B;
  rows run in parallel.
- :func:`csr_transposed_times_dense` (X·Mᵀ = (Xᵀ)ᵀ·Mᵀ): each parameter's column of M is
  added into the rows of the examples that use it; each thread adds into its own copy
  of the (n × r) result, and the copies are summed.

Hand-written because no maintained library offers these two products multithreaded on
CPU (docs/design.md, "Fast fits"). numba is imported on first use only; without it, or on
another device, the products fall back to torch (:class:`workbench.npeff._Prepared`).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch


@lru_cache(maxsize=1)
def _numba():
    try:
        import numba
    except ImportError:  # an optional speed-up: torch does the products without it
        return None
    return numba


def available() -> bool:
    """Whether the numba kernels can run here."""
    return _numba() is not None


@lru_cache(maxsize=1)
def _compiled():
    from . import _numba_kernels

    return _numba_kernels


def _threads() -> int:
    numba = _numba()
    n = max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS))
    numba.set_num_threads(n)
    return n


def _csr_arrays(matrix: torch.Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return matrix.crow_indices().numpy(), matrix.col_indices().numpy(), matrix.values().numpy()


def csr_times_dense(matrix: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
    """matrix @ B for a CPU CSR float32 matrix (p, q) and a dense float32 B (q, r): (p, r)."""
    indptr, indices, data = _csr_arrays(matrix)
    out = np.empty((matrix.shape[0], B.shape[1]), dtype=np.float32)
    _threads()
    _compiled().csr_times_dense(indptr, indices, data, np.ascontiguousarray(B.numpy()), out)
    return torch.from_numpy(out)


def csr_transposed_times_dense(matrix: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
    """matrixᵀ @ B for a CPU CSR float32 matrix (p, q) and a dense float32 B (p, r): (q, r).

    B may be a transposed view (e.g. Mᵀ of an (r, p) matrix); it is read as it lies."""
    indptr, indices, data = _csr_arrays(matrix)
    partial = np.empty((_threads(), matrix.shape[1], B.shape[1]), dtype=np.float32)
    _compiled().csr_transposed_times_dense(indptr, indices, data, B.numpy(), partial)
    return torch.from_numpy(partial.sum(axis=0, dtype=np.float32) if partial.shape[0] > 1 else partial[0])
