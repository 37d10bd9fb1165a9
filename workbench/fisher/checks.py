"""The fast path checked against the plain loop on a run's first examples, before it is trusted.

A rule assumes two things a model's code may break: that each call of the layer has the
batch's examples on its first axis (or a batch-shared output that broadcasts, like BERT's
position embeddings), and that the layer computes what the rule says. :func:`check_plan`
runs once per run, on its first examples, and moves to the exact loop every layer that
breaks either, with a warning naming it:

0. Padding: where a padded example's logits differ from its logits alone (a convolution
   over the padded positions, absolute positions under left padding), every batch padded on
   that side is computed in groups of examples of one length (:func:`computed_alone`); the
   checks below then run on such a group. The verdict is made on the first batch padded on
   that side, whichever batch of the run that is: a batch without padding shows nothing.
1. :func:`layer_batching` runs the model on the first example repeated 2 and 3 times and
   reads each layer's calls: a first axis of 2 then 3 is the example axis (2T then 3T, T
   the positions: examples and positions folded into one axis, which the hooks unfold),
   if the first batch's different examples give it one too (an expert of a mixture sent
   one token of each copy looks batched on copies alone); 1 and 1 is a
   batch-shared output, expanded to the batch only if the model's logits are unchanged by
   the expansion (DeBERTa's relative embeddings are reshaped by code that a bigger axis
   breaks); anything else (T5's relative attention bias, (queries, keys, heads), whatever
   the batch size) is no example axis. Shapes of one batch could not tell these apart: a
   T5 batch as long as its sequence would look batched.
2. The per-example gradients of the rules are compared with ``torch.autograd`` one example
   at a time on the first examples; a layer whose gradients differ goes to the loop. So
   does a layer never called whose parameters the model uses directly (DeBERTa's
   ``rel_embeddings.weight``): no hook sees that use.
3. The parameters left without a rule get their per-example gradients from ``torch.func``
   for the whole batch (:mod:`.transforms`) if that runs on this model and agrees with the
   loop on the first examples; where it does not run, from ``torch.func`` over the
   smallest sub-module that holds them and has an example axis (:mod:`.regions`: T5's
   encoder and decoder stacks), again if it agrees with the loop; otherwise they keep the
   loop, with a warning saying why.

The decision is cached per model and selection, so later runs on the same model skip it.
It is made on a batch like the run's, never on one example alone when the batches hold
several: one example shows no padding and no examples mixed up with each other.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Mapping

import torch
from torch import nn

from .config import Plan
from .gradients import BatchGradients, loop_gradients, output_gradients, slot_classes
from .hooks import CaptureLayers, LayerCallError
from .inputs import (Inputs, NotClassLogitsError, class_logits, example_slice, length_groups, n_inputs, n_positions,
                     repeated, select_rows)
from .regions import CaptureRegions, Region, call_outputs, candidate_modules, region_batching, region_blocks
from .transforms import failure_reason, module_paths, per_example_gradients

logger = logging.getLogger(__name__)

# Rule gradients may differ from the loop's by float32 rounding: relative to the parameter's
# largest entry, or to the example's largest entry over all parameters (for tiny ones).
RTOL, ATOL_OF_LARGEST = 1e-4, 2e-6
# A padded example's logits may differ from its logits alone by float32 rounding (relative to the largest)
PADDING_RTOL = 1e-4
PADDING_LENGTHS_TRIED = 8
CHECK_EXAMPLES = 2
# Above this many gradient entries (k · m · examples), only one layer of each type is checked.
CHECK_MAX_ENTRIES = 1 << 26
# torch.func writes the transformed parameters' gradients out for the whole batch (the loop,
# for one example): above this many entries per example (k · their size) they keep the loop
TRANSFORM_MAX_ENTRIES = 1 << 24
_decisions: "weakref.WeakKeyDictionary[nn.Module, dict]" = weakref.WeakKeyDictionary()


def layer_calls(model: nn.Module, modules: list[nn.Module], batch: Inputs, from_call: set[int] = frozenset()) -> dict[int, list[tuple]]:
    """For each layer, the first axes (input, output) of its calls in one forward pass; the
    layers in ``from_call`` take as input what their rule finds from the output's positions."""
    calls: dict[int, list[tuple]] = {}

    def record(module, args, output):
        ok = isinstance(output, torch.Tensor) and args and isinstance(args[0], torch.Tensor)
        first = (output if id(module) in from_call else args[0]).shape[0] if ok else None
        calls.setdefault(id(module), []).append((int(first), int(output.shape[0])) if ok else None)

    handles = [m.register_forward_hook(record) for m in modules]
    try:
        with torch.no_grad():
            class_logits(model, batch)
    finally:
        for h in handles:
            h.remove()
    return calls


