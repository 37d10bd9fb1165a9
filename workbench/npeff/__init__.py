"""NPEFF decompositions of PEFs (method notes, sections 2 to 5), as scikit-learn estimators.

- :class:`LrmNpeff` (:mod:`.lrm`) factors low-rank PEFs: F_i ≈ Σ_j W_ij g_j g_jᵀ with W ≥ 0;
  where G lives during its fit is :mod:`.solvers`' (over parameters or over examples).
- :class:`DNpeff` (:mod:`.d`) factors diagonal PEFs: f_i ≈ Σ_j W_ij h_j with W, H ≥ 0 (NMF).

Both (:mod:`.base`) prune parameters (columns) that too few examples touch, normalise each
PEF to unit Frobenius norm, fit on ``device`` with the PEFs kept sparse (:mod:`.data`, with
the CPU products of :mod:`.kernels`), and fit coefficients for new examples with the
components fixed (``transform``). :mod:`.planted` makes problems with known answers;
:mod:`.interop` reads and writes the original implementation's HDF5 files.
"""

from ..core.kinds import kind
from .base import NpeffBase, NpeffConvergenceWarning, NpeffDivergenceError
from .d import DNpeff
from .lrm import LrmNpeff

ESTIMATORS: dict[str, type[NpeffBase]] = {estimator.kind: estimator for estimator in (LrmNpeff, DNpeff)}


def estimator_for(kind_name: str) -> type[NpeffBase]:
    """The estimator that fits PEFs of this kind (a name in :data:`workbench.core.kinds.KINDS`)."""
    return ESTIMATORS[kind(kind_name).name]


__all__ = ["DNpeff", "ESTIMATORS", "LrmNpeff", "NpeffBase", "NpeffConvergenceWarning", "NpeffDivergenceError", "estimator_for"]
