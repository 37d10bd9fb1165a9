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


@numba.njit(cache=True, nogil=True, fastmath={"reassoc", "contract"})
def _gram_entry(a, b):  # pragma: no cover - compiled
    """Σ_j a[j]·b[j] of two float32 rows, in float64; the sum may be reordered, so the
    compiler vectorises it (in order, each addition waits for the last: 3× slower)."""
    acc = 0.0
    for j in range(a.shape[0]):
        acc += np.float64(a[j]) * np.float64(b[j])
    return acc


@numba.njit(cache=True, nogil=True, inline="always")
def _collect(row, factor, offset, floor, found, found_values, c):  # pragma: no cover - compiled
    """Appends the entries of factor · row with |value| ≥ floor, their positions offset + j
    and values, to found and found_values from c on (room for one more than the row);
    returns the new end. Every entry is written and the end moves on only past a hit: a
    branch per entry was 2-3× slower (hits come at random, mispredicted)."""
    for j in range(row.shape[0]):
        v = factor * row[j]
        found[c] = offset + j
        found_values[c] = v
        c += abs(v) >= floor
    return c


@numba.njit(cache=True, nogil=True)
def _nth_largest(values, count, n, scratch):  # pragma: no cover - compiled
    """The n-th largest of values[:count] (non-negative float32, 1 ≤ n ≤ count), by radix
    selection on their bit patterns, which order non-negative floats as the floats: a
    histogram of the top 12 bits finds the bucket that holds it, then the next 12 and the
    last 8 within that bucket's values only (copied to ``scratch``, room for ``count``).
    numpy's and numba's partitions took 2-4× longer on an example's candidates."""
    rank = count - n  # 0-based, ascending
    bits = values[:count].view(np.uint32)
    histogram = np.zeros(4096, np.int64)
    kept = scratch.view(np.uint32)
    m = count
    prefix = np.uint32(0)
    for shift, width in ((20, 12), (8, 12), (0, 8)):
        mask = np.uint32((1 << width) - 1)
        histogram[: 1 << width] = 0
        source = bits if shift == 20 else kept[:m]
        for p in range(source.shape[0]):
            histogram[(source[p] >> shift) & mask] += 1
        bucket = 0
        while rank >= histogram[bucket]:
            rank -= histogram[bucket]
            bucket += 1
        prefix |= np.uint32(bucket) << shift
        if shift == 0:
            break
        high = np.uint32(0xFFFFFFFF) << shift
        c = 0
        for p in range(source.shape[0]):  # the bucket's values, for the next, finer histogram
            kept[c] = source[p]
            c += (source[p] & high) == prefix
        m = c
    return np.array([prefix], np.uint32).view(np.float32)[0]


@numba.njit(cache=True, nogil=True)
def top_entries_of_examples(A, slot_scales, n, sample_slot, sample_column, q, positions, values, counts, grams,
                            start, stop):  # pragma: no cover - compiled
    """For each example i in start..stop, with k slots over m parameters: its n largest
    |entries| (n < 0: every non-zero), exact zeros never kept and ties at the cut kept by
    first position, as flat positions s·m + j (ascending) and values in
    positions[i, :counts[i]] and values[i, :counts[i]] (rows with room for one more); and
    grams[i], its (k, k) Gram matrix over slots, summed in float64.

    Slot s of example i is A[i, s] (A of shape (e, k, m) float32, ``slot_scales`` of shape
    (e, 0)), or, where the slots are multiples of one gradient (two classes),
    slot_scales[i, s] · A[i, 0] (A of shape (e, 1, m), slot_scales (e, k)).

    The threshold is the q-th largest |entry| at the sample's (slot, column) positions
    (none: 0), as in :mod:`workbench.fisher.selection`; the entries that reach it are
    collected in one pass, and the n-th largest of those is the cut."""
    e, rows, m = A.shape
    one_row = slot_scales.shape[1] > 0
    k = slot_scales.shape[1] if one_row else rows
    factors = np.ones(k, np.float32)
    found = np.empty(k * m + 1, np.int64)
    found_values = np.empty(k * m + 1, np.float32)
    magnitudes = np.empty(k * m + 1, np.float32)
    scratch = np.empty(k * m + 1, np.float32)
    sampled = np.empty(sample_slot.shape[0], np.float32)
    tiny = np.nextafter(np.float32(0), np.float32(1))  # "≥ tiny" is "non-zero"
    for i in range(start, stop):
        if one_row:
            factors[:] = slot_scales[i]
            squared = _gram_entry(A[i, 0], A[i, 0])
            for s in range(k):
                for t in range(k):
                    grams[i, s, t] = np.float64(factors[s]) * np.float64(factors[t]) * squared
        else:
            for s in range(k):
                for t in range(s, k):
                    grams[i, s, t] = grams[i, t, s] = _gram_entry(A[i, s], A[i, t])
        threshold = np.float32(0)
        if sample_slot.shape[0] > 0:
            for p in range(sample_slot.shape[0]):
                s = sample_slot[p]
                sampled[p] = abs(factors[s] * A[i, 0 if one_row else s, sample_column[p]])
            threshold = _nth_largest(sampled, sample_slot.shape[0], q, scratch)
        floor = max(threshold, tiny)
        total = 0
        for s in range(k):
            total = _collect(A[i, 0 if one_row else s], factors[s], s * m, floor, found, found_values, total)
        if n >= 0 and total < n and threshold > 0:  # the sample misjudged: rank every non-zero
            total = 0
            for s in range(k):
                total = _collect(A[i, 0 if one_row else s], factors[s], s * m, tiny, found, found_values, total)
        for p in range(total):
            magnitudes[p] = abs(found_values[p])
        cut = np.float32(-1)  # -1: every candidate is kept
        allowed_ties = 0
        if n >= 0 and total > n:
            cut = _nth_largest(magnitudes, total, n, scratch)
            above = 0
            for p in range(total):
                above += magnitudes[p] > cut
            allowed_ties = n - above
        c = 0
        for p in range(total):  # written every time, kept by moving on: as in _collect
            a = magnitudes[p]
            tie = a == cut
            keep = (a > cut) | (tie & (allowed_ties > 0))
            allowed_ties -= tie & keep
            positions[i, c] = found[p]
            values[i, c] = found_values[p]
            c += keep
        counts[i] = c
