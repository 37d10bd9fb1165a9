"""Batch by batch: each batch's gradients, its sparse PEFs and its :class:`PefChunk`, in order.

:func:`iter_pef_chunks` is what every PEF run iterates (:mod:`workbench.runner`). A
small model's batch on a CPU runs in two stages: the model passes (and the writing out)
now, the selection and the chunk on a worker thread beside the next batch's passes.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from torch import nn

from ..core import compiled, kinds
from ..core.chunks import PefChunk, join_chunks
from .checks import check_plan, computed_alone
from .config import PefConfig, Plan, stored_layout
from .gradients import BatchGradients
from .inputs import Inputs, check_batch_labels, n_inputs, slice_inputs, unpadded_parts
from . import sparsify
from .sketch import sketch_pefs
from .sparsify import BatchPefs, blockwise_pefs, dense_pefs, loop_pefs, select_written, writes_out_whole, written_in_blocks

logger = logging.getLogger(__name__)


def batch_in_two_stages(model, plan, batch, labels, config, start) -> Callable[[], PefChunk]:
    """Runs the batch's model passes (and, for small models on a CPU, writes its gradients
    out) now, and returns the rest: a call that selects and makes the chunk, which
    :func:`iter_pef_chunks` may run on another core while the next batch's passes run."""
    device = plan.named[0][1].device
    on_cpu = device.type == "cpu"
    selected_later = on_cpu and _compiled_selection(plan, config)
    # A two-class model's LRM slots stay multiples of one gradient (half the outer products and
    # half the writing out) wherever the slots are made from it: written out whole (the compiled
    # selection reads it as one row; torch's, on a GPU, scales it group by group), taken block by
    # block on a CPU, or sketched (S is linear: the one gradient is sketched, then scaled)
    hooks = config.method == "hooks"
    written_whole = hooks and writes_out_whole(2 * plan.layout.n_parameters, device)
    blockwise = on_cpu and hooks and not written_whole
    factored = (written_whole or blockwise or config.sketch is not None) and kinds.kind(config.kind).one_row_per_slot
    try:
        grads = BatchGradients(model, plan, batch, config.top_k_classes, factor_two_classes=factored)
    except Exception as error:  # noqa: BLE001 - the loop computes the batch, or raises its own error
        if config.method == "loop":
            raise
        grads = _by_the_loop(model, plan, batch, config, start, error)
    check_batch_labels(labels, grads.logits.shape[1], start)
    sketch = config.count_sketch(plan.layout.n_parameters)
    if sketch is not None:  # every parameter, sketched to d numbers per slot (workbench.fisher.sketch)
        pefs = sketch_pefs(grads, sketch)
    elif config.method == "loop" or grads.plan is not plan:
        pefs = loop_pefs(grads, config.kind, config.n_values)
    elif writes_out_whole(grads.n_slots * plan.layout.n_parameters, grads.logits.device):
        if on_cpu and config.method == "hooks" and compiled.available():  # the compiled kernel selects
            groups = list(written_in_blocks(grads))

            def selected_chunk() -> PefChunk:
                return _chunk(grads, select_written(grads, config.kind, config.n_values, groups), labels)

            if selected_later:  # written out now, selected later
                return selected_chunk
            chunk = selected_chunk()
            return lambda: chunk
        else:
            pefs = dense_pefs(grads, config.kind, config.n_values)
    else:
        pefs = blockwise_pefs(grads, config.kind, config.n_values)
    n_rows = kinds.kind(config.kind).rows_per_example(grads.n_slots)
    rows = BatchPefs.of_examples(pefs, n_rows, stored_layout(config, plan).n_parameters)  # m: parameters, or a sketch's d
    return lambda: _chunk(grads, rows, labels)


def _in_length_groups(model, plan: Plan, parts: list[tuple[torch.Tensor, Inputs]], labels: torch.Tensor,
                      config: PefConfig, start: int) -> Callable[[], PefChunk]:
    """The batch of a model whose outputs change with padding (``checks.computed_alone``), as its
    :func:`~.inputs.unpadded_parts`: each computed alone, the chunks joined in the batch's order."""
    chunks = [batch_in_two_stages(model, plan, part, labels[rows], config, start)() for rows, part in parts]
    chunk = join_chunks(chunks, torch.cat([rows for rows, _ in parts]).numpy())
    return lambda: chunk


