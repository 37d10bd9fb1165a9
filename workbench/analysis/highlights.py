"""Token highlights: where in an example a component acts.

Definition. For example x, class slot s and component direction g (in parameter space),
the projection of the example's PEF column on g is

    a_s · g = √p(y_s|x) · d/dε log p(y_s|x; θ + ε g) at ε = 0,

the first-order change of the log-probability when the parameters move along g. That
derivative is a sum over the places where the perturbed parameters are *used*: a layer
with parameters W applied at token position t contributes ∂ log p / ∂ out_t · J_W out_t[g_W],
its output gradient at t times the change of its output at t. So a_s · g = Σ_t c_st + c_s,head,
with c_st the part flowing through position t and c_s,head the part through layers with
no token axis (BERT's pooler and classifier) and through the classification head wherever it is
applied (GPT-2's score layer runs at every position and is read at the last: crediting that token
with the head would read as the last word doing the work).

A component's coefficient for the example is driven by Σ_s (a_s · g)², the example's
Fisher mass along g, which splits exactly into per-position shares:

    score_t = Σ_s (a_s · g) c_st / Σ_s (a_s · g)²,    Σ_t score_t + head_share = 1.

A token with a large score is one where the component's parameters change the computation
in the way that moves the prediction. The change of each layer's output is computed with
``torch.func.jvp`` of the layer alone, so any layer type works; the output gradients come
from the same batched backward passes as the PEFs (``workbench.fisher``).
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
from torch.func import functional_call, jvp

from ..core.arguments import positive_int
from ..core.device import run_device
from ..core.validation import check_model
from ..fisher.gradients import output_gradients, slot_classes
from ..fisher.checks import layer_batching, padding_changes_outputs
from ..fisher.hooks import CaptureLayers
from ..fisher.inputs import Inputs, class_logits, groups_as_computed, n_inputs, pef_mode, slice_inputs
from ..fisher.matching import rule_for
from ..fisher.rules import looked_up_ids
from .moves import differentiable, parameters_of
from .token_shares import LEFT_OUT_NOTED

logger = logging.getLogger(__name__)

#: The layers the log warned of as left out of the token scores, once per model (it was logged on every page,
#: dashboard and report section, at a share of 0).
_WARNED_LEFT_OUT: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()  # model -> the layer sets warned of


@dataclass
class TokenScores:
    """Per-token shares of one example's Fisher mass along a component."""

    scores: np.ndarray  # (n_tokens,) the example's unpadded tokens
    head_share: float  # share flowing through layers without a token axis
    projection: float  # Σ_s (a_s · g)², the example's Fisher mass along g (unnormalised g)
    #: share of ‖g‖² in layers that could not be read per token (no example axis, called with more than
    #: their input): left out of the scores, which are shares of the rest
    left_out_share: float = 0.0
    left_out: tuple[str, ...] = ()  # the names of those parameters


#: torch's forward-mode AD levels (``jvp``) are global to the process: two threads scoring tokens
#: at once (a panel filling in on a thread beside a notebook cell) would delete each other's level.
_FORWARD_AD = threading.RLock()


def real_positions(inputs: Mapping, i: int) -> torch.Tensor:
    """Example i's positions that :func:`token_scores` scores, in order: those its attention mask
    keeps (padding on the right or on the left), or all of them without a mask."""
    mask = inputs.get("attention_mask")
    if mask is None:
        return torch.ones(inputs["input_ids"].shape[1], dtype=torch.bool)
    return torch.as_tensor(mask[i]).bool().cpu()


def _owning_modules(model: torch.nn.Module, params: list[torch.nn.Parameter]) -> list[tuple[torch.nn.Module, dict[str, int]]]:
    """Modules that directly own selected parameters: (module, {attribute: parameter index})."""
    index_of = {id(p): k for k, p in enumerate(params)}
    owners = []
    for module in model.modules():
        mine = {a: index_of[id(p)] for a, p in module.named_parameters(recurse=False) if id(p) in index_of}
        if mine:
            owners.append((module, mine))
    return owners


