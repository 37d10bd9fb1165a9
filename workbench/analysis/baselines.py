"""Baselines NPEFF is compared with, scored by the same rules on the same examples.

Every method here ends as one array of shape (n_examples, n_components): how strongly
each component claims each example, non-negative and comparable across components.
:func:`score_components` reads any such array against a per-example strategy tag, so
NPEFF and the baselines are judged by one function (method notes, section 6):

- **NPEFF**: W_ij ‖g_j‖² (LRM) or W_ij ‖h_j‖ (D), the example's Fisher mass on component j.
- **k-means on gradients**: the gradient of the predicted class's log-probability,
  ∇θ log p(ŷ|x_i). It is computed by :func:`~workbench.compute_pefs` with
  ``top_k_classes=1`` (the exact batched path, tested against a plain autograd loop),
  which gives √p(ŷ|x_i) ∇θ log p(ŷ|x_i); the known factor √p is divided out. Rows are then
  scaled to unit norm, as NPEFF scales every PEF to unit norm, so clusters group gradient
  directions rather than gradient sizes (with unit rows the √p factor would cancel anyway;
  dividing it out keeps ``normalize=False`` the plain gradient). A hard clustering: an
  example's only non-zero coefficient is for its own cluster, 1 / (1 + its distance to the
  centroid), so a cluster's top examples are its most central members.
- **Dictionary learning on activations**: a final hidden state per example (BERT's [CLS]
  by default), centred, coded on a learned dictionary of unit-norm atoms with
  non-negative sparse codes (scikit-learn's ``DictionaryLearning``); the code
  of atom j is the coefficient.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from ..core.arguments import positive_int, seed_value
from ..core.device import run_device
from ..core.pefs import LrmPefs
from ..fisher.inputs import Inputs, n_inputs, pef_mode, slice_inputs
from ..runner.compute import compute_pefs
from .tables import chance_purity, purity, scaled_coefficients, top_examples

# ---------------------------------------------------------------------------------------
# Features and coefficients of each method
# ---------------------------------------------------------------------------------------


def npeff_coefficients(decomposition) -> np.ndarray:
    """(n_examples, n_components): W scaled as if every component had unit norm, i.e. the
    example's Fisher mass on each component."""
    return scaled_coefficients(decomposition.W_, decomposition.components_, decomposition.kind)


def predicted_class_gradients(pefs: LrmPefs) -> sp.csr_matrix:
    """(n_examples, n_parameters): ∇θ log p(ŷ|x_i), the PEFs' first slot divided by √p(ŷ|x_i).

    Exact where the PEFs kept every entry (``n_values=None``); otherwise the entries they
    kept. Use PEFs of one slot (``compute_pefs(model, inputs, top_k_classes=1)``, as
    :func:`baseline_coefficients` does): with several slots the kept entries are chosen over
    all of them together, and a confident model's first slot keeps few (its gradient is
    scaled by 1 − p(ŷ|x)); on the embedded default 660 of 8192 per example.
    """
    if not isinstance(pefs, LrmPefs):
        raise TypeError(f"gradients come from low-rank PEFs (LrmPefs), got {type(pefs).__name__}")
    if pefs.logits.shape[1] == 0:
        raise ValueError("these PEFs have no logits, so which slot is the predicted class is not known; compute them "
                         "with compute_pefs, or pass logits= to LrmPefs.from_dense")
    predicted = pefs.predictions
    # the predicted class's slot: first where compute_pefs orders slots by probability, but a slot per class in
    # class order (the original's files, from_dense) gave every example not predicting class 0 class 0's gradient
    holds = pefs.classes == predicted[:, None]
    if not holds.any(axis=1).all():
        raise ValueError("some examples' PEFs have no slot of their predicted class; compute them with top_k_classes=1")
    slot = holds.argmax(axis=1)
    rows = pefs.X[np.arange(pefs.n_examples) * pefs.n_slots + slot]
    logits = pefs.logits.astype(np.float64)
    log_p = logits - np.logaddexp.reduce(logits, axis=1, keepdims=True)
    log_p_top = log_p[np.arange(pefs.n_examples), predicted]
    return sp.diags(np.exp(-0.5 * log_p_top)) @ rows.astype(np.float64)


