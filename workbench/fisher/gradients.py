"""A batch's per-example gradients: one forward pass, one backward pass per class slot.

The backward passes go only to the *outputs* of the layers that own selected parameters;
each layer's per-example parameter gradients then come from its recorded input and that
output gradient, through its rule (:mod:`workbench.fisher.rules`), mostly kept factored.
A two-class model needs one backward pass for both slots (:func:`two_class_gradient`).
"""

from __future__ import annotations

import contextlib
import logging

import torch
from torch import nn

from .config import Plan
from .hooks import Capture, CaptureLayers
from .inputs import Inputs, class_logits, example_slice, n_inputs, n_positions
from .regions import CaptureRegions, call_outputs, region_blocks
from .rules import BlockGradient, DenseGradient
from .transforms import failure_reason, mask_skipping_off, per_example_gradients

logger = logging.getLogger(__name__)


def slot_classes(log_probs: torch.Tensor, top_k: int | None) -> torch.Tensor:
    """(b, k): each example's k most probable classes, most probable first."""
    k = log_probs.shape[1] if top_k is None else min(top_k, log_probs.shape[1])
    return log_probs.topk(k, dim=1, sorted=True).indices


def loop_gradients(model, batch, classes, params, i) -> list[torch.Tensor]:
    """Example i's gradients (k, *shape) of log p(y_s|x_i) w.r.t. params, one backward per slot."""
    log_probs = torch.log_softmax(class_logits(model, example_slice(batch, i)).float(), dim=-1)[0]
    per_slot = []
    for s in range(classes.shape[1]):
        grads = torch.autograd.grad(log_probs[classes[i, s]], params, retain_graph=True, allow_unused=True)
        per_slot.append([torch.zeros_like(p) if g is None else g for g, p in zip(grads, params)])
    return [torch.stack([slot[j] for slot in per_slot]).float() for j in range(len(params))]


