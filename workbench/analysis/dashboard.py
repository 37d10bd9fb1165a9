"""The numbers of a per-component dashboard, as SAE dashboards show them (sae_vis, Neuronpedia).

For one component j:

- :func:`coefficient_histogram`: the distribution of W[:, j] over all examples (the
  positive coefficients binned; how many examples are exactly 0 is counted apart, since
  NPEFF's coefficients are sparse and the zeros would flatten every other bar);
- :func:`logit_change`: which class the direction pushes toward: the mean change of each
  class's log-probability on the top examples when θ moves to θ ± ε ĝ;
- :func:`token_table`: the tokens that carry (or cancel) the component, aggregated over its
  top examples (token → mean visible-token share, count);
- :func:`nearest_components`: the components whose directions are closest, |cos| of g.

The perturbation sweep at a glance is ``perturb.epsilon_sweep``'s frame.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd
import torch

from ..core.arguments import component_index, positive_int
from ..core.validation import check_model
from ..fisher.inputs import Inputs, n_inputs, pef_mode
from .moves import perturbation_direction, perturbed
from .perturb import log_probabilities, padding_matters


def coefficient_histogram(coefficients: np.ndarray, n_bins: int = 30) -> tuple[pd.DataFrame, int]:
    """(frame of bins: left, right, count, over the positive coefficients; the number of zero coefficients)."""
    n_bins = positive_int(n_bins, "n_bins")  # numpy's "`bins` must be positive, when an integer" named no argument
    values = np.asarray(coefficients, dtype=np.float64)
    bad = int(np.sum(~np.isfinite(values)))
    if bad:  # a NaN fell out of both the bins and the zeros without a word, and an inf failed in numpy's histogram
        raise ValueError(f"coefficients must be finite, as a fit's W is; {bad} of {values.size} are NaN or infinite: "
                         "pass a column of the fit's own W (a fit whose loss went NaN or inf is to be fitted again)")
    positive = values[values > 0]
    n_zero = int(np.sum(values <= 0))
    if len(positive) == 0:
        return pd.DataFrame({"left": [], "right": [], "count": []}), n_zero
    counts, edges = np.histogram(positive, bins=n_bins)
    return pd.DataFrame({"left": edges[:-1], "right": edges[1:], "count": counts.astype(np.int64)}), n_zero


def nearest_components(components: np.ndarray, component: int, n: int = 5) -> pd.DataFrame:
    """The ``n`` other components of largest |cos| with ``component``'s direction, largest first."""
    G = np.asarray(components, dtype=np.float64)
    component, n = component_index(component, len(G)), positive_int(n, "n")  # -1 read the last one, n=-1 all but one
    norms = np.linalg.norm(G, axis=1)
    units = G / np.maximum(norms, 1e-300)[:, None]
    cos = np.abs(units @ units[component])
    cos[component] = -np.inf
    cos[norms == 0] = -np.inf  # a zero component has no direction to be near
    order = np.argsort(-cos, kind="stable")[:n]
    order = order[np.isfinite(cos[order])]
    return pd.DataFrame({"component": order, "cos": cos[order]}).set_index("component")


def logit_change(model: torch.nn.Module, decomposition, component: int, inputs: Inputs, *, epsilon: float = 0.1,
                 class_names: dict | None = None, batch_size: int = 64) -> pd.DataFrame:
    """Mean change of each class's log-probability over ``inputs`` (the top examples) at θ ± ε ĝ.

    One row per class (index: class id, with its name when ``class_names`` has it), columns
    ``+`` and ``-``: the class whose log-probability rises at ``+`` is the class the direction
    pushes toward. The weights are restored afterwards (``perturb.perturbed``).
    """
    check_model(model, inputs)  # a model without weights failed in torch ("Tensor.item() cannot be called on meta tensors")
    device = next(model.parameters()).device
    direction = perturbation_direction(decomposition, component)
    rows = np.arange(n_inputs(inputs))
    with pef_mode(model):
        unpadded = padding_matters(model, inputs, rows, device, batch_size)
        original = log_probabilities(model, inputs, rows, batch_size=batch_size, device=device, unpadded=unpadded)
        change = {}
        for sign, factor in (("+", 1.0), ("-", -1.0)):
            with perturbed(model, decomposition.layout_, factor * epsilon * direction):
                moved = log_probabilities(model, inputs, rows, batch_size=batch_size, device=device, unpadded=unpadded)
                change[sign] = (moved - original).mean(dim=0).numpy()
    names = class_names or {}
    index = [f"{k} ({names[str(k)]})" if str(k) in names else str(k) for k in range(len(change["+"]))]
    return pd.DataFrame(change, index=pd.Index(index, name="class"))


def token_table(examples: Iterable[tuple[Sequence[str], np.ndarray]], n: int = 15) -> pd.DataFrame:
    """Tokens aggregated over examples given as (tokens, visible shares): per token its mean share over the
    examples that contain it (a token twice in one example counts with the sum of its shares), the count
    of those examples, and ``total`` = mean × count; ordered by |total| (a token strong in many examples
    first, whether it carries the component or cancels it)."""
    sums: dict[str, list[float]] = defaultdict(list)
    for tokens, shares in examples:
        per_example: dict[str, float] = defaultdict(float)
        for token, share in zip(tokens, shares):
            if share != 0:  # special tokens have share 0: not words of the text
                per_example[token] += float(share)
        for token, share in per_example.items():
            sums[token].append(share)
    rows = [{"token": t, "mean share": float(np.mean(v)), "count": len(v), "total": float(np.sum(v))}
            for t, v in sums.items()]
    frame = pd.DataFrame(rows, columns=["token", "mean share", "count", "total"])
    # by |total|: a word that cancels the component in many examples matters as much as one that carries it
    order = frame.assign(size=frame["total"].abs()).sort_values(["size", "token"], ascending=[False, True], kind="stable")
    return order.drop(columns="size").head(n).set_index("token")
