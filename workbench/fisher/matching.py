"""Which rule serves a layer: by exact type, or by what the layer computes.

A layer of a type in ``PER_EXAMPLE_RULES`` gets that type's rule. Any other layer may
still compute what a rule assumes: a subclass of ``nn.Linear`` or ``nn.Embedding``, the
RMS normalisations every transformers family defines for itself (``LlamaRMSNorm``,
``T5LayerNorm``, Gemma's 1 + w variant), BART's and Gemma's scaled word embeddings. For
those (and embeddings whose forward computes its own indices, BART's and OPT's learned
positions) a candidate rule is tried on a small random input and its per-example gradients
compared with autograd's; only a rule that reproduces them serves the layer. A layer
whose forward does something else (a different signature, another formula) fails the
check and keeps the exact loop, as a layer with no rule does. So does a layer of a rule's
exact type whose own parameters are not those the rule computes (torch's old
``weight_norm`` gives a Linear ``weight_g`` and ``weight_v`` for its weight): only that
layer leaves its rule, not the model's other layers.
"""

from __future__ import annotations

import weakref

import torch
from torch import nn

from .rules import PER_EXAMPLE_RULES, BlockGradient, PerExampleRule, lookup_embedding_rule, rms_norm_rule, scaled_embedding_rule

# The check's tolerance, relative to the largest gradient entry (float32 rounding is ~1e-7).
CHECK_RTOL = 1e-4
_verdicts: "weakref.WeakKeyDictionary[nn.Module, PerExampleRule | None]" = weakref.WeakKeyDictionary()


def rule_for(module: nn.Module) -> PerExampleRule | None:
    """The rule for ``module``'s own parameters, or None (the loop serves them)."""
    own = {name for name, _ in module.named_parameters(recurse=False)}
    rule = PER_EXAMPLE_RULES.get(type(module))
    if rule is not None and own <= getattr(rule, "parameters", own):
        return rule
    if not own:
        return None
    if module not in _verdicts:
        _verdicts[module] = next((r for r in candidates(module) if reproduces(module, r)), None)
    return _verdicts[module]


def candidates(module: nn.Module) -> list[PerExampleRule]:
    """Rules that may fit ``module``, to be checked, most specific first."""
    found = []
    if isinstance(module, nn.Embedding) and hasattr(module, "embed_scale"):
        found.append(scaled_embedding_rule)
    found += [rule for base, rule in PER_EXAMPLE_RULES.items() if isinstance(module, base)]
    if isinstance(module, nn.Embedding) and module.weight.ndim == 2 and module.weight.shape[1] >= 2:
        found.append(lookup_embedding_rule)  # a forward that computes its own indices (learned positions)
    own = dict(module.named_parameters(recurse=False))
    if list(own) == ["weight"] and own["weight"].ndim == 1 and rms_norm_rule not in found:
        found.append(rms_norm_rule)  # a layer whose one parameter is a vector: maybe an RMS norm
    return found


def sample_input(module: nn.Module, scale: float, generator: torch.Generator) -> torch.Tensor | None:
    """A batch of 2 examples × 3 positions this layer could be given, or None if unknown."""
    weight = getattr(module, "weight", None)
    if not isinstance(weight, torch.Tensor):
        return None
    if isinstance(module, nn.Embedding):  # 0s and 1s: ids, or a mask for a forward that counts positions (OPT)
        return torch.randint(0, min(2, module.num_embeddings), (2, 3), generator=generator).to(weight.device)
    if isinstance(module, nn.Linear):
        width = (module.in_features,)
    elif weight.ndim == 1:
        width = tuple(getattr(module, "normalized_shape", weight.shape))
    elif weight.ndim == 2:  # GPT-2's Conv1D stores (in, out)
        width = (weight.shape[0],)
    else:
        return None
    x = scale * torch.randn((2, 3, *width), generator=generator, dtype=torch.float64)
    return x.to(device=weight.device, dtype=weight.dtype)


def reproduces(module: nn.Module, rule: PerExampleRule) -> bool:
    """Whether ``rule`` gives ``module``'s per-example gradients, on random inputs at two
    scales (the small one makes an RMS norm's ε count, so a wrong ε fails)."""
    generator = torch.Generator().manual_seed(0)
    was_training = module.training
    module.eval()
    try:
        return all(_reproduces_on(module, rule, scale, generator) for scale in (1.0, 1e-3))
    except Exception:  # a forward or rule that cannot take the sample: not this rule
        return False
    finally:
        module.train(was_training)


def _reproduces_on(module, rule, scale, generator) -> bool:
    x = sample_input(module, scale, generator)
    if x is None:
        return False
    own = dict(module.named_parameters(recurse=False))
    with torch.enable_grad():
        out = module(x)
        if not isinstance(out, torch.Tensor) or out.shape[0] != x.shape[0]:
            return False
        g = torch.randn(out.shape, generator=generator, dtype=torch.float64).to(out)
        from_call = getattr(rule, "input_from_call", None)
        grads = rule(module, x if from_call is None else from_call(module, (x,), {}), g.unsqueeze(0))
        if set(grads) != set(own):
            return False
        for i in range(x.shape[0]):
            truth = torch.autograd.grad((module(x[i : i + 1]) * g[i : i + 1]).sum(), list(own.values()), allow_unused=True)
            for (name, p), expected in zip(own.items(), truth):
                block = grads[name]
                got = (block.dense(slice(i, i + 1)) if isinstance(block, BlockGradient) else block[:, i : i + 1]).reshape(-1)
                expected = torch.zeros_like(p) if expected is None else expected
                if got.shape != expected.reshape(-1).shape:
                    return False
                tolerance = CHECK_RTOL * max(float(expected.abs().max()), 1e-30)
                if float((got.double() - expected.reshape(-1).double()).abs().max()) > tolerance:
                    return False
    return True