def _output_change(module: torch.nn.Module, layer_input: torch.Tensor, tangents: dict[str, torch.Tensor]) -> torch.Tensor:
    """J_θ module(x) · tangent: how the layer's output moves when its parameters move."""
    names = list(tangents)
    primals = tuple(getattr(module, n).detach() for n in names)

    def call(*values):
        return functional_call(module, dict(zip(names, values)), (layer_input,))

    # Forward-mode only: the module's other parameters (Mamba's mixer owns A_log and D, and calls its
    # in_proj) would otherwise record a backward graph into the change.
    with torch.no_grad():
        _, change = jvp(call, primals, tuple(tangents[n] for n in names))
    return change


def _looked_up_change(rows: torch.Tensor, tangent: torch.Tensor) -> torch.Tensor:
    """The output change of an embedding whose forward computes its own rows (BART's learned positions),
    from the rows it read × their factor (``fisher.rules.looked_up_rows``): the tangent's rows, scaled."""
    ids, factor = looked_up_ids(rows)
    return torch.nn.functional.embedding(ids, tangent) * factor.unsqueeze(-1).to(tangent.dtype)


def _call_inputs(modules) -> dict:
    """id(module) -> how its rule's input is found from its call, as the PEF plan has them: an embedding
    that computes its own indices (BART's decoder positions, shared by the batch's examples) is read
    through the rows it really looked up, and so per example; it was left out (18% of a BART component)."""
    rules = {id(m): rule_for(m) for m in modules}
    return {key: rule.input_from_call for key, rule in rules.items() if hasattr(rule, "input_from_call")}


def token_scores(
    model: torch.nn.Module,
    decomposition,
    component: int,
    inputs: Inputs,
    *,
    top_k_classes: int | None = None,
    batch_size: int = 16,
    device: str | torch.device | None = None,
) -> list[TokenScores]:
    """Token scores of ``component`` for every example (row) of ``inputs``.

    ``inputs`` must be a dict with ``input_ids`` (and ``attention_mask`` for padding);
    each result covers the example's unpadded tokens (those the mask keeps), in order.
    """
    if not isinstance(inputs, Mapping) or "input_ids" not in inputs:
        raise TypeError("token_scores needs tokenized inputs: a dict with input_ids (and attention_mask)")
    check_model(model, inputs)  # weights, token ids and lengths the model holds, as the PEFs checked them
    if top_k_classes is not None:
        top_k_classes = positive_int(top_k_classes, "top_k_classes")
    if hasattr(decomposition, "check_model"):  # a fitted estimator: another model's scores would read as this one's
        decomposition.check_model(model, "the decomposition")
    batch_size = positive_int(batch_size, "batch_size")
    device = run_device(model, device)
    model.to(device)
    layout = decomposition.layout_
    params = parameters_of(model, layout)
    direction = layout.split(decomposition.component(component))
    owners = _owning_modules(model, params)
    placement = _placements(model)
    left_out: set[str] = set()  # the types of the layers called with more than their input
    left_out_params: set[int] = set()
    results: list[TokenScores] = []
    with _FORWARD_AD, pef_mode(model), differentiable(params):  # under a caller's no_grad every score was 0
        expand, fold, unpadded = set(), set(), False
        call_inputs = _call_inputs([m for m, _ in owners])
        for start in range(0, n_inputs(inputs), batch_size):
            batch = slice_inputs(inputs, start, min(start + batch_size, n_inputs(inputs)), device)
            if start == 0:  # the PEF runs' checks: which layers have an example axis, whether padding leaks
                expand, unbatched, fold = layer_batching(model, [m for m, _ in owners], batch, call_inputs, different=batch)
                left_out_params.update(i for m, attrs in owners if id(m) in unbatched for i in attrs.values())
                owners = [(m, attrs) for m, attrs in owners if id(m) not in unbatched]
                unpadded = padding_changes_outputs(model, batch, warn=False, remember=True)
            # Where padding changes the outputs (a convolution over it, absolute positions under left
            # padding), each example is scored as alone, as its PEF was computed (fisher.checks).
            scored: list[TokenScores | None] = [None] * n_inputs(batch)
            for rows, part in groups_as_computed(batch, unpadded):
                for row, score in zip(rows.tolist(), _batch_scores(model, part, owners, params, layout, direction,
                                                                    top_k_classes, (expand, fold, call_inputs),
                                                                    placement, left_out)):
                    scored[row] = score
            results.extend(scored)
    left_out_params.update(i for m, attrs in owners if type(m).__name__ in left_out for i in attrs.values())
    if left_out_params:
        names = sorted(layout.names[i] for i in left_out_params)
        share = _share_of(direction, names)
        for score in results:
            score.left_out_share, score.left_out = share, tuple(names)
        _warn_left_out(model, names, share)
    return results