def layer_batching(model: nn.Module, modules: list[nn.Module], batch: Inputs,
                   call_inputs: dict | None = None, different: Inputs | None = None) -> tuple[set[int], set[int], set[int]]:
    """(expand, unbatched, fold): ids of the layers whose batch-shared output may be expanded
    to the batch, of those whose calls have no example axis, and of those whose calls fold
    examples and positions into one axis (step 1 of the module docs). ``different``: a batch
    of different examples (the run's first), on which a layer with an example axis must have
    one too: an expert of a mixture sent one token of each copy of an example looks batched
    on copies, not on examples that route their tokens differently."""
    call_inputs = call_inputs or {}
    two, three = (layer_calls(model, modules, repeated(batch, e), set(call_inputs)) for e in (2, 3))
    if different is not None:
        n, positions = n_inputs(different), n_positions(different) or 0
        on_different = layer_calls(model, modules, different, set(call_inputs))
    shared, unbatched, fold = set(), set(), set()
    for m in modules:
        a, b = two.get(id(m), []), three.get(id(m), [])
        seen = [] if different is None else on_different.get(id(m), [])
        if len(a) == len(b) and all(c == (2, 2) for c in a) and all(c == (3, 3) for c in b):
            if all(c == (n, n) for c in seen):
                continue
            unbatched.add(id(m))
            continue
        if a and len(a) == len(b) and all(_folded(c2, c3, n_positions(batch)) for c2, c3 in zip(a, b)):
            if all(c == (n * positions, n * positions) for c in seen):
                fold.add(id(m))  # examples × positions folded into one axis (OPT's feed-forward): the hooks unfold it
            else:
                unbatched.add(id(m))
            continue
        if a and len(a) == len(b) and all(c == (1, 1) for c in a + b):
            shared.add(id(m))
        else:
            unbatched.add(id(m))
    expand = _expandable(model, [m for m in modules if id(m) in shared], batch, call_inputs)
    return expand, unbatched | (shared - expand), fold


def _folded(two: tuple | None, three: tuple | None, positions: int | None) -> bool:
    """Whether calls on 2 and 3 examples had first axes 2T and 3T, T the sequence's positions
    (input and output alike). Not any 2c and 3c: the tokens a mixture of experts routes to one
    expert double and triple with copies of an example too, but a batch of different examples
    sends each expert its own number of them, in no per-example order."""
    return two is not None and three is not None and positions is not None \
        and two == (2 * positions, 2 * positions) and three == (3 * positions, 3 * positions)


def _expandable(model: nn.Module, modules: list[nn.Module], batch: Inputs, call_inputs: dict) -> set[int]:
    """The layers whose expanded output leaves the logits unchanged: all together if they
    can be, else each one that can be on its own."""
    if not modules:
        return set()
    x = repeated(batch, 3)
    with torch.no_grad():
        reference = class_logits(model, x).float()

    def unchanged(group: list[nn.Module]) -> bool:
        try:
            with torch.enable_grad(), CaptureLayers(group, 3, expand={id(m) for m in group}, call_inputs=call_inputs):
                logits = class_logits(model, x).float()
        except Exception:  # the model's code cannot take the expanded output
            return False
        return bool(torch.allclose(logits, reference, rtol=1e-4, atol=1e-5 * float(reference.abs().max())))

    if unchanged(modules):
        return {id(m) for m in modules}
    alone = [m for m in modules if unchanged([m])]
    return {id(m) for m in alone} if unchanged(alone) else set()


