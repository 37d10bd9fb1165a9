"""Per-example gradients over the smallest sub-module that has an example axis ("a region").

Some parameters have no rule, and ``vmap`` cannot run the whole model either: T5's
relative attention bias is an embedding whose output, (1, heads, queries, keys), is shared
by the batch and passed from the first block to all the others, and the
``T5ForSequenceClassification`` head picks its EOS tokens with a boolean mask (a
data-dependent shape ``vmap`` refuses). The gradient of such a parameter stays inside a
larger module whose inputs and outputs do carry the examples on their first axis (T5's
encoder and decoder stacks). That module is the parameter's *region*: the batch's forward
pass records the region's call, the backward passes give its outputs' per-example
gradients (like any rule layer's output gradient), and ``torch.func`` then computes, for
each example, the vector-Jacobian product of the region's call on that example alone with
its output gradients, for the region's rule-less parameters only. The model's own code
runs, so the result is exact; the first batch's check (:mod:`.checks`) compares it with
the loop before it is trusted.

Which leaves of a call's arguments belong to the example is read the way the rules' batch
axes are (:func:`.checks.layer_batching`): by running the model on its first example
repeated 2 and 3 times, never from one batch's shapes, where a T5 batch as long as its
sequence would make a (positions,) tensor look batched. A leaf whose first axis was 1 both
times is shared by the batch there, and may not be elsewhere: a decoder's attention mask is
(1, 1, queries, keys) while no example is padded, (examples, 1, queries, keys) once one is.
Such a leaf is split between the examples in a batch where its first axis is the batch's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.utils._pytree import tree_flatten, tree_unflatten

from .hooks import ForwardHooks
from .inputs import Inputs, class_logits, n_inputs, repeated
from .transforms import mask_skipping_off, no_vmap_fallback_warnings


# what a call leaf's first axis is; ABSENT: the leaf was None (an argument not given)
EXAMPLES, SHARED, FIXED, ABSENT = "examples", "shared", "fixed", "absent"


@dataclass
class RegionCall:
    """One call of a region: its arguments' leaves (a pytree of ``args``, ``kwargs``) and the
    float tensor leaves of its output, on the batch's graph."""

    leaves: list
    spec: object
    outputs: list[torch.Tensor]


@dataclass
class Region:
    """A module and the rule-less parameters whose per-example gradients it computes.

    ``axes``: for each leaf of the module's call arguments, what its first axis is (found
    by :func:`region_batching`): ``EXAMPLES``, ``SHARED`` (1, broadcast over the batch,
    or the batch's examples where a batch's data asks for them) or ``FIXED``."""

    module: nn.Module
    parameters: list[tuple[str, int]]  # (name inside the module, index in the plan's parameters)
    axes: tuple[str, ...]


def output_leaves(output) -> list[torch.Tensor]:
    """The float tensor leaves of a module's output (a tensor, tuple or transformers ModelOutput)."""
    return [x for x in tree_flatten(output)[0] if isinstance(x, torch.Tensor) and x.is_floating_point()]


@dataclass
class CaptureRegions(ForwardHooks):
    """Context manager that records each call of the given modules (:class:`RegionCall`)."""

    modules: list[nn.Module]
    calls: dict[int, list[RegionCall]] = field(default_factory=dict)
    _handles: list = field(default_factory=list)

    def _record(self, module, args, kwargs, output):
        leaves, spec = tree_flatten((args, kwargs))
        self.calls.setdefault(id(module), []).append(RegionCall(leaves, spec, output_leaves(output)))


def region_batching(model: nn.Module, modules: list[nn.Module], batch: Inputs,
                    different: Inputs | None = None) -> dict[int, tuple[str, ...]]:
    """{id(module): the first axis of each leaf of its call (:attr:`Region.axes`)} for the
    ``modules`` that can be regions, from the model run on the batch's first example 2 and
    3 times. A module cannot be one when it is not called, is called a different number of
    times or with other arguments, takes an object that holds state (a key-value cache), or
    has a float output leaf without the examples on its first axis (T5's attention layers
    return the batch-shared position bias), also on ``different`` examples (an expert of a
    mixture sent one token of each copy of an example looks batched on copies alone)."""
    runs = [repeated(batch, 2), repeated(batch, 3)] + ([] if different is None else [different])
    seen = []
    for inputs in runs:
        # masks built even where no example is padded, as a padded batch builds them
        with torch.no_grad(), mask_skipping_off(), CaptureRegions(modules) as capture:
            class_logits(model, inputs)
        seen.append(capture.calls)
    found = {}
    for module in modules:
        flags = _call_batching(seen[0].get(id(module), []), seen[1].get(id(module), []))
        if flags is not None and different is not None:
            n = n_inputs(different)
            if not all(o.ndim and o.shape[0] == n for call in seen[2].get(id(module), []) for o in call.outputs):
                flags = None
        if flags is not None:
            found[id(module)] = flags
    return found


def _call_batching(two: list[RegionCall], three: list[RegionCall]) -> tuple[str, ...] | None:
    if not two or len(two) != len(three):
        return None
    if not all(_stateless(x) for call in two + three for x in call.leaves):
        return None
    flags = None
    for a, b in zip(two, three):
        if a.spec != b.spec or len(a.leaves) != len(b.leaves) or len(a.outputs) != len(b.outputs):
            return None
        if not all(o2.ndim and o3.ndim and o2.shape[0] == 2 and o3.shape[0] == 3 for o2, o3 in zip(a.outputs, b.outputs)):
            return None
        call = tuple(_first_axis(x, y) for x, y in zip(a.leaves, b.leaves))
        if flags is not None and call != flags:
            return None
        flags = call
    return flags if flags and EXAMPLES in flags else None


