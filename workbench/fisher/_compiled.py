"""The numba-compiled loop behind :mod:`workbench.fisher.kernels` (imported only when used).

Serial loops over a range of examples, releasing the GIL: :mod:`workbench.fisher.kernels` runs
them on Python threads, as :mod:`workbench.npeff.kernels` runs its products.
"""

import numba
import numpy as np


# Sums may be reordered, so the compiler vectorises them (in order, each addition waits for the last: 3× slower).
_SUMS = {"reassoc", "contract"}


@numba.njit(cache=True, nogil=True, fastmath=_SUMS)
def _gram_entry(a, b):  # pragma: no cover - compiled
    """Σ_j a[j]·b[j] of two float32 rows, in float64."""
    acc = 0.0
    for j in range(a.shape[0]):
        acc += np.float64(a[j]) * np.float64(b[j])
    return acc


# Entries tested at a time before any is collected: a gradient's large entries come in runs
# (a weight's rows of a large output gradient), and on the embedded model two thirds of its
# runs of 32 hold none, which one vectorised count then skips.
_RUN = 32

# A written-out example's gradients lie in blocks (one per parameter): block b holds
# ``blocks[b, SIZE]`` entries at flat positions ``blocks[b, OFFSET]`` on, slot s of example i
# from buffer[blocks[b, START] + s · blocks[b, SLOT_STEP] + i · blocks[b, EXAMPLE_STEP]] on.
START, SIZE, OFFSET, EXAMPLE_STEP, SLOT_STEP = 0, 1, 2, 3, 4


@numba.njit(cache=True, nogil=True, inline="always")
def _segment(buffer, blocks, b, i, s):  # pragma: no cover - compiled
    at = blocks[b, START] + s * blocks[b, SLOT_STEP] + i * blocks[b, EXAMPLE_STEP]
    return buffer[at : at + blocks[b, SIZE]]


@numba.njit(cache=True, nogil=True)
def _slot_product(buffer, blocks, i, s, t):  # pragma: no cover - compiled
    """Σ_j A_i[s, j] · A_i[t, j] over every block, in float64."""
    acc = 0.0
    for b in range(blocks.shape[0]):
        acc += _gram_entry(_segment(buffer, blocks, b, i, s), _segment(buffer, blocks, b, i, t))
    return acc


@numba.njit(cache=True, nogil=True, fastmath=_SUMS)
def _collect(buffer, blocks, i, s, floor, found, found_values, c):  # pragma: no cover - compiled
    """Appends the entries of slot s of example i with |value| ≥ floor, their columns j and
    values, to found and found_values from c on (room for one more than the row), block by
    block; returns the new end and Σ_j A_i[s, j]² (float64), which the same pass reads.
    Every entry of a run that holds a hit is written and the end moves on only past a hit:
    a branch per entry was 2-3× slower (hits come at random within a run, mispredicted).
    The pass runs at the speed of reading the example from memory: a scan 3× faster on
    its own gained nothing here."""
    squares = 0.0
    for b in range(blocks.shape[0]):
        row = _segment(buffer, blocks, b, i, s)
        offset = blocks[b, OFFSET]
        size = row.shape[0]
        whole = size - size % _RUN
        for j0 in range(0, whole, _RUN):
            hits = 0
            for j in range(j0, j0 + _RUN):
                x = row[j]
                squares += np.float64(x) * np.float64(x)
                hits += abs(x) >= floor
            if hits > 0:
                for j in range(j0, j0 + _RUN):
                    found[c] = offset + j
                    found_values[c] = row[j]
                    c += abs(row[j]) >= floor
        for j in range(whole, size):
            x = row[j]
            squares += np.float64(x) * np.float64(x)
            found[c] = offset + j
            found_values[c] = x
            c += abs(x) >= floor
    return c, squares


