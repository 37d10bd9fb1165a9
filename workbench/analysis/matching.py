"""Matching the components of two decompositions: which component of B is which of A.

Two fits (two checkpoints, two models, two seeds) find their components in any order and
with any sign (an LRM component g and −g give the same g gᵀ), so they are compared by
|cos| between their directions in the full parameter space, and paired one to one by the
Hungarian method (``scipy.optimize.linear_sum_assignment``), which maximises the total
|cos| over all pairs rather than taking each component's best partner greedily (two
components of A could otherwise claim the same one of B).

Match quality: each pair's |cos|; a pair below ``min_cos`` is reported as unmatched, so a
component that has no counterpart is not forced onto whatever is left over.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from ..core.arguments import fraction

#: Pairs whose |cos| is below this are no match: for random directions in thousands of
#: dimensions |cos| is of order 1/√m, far below it.
DEFAULT_MIN_COS = 0.3


def full_components(decomposition) -> np.ndarray:
    """(n_components, n_parameters): every component placed back in parameter space (zeros where pruned)."""
    full = np.zeros((decomposition.components_.shape[0], decomposition.n_parameters_), dtype=np.float64)
    full[:, decomposition.kept_columns_] = decomposition.components_
    return full


def cosine_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(n_a, n_b): |cos| between the rows of ``a`` and of ``b`` (all-zero rows give 0)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape[1] != b.shape[1]:
        raise ValueError(
            f"the components have {a.shape[1]} and {b.shape[1]} parameters: only decompositions over the same "
            "parameter layout (same model architecture and parameter filter) can be matched"
        )
    na = np.linalg.norm(a, axis=1, keepdims=True)
    nb = np.linalg.norm(b, axis=1, keepdims=True)
    return np.abs((a / np.where(na > 0, na, 1)) @ (b / np.where(nb > 0, nb, 1)).T)


def match_components(a, b, *, min_cos: float = DEFAULT_MIN_COS) -> pd.DataFrame:
    """Pair the components of ``a`` with those of ``b`` one to one, maximising the total |cos|.

    ``a``, ``b``: fitted decompositions (their layouts must agree) or component matrices
    (n_components, n_parameters). Returns one row per component of ``a`` and per component
    of ``b`` left over: columns ``a``, ``b`` (component numbers, -1 where unmatched),
    ``cos`` (|cos| of the pair, or of the best partner when unmatched), ``matched``
    (|cos| ≥ ``min_cos``) and ``runner_up`` (the next best |cos| of ``a``'s component, so
    an ambiguous match shows).
    """
    fraction(min_cos, "min_cos")  # a |cos|: above 1 nothing would ever match
    for name, fit in (("a", a), ("b", b)):
        if isinstance(fit, BaseEstimator):  # an unfitted one was read as a matrix: float() of an estimator
            check_is_fitted(fit, msg=f"{name} is an unfitted {type(fit).__name__}; fit it first, or load a fitted one")
    if getattr(a, "kind", None) is not None and getattr(b, "kind", None) is not None and a.kind != b.kind:
        raise ValueError(f"a is a {a.kind} decomposition and b a {b.kind} one: their components live in other spaces "
                         "(gradient directions, diagonal Fishers); match fits of one kind")
    if hasattr(a, "components_") and hasattr(b, "components_"):
        if getattr(a, "layout_", None) is not None and getattr(b, "layout_", None) is not None and a.layout_ != b.layout_:
            raise ValueError(
                "the two decompositions were fitted over other parameters (their layouts differ); match components "
                "of models with the same architecture and parameter filter"
            )
        a, b = full_components(a), full_components(b)
    cos = cosine_matrix(a, b)
    rows, cols = linear_sum_assignment(-cos)
    records = []
    for i, j in zip(rows, cols):
        others = np.delete(cos[i], j)
        matched = bool(cos[i, j] >= min_cos)
        records.append({"a": int(i), "b": int(j) if matched else -1, "cos": float(cos[i, j]), "matched": matched,
                        "runner_up": float(others.max()) if others.size else 0.0})
    for i in sorted(set(range(cos.shape[0])) - set(rows)):  # more components in a than in b
        records.append({"a": int(i), "b": -1, "cos": float(cos[i].max(initial=0.0)), "matched": False,
                        "runner_up": 0.0})
    taken = {r["b"] for r in records if r["matched"]}
    for j in range(cos.shape[1]):
        if j not in taken:
            records.append({"a": -1, "b": int(j), "cos": float(cos[:, j].max(initial=0.0)), "matched": False,
                            "runner_up": 0.0})
    return pd.DataFrame(records, columns=["a", "b", "cos", "matched", "runner_up"])


def match_quality(matches: pd.DataFrame) -> dict:
    """Summary of a matching: pairs matched, their mean and lowest |cos|."""
    pairs = matches[matches["matched"]]
    return {
        "n_matched": int(len(pairs)),
        "n_unmatched_a": int(((matches["a"] >= 0) & ~matches["matched"]).sum()),
        "n_unmatched_b": int((matches["a"] < 0).sum()),
        "mean_cos": float(pairs["cos"].mean()) if len(pairs) else float("nan"),
        "min_cos": float(pairs["cos"].min()) if len(pairs) else float("nan"),
    }


class OnCoefficients:
    """A fit's components with other coefficients W (e.g. another model's, from ``transform``):
    what ``perturb.perturbation_table`` and ``tables.top_examples`` read of a decomposition."""

    def __init__(self, decomposition, W: np.ndarray):
        self.W_ = np.asarray(W)
        self.components_ = decomposition.components_
        self.kept_columns_ = decomposition.kept_columns_
        self.n_parameters_ = decomposition.n_parameters_
        self.layout_ = decomposition.layout_
        self.kind = decomposition.kind