def _first_axis(two, three) -> str:
    """A call leaf's first axis, from its calls on 2 and 3 copies of an example."""
    if two is None and three is None:
        return ABSENT
    if not (isinstance(two, torch.Tensor) and isinstance(three, torch.Tensor) and two.ndim and three.ndim):
        return FIXED
    return {(2, 3): EXAMPLES, (1, 1): SHARED}.get((two.shape[0], three.shape[0]), FIXED)


def _stateless(leaf) -> bool:
    """Whether a call argument can be held fixed while the call is replayed per example: a
    tensor or a plain value. An object such as a transformers ``Cache`` holds the whole
    batch's keys and values, filled by the batch's own forward pass, and a replay would
    read them (UMT5's attention takes one): a module called with one is no region."""
    return leaf is None or isinstance(leaf, (torch.Tensor, bool, int, float, str, torch.dtype, torch.device))


def candidate_modules(model: nn.Module, name: str) -> list[tuple[str, nn.Module]]:
    """The modules holding parameter ``name``, from the smallest to the largest below the model."""
    parts = name.split(".")[:-1]
    modules = dict(model.named_modules())
    return [(p, modules[p]) for p in (".".join(parts[:i]) for i in range(len(parts), 0, -1)) if p in modules]


def region_gradients(region: Region, call: RegionCall, grad_outputs: list[torch.Tensor], n_examples: int) -> list[torch.Tensor]:
    """For each parameter of ``region``, its per-example gradients (r, b, *shape) in float32
    through one ``call``: example i's slot s is the vector-Jacobian product of the call on
    example i alone with ``grad_outputs``' [s, i] (each (r, b, ...), one per output leaf).

    Raises whatever ``vmap`` raises on the module's code, or ValueError if the call's
    arguments are not structured as the check saw them, or its outputs do not have the batch's
    ``n_examples`` on their first axis (an expert of a mixture, sent the tokens routed to it):
    the caller takes the loop."""
    if len(call.leaves) != len(region.axes) or any((x is None) != (axis == ABSENT) for x, axis in zip(call.leaves, region.axes)):
        raise ValueError("the region was called with arguments other than those the first batch's check saw")
    if any(int(g.shape[1]) != n_examples for g in grad_outputs):
        raise ValueError(f"the region was called on {int(grad_outputs[0].shape[1])} rows, not on the batch's "
                         f"{n_examples} examples")
    params = {name: dict(region.module.named_parameters())[name].detach() for name, _ in region.parameters}
    fixed = [x.detach() if isinstance(x, torch.Tensor) else x for x in call.leaves]
    b = int(grad_outputs[0].shape[1])
    split = [axis == EXAMPLES or (axis == SHARED and b > 1 and x.shape[0] == b) for x, axis in zip(fixed, region.axes)]
    per_example = [x for x, s in zip(fixed, split) if s]

    def one_example(own: dict, example: list[torch.Tensor], g: list[torch.Tensor]) -> dict:
        values = iter(example)
        leaves = [next(values).unsqueeze(0) if s else x for x, s in zip(fixed, split)]
        args, kwargs = tree_unflatten(leaves, call.spec)

        def outputs(own: dict) -> tuple[torch.Tensor, ...]:
            return tuple(o[0] for o in output_leaves(torch.func.functional_call(region.module, own, tuple(args), kwargs)))

        _, pullback = torch.func.vjp(outputs, own)
        return torch.func.vmap(pullback)(tuple(g))[0]  # over the slots

    with torch.no_grad(), mask_skipping_off(), no_vmap_fallback_warnings():
        grads = torch.func.vmap(one_example, in_dims=(None, 0, 1))(params, per_example, list(grad_outputs))
    return [grads[name].float().transpose(0, 1) for name, _ in region.parameters]  # (b, r, ...) -> (r, b, ...)


def call_outputs(calls: Mapping[int, list[RegionCall]], regions: list[Region]) -> list[torch.Tensor]:
    """The output leaves on the graph of every call of every region, in order (the tensors
    the backward passes differentiate)."""
    return [o for region in regions for call in calls.get(id(region.module), []) for o in call.outputs if o.requires_grad]


def region_blocks(regions: list[Region], calls: Mapping[int, list[RegionCall]], grad_outputs: list[torch.Tensor],
                  n_slots: int, n_examples: int) -> dict[int, torch.Tensor]:
    """{parameter index: (r, b, *shape) gradients} summed over each region's calls, from the
    output gradients (r, b, ...) of :func:`call_outputs`' leaves, in the same order; an
    output off the graph has none, and gets zeros."""
    grads: dict[int, torch.Tensor] = {}
    given = iter(grad_outputs)
    for region in regions:
        for call in calls.get(id(region.module), []):
            g = [next(given) if o.requires_grad else o.new_zeros((n_slots, *o.shape), dtype=torch.float32)
                 for o in call.outputs]
            g = [x.to(o.dtype) for x, o in zip(g, call.outputs)]  # the pullback takes the output's dtype
            for (_, index), value in zip(region.parameters, region_gradients(region, call, g, n_examples)):
                grads[index] = value if index not in grads else grads[index] + value
    return grads