def per_row(values: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """(b,) per-example values shaped to multiply g's rows: (b, 1, ...), or repeated for
    each position where g's first axis folds examples and positions (b·T rows, OPT)."""
    if g.shape[0] != values.shape[0]:
        values = values.repeat_interleave(g.shape[0] // values.shape[0])
    return values.reshape(-1, *[1] * (g.ndim - 1))


def output_gradients(log_probs: torch.Tensor, classes: torch.Tensor, outputs: list[torch.Tensor],
                     scale: torch.Tensor | None = None) -> list[torch.Tensor]:
    """For each layer output (b, ...), the gradients of log p(y_s|x_i) for every slot s: (k, b, ...).

    One backward per slot of Σ_i log p(y_is|x_i); examples do not interact in eval mode,
    so row i of the result is example i's own gradient. ``scale`` (b, k): example i's
    slot-s gradients are multiplied by scale[i, s] (and kept in at least float32) as
    they are written into the result, one pass rather than a copy and then a product.
    """
    if not outputs:
        return []
    k = classes.shape[1]
    if k == 2 and log_probs.shape[1] == 2:
        return two_class_output_gradients(log_probs, classes, outputs, scale)
    stacked: list[torch.Tensor | None] = [None] * len(outputs)
    for s in range(k):
        objective = log_probs.gather(1, classes[:, s : s + 1]).sum()
        grads = torch.autograd.grad(objective, outputs, retain_graph=True, allow_unused=True)
        for j, (g, o) in enumerate(zip(grads, outputs)):
            if stacked[j] is None:
                dtype = o.dtype if scale is None else torch.promote_types(o.dtype, torch.float32)
                stacked[j] = torch.empty((k, *o.shape), dtype=dtype, device=o.device)
            if g is None:
                stacked[j][s].zero_()
            elif scale is None:
                stacked[j][s].copy_(g)
            else:
                torch.mul(g, per_row(scale[:, s], g), out=stacked[j][s])
    return stacked


def two_class_gradient(log_probs, classes, outputs) -> tuple[list[torch.Tensor | None], torch.Tensor]:
    """A two-class model's output gradients from one backward pass instead of two.

    With two classes, ∇ log p₀ = p₁ ∇(z₀ − z₁) and ∇ log p₁ = −p₀ ∇(z₀ − z₁) (the
    log-sum-exp's gradients cancel), so both slots' gradients are multiples of one
    gradient, that of Σ_i log p(0|x_i) − log p(1|x_i). Returns that gradient for each
    output (None where unused) and the multiples (b, 2), which take the other class's
    probability from its log-probability: 1 − p computed in float32 would round to 0
    for a confident example, as the softmax's own backward does."""
    p_other = log_probs.detach().flip(1).gather(1, classes).exp()  # (b, 2): p of the class not in the slot
    multiple = torch.where(classes == 0, p_other, -p_other)
    if not outputs:  # every parameter served by torch.func (XLNet without its head): autograd takes no empty list
        return [], multiple
    w = torch.autograd.grad((log_probs[:, 0] - log_probs[:, 1]).sum(), outputs, retain_graph=True, allow_unused=True)
    return list(w), multiple


def two_class_output_gradients(log_probs, classes, outputs, scale):
    """:func:`output_gradients` of a two-class model: :func:`two_class_gradient`, stacked."""
    w, multiple = two_class_gradient(log_probs, classes, outputs)
    if scale is not None:
        multiple = multiple * scale
    stacked = []
    for g, o in zip(w, outputs):
        dtype = o.dtype if scale is None else torch.promote_types(o.dtype, torch.float32)
        out = torch.empty((2, *o.shape), dtype=dtype, device=o.device)
        for s in range(2):
            if g is None:
                out[s].zero_()
            else:
                torch.mul(g, per_row(multiple[:, s], g), out=out[s])
        stacked.append(out)
    return stacked


class BatchGradients:
    """A batch's per-example gradients, scaled by √p: example i's rows of A_iᵀ (method notes, section 1).

    The batch's forward pass and one backward pass per class slot run once. Each selected
    parameter's gradients are then a :class:`~workbench.fisher.rules.BlockGradient` over
    the batch, mostly kept factored (layer input × output gradient) rather than written
    out; parameters no rule covers are computed by torch.func for the whole batch where the
    plan says so (:mod:`.transforms`, or over a sub-module: :mod:`.regions`), the rest one
    example at a time (:meth:`fallback`).
    """

    def __init__(self, model: nn.Module, plan: Plan, batch: Inputs, top_k: int | None, factor_two_classes: bool = False):
        self.model, self.plan, self.batch = model, plan, batch
        # with regions, masks are built as the check built them, also for a batch without padding
        masks = mask_skipping_off() if plan.regions else contextlib.nullcontext()
        with CaptureLayers(plan.rule_modules, n_inputs(batch), plan.expand, plan.fold, plan.call_inputs,
                           positions=n_positions(batch)) as capture, \
                CaptureRegions([region.module for region in plan.regions]) as regions, masks:
            logits = class_logits(model, batch)
        self.logits = logits.detach().float()
        log_probs = torch.log_softmax(logits.float(), dim=-1)
        self.classes = slot_classes(log_probs.detach(), top_k)  # (b, k)
        self.sqrt_p = torch.exp(0.5 * log_probs.detach().gather(1, self.classes))  # (b, k)
        self.fallback_indices = list(plan.fallback)
        outputs = [c.output for c in capture.captures]
        region_outputs = call_outputs(regions.calls, plan.regions)
        # With factor_two_classes, a two-class model's blocks hold one gradient per example,
        # and slot s of example i is slot_scales[i, s] times it: half the writing out.
        self.slot_scales: torch.Tensor | None = None  # (b, 2)
        factor = factor_two_classes and log_probs.shape[1] == 2 and self.n_slots == 2 and not self.fallback_indices
        # before the batch's graph is freed, so that a failure can still turn factoring off
        transformed = self._transformed_blocks(factor)
        if factor and not self.fallback_indices:
            w, multiple = two_class_gradient(log_probs, self.classes, outputs + region_outputs)
            self.slot_scales = multiple * self.sqrt_p
            at_least_float32 = [torch.promote_types(o.dtype, torch.float32) for o in outputs + region_outputs]
            grad_outputs = [(torch.zeros_like(o) if g is None else g).to(t).unsqueeze(0)
                            for g, o, t in zip(w, outputs + region_outputs, at_least_float32)]
        else:
            # scaled by √p as they are written; half precision would lose small gradients, so at least float32
            grad_outputs = output_gradients(log_probs, self.classes, outputs + region_outputs, scale=self.sqrt_p)
        del log_probs, logits  # the batch's graph; only layer inputs and output gradients are needed
        n_rule = len(outputs)
        self.blocks = (self._rule_blocks(capture.captures, grad_outputs[:n_rule]) + transformed
                       + self._region_blocks(regions.calls, grad_outputs[n_rule:]))

    @property
    def n_examples(self) -> int:
        return int(self.classes.shape[0])

    @property
    def n_slots(self) -> int:
        return int(self.classes.shape[1])

    def _transformed_blocks(self, factored: bool) -> list[tuple[int, BlockGradient]]:
        """The plan's torch.func parameters' gradients over the batch (one row per example if
        ``factored``, else one per slot, scaled by √p). Should vmap fail on this batch (a
        branch the first batch's check did not take), they take the loop for this batch."""
        indices = self.plan.whole_model_transformed
        if not indices:
            return []
        try:
            grads = per_example_gradients(self.model, self.batch, [self.plan.named[k] for k in indices],
                                          None if factored else self.classes)
        except Exception as error:  # noqa: BLE001 - the loop computes them, or raises the model's own error
            logger.warning("torch.func failed on this batch (%s); its %d parameters without a rule were computed "
                           "one example at a time (exact, slower)", failure_reason(error), len(indices))
            self.fallback_indices = sorted(self.fallback_indices + list(indices))
            return []
        if not factored:
            scale = self.sqrt_p.T.reshape(self.n_slots, self.n_examples, 1)
            return [(k, DenseGradient(g.reshape(g.shape[0], g.shape[1], -1) * scale)) for k, g in zip(indices, grads)]
        return [(k, DenseGradient(g)) for k, g in zip(indices, grads)]

    def _region_blocks(self, calls: dict, grad_outputs: list[torch.Tensor]) -> list[tuple[int, BlockGradient]]:
        """The plan's regions' parameters' gradients over the batch, from their calls' output
        gradients (scaled as the rule layers' are). Should a region fail on this batch (a call
        the first batch's check did not see), the error takes the whole batch to the loop
        (:func:`workbench.fisher.batches.batch_in_two_stages`)."""
        if not self.plan.regions:
            return []
        n_slots = 1 if self.slot_scales is not None else self.n_slots  # one row per example when factored
        grads = region_blocks(self.plan.regions, calls, grad_outputs, n_slots, self.n_examples)
        return [(k, DenseGradient(g.reshape(g.shape[0], g.shape[1], -1))) for k, g in grads.items()]

    def _rule_blocks(self, captures: list[Capture], grad_outputs: list[torch.Tensor]) -> list[tuple[int, BlockGradient]]:
        """[(parameter index, its gradients over the batch)] from the layers' rules."""
        per_parameter: dict[int, list[BlockGradient]] = {}
        for capture, g in zip(captures, grad_outputs):
            x = capture.layer_input
            if g.shape[1] != x.shape[0]:  # a folded examples × positions axis (hooks.CaptureLayers)
                g = g.reshape(g.shape[0], x.shape[0], -1, *g.shape[2:])
            x = x.to(g.dtype) if x.is_floating_point() else x
            grads = self.plan.rules[id(capture.module)](capture.module, x, g)
            for attr, index in self.plan.owned[id(capture.module)]:
                block = grads[attr]
                block = block if isinstance(block, BlockGradient) else DenseGradient(block)
                per_parameter.setdefault(index, []).append(block)
            capture.output = None
        # A layer called more than once in a forward pass adds up its calls' gradients.
        return [
            (index, blocks[0] if len(blocks) == 1 else DenseGradient(sum(blk.dense() for blk in blocks)))
            for index, blocks in per_parameter.items()
        ]

    def fallback(self, i: int) -> list[tuple[int, BlockGradient]]:
        """Example i's gradients of the parameters no rule covers, as blocks of one example."""
        if not self.fallback_indices:
            return []
        params = [self.plan.named[k][1] for k in self.fallback_indices]
        grads = loop_gradients(self.model, self.batch, self.classes, params, i)
        scale = self.sqrt_p[i].reshape(-1, 1)
        return [(k, DenseGradient((g.reshape(g.shape[0], 1, -1) * scale[:, :, None]))) for k, g in zip(self.fallback_indices, grads)]

    def lrm_grams(self) -> torch.Tensor:
        """(b, k, k) float64 on the CPU: A_iᵀ A_i over the rule-covered parameters (fallback
        ones not included). Summed where the blocks are and moved once: a move per block
        waits for the GPU each time, hundreds of times per batch of a large model."""
        gram = torch.zeros((self.n_examples, self.n_slots, self.n_slots), dtype=torch.float64, device=self.logits.device)
        dense = [block.values for _, block in self.blocks if isinstance(block, DenseGradient)]
        if dense:  # small parameters (biases, norms) together, in one product
            gram += DenseGradient(torch.cat(dense, dim=2)).gram()
        for _, block in self.blocks:
            if not isinstance(block, DenseGradient):
                gram += block.gram()
        if self.slot_scales is not None:  # the blocks' one gradient w: every entry ‖w‖², and slot s is scales[s] · w
            scales = self.slot_scales.double()
            gram *= scales[:, :, None] * scales[:, None, :]
        return gram.cpu()
