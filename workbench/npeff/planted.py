"""Planted problems: PEFs built exactly from known components, for checking a fit against truth."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from ..core.pefs import DPefs, LrmPefs


@dataclass
class PlantedProblem:
    pefs: LrmPefs | DPefs
    W: np.ndarray  # (n_examples, n_components), the coefficients before normalisation
    components: np.ndarray  # (n_components, n_parameters): g_j (LRM) or h_j (D)


def _planted_coefficients(rng, n_examples: int, n_components: int, max_active: int) -> np.ndarray:
    """Each example uses 1..max_active components, every component used by some examples."""
    W = np.zeros((n_examples, n_components))
    for i in range(n_examples):
        first = i % n_components  # covers every component
        others = rng.choice(n_components, size=rng.integers(0, max_active), replace=False)
        for j in {first, *others.tolist()}:
            W[i, j] = rng.uniform(0.5, 1.5)
    return W


def _planted_vectors(rng, n_components: int, n_parameters: int, density: float, non_negative: bool) -> np.ndarray:
    support = rng.random((n_components, n_parameters)) < density
    values = rng.random((n_components, n_parameters)) if non_negative else rng.standard_normal((n_components, n_parameters))
    return np.where(support, values, 0.0)


def planted_lrm(
    n_examples: int = 200,
    n_parameters: int = 500,
    n_components: int = 6,
    max_active: int = 2,
    density: float = 0.3,
    seed: int = 0,
) -> PlantedProblem:
    """LRM-PEFs with F_i = Σ_j W_ij g_j g_jᵀ exactly: A_i's columns are √W_ij g_j."""
    rng = np.random.default_rng(seed)
    W = _planted_coefficients(rng, n_examples, n_components, max_active)
    G = _planted_vectors(rng, n_components, n_parameters, density, non_negative=False)
    A = np.zeros((n_examples, max_active, n_parameters))
    for i in range(n_examples):
        for s, j in enumerate(np.flatnonzero(W[i])):
            A[i, s] = np.sqrt(W[i, j]) * G[j]
    return PlantedProblem(LrmPefs.from_dense(A), W, G)


def planted_d(
    n_examples: int = 200,
    n_parameters: int = 500,
    n_components: int = 6,
    max_active: int = 2,
    density: float = 0.3,
    seed: int = 0,
) -> PlantedProblem:
    """D-PEFs with f_i = Σ_j W_ij h_j exactly, h_j ≥ 0."""
    rng = np.random.default_rng(seed)
    W = _planted_coefficients(rng, n_examples, n_components, max_active)
    H = _planted_vectors(rng, n_components, n_parameters, density, non_negative=True)
    return PlantedProblem(DPefs.from_dense(W @ H), W, H)


def match_components(found: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pair each true component with a distinct found one maximising total |cos|.

    Returns (index of the found component for each true one, |cos| of each pair).
    """
    def unit(v):
        return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-30)

    cos = np.abs(unit(truth) @ unit(found).T)  # (n_true, n_found)
    rows, cols = linear_sum_assignment(-cos)
    order = np.argsort(rows)
    return cols[order], cos[rows[order], cols[order]]