@numba.njit(cache=True, nogil=True)
def _multiply_out(factors, floor, candidates, candidate_values, n, found, found_values, magnitudes, slot_ends):  # pragma: no cover - compiled
    """Where every slot s is factors[s] · row (two classes): appends, slot by slot, the
    entries of factors[s] · candidates with |value| ≥ floor (columns, values and magnitudes)
    from 0, slot s ending at slot_ends[s]; returns their number."""
    c = 0
    for s in range(factors.shape[0]):
        factor = factors[s]
        for p in range(n):
            v = factor * candidate_values[p]
            found[c] = candidates[p]
            found_values[c] = v
            magnitudes[c] = abs(v)
            c += abs(v) >= floor
        slot_ends[s] = c
    return c


@numba.njit(cache=True, nogil=True)
def _collect_slots(buffer, blocks, i, one_row, factors, floor, candidates, candidate_values, found, found_values,
                   magnitudes, slot_ends):  # pragma: no cover - compiled
    """Every slot's entries of example i with |value| ≥ floor, slot by slot, columns ascending
    within each, into found, found_values and magnitudes from 0, slot s ending at
    slot_ends[s]; returns their number and each written-out row's Σ_j A_i[s, j]².

    Where the slots are multiples of one row (``one_row``), one pass over the row collects
    the j that the largest factor may bring to the floor (a bound that allows for the
    product's rounding), and each slot multiplies out only those: half the passes over the
    row of taking the slots one by one."""
    k = factors.shape[0]
    squares = np.zeros(k)
    if one_row:
        largest = np.float32(0)
        for s in range(k):
            largest = max(largest, abs(factors[s]))
        # fl(f·w) ≤ |f|·|w|·(1 + 2⁻²⁴): a j below floor / (largest · (1 + 2⁻²⁰)) reaches the floor in
        # no slot. With every factor 0 nothing is kept, but the pass still sums the row's squares.
        low = np.float32(np.float64(floor) / (np.float64(max(largest, np.float32(1e-38))) * (1.0 + 2.0**-20)))
        low = np.nextafter(low, np.float32(0))
        n, squares[0] = _collect(buffer, blocks, i, 0, low, candidates, candidate_values, 0)
        if largest == 0:
            n = 0
        return _multiply_out(factors, floor, candidates, candidate_values, n, found, found_values, magnitudes, slot_ends), squares
    c = 0
    for s in range(k):
        c, squares[s] = _collect(buffer, blocks, i, s, floor, found, found_values, c)
        slot_ends[s] = c
    for p in range(c):
        magnitudes[p] = abs(found_values[p])
    return c, squares


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


@numba.njit(cache=True, nogil=True, inline="always")
def _kept_above(found, found_values, magnitudes, begin, end, floor, columns, values, c):  # pragma: no cover - compiled
    """Appends found[p], found_values[p] for p in begin..end with magnitudes[p] > floor to
    columns and values from c on; returns the new end. Written every time, kept by moving
    on (as in _collect): 2 cycles an entry, where a tie test in the loop took 5."""
    for p in range(begin, end):
        columns[c] = found[p]
        values[c] = found_values[p]
        c += magnitudes[p] > floor
    return c


@numba.njit(cache=True, nogil=True)
def _keep_largest(found, found_values, magnitudes, slot_ends, n, columns, values, row_counts):  # pragma: no cover - compiled
    """Keeps the n largest of the ``slot_ends[-1]`` entries found (n < 0: all), ties at the cut
    by first position, writing their columns and values to ``columns`` and ``values`` in
    order and each slot's number to ``row_counts``; returns how many."""
    total = slot_ends[slot_ends.shape[0] - 1]
    if n < 0 or total <= n:
        cut = np.float32(0)
        last_tie = total - 1  # every entry is kept: all are ≥ 0
    else:
        cut = _nth_largest(magnitudes, total, n, magnitudes[total:])
        above, tied = 0, 0
        for p in range(total):
            above += magnitudes[p] > cut
            tied += magnitudes[p] == cut
        last_tie = total - 1  # the entries at the cut are kept up to last_tie: all, unless more are tied than fit
        if above + tied > n:
            ties = 0
            for p in range(total):
                ties += magnitudes[p] == cut
                if ties == n - above:
                    last_tie = p
                    break
    at_cut = np.nextafter(cut, np.float32(-1))  # a > at_cut: a ≥ cut
    c, begin = 0, 0
    for s in range(slot_ends.shape[0]):
        before, end = c, slot_ends[s]
        c = _kept_above(found, found_values, magnitudes, begin, min(end, last_tie + 1), at_cut, columns, values, c)
        c = _kept_above(found, found_values, magnitudes, max(begin, last_tie + 1), end, cut, columns, values, c)
        row_counts[s] = c - before
        begin = end
    return c


