"""The PEFs of every example, in memory: :func:`compute_pefs`."""

from __future__ import annotations

import torch
from torch import nn

from ..core.chunks import chunks_to_pefs
from ..core.device import run_device
from ..core.params import NameFilter
from ..core.pefs import DPefs, LrmPefs
from ..fisher import Inputs, PefConfig, pef_mode, split_labels, stored_layout
from .checks import check_probe
from .estimate import PROBE_BATCH
from .run import PefRun


def compute_pefs(
    model: nn.Module,
    inputs: Inputs,
    labels=None,
    *,
    kind: str = "lrm",
    n_values: int | None = 65536,
    top_k_classes: int | None = None,
    include: NameFilter = None,
    exclude: NameFilter = None,
    batch_size: int | None = None,
    method: str = "hooks",
    sketch: int | None = None,
    sketch_seed: int = 0,
    device: str | torch.device | None = None,
    progress: bool = True,
    check_resources: bool = True,
) -> LrmPefs | DPefs:
    """PEFs of every example, in memory. See :func:`workbench.write_pefs` to stream
    them to disk instead (resumable, memory flat in the number of examples).

    inputs: a tensor, or a dict of tensors (e.g. a tokenizer's output), one row per example;
        ``inputs["labels"]`` (or a datasets column ``inputs["label"]``) is used as labels when
        ``labels`` is None.
    labels: (n_examples,) ints, or None when unknown.
    kind: "lrm" (low-rank, :class:`LrmPefs`) or "d" (diagonal, :class:`DPefs`).
    n_values: entries kept per example (its largest); None keeps every non-zero.
    top_k_classes: the class slots of each example, its most probable classes; None: all. A
        diagonal PEF (kind "d") sums the slots kept, so only None gives the method's sum over every class.
    include, exclude: regular expressions (or lists of them) on parameter names.
    batch_size: examples per batch; None chooses it from the memory available.
    method: "hooks" (exact, fast) or "loop" (the plain reference, one example at a time).
    sketch: d, for LRM-PEFs sketched by a count sketch of the parameter axis (every
        parameter counts, d numbers per slot; :mod:`workbench.core.sketch`) instead of each
        example's top ``n_values`` entries; ``sketch_seed`` chooses the sketch. The PEFs'
        axis is then the sketch's (``pefs.layout``), ``pefs.info["sketch"]`` records it, and
        :func:`workbench.analysis.unsketch` maps a fit's components back to the parameters.
    device: None keeps the model where it is.
    check_resources: estimate the peak memory and time from the first batch (shown in the
        progress bar) and refuse up front when the memory will not hold the run
        (:mod:`workbench.runner.estimate`).
    """
    config = PefConfig(kind, n_values, top_k_classes, include, exclude, PROBE_BATCH if batch_size is None else batch_size, method,
                       sketch, sketch_seed)
    device = run_device(model, device)
    inputs, labels = split_labels(inputs, labels)
    run = PefRun.prepare(model, inputs, labels, config, device)
    chunks = []
    with pef_mode(model):
        probe = run.probe(0)
        if batch_size is None:
            run = run.sized_by(probe)
            if probe.size != min(run.config.batch_size, run.n_examples):
                probe = run.probe(0, warm_up=False)
        check_probe(probe, labels)
        estimate = run.estimate(probe, n_done=0)
        if check_resources:
            estimate.check()
        run.stream(lambda index, chunk: chunks.append(chunk), probe=probe, estimate=estimate, progress=progress)
    return chunks_to_pefs(chunks, kind, stored_layout(run.config, run.plan), run.info())