def check_plan(model: nn.Module, plan: Plan, batch: Inputs, top_k: int | None) -> None:
    """Steps 1 and 2 of the module docs on ``batch`` (the run's first examples, on the device,
    the model in eval mode); the plan is changed in place and marked checked."""
    if plan.checked:
        return
    names = {id(m): name for name, m in model.named_modules()}
    # a decision made on one example (a one-example run) is not one for batches of several
    key = (tuple(name for name, _ in plan.named), _structure(batch), top_k, min(n_inputs(batch), CHECK_EXAMPLES))
    cached = _decisions.setdefault(model, {}).get(key)
    if cached is not None:
        expand, fold, to_loop, transformed, regions = cached
        plan.expand = {id(m) for m in plan.rule_modules if names.get(id(m)) in expand}
        plan.fold = {id(m) for m in plan.rule_modules if names.get(id(m)) in fold}
        plan.without([m for m in plan.rule_modules if names.get(id(m)) in to_loop])
        plan.transform([k for k in plan.fallback if plan.named[k][0] in transformed])
        modules = dict(model.named_modules())
        plan.add_regions([Region(modules[name], parameters, axes) for name, parameters, axes in regions])
        plan.checked = True
        return
    if computed_alone(model, plan, batch):  # checked as the batches will be computed: examples of one length
        batch = select_rows(batch, length_groups(batch)[0])
    first_batch, batch = batch, _first(batch, CHECK_EXAMPLES)
    owned = {id(m): [k for _, k in plan.owned[id(m)]] for m in plan.rule_modules}
    # An error here is the model's own (its plain forward on copies of an example): raised
    plan.expand, unbatched, plan.fold = layer_batching(model, plan.rule_modules, batch, plan.call_inputs, first_batch)
    moved = [m for m in plan.rule_modules if id(m) in unbatched]
    plan.without(moved)
    wrong, unseen, failed = _disagreeing(model, plan, batch, top_k)
    plan.without(wrong + unseen + failed)
    if plan.fallback:
        classes = _slot_classes(model, batch, top_k)
        if not _too_large([plan.named[k] for k in plan.fallback], classes):
            served, why_not = _transformable(model, plan, batch, classes)
            plan.transform(served)
            plan.add_regions(_regions(model, plan, batch, classes, why_not, first_batch))
    # only the layers left on the loop are worth a warning; torch.func serves the others as fast
    on_loop = set(plan.fallback)
    shown = names | _as_parameters_name_them(model)
    _warn([m for m in moved if on_loop.intersection(owned[id(m)])], shown, "have calls without a per-example batch axis")
    _warn([m for m in wrong if on_loop.intersection(owned[id(m)])], shown, "give per-example gradients that differ from the loop's")
    _warn([m for m in failed if on_loop.intersection(owned[id(m)])], shown, "lost their rule when the fast path failed")
    _warn([m for m in unseen if on_loop.intersection(owned[id(m)])], shown,
          "have parameters the model uses without calling the layer (no hook sees that use)")
    plan.checked = True
    to_loop = {names.get(id(m)) for m in moved + wrong + unseen + failed}
    transformed = {plan.named[k][0] for k in plan.whole_model_transformed}
    regions = [(names.get(id(r.module)), r.parameters, r.axes) for r in plan.regions]
    _decisions[model][key] = ({names.get(i) for i in plan.expand}, {names.get(i) for i in plan.fold}, to_loop, transformed,
                              regions)


#: {model: {padding side: whether its outputs change with padding}}, for ``remember=True``.
_PADDING_VERDICTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def computed_alone(model: nn.Module, plan: Plan, batch: Inputs) -> bool:
    """Whether ``batch`` is computed in groups of examples of one length, without padding: always
    by the plain loop's plan, and where the model's outputs change with padding on the side this
    batch is padded on (:func:`padding_changes_outputs`, decided on the first batch padded on that
    side and kept for the model). Asked of every batch: a run's first batch may hold no padding,
    and the same model may have run before on the other side's."""
    return plan.unpadded or padding_changes_outputs(model, batch, remember=True)


def padding_changes_outputs(model: nn.Module, batch: Inputs, *, warn: bool = True, remember: bool = False) -> bool:
    """Whether a padded example of the batch has other logits than it has alone (a convolution
    over the padded positions, attention that ignores the mask): its PEFs would then be those
    of the padding too, not the example's. One example of each length is tried (CANINE's
    padding shows only at lengths that are not multiples of its downsampling rate). Says so
    in a warning (``warn``), else in the log's INFO.

    ``remember``: the verdict is kept for the model and the side its batch is padded on (it is
    the architecture's, not the weights'), so that the readings of a panel, a page of examples
    at a time, do not pay for the check again.
    """
    groups = length_groups(batch)
    if groups is None:
        return False
    side = "left" if bool((batch["attention_mask"][:, 0] == 0).any()) else "right"
    if remember and side in _PADDING_VERDICTS.get(model, {}):
        return _PADDING_VERDICTS[model][side]
    tried = [int(rows[0]) for rows in groups[:PADDING_LENGTHS_TRIED]]
    with torch.no_grad():
        together = class_logits(model, batch).float()
        alone = torch.cat([class_logits(model, example_slice(batch, i)).float() for i in tried])
    difference = float((together[tried] - alone).abs().max())
    # Not "difference > tolerance": a padded batch whose logits are NaN (float64 Llama under left padding,
    # its fully masked rows) compares False, and its NaN PEFs were blamed on the weights.
    verdict = not difference <= PADDING_RTOL * float(alone.abs().max()) + 1e-7 or not bool(torch.isfinite(together).all())
    if remember:
        _PADDING_VERDICTS.setdefault(model, {})[side] = verdict
    if verdict:
        logger.log(logging.WARNING if warn else logging.INFO, "the model's outputs change with padding (a padded "
                   "example's logits differ from its logits alone by %.2g): each batch is computed in groups of "
                   "examples of one length, without padding (exact; slower where lengths vary: sorting the examples "
                   "by length gives fewer groups)", difference)
    return verdict


