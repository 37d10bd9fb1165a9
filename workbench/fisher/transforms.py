"""Per-example gradients of parameters no rule covers, by ``torch.func`` rather than a loop.

Some parameters are used in ways no per-layer rule can see per example: DeBERTa reads
``rel_embeddings.weight`` without calling the layer and adds ``q_bias``/``v_bias`` itself;
MPNet's (and T5's) relative attention bias is an embedding whose output, (queries, keys,
heads), is shared by the whole batch. Their per-example gradients come here from PyTorch's
per-sample-gradients recipe: ``vmap`` over the batch's examples of ``jacrev`` of one
example's class log-probabilities, with only these parameters as arguments (the others
stay the model's own, held fixed). That is one batched forward and one batched backward
per slot instead of one of each per example, and it is the model's own computation, so
exact; the first batch's check (:mod:`.checks`) still compares it with the loop.

``vmap`` cannot run code whose control flow depends on tensor values, nor operators whose
output shape does (T5's classification head selects its EOS tokens with a boolean mask):
such a model raises here, and its parameters are tried over a sub-module (:mod:`.regions`).
The one such branch every transformers family takes, skipping the attention mask when no
token is padded, is turned off while ``vmap`` runs (:func:`mask_skipping_off`): the mask is
then always built, which gives the same attention.
"""

from __future__ import annotations

import contextlib
import sys
import warnings
from collections.abc import Mapping

import torch
from torch import nn

from .inputs import Inputs, class_logits

# transformers.masking_utils functions that look at the mask's values to skip building it
_MASK_SKIPS = ("_ignore_causal_mask_sdpa", "_ignore_bidirectional_mask_sdpa")


class _Logits(nn.Module):
    """The model as a module whose forward returns class logits, for ``functional_call``."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, batch: Inputs) -> torch.Tensor:
        return class_logits(self.model, batch)


def module_paths(model: nn.Module) -> dict[int, str]:
    """id(parameter) -> its path through the model's modules, which ``functional_call`` and
    ``named_modules`` know it by: a wrapper may name its parameters otherwise
    (``ZeroShotClassifier`` gives its language model's names, without ``lm.``)."""
    return {id(p): name for name, p in nn.Module.named_parameters(model, remove_duplicate=False)}


@contextlib.contextmanager
def no_vmap_fallback_warnings():
    """torch warns, asking to file an issue with PyTorch, when vmap runs an operator without a batching
    rule (T5's attention on the CPU, twice per run): the gradients are exact, only slower, and the
    warning is nothing a user of the workbench can act on."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="There is a performance drop because we have not yet implemented "
                                                  "the batching rule")
        yield


@contextlib.contextmanager
def mask_skipping_off():
    """While inside, transformers builds every attention mask rather than checking whether
    one is needed (a check on the mask's values, which ``vmap`` cannot run). Only a
    transformers already imported is touched, and the functions are restored on exit."""
    module = sys.modules.get("transformers.masking_utils")
    saved = {name: getattr(module, name) for name in _MASK_SKIPS if module is not None and hasattr(module, name)}
    try:
        for name in saved:
            setattr(module, name, _never_skip)
        yield
    finally:
        for name, function in saved.items():
            setattr(module, name, function)


def _never_skip(*args, **kwargs) -> bool:
    return False


def per_example_gradients(model: nn.Module, batch: Inputs, named: list[tuple[str, nn.Parameter]],
                          classes: torch.Tensor | None) -> list[torch.Tensor]:
    """For each parameter of ``named`` (names as in ``model.named_parameters()``), the batch's
    per-example gradients (r, b, *shape) in float32: of log p(y_is|x_i) for each slot s of
    ``classes`` (b, k), r = k; or, with ``classes`` None (a two-class model's factored slots,
    :func:`.gradients.two_class_gradient`), of log p(0|x_i) − log p(1|x_i), r = 1.

    Raises whatever ``vmap`` raises on the model's code (the caller falls back to the loop)."""
    wrapper = _Logits(model)
    path = module_paths(model)
    params = {path[id(p)]: p.detach() for _, p in named}
    b = _n_examples(batch)
    rows = torch.zeros((b, 1), dtype=torch.long, device=params[named[0][0]].device) if classes is None else classes

    def objectives(own: dict, example: Inputs, slots: torch.Tensor) -> torch.Tensor:
        one = {k: v.unsqueeze(0) for k, v in example.items()} if isinstance(example, Mapping) else example.unsqueeze(0)
        logits = torch.func.functional_call(wrapper, {"model." + n: p for n, p in own.items()}, (one,))
        log_probs = torch.log_softmax(logits.float(), dim=-1)[0]
        if classes is None:
            return (log_probs[0] - log_probs[1]).unsqueeze(0)
        return log_probs.gather(0, slots)

    example_batch = dict(batch) if isinstance(batch, Mapping) else batch
    # no_grad: nothing outside the transforms is recorded (the other parameters' graph);
    # torch.func.jacrev differentiates all the same
    with torch.no_grad(), mask_skipping_off(), no_vmap_fallback_warnings():
        grads = torch.func.vmap(torch.func.jacrev(objectives), in_dims=(None, 0, 0))(params, example_batch, rows)
    return [grads[path[id(p)]].float().transpose(0, 1) for _, p in named]  # (b, r, *shape) -> (r, b, *shape)


def _n_examples(batch: Inputs) -> int:
    return int((next(iter(batch.values())) if isinstance(batch, Mapping) else batch).shape[0])


def failure_reason(error: BaseException) -> str:
    """The first line of ``error``, for a warning."""
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"[:300]
