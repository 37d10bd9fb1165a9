"""Exact selection of the n largest |entries| of a PEF, without sorting all of them.

``torch.topk`` over one MiniLM example's 45 M entries takes most of a second; the top
65,536 are a small fraction, so the functions here find a threshold first and only rank
the entries above it. They are exact: the result is the n largest magnitudes, exact
zeros never kept; of entries tied at the cut-off, the first by position are kept (where
``torch.topk`` keeps arbitrary ones).

On CPU the work is done on numpy views of the tensors: numpy's comparisons and
``flatnonzero`` ran 4 to 7 times faster than torch's on the small arrays of one example
(see benchmarks/README.md). On other devices it stays in torch.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch

Array = np.ndarray | torch.Tensor

# Below this many entries ranking all is as fast as sampling a threshold first.
_SMALL = 1 << 15
_SAMPLE = 4096


# -- the few operations numpy and torch spell differently --------------------------------


def _array(t: Array) -> Array:
    if isinstance(t, np.ndarray):
        return t
    return t.detach().numpy() if t.device.type == "cpu" else t


def _tensor(a: Array) -> torch.Tensor:
    return torch.from_numpy(a) if isinstance(a, np.ndarray) else a


def _flatnonzero(mask: Array) -> Array:
    return np.flatnonzero(mask) if isinstance(mask, np.ndarray) else mask.nonzero().squeeze(1)


def _at_least(magnitudes: Array, floor: float) -> Array:
    """Mask of the entries that may be among the largest: ≥ floor, and never exact zeros."""
    return magnitudes >= floor if floor > 0 else magnitudes > 0


def _nth_largest(values: Array, n: int) -> float:
    if isinstance(values, np.ndarray):
        return float(np.partition(values, values.size - n)[values.size - n])
    return float(values.topk(n, sorted=False).values.min())


def _concatenate(parts: list[Array]) -> Array:
    return np.concatenate(parts) if isinstance(parts[0], np.ndarray) else torch.cat(parts)


@lru_cache(maxsize=64)
def _sample_of(length: int) -> np.ndarray:
    # Evenly spaced, so a pass over the entries reads them in order (4,096 reads at random
    # waited on the cache: half the selection's time on the embedded model), at a prime
    # stride, which no parameter's row length shares a factor with, so the sample does
    # not fall on the same few columns of every row.
    stride = _prime_at_least(max(1, length // _SAMPLE))
    return (np.arange(_SAMPLE, dtype=np.int64) * stride + stride // 2) % length


def _prime_at_least(n: int) -> int:
    n = max(n, 2)
    while any(n % d == 0 for d in range(2, math.isqrt(n) + 1)):
        n += 1
    return n


# -- selection -------------------------------------------------------------------------


def threshold_sample(length: int, n: int | None) -> tuple[np.ndarray, int] | None:
    """Where to sample the magnitudes of ``length`` entries to find a value that a little
    more than n of them reach, and how many of the sample must reach it (six standard
    errors of the sample's estimate more than n); None where ranking all is as fast."""
    if n is None or n >= length or length <= _SMALL:
        return None
    share = n / length
    share = min(1.0, share + 6 * math.sqrt(share * (1 - share) / _SAMPLE) + 1 / _SAMPLE)
    return _sample_of(length), max(1, int(_SAMPLE * share))


def _sample_threshold(magnitudes: Array, sample: tuple[np.ndarray, int]) -> float:
    positions, q = sample
    sampled = magnitudes[positions if isinstance(magnitudes, np.ndarray) else torch.from_numpy(positions).to(magnitudes.device)]
    return _nth_largest(sampled, q)


def _largest(magnitudes: Array, n: int) -> Array:
    """Ascending indices of the n largest magnitudes (≥ 0); exact zeros are never included,
    so fewer come back when fewer are non-zero."""
    threshold = 0.0
    sample = threshold_sample(len(magnitudes), n)
    if sample is not None:
        threshold = _sample_threshold(magnitudes, sample)
    return _largest_above(magnitudes, _flatnonzero(_at_least(magnitudes, threshold)), threshold, n)


def _largest_above(magnitudes: Array, index: Array, threshold: float, n: int) -> Array:
    """The n largest, given ``index``: the ascending positions of every entry ≥ threshold."""
    if len(index) < n and threshold > 0:  # the sample misjudged: rank every non-zero
        index = _flatnonzero(magnitudes > 0)
    if len(index) <= n:
        return index
    values = magnitudes[index]
    cut = _nth_largest(values, n)
    keep = values >= cut
    surplus = int(keep.sum()) - n
    if surplus > 0:  # ties at the cut: drop the last ones
        tied = _flatnonzero(values == cut)
        keep[tied[len(tied) - surplus :]] = False
    return index[_flatnonzero(keep)]


def candidates(magnitudes: torch.Tensor, floor: float, n: int | None) -> torch.Tensor:
    """Ascending indices of the entries of one block that may be among the n largest
    overall, when n others are known to be ≥ floor: those ≥ floor, and, when the block
    alone holds many more than n, only its own n largest."""
    m = _array(magnitudes)
    if n is not None and floor == 0 and len(m) > 4 * n:
        return _tensor(_largest(m, n))
    return _tensor(_flatnonzero(_at_least(m, floor)))


def top_entries(values: torch.Tensor, n: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Positions (ascending) and values of the n largest |values| of a 1-D tensor, exact
    zeros dropped; n None keeps every non-zero."""
    v = _array(values)
    magnitudes = abs(v)
    position = _flatnonzero(magnitudes > 0) if n is None else _largest(magnitudes, n)
    return _tensor(position), _tensor(v[position])


def top_entries_of_rows(values: torch.Tensor, n: int | None) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """:func:`top_entries` of each row of an (e, N) tensor, all rows at once.

    For GPUs: :func:`top_entries` waits for the device at each of its data-dependent steps,
    five times per example; here every step covers all rows (the sampled thresholds, one
    mask, one ``nonzero``, the n-th largest candidate of each row from one padded
    ``topk``, and the ties at the cut kept by position), three waits in all."""
    e, N = values.shape
    magnitudes = values.abs()
    threshold = torch.zeros(e, dtype=magnitudes.dtype, device=values.device)
    sample = threshold_sample(N, n)
    if sample is not None:
        positions, q = sample
        threshold = magnitudes[:, torch.from_numpy(positions).to(values.device)].topk(q, dim=1).values[:, -1]
    # ≥ threshold, and never exact zeros: the smallest positive float stands in for a zero threshold
    tiny = torch.nextafter(torch.zeros((), dtype=magnitudes.dtype), torch.ones((), dtype=magnitudes.dtype)).to(values.device)
    mask = magnitudes >= torch.maximum(threshold, tiny).unsqueeze(1)
    counts = mask.sum(dim=1)
    if n is not None:
        misjudged = (counts < n) & (threshold > 0)  # the sample misjudged: rank every non-zero of those rows
        if bool(misjudged.any()):
            mask[misjudged] = magnitudes[misjudged] > 0
            counts = mask.sum(dim=1)
    rows, columns = mask.nonzero().unbind(1)  # row-major: each row's candidates in ascending position
    del mask
    candidate = magnitudes[rows, columns]
    counts_on_host = counts.tolist()
    kept_per_row = [c if n is None else min(c, n) for c in counts_on_host]
    if n is not None and max(counts_on_host, default=0) > n:
        starts = torch.cumsum(counts, 0) - counts
        # Each row's candidates, padded with -1, then the n-th largest of each row.
        padded = torch.full((e, max(counts_on_host)), -1.0, dtype=magnitudes.dtype, device=values.device)
        padded[rows, torch.arange(rows.numel(), device=values.device) - starts[rows]] = candidate
        cut = padded.topk(n, dim=1).values[:, -1]
        cut = torch.where(counts > n, cut, torch.full_like(cut, -1.0))  # rows with at most n candidates keep all
        del padded
        above = candidate > cut[rows]
        tied = candidate == cut[rows]
        per_row = torch.zeros(e, dtype=torch.int64, device=values.device)
        n_above = per_row.index_add(0, rows, above.long())
        n_tied = per_row.index_add(0, rows, tied.long())
        tie_rank = torch.cumsum(tied.long(), 0) - (torch.cumsum(n_tied, 0) - n_tied)[rows]  # 1, 2, ... within a row
        keep = above | (tied & (tie_rank <= (n - n_above)[rows]))
        chosen = keep.nonzero().squeeze(1)
        rows, columns = rows[chosen], columns[chosen]
    kept_values = values[rows, columns]
    return list(zip(columns.split(kept_per_row), kept_values.split(kept_per_row)))


class RunningTop:
    """The n largest |values| of a stream of (positions, values) blocks.

    ``floor`` is the n-th largest magnitude seen so far (0 until n were seen): an entry
    below it can never be among the final n, so a block whose largest magnitude is below
    it can be skipped, and a block only needs to pass on its entries at or above it
    (:func:`candidates`).
    """

    def __init__(self, n: int | None):
        self.n = n
        self.floor = 0.0
        self._positions: list[Array] = []
        self._values: list[Array] = []
        self._size = 0

    def add(self, positions: Array, values: Array) -> None:
        """Offer entries, which the caller has already cut to those ≥ floor and non-zero."""
        if len(values) == 0:
            return
        self._positions.append(_array(positions))
        self._values.append(_array(values))
        self._size += len(values)
        # The first time n entries are in, set the floor; after that, shrink when doubled.
        if self.n is not None and self._size > self.n and (self.floor == 0 or self._size >= 2 * self.n):
            self._shrink()

    def _shrink(self) -> None:
        positions, values = _concatenate(self._positions), _concatenate(self._values)
        kept = _largest(abs(values), self.n)
        positions, values = positions[kept], values[kept]
        self._positions, self._values, self._size = [positions], [values], len(values)
        self.floor = float(abs(values).min())

    def result(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Positions (ascending) and values of the n largest."""
        if not self._values:
            return torch.zeros(0, dtype=torch.int64), torch.zeros(0, dtype=torch.float32)
        if self.n is not None and self._size > self.n:
            self._shrink()
        positions, values = _concatenate(self._positions), _concatenate(self._values)
        # Each block's positions arrive ascending and shrinking keeps their order, so these
        # are a few sorted runs, which a stable sort (timsort) merges: 20× numpy's quicksort.
        order = positions.argsort(kind="stable") if isinstance(positions, np.ndarray) else positions.argsort(stable=True)
        return _tensor(positions[order]), _tensor(values[order])