def _structure(batch: Inputs) -> tuple:
    if isinstance(batch, torch.Tensor):
        return (batch.ndim, str(batch.dtype))
    return tuple(sorted((k, v.ndim, str(v.dtype)) for k, v in batch.items()))


def _first(batch: Inputs, n: int) -> Inputs:
    if isinstance(batch, Mapping):
        return {k: v[:n] for k, v in batch.items()}
    return batch[:n]


def _as_parameters_name_them(model: nn.Module) -> dict[int, str]:
    """Layer names as the model's parameter names spell them, so that a warning's names work in
    ``exclude=``: a ZeroShotClassifier names its parameters as its language model does, without the
    ``lm.`` that its module path has."""
    parameter_names = {id(p): name for name, p in model.named_parameters()}
    shown = {}
    for _, module in model.named_modules():
        for attribute, parameter in module.named_parameters(recurse=False):
            name = parameter_names.get(id(parameter), "")
            if name.endswith("." + attribute):
                shown[id(module)] = name[: -len(attribute) - 1]
                break
    return shown


def _warn(modules: list[nn.Module], names: dict[int, str], why: str) -> None:
    if modules:
        shown = ", ".join(f"{names.get(id(m), '?')} ({type(m).__name__})" for m in modules[:5])
        logger.warning("%d layers %s, so their parameters are computed one example at a time (exact, slower; "
                       "exclude=... leaves them out): %s%s", len(modules), why, shown, ", ..." if len(modules) > 5 else "")


def _disagreeing(model: nn.Module, plan: Plan, batch: Inputs,
                 top_k: int | None) -> tuple[list[nn.Module], list[nn.Module], list[nn.Module]]:
    """The rule layers whose per-example gradients differ from the loop's on ``batch`` (step 2),
    those never called whose parameters the model uses all the same, and those left without
    their rule by an error of the fast path. A layer whose call the fast path cannot take
    (:class:`LayerCallError`) counts as differing, and any other error of the fast path takes
    every rule layer off its rule."""
    wrong: list[nn.Module] = []
    while plan.rule_modules:
        try:
            grads = BatchGradients(model, plan, batch, top_k)
        except LayerCallError as error:
            if error.module is None or error.module not in plan.rule_modules:
                raise
            wrong.append(error.module)
            plan.without([error.module])
            continue
        except NotClassLogitsError:
            raise
        except Exception as error:  # noqa: BLE001 - any failure inside the model's code
            with torch.no_grad():
                class_logits(model, batch)  # the model's own error, without hooks, is raised as it is
            # said with what follows: the bare error (KeyError: 'weight_g' of torch's old weight_norm) read as a
            # failed run, or as PEFs that could not be trusted
            logger.warning("the fast path failed on this model (%s: %s), so the parameters of its %d layers with a "
                           "per-example rule are computed as those without one, by torch.func for the whole batch "
                           "where it can and by the loop one example at a time where not: the PEFs stay exact, only "
                           "slower", type(error).__name__, error, len(plan.rule_modules))
            return wrong, [], list(plan.rule_modules)
        break
    else:
        return wrong, [], []
    module_of = {k: m for m in plan.rule_modules for _, k in plan.owned[id(m)]}
    blocks = dict(grads.blocks)
    # A layer never called has no block: its parameters count as zero, which is right only
    # if the model does not use them some other way (DeBERTa reads rel_embeddings.weight)
    uncalled = {k for k in module_of if k not in blocks}
    indices = sorted(_checked_parameters(plan, grads.n_slots * n_inputs(batch)) | uncalled)
    params = [plan.named[k][1] for k in indices]
    bad: dict[int, nn.Module] = {}
    unseen: dict[int, nn.Module] = {}
    for i in range(grads.n_examples):
        truths = loop_gradients(model, batch, grads.classes, params, i)
        scale = grads.sqrt_p[i].reshape(-1, 1)
        pairs = [(k, blocks[k].dense(slice(i, i + 1))[:, 0].float() if k in blocks else torch.zeros_like(t.reshape(t.shape[0], -1)),
                  t.reshape(t.shape[0], -1) * scale) for k, t in zip(indices, truths)]
        largest = max((float(t.abs().max()) for _, _, t in pairs), default=0.0)
        for k, got, truth in pairs:
            if k in uncalled and bool(truth.any()):
                unseen[id(module_of[k])] = module_of[k]
            elif float((got - truth).abs().max()) > RTOL * float(truth.abs().max()) + ATOL_OF_LARGEST * largest:
                bad[id(module_of[k])] = module_of[k]
    return wrong + list(bad.values()), [m for i, m in unseen.items() if i not in bad], []


