"""The numba-compiled loop behind :func:`workbench.fisher.sketch.sketch_rows` (imported only when used).

One pass over a group's written-out gradients: each entry is added, with its sign, into
its bucket, and into the example's Gram matrix over slots (float64). torch's elementwise
sign product, ``index_add_`` and a Gram product per 4,096 columns read the gradients
three times and took two thirds of a sketched MiniLM example's time.
"""

import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
def sketch_and_grams(A, codes, out, grams, start, stop):  # pragma: no cover - compiled
    """For examples start..stop of A (e, k, m) float32: out[i, s] (d) += σ · A[i, s] by
    bucket, grams[i] (k, k) = A[i] A[i]ᵀ in float64. codes (m,) uint32 hold each
    parameter's bucket << 1 | (σ = −1): 4 bytes read per parameter, and no branch on the
    sign (a random one, mispredicted half the time). out and grams start at zero."""
    k, m = A.shape[1], A.shape[2]
    for i in range(start, stop):
        for p in range(m):
            code = codes[p]
            b = code >> 1
            sign = np.float32(1) - np.float32(2) * np.float32(code & 1)
            for s in range(k):
                v = A[i, s, p]
                out[i, s, b] += sign * v
                for t in range(s + 1):
                    grams[i, s, t] += np.float64(v) * np.float64(A[i, t, p])
        for s in range(k):
            for t in range(s):
                grams[i, t, s] = grams[i, s, t]
