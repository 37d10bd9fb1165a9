"""One PEF run: a model, its examples and what to compute, batch by batch, measured before it starts.

:class:`PefRun` is what :func:`~workbench.runner.compute.compute_pefs` (into memory),
:func:`~workbench.runner.write.write_pefs` (into a store) and
:func:`~workbench.distributed.write_pefs_sharded` (into a store shared by several
processes) have in common: the probe that measures the first batch (:meth:`PefRun.probe`),
the batch size chosen from it, the record a store keeps of the run (:meth:`PefRun.manifest`),
and the loop that delivers every batch's chunk, checked, with a progress bar
(:meth:`PefRun.stream`). Where the chunks go is the caller's.
"""

from __future__ import annotations

import dataclasses
import json
import time
import warnings
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
from torch import nn
from tqdm.auto import tqdm

from ..core.callers import user_stacklevel
from ..core.chunks import PefChunk
from ..core.params import select_parameters
from ..core.validation import check_label_range, check_model, example_lengths
from ..fisher import (Inputs, PefConfig, Plan, check_plan, iter_pef_chunks, make_plan, n_inputs, pef_info, pef_mode,
                      slice_inputs, stored_layout)
from ..fisher.inputs import logits_with_gradients
from ..store.files import json_default
from ..store.fingerprints import fingerprint_model, fingerprint_tensors
from ..store.pef_store import new_manifest
from ..store.writer import chunk_file_size
from .checks import check_chunk_finite, check_precision
from .estimate import PefEstimate, Probe, choose_batch_size, estimate_pef_run
from .resources import PeakMemory


# model -> the devices where its probe had its warm-up in this process
_warmed_up: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


