"""The CPU kernel for the PEFs of small models, compiled with numba.

Small models' gradients are written out whole, a group of examples at a time
(:mod:`workbench.fisher.batches`); :func:`top_entries_of_examples` then takes each example's
top entries and its Gram matrix over class slots in one pass: the sampled threshold, one
pass collecting the entries that reach it, the cut by radix selection on the candidates'
bit patterns (docs/design.md, "Fast exact PEFs"). Examples are split between the torch
threads (:mod:`workbench.core.compiled` runs them and switches the kernel off); without
numba, numpy selects one example at a time (:mod:`workbench.fisher.selection`).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

from ..core import compiled
from .selection import threshold_sample


@lru_cache(maxsize=1)
def _compiled():
    from . import _compiled

    return _compiled


def top_entries_of_examples(A: torch.Tensor, n: int | None, slot_scales: torch.Tensor | None = None
                            ) -> tuple[list[tuple[torch.Tensor, torch.Tensor]], torch.Tensor]:
    """Each example's n largest |entries| (None: every non-zero) as (flat positions s·m + j
    ascending, values), exactly what :func:`workbench.fisher.selection.top_entries` keeps
    of its (k, m) slots flattened; and the examples' Gram matrices over slots (e, k, k),
    summed in float64. Examples are split between the torch threads.

    A (e, k, m), float32 on the CPU, holds the slots; or, with ``slot_scales`` (e, k), A
    (e, 1, m) holds one gradient per example whose multiples slot_scales[i, s] · A[i, 0]
    are the slots (two classes: :func:`workbench.fisher.gradients.two_class_gradient`), never written out."""
    A_np = np.ascontiguousarray(A.numpy())
    e, rows, m = A_np.shape
    scales = np.zeros((e, 0), dtype=np.float32) if slot_scales is None else np.ascontiguousarray(slot_scales.numpy(), dtype=np.float32)
    k = scales.shape[1] or rows
    sample = threshold_sample(k * m, n)
    at, q = sample if sample is not None else (np.zeros(0, dtype=np.int64), 0)
    width = k * m if n is None else min(n, k * m)
    positions = np.empty((e, width + 1), dtype=np.int64)  # + 1: the kernel writes one past what it keeps
    values = np.empty((e, width + 1), dtype=np.float32)
    counts = np.empty(e, dtype=np.int64)
    grams = np.empty((e, k, k), dtype=np.float64)
    n_threads = min(compiled.n_threads(), e)
    bounds = np.linspace(0, e, n_threads + 1).astype(int).tolist()
    ranges = [(a, b) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]
    args = (A_np, scales, -1 if n is None else n, at // m, at % m, q, positions, values, counts, grams)
    compiled.run(_compiled().top_entries_of_examples, ranges, *[args] * len(ranges))
    kept = [(torch.from_numpy(positions[i, : counts[i]]), torch.from_numpy(values[i, : counts[i]])) for i in range(e)]
    return kept, torch.from_numpy(grams)