def _by_the_loop(model, plan: Plan, batch, config: PefConfig, start: int, error: Exception) -> BatchGradients:
    """A batch the fast path failed on (a layer called in a way the first batches' check did
    not see), computed by the plain loop; an error of the loop too is the model's own."""
    grads = BatchGradients(model, Plan.make(model, plan.named, use_rules=False), batch, config.top_k_classes)
    logger.warning("the fast path failed on the batch from example %d (%s: %s); that batch was computed "
                   "one example at a time (exact, slower)", start, type(error).__name__, error)
    return grads


def _compiled_selection(plan: Plan, config: PefConfig) -> bool:
    """Whether a CPU run's batches are written out whole (with two or more slots) and
    selected by the compiled kernel: the case whose selection is a second stage."""
    return config.method == "hooks" and compiled.available() and 2 * plan.layout.n_parameters <= sparsify.DENSE_MAX_ENTRIES


def _chunk(grads: BatchGradients, pefs: BatchPefs, labels: torch.Tensor) -> PefChunk:
    return PefChunk(
        values=pefs.values,
        indices=pefs.indices,
        row_offsets=pefs.row_offsets,
        classes=grads.classes.cpu().numpy().astype(np.int64),
        frobenius_norms=pefs.norms,
        labels=labels.cpu().numpy().astype(np.int64),
        logits=grads.logits.cpu().numpy(),
    )


def iter_pef_chunks(
    model: nn.Module,
    inputs: Inputs,
    labels: torch.Tensor,
    config: PefConfig,
    plan: Plan,
    device: torch.device,
    skip: Callable[[int], bool] = lambda batch_index: False,
) -> Iterator[tuple[int, int, PefChunk | None]]:
    """Yields (batch index, number of examples, chunk) for every batch in order; the chunk is
    None where ``skip(batch_index)`` says it exists already (a resumed run)."""
    n = n_inputs(inputs)
    pending = []  # at most one (batch index, size, call giving its chunk), not yet delivered

    def delivered():
        b, size, finish = pending.pop()
        return b, size, finish()

    with _second_stage_runner(device if _compiled_selection(plan, config) else None) as run_later:
        for b, start in enumerate(range(0, n, config.batch_size)):
            stop = min(start + config.batch_size, n)
            if skip(b):
                if pending:
                    yield delivered()
                yield b, stop - start, None
                continue
            try:
                batch = slice_inputs(inputs, start, stop, device)
                if not plan.checked:  # the fast path's layers checked against the loop, once
                    check_plan(model, plan, batch, config.top_k_classes)
                parts = unpadded_parts(batch) if computed_alone(model, plan, batch) else None
                if parts is None:
                    finish = run_later(batch_in_two_stages(model, plan, batch, labels[start:stop], config, start))
                else:
                    finish = _in_length_groups(model, plan, parts, labels[start:stop], config, start)
            except BaseException:  # an interrupt or an error: the batch before it is still delivered
                if pending:
                    yield delivered()
                raise
            if pending:
                yield delivered()
            pending.append((b, stop - start, finish))
        if pending:
            yield delivered()


@contextlib.contextmanager
def _second_stage_runner(device: torch.device | None):
    """Where each batch's second stage (a small model's selection, and the chunk) runs: on
    a worker thread beside the next batch's model passes, when the PEFs are computed on a
    CPU and torch may use more than one thread, torch then using one thread fewer for the
    duration (so the cores used stay as many as torch's setting; torch's second thread gains
    little on a small model's operations, benchmarks/README.md); otherwise (device None
    too) in turn. Yields
    ``run_later(stage) -> call returning its result``."""
    threads = torch.get_num_threads()
    if device is None or device.type != "cpu" or threads < 2:
        yield lambda stage: stage
        return
    torch.set_num_threads(threads - 1)
    try:
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="workbench-pefs") as pool:
            yield lambda stage: pool.submit(stage).result
    finally:
        torch.set_num_threads(threads)