def _warn_left_out(model, names: list[str], share: float) -> None:
    """Says, once per model and set of layers, which parameters the token scores leave out (no batch axis,
    called time-major, or with more than their input, as a mixture's experts)."""
    warned = _WARNED_LEFT_OUT.setdefault(model, set())
    if share < LEFT_OUT_NOTED or tuple(names) in warned:
        return
    warned.add(tuple(names))
    logger.warning("%d parameters cannot be read per token and are left out of the token scores (e.g. %s; %.0f%% of "
                   "this component's ‖g‖²): the shares are of the rest of its mass", len(names), ", ".join(names[:3]),
                   100 * share)


def _share_of(direction: Mapping, names: list[str]) -> float:
    """The share of the direction's squared norm in the parameters ``names``."""
    squares = {name: float((np.asarray(value, dtype=np.float64) ** 2).sum()) for name, value in direction.items()}
    total = sum(squares.values())
    return sum(squares[n] for n in names) / total if total > 0 else 0.0


def _placements(model):
    """Where a layer call's flow is credited: ``"head"`` for the classification head, the modules outside
    transformers' base model (GPT-2's score is applied at every position and read at the last: its
    share went to the last token, which then read as 98% of the words; a language model's lm_head
    likewise), ``"decoder"`` for an encoder-decoder's decoder (its position t reads token t − 1), else
    ``"tokens"``."""
    decoder_call = _decoder_calls(model)
    head = _head_modules(model)

    def placement(capture, input_ids) -> str:
        if id(capture.module) in head:
            return "head"
        return "decoder" if decoder_call is not None and decoder_call(capture, input_ids) else "tokens"

    return placement


def _head_modules(model) -> set[int]:
    """The modules of ``model`` outside its body (transformers' ``base_model``; a zero-shot classifier's
    language model's); none for a model without one."""
    inner = getattr(model, "lm", model)
    body = getattr(inner, "base_model", None) if isinstance(inner, torch.nn.Module) else None
    if not isinstance(body, torch.nn.Module) or body is inner:
        return set()
    in_body = {id(m) for m in body.modules()}
    return {id(m) for m in model.modules() if id(m) not in in_body}


def _decoder_calls(model):
    """For an encoder-decoder (T5's or BART's sequence classifier, whose decoder reads the input
    shifted right), a test of whether a layer call was the decoder's; None for other models."""
    if not getattr(getattr(model, "config", None), "is_encoder_decoder", False) or not hasattr(model, "get_decoder"):
        return None
    decoder = {id(m) for m in model.get_decoder().modules()}
    encoder = {id(m) for m in model.get_encoder().modules()} if hasattr(model, "get_encoder") else set()

    def is_decoder_call(capture, input_ids: torch.Tensor) -> bool:
        if id(capture.module) not in decoder:
            return False
        if id(capture.module) not in encoder:
            return True
        # a layer both stacks call (T5's shared embedding): the decoder's call reads the shifted ids
        read = capture.layer_input
        return not (read.shape == input_ids.shape and torch.equal(read, input_ids))

    return is_decoder_call


