"""The numba-compiled loops behind :mod:`workbench.kernels` (imported only when used)."""

import numba
import numpy as np


@numba.njit(parallel=True, cache=True, nogil=True)
def csr_times_dense(indptr, indices, data, B, out):  # pragma: no cover - compiled
    """out[i, :] = Σ_p data[p] · B[indices[p], :] over row i's entries; rows in parallel."""
    n_rows, r = out.shape
    for i in numba.prange(n_rows):
        acc = np.zeros(r, dtype=np.float32)
        for p in range(indptr[i], indptr[i + 1]):
            j = indices[p]
            v = data[p]
            for c in range(r):
                acc[c] += v * B[j, c]
        for c in range(r):
            out[i, c] = acc[c]


@numba.njit(parallel=True, cache=True, nogil=True)
def csr_transposed_times_dense(indptr, indices, data, B, partial):  # pragma: no cover - compiled
    """partial[t] = Σ over thread t's share of rows i of (row i)ᵀ ⊗ B[i, :]; Σ_t partial[t] = Aᵀ B."""
    n_threads, _, r = partial.shape
    n_rows = indptr.shape[0] - 1
    share = (n_rows + n_threads - 1) // n_threads
    for t in numba.prange(n_threads):
        out = partial[t]
        out[:] = 0
        b = np.empty(r, dtype=np.float32)
        for i in range(t * share, min(n_rows, (t + 1) * share)):
            for c in range(r):
                b[c] = B[i, c]
            for p in range(indptr[i], indptr[i + 1]):
                j = indices[p]
                v = data[p]
                for c in range(r):
                    out[j, c] += v * b[c]
