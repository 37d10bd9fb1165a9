"""LRM-NPEFF of sketched PEFs, back on the parameter axis.

PEFs sketched by a count sketch S (d × m, :mod:`workbench.core.sketch`) are fitted by
:class:`~workbench.npeff.LrmNpeff` unchanged: their axis is the sketch's d coordinates,
and S F_i Sᵀ = Σ_j W_ij g̃_j g̃_jᵀ is an LRM problem like any other. Its components g̃_j
are sketches; perturbation checks and token highlights need them on the parameters.

The way back is the fit's own stationarity condition. Every gradient of the LRM loss in
G is −4 Bᵀ X + 4 C G with B = W ⊙ X Gᵀ (per row) and C = WᵀW ∘ G Gᵀ (plus the orthogonal
penalty's term), so a fitted G satisfies G = C⁻¹ Bᵀ X: a combination M X of the PEFs'
rows, with M = C⁻¹ Bᵀ of shape (r, rows). In the sketch, G̃ = M X̃ = M X Sᵀ, so

    G = M X      (X: the same rows on the parameter axis, unsketched)

is a preimage of G̃ (S G = G̃, exactly at a stationary point) in the span of the examples'
gradients, and it is the stationary G of the parameter-space fit whose W and inner
products are the sketch's. M needs only the sketched fit (:func:`back_projection`); X
is read once, streamed from the model (:func:`workbench.runner.sketch.parameter_products`)
or from PEFs on the parameter axis, so nothing of size m per example is stored.

Exact: the sketched PEFs (S A_i for the exact A_i), the fit on them, and S G = G̃ at a
stationary point. Approximate: the inner products ⟨S u, S v⟩ ≈ ⟨u, v⟩ within the JL
bound, so W and M carry an error of order 1/√d; the norms used to normalise are exact.
Not the plain adjoint Sᵀ G̃: it copies each bucket into the ~m/d parameters that share
it, and its cosine with g is only about √(d/m).
"""

from __future__ import annotations

import dataclasses

import numpy as np
from sklearn.base import clone
from sklearn.utils.validation import check_is_fitted

from ..core.pefs import LrmPefs
from ..core.sketch import CountSketch
from ..store.fingerprints import fingerprint_pefs
from .data import lrm_squared_norm, scaled_rows
from .lrm import LrmNpeff


def sketch_pefs(pefs: LrmPefs, dim: int, seed: int = 0) -> LrmPefs:
    """``pefs`` (on the parameter axis) sketched to ``dim`` coordinates by the count sketch of
    ``seed``: the same rows as :func:`workbench.compute_pefs` with ``sketch=dim`` gives
    where ``pefs`` hold every entry (``n_values=None``); the norms stay those of the full PEFs."""
    if pefs.info.get("sketch"):
        raise ValueError("these PEFs are sketched already")
    sketch = CountSketch(dim, pefs.n_parameters, seed)
    X = pefs.X.astype(np.float64) @ sketch.matrix().T.astype(np.float64)
    info = dict(pefs.info, sketch=sketch.to_info(pefs.layout), n_values=None)
    return dataclasses.replace(pefs, X=X.astype(np.float32), layout=sketch.layout(), info=info)


def _check(estimator: LrmNpeff, pefs: LrmPefs) -> CountSketch:
    if not isinstance(estimator, LrmNpeff):
        raise TypeError(f"only LRM-NPEFF fits of sketched PEFs map back, got {type(estimator).__name__}")
    check_is_fitted(estimator)
    sketch, _ = CountSketch.from_info(pefs.info)
    if pefs.layout != estimator.layout_:
        raise ValueError(f"the decomposition was fitted on another axis ({estimator.layout_.names[0]}) than these "
                         f"PEFs ({pefs.layout.names[0]}); pass the sketched PEFs it was fitted on")
    return sketch


def back_projection(estimator: LrmNpeff, pefs: LrmPefs) -> np.ndarray:
    """M (r, n_examples · n_slots), float64: the fit's components are M X, X the PEFs' rows
    (A_iᵀ, unnormalised) on the parameter axis; ``pefs`` the sketched PEFs it was fitted on
    (or others of the same sketch, whose coefficients are then fitted with ``transform``)."""
    _check(estimator, pefs)
    row_scale = 1.0 / np.sqrt(pefs.frobenius_norms.astype(np.float64)) if estimator.normalize else np.ones(pefs.n_examples)
    rows_scale = np.repeat(row_scale, pefs.n_slots)
    X = scaled_rows(pefs.X[:, estimator.kept_columns_], rows_scale).astype(np.float64)
    same = estimator.pef_info_.get("pefs_fingerprint") == fingerprint_pefs(pefs)
    W = (estimator.W_ if same else estimator.transform(pefs)).astype(np.float64)
    G = estimator.G_.astype(np.float64)
    AG, GG = X @ G.T, G @ G.T  # (rows, r), (r, r)
    C = (W.T @ W) * GG
    if estimator.orthogonal_reg:  # the penalty's gradient, as the fit's (LrmNpeff._g_gradient)
        weight = estimator.orthogonal_reg * lrm_squared_norm(X, pefs.n_slots)
        C = C + weight * (GG - np.diag(np.diag(GG)))
    B = np.repeat(W, pefs.n_slots, axis=0) * AG  # (rows, r)
    M = np.linalg.lstsq(C, B.T, rcond=None)[0]  # C may be singular where a component is unused: the least-norm M
    return M * rows_scale[None, :]


def unsketched(estimator: LrmNpeff, pefs: LrmPefs, products: np.ndarray) -> LrmNpeff:
    """A fitted LRM-NPEFF on the parameter axis: ``estimator``'s coefficients, components
    ``products`` = M X (r, n_parameters; :func:`back_projection`), pruned to their non-zero
    columns. Its ``pef_info_`` keeps the sketch's record; ``transform`` then takes PEFs
    on the parameter axis."""
    _, parameters = CountSketch.from_info(pefs.info)
    products = np.asarray(products)
    if products.shape != (estimator.n_components, parameters.n_parameters):
        raise ValueError(f"products have shape {products.shape}, expected (n_components, n_parameters) = "
                         f"({estimator.n_components}, {parameters.n_parameters})")
    kept = np.flatnonzero(np.abs(products).sum(axis=0) > 0)
    full = clone(estimator)
    same = estimator.pef_info_.get("pefs_fingerprint") == fingerprint_pefs(pefs)
    full.W_ = np.asarray(estimator.W_ if same else estimator.transform(pefs), dtype=np.float32)
    full.G_ = np.ascontiguousarray(products[:, kept], dtype=np.float32)
    full.kept_columns_ = kept.astype(np.int64)
    full.n_parameters_ = parameters.n_parameters
    full.layout_ = parameters
    full.n_slots_ = estimator.n_slots_
    full.loss_history_ = {k: v.copy() for k, v in estimator.loss_history_.items()}
    full.pef_info_ = dict(estimator.pef_info_, unsketched=True)
    if hasattr(estimator, "solver_"):
        full.solver_ = estimator.solver_
    return full
