"""Moving a model's weights along a component, and back bit for bit.

The direction of component j is ĝ = g_j / ‖g_j‖ placed back in parameter space (zeros where
pruned), optionally first semi-orthogonalised against the other components. :func:`perturbed`
moves the parameters to θ + δ within a block and restores them from a saved copy afterwards,
also when the block is interrupted (an exception or KeyboardInterrupt): copying the original
tensors back, rather than subtracting δ again, leaves them bit for bit as they were. The
perturbation checks, the trace and the dashboards move weights through here.
"""

from __future__ import annotations

import contextlib
import logging
import weakref

import numpy as np
import torch

from ..core.arguments import component_index
from ..core.params import ParameterLayout

logger = logging.getLogger(__name__)


def perturbation_direction(decomposition, component: int, max_sim: float | None = None) -> np.ndarray:
    """Unit-norm direction of ``component`` in the full parameter space (n_parameters,).

    With ``max_sim``, the other components whose |cos| with g_j is below ``max_sim`` are
    projected out first (semi-orthogonalisation), so the direction does not also move the
    model along components that merely overlap with this one; components more similar than
    ``max_sim`` are kept, since removing them would remove most of g_j itself.
    """
    G = np.asarray(decomposition.components_, dtype=np.float64)  # (r, kept)
    component = component_index(component, len(G))
    g = G[component]
    norm = np.linalg.norm(g)
    if norm == 0:
        raise ValueError(f"component {component} is all zeros: it has no direction to perturb along")
    if max_sim is not None:
        units = G / np.maximum(np.linalg.norm(G, axis=1, keepdims=True), 1e-30)
        cos = np.abs(units @ units[component])
        others = [k for k in range(len(G)) if k != component and cos[k] < max_sim and np.any(G[k])]
        if others:
            basis, _ = np.linalg.qr(G[others].T)  # orthonormal basis of their span, (kept, q)
            g = g - basis @ (basis.T @ g)
            norm = np.linalg.norm(g)
            if norm == 0:
                raise ValueError(f"component {component} lies in the span of the others; raise max_sim")
    full = np.zeros(decomposition.n_parameters_, dtype=np.float64)
    full[decomposition.kept_columns_] = g / norm
    return full


def parameters_of(model: torch.nn.Module, layout: ParameterLayout) -> list[torch.nn.Parameter]:
    params = dict(model.named_parameters())
    missing = [n for n in layout.names if n not in params]
    if missing:
        raise ValueError(
            f"the model has no parameters named {missing[:3]}: the decomposition was made for another model "
            "or parameter filter"
        )
    wrong = [n for n, s in zip(layout.names, layout.shapes) if tuple(params[n].shape) != tuple(s)]
    if wrong:
        raise ValueError(f"parameters {wrong[:3]} have other shapes than when the PEFs were computed")
    return [params[n] for n in layout.names]


@contextlib.contextmanager
def differentiable(params: list[torch.nn.Parameter]):
    """Within the block every one of ``params`` requires a gradient, as when the PEFs covered it; frozen ones are
    frozen again on exit. A layer whose weights were frozen after the fit (requires_grad=False) has an output
    autograd does not track, so its share of a component was dropped from the token scores without a word."""
    frozen = [p for p in params if not p.requires_grad]
    try:
        for p in frozen:
            p.requires_grad_(True)
        yield
    finally:
        for p in frozen:
            p.requires_grad_(False)


@contextlib.contextmanager
def perturbed(model: torch.nn.Module, layout: ParameterLayout, delta: np.ndarray):
    """Within the block the model's parameters are θ + delta (delta on the layout's flat axis).

    On exit, normal or not, every parameter is restored bit for bit from a saved copy, also when
    an interrupt (Ctrl-C, a notebook's "Interrupt kernel") arrives during the restore: the restore
    finishes, then the interrupt is raised. A loop of copies stopped part-way left 26 tensors at
    θ + εĝ, and every later reading of the session silently used them. Should an interrupt land
    where no restore can follow it (as the restore begins), the copy stays recorded for the model,
    and :func:`restore_pending` (the next perturbation, the explorer's next reading) puts it back.
    """
    restore_pending(model)
    params = parameters_of(model, layout)
    pieces = layout.split(np.asarray(delta))
    saved = [p.detach().clone() for p in params]
    _PENDING[model] = (params, saved)
    try:
        with torch.no_grad():
            for p, name in zip(params, layout.names):
                p.add_(torch.as_tensor(pieces[name], dtype=p.dtype, device=p.device))
        yield model
    finally:
        _restore(params, saved)
        _PENDING.pop(model, None)


#: {model: (its perturbed parameters, their saved values)} while a perturbation is in force.
_PENDING: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def restore_pending(model: torch.nn.Module) -> None:
    """Put back the weights of a perturbation an interrupt left in force (see :func:`perturbed`)."""
    pending = _PENDING.pop(model, None)
    if pending is not None:
        _restore(*pending)
        logger.warning("restored the weights a perturbation left moved when it was interrupted")


def _restore(params: list[torch.Tensor], saved: list[torch.Tensor]) -> None:
    """Copy ``saved`` back into ``params``, all of them, before an exception that arrives meanwhile (an
    interrupt, or whatever a signal handler raises). One call copies them all: Python runs signal
    handlers between its own steps, so none lands between two copies, and one that lands before the
    call has them copied again before it is raised."""
    try:
        with torch.no_grad():
            torch._foreach_copy_(params, saved)  # one C call (torch's optimizers use it), not a Python loop
    except BaseException:
        with torch.no_grad():
            torch._foreach_copy_(params, saved)
        raise