def _unit_rows(matrix):
    """Rows scaled to unit Euclidean norm (all-zero rows stay zero); dense or sparse."""
    squares = matrix.multiply(matrix).sum(axis=1) if sp.issparse(matrix) else (matrix**2).sum(axis=1)
    norms = np.sqrt(np.asarray(squares, dtype=np.float64)).ravel()
    scale = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
    return sp.diags(scale) @ matrix if sp.issparse(matrix) else matrix * scale[:, None]


def kmeans_coefficients(features, n_components: int, *, normalize: bool = True, n_init: int = 4, seed: int = 0) -> np.ndarray:
    """(n_examples, n_components): hard k-means membership, 1 / (1 + distance to the centroid).

    features: (n_examples, n_features), dense or scipy sparse (e.g. from
    :func:`predicted_class_gradients`); ``normalize`` scales rows to unit norm first.
    """
    from sklearn.cluster import KMeans

    X = _unit_rows(features) if normalize else features
    X = sp.csr_matrix(X, dtype=np.float64) if sp.issparse(X) else np.asarray(X, dtype=np.float64)
    if sp.issparse(X):
        # Columns no example touches add nothing to any distance, but k-means keeps its
        # centroids dense: on MiniLM (22.7 M parameters) that was 16 × 22.7 M per centroid set.
        X = X[:, np.unique(X.indices)]
    kmeans = KMeans(n_clusters=n_components, n_init=n_init, random_state=seed).fit(X)
    distance = kmeans.transform(X)[np.arange(X.shape[0]), kmeans.labels_]
    coefficients = np.zeros((X.shape[0], n_components))
    coefficients[np.arange(X.shape[0]), kmeans.labels_] = 1.0 / (1.0 + distance)
    return coefficients


@torch.no_grad()
def hidden_states(
    model: torch.nn.Module,
    inputs: Inputs,
    *,
    layer: int = -1,
    position: int = 0,
    batch_size: int = 64,
    device: str | torch.device | None = None,
) -> np.ndarray:
    """(n_examples, hidden_size): the hidden state of ``layer`` at token ``position`` (0 is
    BERT's [CLS], which its pooler and classifier read; -1 the last token of left-padded
    prompts), from ``output_hidden_states``."""
    device = run_device(model, device)
    model.to(device)
    rows = []
    with pef_mode(model), torch.no_grad():
        for start in range(0, n_inputs(inputs), batch_size):
            batch = slice_inputs(inputs, start, min(start + batch_size, n_inputs(inputs)), device)
            out = model(**batch, output_hidden_states=True) if isinstance(batch, Mapping) else model(batch, output_hidden_states=True)
            states = getattr(out, "hidden_states", None)
            if states is None:
                raise TypeError("the model returned no hidden_states; it must accept output_hidden_states=True")
            rows.append(states[layer][:, position].float().cpu().numpy())
    return np.concatenate(rows)


def dictionary_coefficients(activations: np.ndarray, n_components: int, *, alpha: float = 0.1, seed: int = 0) -> np.ndarray:
    """(n_examples, n_components): non-negative sparse codes of the centred activations on
    a learned dictionary of unit-norm atoms; ``alpha`` is the L1 weight relative to the
    activations' mean squared norm (so it does not depend on their scale)."""
    from sklearn.decomposition import DictionaryLearning
    from sklearn.exceptions import ConvergenceWarning

    X = np.asarray(activations, dtype=np.float64)
    X = X - X.mean(axis=0)
    X = X / np.sqrt((X**2).sum(axis=1).mean())  # mean squared norm 1
    # Full batch, not mini-batch: a few thousand activations of a few hundred dimensions fit
    # in seconds, and on planted atoms the mini-batch fit merged two atoms in 2 of 5 seeds.
    # 60 iterations: on the embedded default, 30 or 100 moved no score by more than 0.02.
    learner = DictionaryLearning(
        n_components=n_components, alpha=alpha, transform_alpha=alpha, fit_algorithm="cd",
        transform_algorithm="lasso_cd", positive_code=True, max_iter=60, random_state=seed,
    )
    with warnings.catch_warnings():
        # Coordinate descent stops at max_iter with a duality gap far below the codes' scale;
        # scikit-learn warns once per example, which would bury the user's output.
        warnings.simplefilter("ignore", ConvergenceWarning)
        return learner.fit(X).transform(X)