def _checked_parameters(plan: Plan, entries_per_parameter_entry: int) -> set[int]:
    """All rule parameters, or for a large model those of one layer of each type."""
    covered = [k for m in plan.rule_modules for _, k in plan.owned[id(m)]]
    if entries_per_parameter_entry * sum(plan.named[k][1].numel() for k in covered) <= CHECK_MAX_ENTRIES:
        return set(covered)
    first: dict[type, nn.Module] = {}
    for m in plan.rule_modules:
        first.setdefault(type(m), m)
    return {k for m in first.values() for _, k in plan.owned[id(m)]}


def _transformable(model: nn.Module, plan: Plan, batch: Inputs, classes: torch.Tensor) -> tuple[list[int], str]:
    """The loop's parameters whose torch.func per-example gradients over the whole model run
    on this model and equal the loop's on ``batch`` (step 3), and why the others are not
    served (they are left to :func:`_regions`)."""
    indices = list(plan.fallback)
    named = [plan.named[k] for k in indices]
    try:
        grads = per_example_gradients(model, batch, named, classes)
    except Exception as error:  # noqa: BLE001 - vmap cannot run the model's code: a sub-module's, or the loop
        return [], f"the whole model: {failure_reason(error)}"
    bad = _differing_from_the_loop(model, batch, classes, [(k, plan.named[k][1], g) for k, g in zip(indices, grads)])
    served = [k for k in indices if k not in bad]
    if served:
        logger.info("torch.func computes the per-example gradients of %d parameters without a rule for the whole batch: %s%s",
                    len(served), ", ".join(plan.named[k][0] for k in served[:5]), ", ..." if len(served) > 5 else "")
    return served, "the whole model: gradients that differ from the loop's" if bad else ""


def _slot_classes(model: nn.Module, batch: Inputs, top_k: int | None) -> torch.Tensor:
    with torch.no_grad():
        return slot_classes(torch.log_softmax(class_logits(model, batch).float(), dim=-1), top_k)


def _differing_from_the_loop(model: nn.Module, batch: Inputs, classes: torch.Tensor,
                             computed: list[tuple[int, nn.Parameter, torch.Tensor]]) -> set[int]:
    """The indices k of ``computed`` [(k, parameter, its per-example gradients (r, b, *shape))]
    whose gradients differ from the loop's on some example of ``batch``."""
    bad = set()
    for i in range(classes.shape[0]):
        truths = loop_gradients(model, batch, classes, [p for _, p, _ in computed], i)
        largest = max(float(t.abs().max()) for t in truths)
        for (k, _, g), truth in zip(computed, truths):
            if float((g[:, i] - truth).abs().max()) > RTOL * float(truth.abs().max()) + ATOL_OF_LARGEST * largest:
                bad.add(k)
    return bad


def _too_large(named: list[tuple[str, nn.Parameter]], classes: torch.Tensor) -> bool:
    """Whether torch.func's gradients of ``named`` are too large to write out for a whole
    batch (they then keep the loop, with a warning)."""
    if classes.shape[1] * sum(p.numel() for _, p in named) <= TRANSFORM_MAX_ENTRIES:
        return False
    logger.warning("%d parameters without a rule are too large to write out for a whole batch (more than %d "
                   "entries per example), so they are computed one example at a time (exact, slower): %s",
                   len(named), TRANSFORM_MAX_ENTRIES, ", ".join(n for n, _ in named[:5]))
    return True


