"""From a batch's gradients to each example's sparse PEF: its n_values largest entries and its norm.

Three ways, all exact (docs/design.md, "Fast exact PEFs"): small models (and any model on
a GPU) are written out whole, a group of examples at a time, and selected at once;
large ones are taken block by block in order of a bound on their entries, with a running
threshold; ``method="loop"`` is the plain reference, ``torch.topk`` included.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from ..core import compiled
from . import kernels
from .gradients import BatchGradients, loop_gradients
from .rules import BlockGradient, DenseGradient
from .selection import RunningTop, candidates, top_entries, top_entries_of_rows

# Models whose k·m gradient entries per example are at most this many are written out
# whole, several examples at a time, and ranked with one selection per example; larger
# ones are taken block by block with an exact running threshold (docs/design.md).
DENSE_MAX_ENTRIES = 1 << 20
_DENSE_GROUP_ENTRIES = 1 << 23  # entries written at a time (32 MB): larger groups measured faster


def writes_out_whole(n_entries: int, device: torch.device) -> bool:
    """Whether an example's k·m gradient entries are written out whole and ranked at once.

    On a CPU only small models are: ranking blocks by their bound skips most of a large
    model's work. On a GPU the blockwise path's Python loop and its synchronisations cost
    far more than the writing (benchmarks/README.md, "GPU"), so every example whose
    entries, their magnitudes and masks fit in a quarter of the free memory is written
    out whole.
    """
    if n_entries <= DENSE_MAX_ENTRIES:
        return True
    return device.type == "cuda" and n_entries <= gpu_group_entries(device)


def gpu_group_entries(device: torch.device) -> int:
    """Gradient entries a GPU writes out at a time: those whose values, magnitudes (4 bytes
    each) and mask (1) fit in a quarter of the memory free on it, counting what torch's
    allocator holds unused (the previous batch's buffers)."""
    free, _ = torch.cuda.mem_get_info(device)
    free += torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    return free // 4 // 9


@dataclass
class ExamplePef:
    """One example's sparse PEF: flat positions on the (n_rows, m) grid, ascending, and values."""

    positions: torch.Tensor
    values: torch.Tensor
    norm: float


@dataclass
class BatchPefs:
    """A batch's sparse PEFs as a chunk stores them: row r = i · n_rows + s (example i, slot s)
    holds ``values[row_offsets[r]:row_offsets[r + 1]]`` at parameters ``indices[...]``."""

    values: np.ndarray  # (nnz,) float32
    indices: np.ndarray  # (nnz,) int64, ascending within a row
    row_offsets: np.ndarray  # (e · n_rows + 1,) int64
    norms: np.ndarray  # (e,) float32, each PEF's Frobenius norm

    @classmethod
    def of_examples(cls, pefs: list[ExamplePef], n_rows: int, m: int) -> "BatchPefs":
        """From each example's flat positions on its (n_rows, m) grid."""
        positions = torch.cat([p.positions for p in pefs]).cpu().numpy().astype(np.int64, copy=False)  # each example's ascending
        # Example i's positions moved to i·n_rows·m on: the batch's (example, row) cells in order,
        # so their boundaries are found by bisection (faster than a division and a bincount).
        cell = positions + np.repeat(np.arange(len(pefs)) * (n_rows * m), [len(p.positions) for p in pefs])
        row_offsets = np.searchsorted(cell, np.arange(len(pefs) * n_rows + 1) * m).astype(np.int64)
        return cls(values=torch.cat([p.values for p in pefs]).cpu().numpy().astype(np.float32, copy=False),
                   indices=cell - np.repeat(np.arange(len(pefs) * n_rows) * m, np.diff(row_offsets)),
                   row_offsets=row_offsets, norms=np.array([p.norm for p in pefs], dtype=np.float32))

    @classmethod
    def joined(cls, parts: list["BatchPefs"]) -> "BatchPefs":
        """Consecutive groups of examples as one batch."""
        if len(parts) == 1:
            return parts[0]
        starts = np.cumsum([0] + [len(p.values) for p in parts[:-1]])
        return cls(values=np.concatenate([p.values for p in parts]), indices=np.concatenate([p.indices for p in parts]),
                   row_offsets=np.concatenate([parts[0].row_offsets[:1]] + [p.row_offsets[1:] + at for p, at in zip(parts, starts)]),
                   norms=np.concatenate([p.norms for p in parts]))


_GRAM_COLUMNS = 1 << 12  # columns per float32 partial Gram: ~2e-7 relative error, summed in float64


def _slot_grams(A_t: torch.Tensor) -> torch.Tensor:
    """(e, k, k) float64: A_iᵀ A_i of each written-out example, A_t of shape (e, k, m).

    On CPU, where only small models are written out whole: one float32 product over all m
    columns erred by up to 5e-6 (relative) on the embedded model; the products of 4,096
    columns at a time, added in float64, by 2e-7, and still cost less than the factored
    grams (rules.py). A GPU writes out models of any size, where that is thousands of small
    products, so it keeps the factored grams."""
    grams = torch.zeros((A_t.shape[0], A_t.shape[1], A_t.shape[1]), dtype=torch.float64, device=A_t.device)
    for start in range(0, A_t.shape[2], _GRAM_COLUMNS):
        part = A_t[:, :, start : start + _GRAM_COLUMNS]
        grams += (part @ part.transpose(1, 2)).double()
    return grams


def dense_pefs(grads: BatchGradients, kind: str, n_values: int | None) -> list[ExamplePef]:
    """Small models (any model on a GPU): write groups of examples out whole, then select
    each example's top entries, group by group."""
    grams = grads.lrm_grams() if kind == "lrm" and grads.logits.device.type != "cpu" else None
    return select_groups(grads, kind, n_values, written_groups(grads, grams), grams)


def written_groups(grads: BatchGradients, grams: torch.Tensor | None) -> Iterator[tuple[slice, torch.Tensor]]:
    """The batch's examples in groups with their gradients written out: (rows, A_t (e, k, m)).

    One buffer is reused from group to group. Fallback parameters' grams are added to
    ``grams`` where it is given (the GPU's factored grams)."""
    offsets, m = grads.plan.layout.offsets, grads.plan.layout.n_parameters
    k = grads.n_slots if grads.slot_scales is None else 1  # rows written out per example
    device = grads.logits.device
    # sized by the slots, which the selection holds at once (select_groups scales the one row to them)
    group = max(1, (gpu_group_entries(device) if device.type == "cuda" else _DENSE_GROUP_ENTRIES) // (grads.n_slots * m))
    written = [index for index, _ in grads.blocks] + list(grads.fallback_indices)
    covers_all = sum(int(offsets[i + 1] - offsets[i]) for i in written) == m
    buffer = None
    for start in range(0, grads.n_examples, group):
        rows = slice(start, min(start + group, grads.n_examples))
        e = rows.stop - rows.start
        if buffer is None:
            buffer = torch.empty((min(group, grads.n_examples), k, m), dtype=torch.float32, device=device)
        A_t = buffer[:e]  # (e, k, m)
        if not covers_all:
            A_t.zero_()  # parameters of layers the forward pass never reached have zero gradients
        for index, block in grads.blocks:
            A_t[:, :, offsets[index] : offsets[index + 1]] = block.dense(rows).transpose(0, 1)
        if grads.fallback_indices:
            for j, i in enumerate(range(rows.start, rows.stop)):
                for index, block in grads.fallback(i):
                    A_t[j, :, offsets[index] : offsets[index + 1]] = block.dense()[:, 0]
                    if grams is not None:
                        grams[i] += block.gram()[0].cpu()
        yield rows, A_t


def written_in_blocks(grads: BatchGradients) -> Iterator[tuple[slice, kernels.Written]]:
    """The batch's examples in groups with their gradients written out for the CPU kernel:
    each parameter's (k, e, numel) block in a place of its own in one buffer, where its
    rule's products go directly (example-major rows take each block's products and then
    a copy of them). Parameters that no layer reached are not written (the kernel reads them
    as zeros). The blocks the rules wrote out already (biases, norms: 27 of the embedded
    model's 41) lie together at the buffer's start, copied there in one operation."""
    offsets, m = grads.plan.layout.offsets, grads.plan.layout.n_parameters
    k = grads.n_slots if grads.slot_scales is None else 1  # rows written out per example
    group = max(1, _DENSE_GROUP_ENTRIES // (k * m))
    blocks = dict(grads.blocks)
    written = sorted(list(blocks) + list(grads.fallback_indices), key=lambda index: offsets[index])
    together = [index for index in written if isinstance(blocks.get(index), DenseGradient)]
    apart = [index for index in written if not isinstance(blocks.get(index), DenseGradient)]
    size = {index: int(offsets[index + 1] - offsets[index]) for index in written}
    for start in range(0, grads.n_examples, group):
        rows = slice(start, min(start + group, grads.n_examples))
        e = rows.stop - rows.start
        ends = np.cumsum([k * e * size[index] for index in together + apart]).tolist()
        buffer = torch.empty(ends[-1] if ends else 0, dtype=torch.float32)
        place_start = dict(zip(together + apart, [0] + ends[:-1]))
        if together:
            torch.cat([blocks[index].dense(rows).reshape(-1).float() for index in together], out=buffer[: ends[len(together) - 1]])
        places = {index: buffer[place_start[index] : place_start[index] + k * e * size[index]].view(k, e, -1) for index in apart}
        for index in apart:
            if index in blocks:
                blocks[index].write(rows, places[index])
        for j, i in enumerate(range(rows.start, rows.stop)):
            for index, block in grads.fallback(i):
                places[index][:, j] = block.dense()[:, 0]
        table = [(place_start[index], size[index], int(offsets[index]), size[index], e * size[index]) for index in written]
        yield rows, kernels.Written(buffer.numpy(), np.array(table, dtype=np.int64).reshape(-1, 5), e, k, m)


def select_written(grads: BatchGradients, kind: str, n_values: int | None, groups) -> BatchPefs:
    """Each example's top entries and PEF norm by the CPU kernel, from :func:`written_in_blocks`,
    as the chunk stores them (the kernel writes each slot's columns and values in order).

    The PEF is A_i for LRM (norm ‖A_iᵀ A_i‖_F) and f_i = Σ_s A_i[s]² for D (norm ‖f_i‖,
    its 1 × 1 "Gram" being ‖f_i‖²). With ``grads.slot_scales`` (two classes, LRM) each
    example has one row and slot s is slot_scales[i, s] times it."""
    parts = []
    for rows, written in groups:
        scales = None if grads.slot_scales is None else grads.slot_scales[rows]
        selected = kernels.top_entries_of_written(written if kind == "lrm" else written.squares_summed(), n_values, scales)
        norms = torch.linalg.matrix_norm(selected.grams) if kind == "lrm" else selected.grams[:, 0, 0].sqrt()
        parts.append(BatchPefs(*selected.csr(), norms=norms.numpy().astype(np.float32)))
    return BatchPefs.joined(parts)


def select_groups(grads: BatchGradients, kind: str, n_values: int | None, groups, grams: torch.Tensor | None) -> list[ExamplePef]:
    pefs = []
    for rows, A_t in groups:
        if grads.slot_scales is not None:  # one row per example, slot s being slot_scales[i, s] times it
            A_t = A_t * grads.slot_scales[rows, :, None].to(A_t.dtype)  # (e, 2, m)
        selected, norms = _select(A_t, kind, n_values, None if grams is None else grams[rows])
        pefs += [ExamplePef(positions, values, norm) for (positions, values), norm in zip(selected, norms)]
    return pefs


def _select(A_t: torch.Tensor, kind: str, n_values: int | None, grams: torch.Tensor | None):
    """Each example's top entries and PEF norm from its written-out gradients A_t (e, k, m),
    where the CPU kernel does not run (a GPU, or no numba).

    The PEF is A_i for LRM (norm ‖A_iᵀ A_i‖_F, from ``grams`` where the GPU had them
    factored) and f_i = Σ_s A_i[s]² for D (norm ‖f_i‖). On a CPU numpy selects one example
    at a time; elsewhere the selection takes all examples at once."""
    e = A_t.shape[0]
    pef = A_t if kind == "lrm" else A_t.square().sum(dim=1, keepdim=True)  # (e, k, m) or (e, 1, m)
    if kind == "lrm":
        norms = torch.linalg.matrix_norm(_slot_grams(A_t) if grams is None else grams)
    else:
        norms = torch.linalg.vector_norm(pef[:, 0].double(), dim=1)
    rows = pef.reshape(e, -1)
    if A_t.device.type == "cpu":
        return [top_entries(row, n_values) for row in rows], norms.tolist()
    return top_entries_of_rows(rows, n_values), norms.tolist()


def blockwise_pefs(grads: BatchGradients, kind: str, n_values: int | None) -> list[ExamplePef]:
    """Large models: per example, parameter blocks in order of their bound on |entry|;
    once n_values entries are in, a block whose bound is below the n-th largest so far
    is skipped, and only rows and columns of a Linear weight that can reach it are computed.

    On a CPU with two or more torch threads the examples are split between threads (torch
    on one thread each meanwhile): the per-example work is many small operations that
    torch's own threads barely speed up, and they release the GIL."""
    blocks = _visited_blocks(grads, kind)
    grams = grads.lrm_grams() if kind == "lrm" else None
    bounds = torch.stack([block.bounds() for _, block in blocks]).cpu().numpy() if blocks else None
    pefs: list[ExamplePef | None] = [None] * grads.n_examples

    def examples(start: int, stop: int) -> None:
        for i in range(start, stop):
            pefs[i] = _blockwise_example(grads, blocks, i, kind, n_values, grams, bounds)

    n_threads = min(compiled.n_threads(), grads.n_examples)
    # Fallback parameters run the model once per example: kept on this thread.
    if n_threads < 2 or grads.logits.device.type != "cpu" or grads.fallback_indices:
        examples(0, grads.n_examples)
        return pefs
    bounds_of_ranges = np.linspace(0, grads.n_examples, n_threads + 1).astype(int).tolist()
    ranges = [(a, b) for a, b in zip(bounds_of_ranges[:-1], bounds_of_ranges[1:]) if b > a]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        compiled.run(examples, ranges, *[()] * len(ranges))
    finally:
        torch.set_num_threads(threads)
    return pefs


def _visited_blocks(grads: BatchGradients, kind: str) -> list[tuple[int | torch.Tensor, BlockGradient]]:
    """The blocks an example's visit goes through, each with where its entries go on the
    flat axis: its offset, or, for the small written-out parameters (biases, norms: 64 of
    MiniLM's 105 blocks) taken together as one block, each column's position. A visit
    costs a few dozen small operations whatever the block's size."""
    offsets = grads.plan.layout.offsets
    dense = [(index, block) for index, block in grads.blocks if isinstance(block, DenseGradient)]
    if kind != "lrm" or len(dense) < 2:
        return [(int(offsets[index]), block) for index, block in grads.blocks]
    together = DenseGradient(torch.cat([block.values for _, block in dense], dim=2))
    columns = torch.cat([torch.arange(int(offsets[index]), int(offsets[index + 1])) for index, _ in dense])
    rest = [(int(offsets[index]), block) for index, block in grads.blocks if not isinstance(block, DenseGradient)]
    return [(columns.to(together.values.device), together)] + rest


def _blockwise_example(grads: BatchGradients, blocks, i: int, kind: str, n_values: int | None, grams, bounds) -> ExamplePef:
    """Example i's PEF by :func:`blockwise_pefs`."""
    offsets, m = grads.plan.layout.offsets, grads.plan.layout.n_parameters
    fallback = grads.fallback(i)
    # With slot_scales (two classes) the blocks hold one gradient w per example, slot s being
    # scales[s] · w: each block's work is done once for both slots (docs/design.md).
    scales = None if grads.slot_scales is None else grads.slot_scales[i].numpy()
    largest = 1.0 if scales is None else float(np.abs(scales).max()) * _SCALE_SLACK
    # (bound on |entry|, where its entries go, block, row of the example in the block)
    queue = [(float(bounds[j, i]) * largest, place, block, i) for j, (place, block) in enumerate(blocks)]
    queue += [(float(block.bounds()[0]), int(offsets[index]), block, 0) for index, block in fallback]
    top = RunningTop(n_values)
    if kind == "lrm":
        gram = grams[i] + sum((block.gram()[0].cpu() for _, block in fallback), torch.zeros_like(grams[i]))
        for bound, place, block, row in sorted(queue, key=lambda c: -c[0]):
            if bound < top.floor:
                break  # every later block is bounded lower still
            if scales is None:
                slots, local, values = block.entries(row, top.floor, n_values)
                top.add(slots * m + (place + local if isinstance(place, int) else place[local]), values)
            else:
                top.add(*_scaled_entries(block, row, top.floor, n_values, scales, largest, place, m))
        positions, values = top.result()
        return ExamplePef(positions, values, float(torch.linalg.matrix_norm(gram)))
    # f = Σ_s A_s²: every entry counts towards the norm, so every block is written out
    squared_norm = torch.zeros((), dtype=torch.float64)
    for _, offset, block, row in queue:
        local, values = block.example(row)
        f = values.square().sum(dim=0)
        squared_norm += f.double().square().sum().cpu()
        hit = candidates(f, top.floor, n_values)
        top.add(offset + (hit if local is None else local[hit]), f[hit])
    positions, values = top.result()
    return ExamplePef(positions, values, float(squared_norm.sqrt()))


# Relative slack on a bound or floor scaled by a slot's multiple: the products are rounded.
_SCALE_SLACK = 1.0 + 1e-6


def _scaled_entries(block: BlockGradient, row: int, floor: float, n_values: int | None, scales: np.ndarray,
                    largest: float, place, m: int) -> tuple[np.ndarray, np.ndarray]:
    """Flat positions and values of a block's entries that may be among the top ones when
    slot s is scales[s] · w and the block holds w (CPU): w's entries that any slot's multiple
    brings to ``floor`` (``largest`` is the largest |scale|, rounded up), multiplied out and
    cut to ``floor`` slot by slot as the products round. With floor 0, w's own n largest hold
    each slot's n largest. In numpy: a visit's operations are small, and torch's cost more."""
    _, local, w = block.entries(row, floor / largest, n_values)
    local, w = local.numpy(), w.numpy()
    columns = place + local if isinstance(place, int) else place.numpy()[local]
    positions, values = [], []
    for s, scale in enumerate(scales):
        v = w * scale
        hit = np.flatnonzero(np.abs(v) >= floor) if floor > 0 else np.flatnonzero(v)
        positions.append(columns[hit] + s * m)
        values.append(v[hit])
    return np.concatenate(positions), np.concatenate(values)


def _top_entries(matrix: torch.Tensor, n_values: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """The plain reference selection: flat positions and values of the n_values largest
    |entries| by ``torch.topk``, exact zeros dropped, in ascending position order."""
    flat = matrix.reshape(-1)
    if n_values is not None and n_values < flat.numel():
        position = flat.abs().topk(n_values, sorted=False).indices
    else:
        position = torch.arange(flat.numel(), device=flat.device)
    position = position[flat[position] != 0].sort().values
    return position, flat[position]


def _loop_pef(grads: list[torch.Tensor], sqrt_p: torch.Tensor, kind: str, n_values: int | None) -> ExamplePef:
    """The plain per-example PEF: grads [(k, *shape)] of every parameter, sqrt_p (k,)."""
    A_t = torch.cat([g.reshape(g.shape[0], -1) for g in grads], dim=1) * sqrt_p[:, None]  # (k, m) = A_iᵀ
    if kind == "lrm":
        gram = A_t.double() @ A_t.double().T  # (k, k); ‖A Aᵀ‖_F = ‖Aᵀ A‖_F
        return ExamplePef(*_top_entries(A_t, n_values), float(torch.linalg.matrix_norm(gram)))
    f = (A_t.double() ** 2).sum(dim=0)  # (m,)
    return ExamplePef(*_top_entries(f.float(), n_values), float(torch.linalg.vector_norm(f)))


def loop_pefs(grads: BatchGradients, kind: str, n_values: int | None) -> list[ExamplePef]:
    params = [p for _, p in grads.plan.named]
    return [
        _loop_pef(loop_gradients(grads.model, grads.batch, grads.classes, params, i), grads.sqrt_p[i], kind, n_values)
        for i in range(grads.n_examples)
    ]
