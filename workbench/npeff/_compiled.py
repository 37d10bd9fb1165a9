"""The numba-compiled loops behind :mod:`workbench.npeff.kernels` (imported only when used).

Serial loops over a range of rows, releasing the GIL: :mod:`workbench.npeff.kernels` runs them
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


@numba.njit(cache=True, nogil=True)
def row_gram_upper(indptr, indices, data, t_indptr, t_indices, t_data, out, start, stop):  # pragma: no cover - compiled
    """out[i, k] = Σ_j X[i, j] · X[k, j] for k ≥ i and rows i in start..stop, in float64.

    Row i sums, over its columns j, the column's entries from example i on (row j of Xᵀ,
    indices sorted), into out[i], which stays in cache. Those rows of Xᵀ lie at random in
    memory: fetched one after another, each waits on its cache misses (3x slower), so a
    batch of them is first located and touched in short loops whose loads are independent
    and overlap, then summed."""
    batch = 128
    lo = np.empty(batch, np.int64)
    hi = np.empty(batch, np.int64)
    touched = 0.0  # returned, so that the touching loads are not optimised away
    for i in range(start, stop):
        acc = out[i]
        for p0 in range(indptr[i], indptr[i + 1], batch):
            p1 = min(p0 + batch, indptr[i + 1])
            for p in range(p0, p1):
                j = indices[p]
                lo[p - p0] = t_indptr[j]
                hi[p - p0] = t_indptr[j + 1]
            for b in range(p1 - p0):
                for q in range(lo[b], hi[b], 16):  # one load per 64-byte line
                    touched += t_data[q] + t_indices[q]
                if hi[b] > lo[b]:
                    touched += t_data[hi[b] - 1] + t_indices[hi[b] - 1]
            for p in range(p0, p1):
                v = np.float64(data[p])
                first = lo[p - p0] + np.searchsorted(t_indices[lo[p - p0] : hi[p - p0]], i)
                for q in range(first, hi[p - p0]):
                    acc[t_indices[q]] += v * np.float64(t_data[q])
    return touched
