"""The numba-compiled loops behind :mod:`workbench.kernels` (imported only when used).

Serial loops over a range of rows, releasing the GIL: :mod:`workbench.kernels` runs them
on Python threads. (numba's own ``parallel=True`` starts an OpenMP runtime whose waiting
threads slowed torch's operations between the products by 10× on a busy machine.)
"""

import numba
import numpy as np


@numba.njit(cache=True, nogil=True, inline="always")
def _row_times_dense(indptr, indices, data, B, i, acc):  # pragma: no cover - compiled
    """acc = Σ_p data[p] · B[indices[p], :] over row i's entries."""
    acc[:] = 0
    for p in range(indptr[i], indptr[i + 1]):
        j = indices[p]
        v = data[p]
        for c in range(acc.shape[0]):
            acc[c] += v * B[j, c]


@numba.njit(cache=True, nogil=True)
def csr_times_dense(indptr, indices, data, B, out, start, stop):  # pragma: no cover - compiled
    """out[i, :] = Σ_p data[p] · B[indices[p], :] over row i's entries, for rows start..stop."""
    r = out.shape[1]
    acc = np.empty(r, dtype=np.float32)
    for i in range(start, stop):
        _row_times_dense(indptr, indices, data, B, i, acc)
        for c in range(r):
            out[i, c] = acc[c]


@numba.njit(cache=True, nogil=True)
def csr_times_dense_t(indptr, indices, data, B, out_t, start, stop):  # pragma: no cover - compiled
    """out_t[:, i] = Σ_p data[p] · B[indices[p], :] over row i's entries, for rows start..stop:
    the product written transposed, a tile of rows at a time so the writes stay sequential."""
    r = out_t.shape[0]
    tile = np.empty((64, r), dtype=np.float32)
    for first in range(start, stop, 64):
        last = min(stop, first + 64)
        for i in range(first, last):
            _row_times_dense(indptr, indices, data, B, i, tile[i - first])
        for c in range(r):
            for i in range(first, last):
                out_t[c, i] = tile[i - first, c]


@numba.njit(cache=True, nogil=True)
def csr_transposed_times_dense(indptr, indices, data, B, out, start, stop):  # pragma: no cover - compiled
    """out = Σ over rows i in start..stop of (row i)ᵀ ⊗ B[i, :] (out zeroed here)."""
    r = out.shape[1]
    out[:] = 0
    b = np.empty(r, dtype=np.float32)
    for i in range(start, stop):
        for c in range(r):
            b[c] = B[i, c]
        for p in range(indptr[i], indptr[i + 1]):
            j = indices[p]
            v = data[p]
            for c in range(r):
                out[j, c] += v * b[c]