def _batch_scores(model, batch, owners, params, layout, direction, top_k_classes, calls, placement,
                  left_out: set[str]) -> list[TokenScores]:
    """The batch's token scores; ``calls``: the layers' (expand, fold, call_inputs) of ``CaptureLayers``."""
    expand, fold, call_inputs = calls
    b, length = batch["input_ids"].shape[:2]
    with CaptureLayers([m for m, _ in owners], b, expand, fold, call_inputs, positions=length) as capture:
        logits = class_logits(model, batch)
    log_probs = torch.log_softmax(logits.float(), dim=-1)
    classes = slot_classes(log_probs.detach(), top_k_classes)
    sqrt_p = torch.exp(0.5 * log_probs.detach().gather(1, classes))  # (b, k)
    grads = output_gradients(log_probs, classes, [c.output for c in capture.captures])
    k = classes.shape[1]
    per_position = torch.zeros((k, b, length), dtype=torch.float64, device=logits.device)
    head = torch.zeros((k, b), dtype=torch.float64, device=logits.device)
    owned = dict((id(m), attrs) for m, attrs in owners)
    for cap, g in zip(capture.captures, grads):
        attrs = owned[id(cap.module)]
        tangents = {
            a: torch.as_tensor(direction[layout.names[i]], dtype=params[i].dtype, device=params[i].device)
            for a, i in attrs.items()
        }
        try:
            if id(cap.module) in call_inputs:
                change = _looked_up_change(cap.layer_input, tangents["weight"])  # (b, ...)
            else:
                change = _output_change(cap.module, cap.layer_input, tangents)
        except TypeError:  # a layer called with more than its input (a mixture's experts, with their routing)
            left_out.add(type(cap.module).__name__)
            continue
        if g.shape[1] != b:  # examples × positions folded into one axis (OPT): unfolded like the input
            g = g.reshape(g.shape[0], b, -1, *g.shape[2:])
        flow = (g.double() * change.double().unsqueeze(0))  # (k, b, ...)
        if flow.ndim >= 4 and flow.shape[2] > length and not bool(flow[:, :, length:].any()):
            flow = flow[:, :, :length]  # positions the model padded on itself (Longformer, to its window): no flow
        where = placement(cap, batch["input_ids"])
        if where != "head" and flow.ndim >= 4 and flow.shape[2] == length:  # (k, b, positions, features...)
            flow = flow.reshape(k, b, length, -1).sum(dim=-1)
            if where == "decoder":
                # the decoder's position t reads token t − 1; its position 0 reads the start token, no
                # token of the text, and counts with the head
                head += flow[:, :, 0]
                flow = torch.nn.functional.pad(flow[:, :, 1:], (0, 1))
            per_position += flow
        else:
            head += flow.reshape(k, b, -1).sum(dim=-1)
    per_position *= sqrt_p.T.double()[:, :, None]
    head *= sqrt_p.T.double()
    projection = per_position.sum(dim=2) + head  # (k, b): a_s · g
    mass = (projection**2).sum(dim=0)  # (b,)
    scores = (projection[:, :, None] * per_position).sum(dim=0) / mass.clamp_min(1e-300)[:, None]
    head_share = (projection * head).sum(dim=0) / mass.clamp_min(1e-300)
    mask = batch.get("attention_mask")
    # The mask, not a length, picks each example's tokens: prompts for language models are
    # padded on the left (workbench.models.lm), classifier inputs usually on the right.
    real = mask.bool().cpu() if mask is not None else torch.ones((b, length), dtype=torch.bool)
    scores, head_share, mass = scores.cpu(), head_share.cpu(), mass.cpu()
    return [TokenScores(scores[i][real[i]].numpy(), float(head_share[i]), float(mass[i])) for i in range(b)]