@dataclass
class PefRun:
    """The PEFs of ``inputs`` (one row per example) under ``model``, as ``config`` says, on ``device``."""

    model: nn.Module
    inputs: Inputs
    labels: torch.Tensor  # (n_examples,), -1 where unknown
    config: PefConfig
    plan: Plan
    device: torch.device

    @classmethod
    def prepare(cls, model: nn.Module, inputs: Inputs, labels: torch.Tensor, config: PefConfig,
                device: torch.device) -> "PefRun":
        """The run with the model moved to ``device`` and its parameters selected (``labels`` split
        from the inputs already, by :func:`workbench.fisher.split_labels`)."""
        check_model(model, inputs)
        model.to(device)
        named = select_parameters(model, config.include, config.exclude)  # warned of once (an exclude that matches nothing)
        check_precision(named)
        # every label checked against the model's classes before any batch runs, in the run's mode (no caller's autocast)
        with pef_mode(model):
            first = logits_with_gradients(model, slice_inputs(inputs, 0, min(n_inputs(inputs), 8), device)).detach()
        if first.dtype in (torch.float16, torch.bfloat16):  # PEFs 0.4% off the float32 model's, without a word
            warnings.warn(f"the model's logits are {str(first.dtype).replace('torch.', '')} though its parameters are "
                          f"{str(named[0][1].dtype).replace('torch.', '')}: its forward computes in half precision (a torch.autocast inside it, or a cast of its "
                          "output), so the PEFs carry that rounding (a bfloat16 number keeps 3 significant digits). "
                          "Take the autocast or cast out of the forward (the PEF run turns off a caller's autocast, not "
                          "one inside the model)", stacklevel=user_stacklevel())
        first = first.float()
        n_classes = first.shape[1]
        if bool(((first >= 0) & (first <= 1)).all()) and torch.allclose(first.sum(dim=1), torch.ones(len(first)), atol=1e-4):
            warnings.warn("the model's outputs look like class probabilities (each row in [0, 1], summing to 1), not "
                          "logits: the PEFs would be of softmax(probabilities), not of the model's distribution; return "
                          "the logits (or torch.log of the probabilities)", stacklevel=user_stacklevel())
        check_label_range(labels, n_classes)
        if config.top_k_classes is not None and config.top_k_classes > n_classes:
            warnings.warn(f"top_k_classes={config.top_k_classes} is more than the model's {n_classes} classes: every "
                          "class is kept, as with top_k_classes=None", stacklevel=user_stacklevel())
            config = dataclasses.replace(config, top_k_classes=None)  # recorded as what it is: every class
        return cls(model, inputs, labels, config, make_plan(model, config, named), device)

    @property
    def n_examples(self) -> int:
        return n_inputs(self.inputs)

    @property
    def n_chunks(self) -> int:
        return -(-self.n_examples // self.config.batch_size)

    def batch_len(self, index: int) -> int:
        """Examples in batch ``index``."""
        return min(self.config.batch_size, self.n_examples - index * self.config.batch_size)

    def with_batch_size(self, batch_size: int) -> "PefRun":
        return dataclasses.replace(self, config=dataclasses.replace(self.config, batch_size=batch_size))

    def part(self, start: int, stop: int) -> "PefRun":
        """Examples start..stop as a run of one batch."""
        rows = self.inputs[start:stop] if isinstance(self.inputs, torch.Tensor) else {k: v[start:stop] for k, v in self.inputs.items()}
        return dataclasses.replace(self, inputs=rows, labels=self.labels[start:stop],
                                   config=dataclasses.replace(self.config, batch_size=stop - start))

    def chunks(self, skip: Callable[[int], bool] = lambda batch_index: False):
        """(batch index, number of examples, chunk or None where ``skip``) for every batch, in order."""
        return iter_pef_chunks(self.model, self.inputs, self.labels, self.config, self.plan, self.device, skip=skip)

    # -- before the run ----------------------------------------------------------------

    def probe(self, batch_index: int, warm_up: bool = True) -> Probe:
        """Compute batch ``batch_index`` of the run and measure it (after one untimed example,
        unless ``warm_up`` is False because a probe ran already). Its chunk is the run's."""
        start = batch_index * self.config.batch_size
        stop = min(start + self.config.batch_size, self.n_examples)
        # One example first, untimed: a process's first backward pays one-off costs (thread pools,
        # allocator growth) that would make the first batch look several times slower than the rest.
        # Once per model and process: a later call would pay them for nothing (a 600-example run 5%).
        if warm_up and self.device not in _warmed_up.get(self.model, ()):
            # the plan is checked on the batch, as the run's first batch would check it: the
            # one-example warm-up shares the plan, and one example shows no padding and no
            # examples mixed up with each other
            check_plan(self.model, self.plan, slice_inputs(self.inputs, start, stop, self.device),
                       self.config.top_k_classes)
            next(self.part(start, start + 1).chunks())
            _warmed_up.setdefault(self.model, set()).add(self.device)
        with PeakMemory(self.device) as memory:
            began = time.perf_counter()
            _, size, chunk = next(self.part(start, stop).chunks())
            seconds = time.perf_counter() - began
        lengths = example_lengths(self.inputs)
        return Probe(
            index=batch_index, start=start, size=size, chunk=chunk, seconds=seconds, work_bytes=memory.peak,
            baseline_bytes=memory.baseline,
            length=int(lengths[start:stop].max()) if lengths is not None else 1,
            max_length=int(lengths.max()) if lengths is not None else 1,
            chunk_file_bytes=chunk_file_size(chunk, batch_index),
        )

    def sized_by(self, probe: Probe) -> "PefRun":
        """The run with the largest batch size the memory holds, as the probe measured it."""
        return self.with_batch_size(choose_batch_size(probe, self.n_examples, self.device, self.plan.layout.n_parameters))

    def estimate(self, probe: Probe, *, n_done: int, out=None) -> PefEstimate:
        """Disk, peak memory and time of the run, of which ``n_done`` examples are on disk;
        ``out`` None: a run held in memory."""
        return estimate_pef_run(probe, self.config, self.plan.layout, self.n_examples, n_done=n_done, out=out,
                                in_memory=out is None, device=self.device)

    # -- what a store records of it ----------------------------------------------------

    def info(self, model_fingerprint: str | None = None) -> dict:
        """Provenance recorded with the PEFs: the model, its fingerprint and the arguments."""
        return dict(pef_info(self.model, self.config, self.plan, self.n_examples),
                    model_fingerprint=model_fingerprint or fingerprint_model(self.model))

    def manifest(self, provenance: Mapping | None = None) -> dict:
        """The manifest of a store holding this run (incomplete): what identifies it, so that a
        resume can check it is the same run."""
        fingerprints = {
            "model": fingerprint_model(self.model),
            "inputs": fingerprint_tensors(self.inputs),
            "labels": fingerprint_tensors(self.labels),
        }
        info = self.info(fingerprints["model"])
        if provenance:
            try:
                info["provenance"] = json.loads(json.dumps(dict(provenance), default=json_default))
            except (TypeError, ValueError) as error:
                raise TypeError(f"provenance must be a dict of JSON-able facts (text, numbers, lists): {error}") from None
        return new_manifest(self.config.kind, info, stored_layout(self.config, self.plan), self.n_examples, self.n_chunks,
                            fingerprints)

    # -- the run -----------------------------------------------------------------------

    def stream(self, deliver: Callable[[int, PefChunk], None], *, skip: Callable[[int], bool] = lambda b: False,
               probe: Probe | None = None, estimate: PefEstimate | None = None, progress: bool = True,
               desc: str = "PEFs", total: int | None = None, initial: int = 0) -> None:
        """Deliver the probe's chunk (if any), then every other batch's not ``skip``ped, in order,
        each checked for NaN and infinite values first, with a progress bar of ``total``
        examples (all of them by default) of which ``initial`` are done."""
        taken = set() if probe is None else {probe.index}
        with tqdm(total=self.n_examples if total is None else total, initial=initial, desc=desc, unit="ex",
                  disable=not progress) as bar:
            if estimate is not None:
                bar.set_postfix_str(estimate.postfix(), refresh=False)
            if probe is not None:
                deliver(probe.index, probe.chunk)
                bar.update(probe.size)
            for index, size, chunk in self.chunks(skip=lambda b: b in taken or skip(b)):
                if chunk is not None:
                    check_chunk_finite(chunk, index * self.config.batch_size)
                    deliver(index, chunk)
                    if estimate is not None:  # the time left counts down with the run
                        bar.set_postfix_str(estimate.postfix(bar.total - bar.n - size), refresh=False)
                    bar.update(size)