@numba.njit(cache=True, nogil=True)
def top_entries_of_examples(buffer, blocks, rows, m, slot_scales, n, sample_at, sample_step, sample_slot, q,
                            columns, values, starts, row_counts, grams, width, start, stop):  # pragma: no cover - compiled
    """For each example i in start..stop, with k slots over m parameters: its n largest
    |entries| over all slots (n < 0: every non-zero; at most ``width``), exact zeros never
    kept and ties at the cut kept by first position (slot, then column), slot by slot:
    slot s's columns (ascending) and values, row_counts[i, s] of them, follow slot s - 1's
    in columns and values from starts[i] on, where example i - 1's end (example ``start``
    at start · (width + 1): each range of examples written without gaps, with room for the
    one entry written past its end); and grams[i], its (k, k) Gram matrix over slots,
    summed in float64.

    The ``rows`` written-out rows of example i lie in ``buffer`` as ``blocks`` says (above);
    positions no block covers are zeros. Slot s is row s (``slot_scales`` of shape (e, 0)),
    or, where the slots are multiples of one gradient (two classes), slot_scales[i, s] times
    row 0 (``rows`` 1, slot_scales (e, k)).

    The threshold is the q-th largest |entry| of the sample: entry p of example i is
    buffer[sample_at[p] + i · sample_step[p]] of slot sample_slot[p] (a zero where
    sample_step[p] < 0), as in :mod:`workbench.fisher.selection` (none: 0); the entries that
    reach it are collected in one pass, which also sums the squares for the Gram's diagonal,
    and the n-th largest of those is the cut."""
    one_row = slot_scales.shape[1] > 0
    k = slot_scales.shape[1] if one_row else rows
    factors = np.ones(k, np.float32)
    found = np.empty(k * m + 1, np.int32)  # m ≤ 2³¹: only small models are written out whole
    found_values = np.empty(k * m + 1, np.float32)
    magnitudes = np.empty(2 * (k * m + 1), np.float32)  # the second half: the radix selection's scratch
    slot_ends = np.empty(k, np.int64)
    sampled = np.empty(sample_at.shape[0], np.float32)
    candidates = np.empty(m + 1 if one_row else 0, np.int32)
    candidate_values = np.empty(m + 1 if one_row else 0, np.float32)
    tiny = np.nextafter(np.float32(0), np.float32(1))  # "≥ tiny" is "non-zero"
    at = start * (width + 1)
    for i in range(start, stop):
        if one_row:
            factors[:] = slot_scales[i]
        threshold = np.float32(0)
        if sample_at.shape[0] > 0:
            for p in range(sample_at.shape[0]):
                step = sample_step[p]
                sampled[p] = abs(factors[sample_slot[p]] * buffer[sample_at[p] + i * step]) if step >= 0 else np.float32(0)
            threshold = _nth_largest(sampled, sample_at.shape[0], q, magnitudes)
        total, squares = _collect_slots(buffer, blocks, i, one_row, factors, max(threshold, tiny), candidates,
                                        candidate_values, found, found_values, magnitudes, slot_ends)
        if n >= 0 and total < n and threshold > 0:  # the sample misjudged: rank every non-zero
            total, squares = _collect_slots(buffer, blocks, i, one_row, factors, tiny, candidates, candidate_values,
                                            found, found_values, magnitudes, slot_ends)
        for s in range(k):
            for t in range(s, k):
                if one_row:
                    grams[i, s, t] = np.float64(factors[s]) * np.float64(factors[t]) * squares[0]
                elif s == t:
                    grams[i, s, t] = squares[s]
                else:
                    grams[i, s, t] = _slot_product(buffer, blocks, i, s, t)
                grams[i, t, s] = grams[i, s, t]
        starts[i] = at
        at += _keep_largest(found, found_values, magnitudes, slot_ends, n, columns[at:], values[at:], row_counts[i])