# ---------------------------------------------------------------------------------------
# Scoring any method by one rule
# ---------------------------------------------------------------------------------------


def _as_tags(strategies: Sequence) -> list[tuple]:
    return [tuple(s) if isinstance(s, (tuple, list, np.ndarray)) else (s,) for s in strategies]


def component_strategies(coefficients: np.ndarray, strategies: Sequence, n_top: int = 20) -> pd.DataFrame:
    """One row per component: its top set's size, majority strategy and purity (a multi-
    factor example counts for each of its strategies, as in :func:`workbench.analysis.purity`)."""
    tags = _as_tags(strategies)
    rows = []
    for j in range(coefficients.shape[1]):
        top = top_examples(coefficients, j, n_top)
        strategy, share = purity([tags[i] for i in top])
        rows.append({"component": j, "n_top": len(top), "strategy": strategy, "strategy_purity": share})
    return pd.DataFrame(rows).set_index("component")


def explaining_components(coefficients: np.ndarray, n_explaining: int = 2) -> list[np.ndarray]:
    """For every example, the (up to) ``n_explaining`` components with its largest positive
    coefficients, largest first. A hard clustering gives one."""
    order = np.argsort(-coefficients, axis=1, kind="stable")[:, :n_explaining]
    return [row[coefficients[i, row] > 0] for i, row in enumerate(order)]


def score_components(
    coefficients: np.ndarray,
    strategies: Sequence,
    *,
    n_top: int = 20,
    n_explaining: int = 2,
    all_strategies: Sequence[str] | None = None,
) -> dict:
    """How one method's components line up with known strategies.

    coefficients: (n_examples, n_components), non-negative, comparable across components.
    strategies: per example, a strategy or a tuple of them (multi-factor examples).

    Returns ``mean_strategy_purity`` (over components, of their top ``n_top`` examples),
    ``strategies_covered`` (how many of ``all_strategies`` are the majority of at least one
    component; default: every single strategy that occurs), and for the multi-factor
    examples (those with two or more strategies): ``multi_factor_one_found`` /
    ``multi_factor_both_found``, the share of them whose explaining components (see
    :func:`explaining_components`) have majority strategies that include at least one / all
    of the example's strategies, and the same two figures for each multi-factor kind
    (``"contrast+negation_one_found"``, ...). Each component names one strategy, its majority, so a
    hard clustering can never find both.
    """
    coefficients = np.asarray(coefficients, dtype=np.float64)
    tags = _as_tags(strategies)
    if coefficients.ndim != 2 or coefficients.shape[0] != len(tags):
        raise ValueError(
            f"coefficients has shape {coefficients.shape} but there are {len(tags)} strategy tags; "
            "pass one row of coefficients per example, in the same order"
        )
    if (coefficients < 0).any():
        raise ValueError("coefficients must be non-negative (a component's claim on an example)")
    table = component_strategies(coefficients, tags, n_top)
    named = table["strategy"].to_numpy()
    known = sorted({s for t in tags if len(t) == 1 for s in t}) if all_strategies is None else list(all_strategies)
    covered = sorted(set(named) & set(known))
    multi = [i for i, t in enumerate(tags) if len(t) > 1]
    explaining = explaining_components(coefficients, n_explaining)
    found = [set(tags[i]) & {named[j] for j in explaining[i]} for i in multi]
    by_kind = {}  # "contrast+negation": (one found, both found) over that kind's examples
    for kind in sorted({"+".join(tags[i]) for i in multi}):
        mine = [(f, i) for f, i in zip(found, multi) if "+".join(tags[i]) == kind]
        by_kind[kind] = (float(np.mean([len(f) >= 1 for f, _ in mine])),
                         float(np.mean([len(f) == len(set(tags[i])) for f, i in mine])))
    return {
        "n_components": coefficients.shape[1],
        "mean_strategy_purity": float(table["strategy_purity"].mean()),
        "chance_strategy_purity": chance_purity(tags, n_top),
        "min_strategy_purity": float(table["strategy_purity"].min()),
        "strategies_covered": len(covered),
        "n_strategies": len(known),
        "covered": ", ".join(covered),
        "n_multi_factor": len(multi),
        "multi_factor_one_found": float(np.mean([len(f) >= 1 for f in found])) if multi else float("nan"),
        "multi_factor_both_found": float(np.mean([len(f) == len(set(tags[i])) for f, i in zip(found, multi)])) if multi else float("nan"),
        **{f"{kind}_one_found": one for kind, (one, _) in by_kind.items()},
        **{f"{kind}_both_found": both for kind, (_, both) in by_kind.items()},
    }


