"""The CPU kernel for the PEFs of small models, compiled with numba.

Small models' gradients are written out whole, a group of examples at a time
(:mod:`workbench.fisher.batches`); :func:`top_entries_of_written` then takes each example's
top entries and its Gram matrix over class slots in one pass: the sampled threshold, one
pass collecting the entries that reach it, the cut by radix selection on the candidates'
bit patterns (docs/design.md, "Fast exact PEFs"). Examples are split between the torch
threads (:mod:`workbench.core.compiled` runs them and switches the kernel off); without
numba, numpy selects one example at a time (:mod:`workbench.fisher.selection`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from ..core import compiled
from .selection import threshold_sample


@lru_cache(maxsize=1)
def _compiled():
    from . import _compiled

    return _compiled


@dataclass
class Written:
    """Examples' gradients written out for the kernel: ``rows`` rows per example over m
    positions, in blocks (one per parameter). Block b, a table row (start, size, offset,
    example step, slot step), holds positions offset..offset + size; row s of example i
    starts at buffer[start + s · slot step + i · example step]. Positions no block covers
    are zeros (parameters the forward pass never reached)."""

    buffer: np.ndarray  # flat float32
    blocks: np.ndarray  # (n_blocks, 5) int64, ascending offsets
    n_examples: int
    rows: int
    m: int

    @classmethod
    def of_examples(cls, A: torch.Tensor) -> "Written":
        """A (e, rows, m) as one block."""
        e, rows, m = A.shape
        return cls(np.ascontiguousarray(A.numpy()).reshape(-1), np.array([[0, m, 0, rows * m, m]], dtype=np.int64), e, rows, m)

    def squares_summed(self) -> "Written":
        """One row per example, Σ_s row_s²: D-NPEFF's f_i, block by block."""
        buffer = torch.from_numpy(self.buffer)
        parts, blocks, at = [], self.blocks.copy(), 0
        for b, (start, size, _, example_step, slot_step) in enumerate(self.blocks.tolist()):
            rows = buffer.as_strided((self.n_examples, self.rows, size), (example_step, slot_step, 1), start)
            parts.append(rows.square().sum(dim=1).reshape(-1))  # summed as the example-major rows were
            blocks[b] = (at, size, blocks[b, 2], size, 0)
            at += self.n_examples * size
        return Written(torch.cat(parts).numpy(), blocks, self.n_examples, 1, self.m)

    def sample(self, at: np.ndarray, one_row: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Where the kernel reads flat positions ``at`` (s·m + j) of example 0, the step to
        example i's, and their slots; step -1 where no block covers j (a zero)."""
        slots, columns = at // self.m, at % self.m
        starts, sizes, offsets, example_steps, slot_steps = self.blocks.T
        b = np.maximum(np.searchsorted(offsets, columns, side="right") - 1, 0)
        covered = (columns >= offsets[b]) & (columns < offsets[b] + sizes[b])
        rows = np.zeros_like(slots) if one_row else slots
        where = starts[b] + rows * slot_steps[b] + columns - offsets[b]
        return np.where(covered, where, 0), np.where(covered, example_steps[b], -1), slots


@dataclass
class Selected:
    """Each example's kept entries, slot by slot: example i's start at starts[i] in
    ``columns`` and ``values``, row_counts[i, s] of slot s after slot s - 1's, columns
    ascending within a slot; and the examples' Gram matrices over slots."""

    columns: np.ndarray  # (e · (width + 1),) int64
    values: np.ndarray  # (e · (width + 1),) float32
    starts: np.ndarray  # (e,) int64
    row_counts: np.ndarray  # (e, k) int64
    grams: torch.Tensor  # (e, k, k) float64

    def csr(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(values, indices, row_offsets) with row i·k + s the slot s of example i: a chunk's arrays.
        Views where the examples lie without gaps (one thread's range); else joined."""
        ends = self.starts + self.row_counts.sum(axis=1)
        gaps = (np.flatnonzero(self.starts[1:] != ends[:-1]) + 1).tolist()
        spans = [(self.starts[a], ends[b - 1]) for a, b in zip([0] + gaps, gaps + [len(ends)])]
        values, columns = ([np.concatenate([x[a:b] for a, b in spans]) if len(spans) > 1 else x[spans[0][0] : spans[0][1]]
                            for x in (self.values, self.columns)])
        return values, columns, np.concatenate([[0], np.cumsum(self.row_counts.reshape(-1))]).astype(np.int64)


def top_entries_of_written(written: Written, n: int | None, slot_scales: torch.Tensor | None = None) -> Selected:
    """Each example's n largest |entries| over its slots (None: every non-zero), exactly
    what :func:`workbench.fisher.selection.top_entries` keeps of its (k, m) slots flattened,
    and the examples' Gram matrices over slots, summed in float64. Examples are split
    between the torch threads.

    Slot s is the written row s; or, with ``slot_scales`` (e, k), the examples have one row
    whose multiples slot_scales[i, s] · row are the slots (two classes:
    :func:`workbench.fisher.gradients.two_class_gradient`), never written out."""
    e, m = written.n_examples, written.m
    scales = np.zeros((e, 0), dtype=np.float32) if slot_scales is None else np.ascontiguousarray(slot_scales.numpy(), dtype=np.float32)
    k = scales.shape[1] or written.rows
    sample = threshold_sample(k * m, n)
    at, q = sample if sample is not None else (np.zeros(0, dtype=np.int64), 0)
    sample_at, sample_step, sample_slot = written.sample(at, one_row=scales.shape[1] > 0)
    width = k * m if n is None else min(n, k * m)
    columns = np.empty(e * (width + 1), dtype=np.int64)  # + 1: the kernel writes one past what it keeps
    values = np.empty(e * (width + 1), dtype=np.float32)
    starts = np.empty(e, dtype=np.int64)
    row_counts = np.empty((e, k), dtype=np.int64)
    grams = np.empty((e, k, k), dtype=np.float64)
    n_threads = min(compiled.n_threads(), e)
    bounds = np.linspace(0, e, n_threads + 1).astype(int).tolist()
    ranges = [(a, b) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]
    args = (written.buffer, written.blocks, written.rows, m, scales, -1 if n is None else n,
            sample_at, sample_step, sample_slot, q, columns, values, starts, row_counts, grams, width)
    compiled.run(_compiled().top_entries_of_examples, ranges, *[args] * len(ranges))
    return Selected(columns, values, starts, row_counts, torch.from_numpy(grams))