def _regions(model: nn.Module, plan: Plan, batch: Inputs, classes: torch.Tensor, whole_model: str = "",
             first_batch: Inputs | None = None) -> list[Region]:
    """Regions (:mod:`.regions`) for the parameters still on the loop: for each, the smallest
    module holding it that has an example axis and whose torch.func gradients equal the
    loop's on ``batch``, trying larger ones where a smaller one fails; what none serves
    stays on the loop, with a warning saying why (``whole_model``: why the whole model's
    torch.func did not serve them)."""
    path = module_paths(model)
    names = [path[id(plan.named[k][1])] for k in plan.fallback]
    if not names:
        return []
    index_of = {path[id(plan.named[k][1])]: k for k in plan.fallback}
    candidates = {n: candidate_modules(model, n) for n in names}
    reasons: dict[str, str] = {"": whole_model} if whole_model else {}
    try:
        batching = region_batching(model, list({id(m): m for c in candidates.values() for _, m in c}.values()), batch,
                                   first_batch)
    except Exception as error:  # noqa: BLE001 - the model's code fails with its masks built (Nystromformer's landmarks)
        reasons["masks"] = f"the model with its attention masks built: {failure_reason(error)}"
        batching = {}
    candidates = {n: [(p, m) for p, m in c if id(m) in batching] for n, c in candidates.items()}
    candidates = {n: c for n, c in candidates.items() if c}
    found: list[Region] = []
    served: set[int] = set()
    while candidates:
        groups: dict[str, list[str]] = {}
        for n, c in candidates.items():
            groups.setdefault(c[0][0], []).append(n)
        modules = dict(c[0] for c in candidates.values())
        tried = [Region(modules[p], [(n[len(p) + 1:], index_of[n]) for n in group], batching[id(modules[p])])
                 for p, group in groups.items()]
        for region, agreeing in zip(tried, _agreeing_regions(model, batch, tried, classes, reasons)):
            if agreeing:
                found.append(Region(region.module, agreeing, region.axes))
                served.update(k for _, k in agreeing)
        candidates = {n: c[1:] for n, c in candidates.items() if index_of[n] not in served and len(c) > 1}
    left = [n for n in names if index_of[n] not in served]
    if left:
        why = "; ".join(sorted(set(reasons.values())))[:400] or "no sub-module holding them has an example axis"
        # each example's pass for them runs back through the network: the batch's pass plus that can cost more than
        # the loop alone (Qwen3-Next, 6% of its parameters here: 1.3-1.8x the loop's time)
        logger.warning("torch.func cannot compute the per-example gradients of %d parameters without a rule (%s), so they "
                       "are computed one example at a time (exact, slower; exclude=... leaves them out, and where they "
                       "sit in every layer method='loop' alone can be quicker): %s%s",
                       len(left), why, ", ".join(left[:5]), ", ..." if len(left) > 5 else "")
    if found:
        logger.info("torch.func computes the per-example gradients of %d parameters without a rule over sub-modules: %s",
                    len(served), ", ".join(plan.named[k][0] for k in sorted(served)[:5]))
    return found


def _agreeing_regions(model: nn.Module, batch: Inputs, regions: list[Region], classes: torch.Tensor,
                      reasons: dict[str, str]) -> list[list[tuple[str, int]]]:
    """For each region, its parameters whose gradients over it equal the loop's on ``batch``
    (none if torch.func fails on it; the error is kept in ``reasons``)."""
    with CaptureRegions([r.module for r in regions]) as capture:
        log_probs = torch.log_softmax(class_logits(model, batch).float(), dim=-1)
    out = []
    for region in regions:
        try:
            outputs = call_outputs(capture.calls, [region])
            grads = region_blocks([region], capture.calls, output_gradients(log_probs, classes, outputs), classes.shape[1],
                                  classes.shape[0])
            params = dict(region.module.named_parameters())
            bad = _differing_from_the_loop(model, batch, classes, [(k, params[name], grads[k]) for name, k in region.parameters])
        except Exception as error:  # noqa: BLE001 - vmap cannot run this module's code: a larger one may do
            reasons[type(region.module).__name__] = f"{type(region.module).__name__}: {failure_reason(error)}"
            out.append([])
            continue
        out.append([(name, k) for name, k in region.parameters if k not in bad])
    return out