def compare_methods(methods: Mapping[str, np.ndarray], strategies: Sequence, **kwargs) -> pd.DataFrame:
    """:func:`score_components` for every method: one row per method, same rules for all."""
    return pd.DataFrame([{"method": name, **score_components(c, strategies, **kwargs)} for name, c in methods.items()]).set_index("method")


def baseline_coefficients(
    model: torch.nn.Module,
    inputs: Inputs,
    decomposition,
    *,
    gradients=None,
    n_values: int | None = None,
    alpha: float = 0.1,
    seed: int = 0,
    batch_size: int = 32,
    device: str | torch.device | None = None,
    progress: bool = True,
) -> dict[str, np.ndarray]:
    """{method: (n_examples, n_components)} for NPEFF and both baselines, on the examples the
    decomposition was fitted on (``inputs``, in the same order) and with its number of components.

    gradients: (n_examples, n_parameters) predicted-class gradients if already computed;
        otherwise they are computed with ``compute_pefs(top_k_classes=1, n_values=n_values)``
        over the parameters the decomposition covers, ``n_values`` defaulting to the
        decomposition's PEFs' own, so k-means sees the same parameters and as many entries
        per example as NPEFF did.
    """
    if not hasattr(decomposition, "check_model"):
        raise TypeError(f"decomposition must be a fitted LrmNpeff or DNpeff, got {type(decomposition).__name__}")
    decomposition.check_model(model, "the decomposition")  # baselines of another model would compare nothing
    # the baselines' settings, before the PEFs they are fitted to (scikit-learn would name its own estimators)
    seed_value(seed)
    positive_int(batch_size, "batch_size")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float, np.number)) or not 0 < alpha < np.inf:
        raise ValueError(f"alpha (dictionary learning's sparsity penalty) must be a positive number, got {alpha!r}")
    if gradients is not None and (np.ndim(gradients) != 2 or not np.isfinite(np.asarray(gradients)).all()):
        raise ValueError(f"gradients must be a finite (n_examples, n_parameters) array, got shape {np.shape(gradients)}")
    n_examples, r = decomposition.W_.shape
    if n_inputs(inputs) != n_examples:
        raise ValueError(
            f"the decomposition was fitted on {n_examples} examples but {n_inputs(inputs)} inputs were passed; "
            "pass the inputs of the examples it was fitted on, in the same order"
        )
    if gradients is None:
        n_values = getattr(decomposition, "pef_info_", {}).get("n_values") if n_values is None else n_values
        # The parameters the decomposition covers, by exact name: k-means sees NPEFF's scope.
        include = [f"^{re.escape(name)}$" for name in decomposition.layout_.names]
        pefs = compute_pefs(
            model, inputs, top_k_classes=1, n_values=n_values, include=include, batch_size=batch_size, device=device,
            progress=progress,
        )
        gradients = predicted_class_gradients(pefs)
    elif gradients.shape[0] != n_examples:
        raise ValueError(f"gradients has {gradients.shape[0]} rows; expected one per example ({n_examples})")
    return {
        "NPEFF": npeff_coefficients(decomposition),
        "k-means on gradients": kmeans_coefficients(gradients, r, seed=seed),
        "dictionary learning on activations": dictionary_coefficients(
            hidden_states(model, inputs, batch_size=batch_size, device=device), r, alpha=alpha, seed=seed
        ),
    }


def baseline_comparison(
    model: torch.nn.Module,
    inputs: Inputs,
    decomposition,
    strategies: Sequence,
    *,
    n_top: int = 20,
    n_explaining: int = 2,
    **kwargs,
) -> pd.DataFrame:
    """NPEFF beside k-means on gradients and dictionary learning on activations: one row per
    method, scored by :func:`score_components`. ``kwargs`` go to :func:`baseline_coefficients`."""
    methods = baseline_coefficients(model, inputs, decomposition, **kwargs)
    return compare_methods(methods, strategies, n_top=n_top, n_explaining=n_explaining)
