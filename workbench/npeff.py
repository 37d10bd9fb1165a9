"""NPEFF decompositions of PEFs (method notes, sections 2 to 5), scikit-learn style.

- :class:`LrmNpeff` factors low-rank PEFs: F_i ≈ Σ_j W_ij g_j g_jᵀ with W ≥ 0.
- :class:`DNpeff` factors diagonal PEFs: f_i ≈ Σ_j W_ij h_j with W, H ≥ 0 (NMF).

Both prune parameters (columns) that too few examples touch, normalise each PEF to unit
Frobenius norm, fit on ``device`` with the PEFs kept sparse (a CSR matrix in both
orientations, since torch's product with a transposed CSR matrix is an order of magnitude
slower than with a stored one), and fit coefficients for new examples with the components
fixed (``transform``).

The G step of LRM-NPEFF is gradient descent on a quartic loss, where no fixed step size
suits every data set (1e-2 can recover one problem and give NaN on another). Along the
gradient direction D the loss is an exact quartic polynomial in the step t, whose
coefficients follow from X Dᵀ and small r × r products; the step is its minimiser (an
exact line search). That costs one sparse product per step, the same as recomputing
X Gᵀ, which the line search replaces (X Gᵀ is updated as X Gᵀ − t X Dᵀ and recomputed
exactly whenever the loss is logged). A fixed ``learning_rate`` is kept for comparison with
the original implementation; a fit with one that diverges stops with
:class:`NpeffDivergenceError` instead of returning NaN.
"""

from __future__ import annotations

import logging
import math
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch

from .checkpoint import FitCheckpoint, fingerprint_matrix
from . import kernels
from .device import resolve_device
from .lrm_solvers import SOLVERS, choose_solver, make_space
from .params import ParameterLayout
from .pefs import DPefs, LrmPefs
from .store import StoreError, check_same_model, fingerprint_pefs, producer, read_arrays, write_arrays

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
EPS = 1e-9  # guards the multiplicative updates' denominators


class NpeffDivergenceError(RuntimeError):
    """The fit could not lower its loss; carries what to change."""


class NpeffConvergenceWarning(UserWarning):
    """The fit used all its iterations before the loss settled to within ``tol``."""


# ---------------------------------------------------------------------------------------
# Pre-processing (method notes, section 2)
# ---------------------------------------------------------------------------------------


def _check_finite_norms(norms: np.ndarray) -> None:
    bad = np.flatnonzero(~np.isfinite(norms))
    if bad.size:
        raise ValueError(
            f"{bad.size} examples have NaN or infinite PEFs (first: {bad[:5].tolist()}); the model's weights "
            "or outputs contain NaN/inf. Check the model (e.g. torch.isfinite on its parameters) and recompute."
        )
    zero = np.flatnonzero(norms <= 0)
    if zero.size:
        raise ValueError(
            f"{zero.size} examples have all-zero PEFs (first: {zero[:5].tolist()}): the model is certain of them "
            "(p = 1 in float32), the parameter filter selects nothing they use, or their entries are so small "
            "(below ~1e-19) that the norm underflows float32. Drop them before fitting, e.g. "
            "pefs[pefs.frobenius_norms > 0]."
        )


def _examples_per_column(matrix: sp.csr_matrix, example_of_row: np.ndarray, n_examples: int) -> np.ndarray:
    """How many examples have a non-zero in each column."""
    rows = np.repeat(example_of_row, np.diff(matrix.indptr))
    touched = sp.csr_matrix(
        (np.ones(matrix.nnz, dtype=np.int32), (rows, matrix.indices)), shape=(n_examples, matrix.shape[1])
    )
    touched.sum_duplicates()
    return np.diff(touched.tocsc().indptr)


def _scaled_rows(matrix: sp.csr_matrix, row_scale: np.ndarray) -> sp.csr_matrix:
    scaled = sp.diags(row_scale.astype(np.float64)) @ matrix.astype(np.float64)
    return sp.csr_matrix(scaled, dtype=np.float32)


def _no_reduce(t: torch.Tensor) -> torch.Tensor:
    return t


@dataclass
class _Prepared:
    """A data matrix ready to fit: columns kept, rows normalised, on the device in both
    orientations.

    Every quantity that sums over columns (parameters) goes through ``reduce``, which is
    the identity here and an all-reduce when the columns are split across processes
    (method notes, section 3: each process holds its columns of X and G, ``columns`` of
    all kept columns; see :mod:`workbench.distributed`).
    """

    matrix: torch.Tensor  # CSR (n_rows, n_kept)
    matrix_t: torch.Tensor | None  # CSR (n_kept, n_rows), the transpose stored as its own matrix
    squared_norm: float  # the loss's constant term, already summed over all columns
    n_examples: int
    reduce: Callable[[torch.Tensor], torch.Tensor] = _no_reduce
    columns: slice | None = None  # this process's part of all kept columns; None: all of them

    def own_columns(self, M: torch.Tensor) -> torch.Tensor:
        """This process's columns of M (r, n_kept over all processes), so a random
        initialisation drawn whole is the same whatever the number of processes."""
        return M if self.columns is None else M[:, self.columns].contiguous()

    def total(self, value: float) -> float:
        """A scalar summed over all columns (all processes)."""
        return float(self.reduce(torch.tensor(value, dtype=torch.float64, device=self.matrix.device)))

    def _on_cpu_kernels(self) -> bool:
        return self.matrix_t is not None and self.matrix_t.device.type == "cpu" and kernels.available()

    def times_t(self, M: torch.Tensor) -> torch.Tensor:
        """X Mᵀ for M of shape (r, n_kept): (n_rows, r)."""
        if self._on_cpu_kernels():  # one streaming pass over Xᵀ (see workbench.kernels)
            return self.reduce(kernels.csr_transposed_times_dense(self.matrix_t, M.T))
        return self.reduce(torch.sparse.mm(self.matrix, M.T.contiguous()))

    def t_times(self, M: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """(Xᵀ M)ᵀ = Mᵀ X for M of shape (n_rows, r): (r, n_kept), this process's columns only
        (into ``out``, a buffer of that shape, where the CPU kernels run)."""
        if self._on_cpu_kernels():  # written as (r, n_kept) rows, so later elementwise work is contiguous
            return kernels.csr_times_dense_t(self.matrix_t, M.contiguous(), out)
        return torch.sparse.mm(self.matrix_t, M.contiguous()).T

    def gram(self, A: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
        """A Bᵀ for A, B of shape (r, n_kept): (r, r)."""
        return self.reduce(A @ B.T)


def _to_torch_csr(matrix: sp.csr_matrix, device: torch.device) -> torch.Tensor:
    matrix = sp.csr_matrix(matrix, dtype=np.float32)
    matrix.sort_indices()
    index_dtype = torch.int32 if matrix.nnz < 2**31 and max(matrix.shape) < 2**31 else torch.int64
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return torch.sparse_csr_tensor(
            torch.from_numpy(matrix.indptr.astype(np.int64)).to(index_dtype),
            torch.from_numpy(matrix.indices.astype(np.int64)).to(index_dtype),
            torch.from_numpy(matrix.data),
            size=matrix.shape,
            device=device,
            check_invariants=False,  # scipy built it, sorted and canonical
        )


def _prepare(matrix: sp.csr_matrix, squared_norm: float, n_examples: int, device: torch.device) -> _Prepared:
    return _Prepared(
        _to_torch_csr(matrix, device), _to_torch_csr(matrix.T.tocsr(), device), squared_norm, n_examples
    )


def _lrm_squared_norm(X: sp.csr_matrix, n_slots: int, reduce=_no_reduce) -> float:
    """Σ_i ‖A_iᵀ A_i‖²_F of the sparse (kept) PEFs: the LRM loss's constant term.

    The per-example grams sum over columns, so a column-split fit reduces them before squaring."""
    rows = [X[s::n_slots].astype(np.float64) for s in range(n_slots)]
    grams = np.stack([
        np.asarray(rows[s].multiply(rows[t]).sum(axis=1)).ravel() for s in range(n_slots) for t in range(n_slots)
    ])  # (n_slots², n_examples)
    grams = reduce(torch.from_numpy(grams)).numpy()
    total = 0.0
    for gram_st in grams:
        total += float((gram_st**2).sum())
    return total


# ---------------------------------------------------------------------------------------
# The shared estimator machinery
# ---------------------------------------------------------------------------------------


class _NpeffBase:
    """What LRM- and D-NPEFF share: validation, pre-processing, saving, components."""

    _format: str
    _pefs_type: type
    _components_name: str  # "G" or "H"
    _parameter_constraints: dict = {
        "n_components": lambda v: isinstance(v, int) and v >= 1,
        "min_nonzero_per_col": lambda v: isinstance(v, int) and v >= 1,
        "normalize": lambda v: isinstance(v, bool),
        "log_every": lambda v: isinstance(v, int) and v >= 1,
        "seed": lambda v: isinstance(v, int),
        "tol": lambda v: isinstance(v, (int, float)) and v >= 0,
        "progress": lambda v: isinstance(v, bool),
    }

    def get_params(self) -> dict:
        return {name: getattr(self, name) for name in self._parameter_constraints}

    def _validate_params(self) -> None:
        for name, ok in self._parameter_constraints.items():
            value = getattr(self, name)
            if not ok(value):
                raise ValueError(f"{type(self).__name__}: {name}={value!r} is not allowed ({_ALLOWED[name]})")

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    def _check_pefs(self, pefs, fitted: bool) -> None:
        if not isinstance(pefs, self._pefs_type):
            raise TypeError(f"{type(self).__name__} fits {self._pefs_type.__name__}, got {type(pefs).__name__}")
        if pefs.n_examples == 0:
            raise ValueError("the PEF set is empty: there are no examples to fit")
        _check_finite_norms(pefs.frobenius_norms)
        if fitted and self.pef_info_.get("model_fingerprint") and pefs.info.get("model_fingerprint") not in (
            None, self.pef_info_["model_fingerprint"]
        ):
            raise StoreError(
                f"these PEFs come from another model ({pefs.info.get('model')}, weights "
                f"{pefs.info['model_fingerprint'][:12]}) than the decomposition's ({self.pef_info_.get('model')}, "
                f"{self.pef_info_['model_fingerprint'][:12]}); compute them with the decomposition's model. To compare "
                "two models on purpose, drop the record first: pefs.info.pop('model_fingerprint')"
            )
        if fitted and (pefs.layout != self.layout_):
            raise ValueError(
                f"these PEFs were computed over other parameters ({pefs.layout.n_parameters} parameters, "
                f"first {pefs.layout.names[:2]}) than the decomposition ({self.layout_.n_parameters}, first "
                f"{self.layout_.names[:2]}); compute them with the same model and parameter filter"
            )

    def _row_scale(self, pefs) -> np.ndarray:
        if not self.normalize:
            return np.ones(pefs.n_examples)
        # LRM: A_i / √‖F_i‖ gives ‖A_i A_iᵀ‖ = 1; D: f_i / ‖f_i‖.
        return 1.0 / (np.sqrt(pefs.frobenius_norms) if self._pefs_type is LrmPefs else pefs.frobenius_norms)

    def _device(self) -> torch.device:
        return resolve_device(self.device)

    def _generator(self, offset: int = 0) -> torch.Generator:
        return torch.Generator().manual_seed(self.seed + offset)

    def _checkpoint(self, path, every: int, matrix: sp.csr_matrix, kept: np.ndarray, squared_norm: float):
        if path is None:
            return None
        return FitCheckpoint(path, every, self, fingerprint_matrix(matrix, kept, squared_norm))

    def _check_fitted(self) -> None:
        if not hasattr(self, "W_"):
            raise RuntimeError(f"this {type(self).__name__} is not fitted yet: call fit(pefs) first")

    @property
    def components_(self) -> np.ndarray:
        """(n_components, n_kept_columns): G_ or H_."""
        return getattr(self, self._components_name + "_")

    def component(self, j: int) -> np.ndarray:
        """Component j as a full parameter-space vector of n_parameters (zeros where pruned)."""
        self._check_fitted()
        full = np.zeros(self.n_parameters_, dtype=np.float32)
        full[self.kept_columns_] = self.components_[j]
        return full

    def component_by_parameter(self, j: int) -> dict[str, np.ndarray]:
        """Component j split into arrays shaped like the model's parameters."""
        return self.layout_.split(self.component(j))

    # -- saving ----------------------------------------------------------------------

    def save(self, path: str | os.PathLike) -> None:
        """Write the fitted decomposition as one safetensors file (no pickle)."""
        self._check_fitted()
        header = {
            "format": self._format,
            "format_version": FORMAT_VERSION,
            "producer": producer(),
            "params": {k: str(v) if isinstance(v, torch.device) else v for k, v in self.get_params().items()},
            "n_parameters": self.n_parameters_,
            "n_classes": self.n_classes_,
            "layout": self.layout_.to_dict(),
            "pef_info": self.pef_info_,
            **({"solver": self.solver_} if hasattr(self, "solver_") else {}),  # LRM-NPEFF's primal or dual
        }
        arrays = {
            "W": self.W_,
            self._components_name: self.components_,
            "kept_columns": self.kept_columns_,
            **{f"losses/{phase}": values for phase, values in self.loss_history_.items()},
        }
        write_arrays(path, arrays, header)

    @classmethod
    def load(cls, path: str | os.PathLike, *, model: torch.nn.Module | None = None):
        """Read a decomposition written by :meth:`save`. With ``model``, refuse (StoreError) a
        decomposition made from another model's PEFs or over parameters it does not have."""
        arrays, header = read_arrays(path, cls._format)
        try:
            estimator = cls(**dict(header["params"]))
            estimator._validate_params()
            estimator.n_parameters_ = int(header["n_parameters"])
            estimator.n_classes_ = int(header["n_classes"])
            estimator.layout_ = ParameterLayout.from_dict(header["layout"])
            estimator.pef_info_ = dict(header.get("pef_info", {}))
            if header.get("solver"):
                estimator.solver_ = str(header["solver"])
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise StoreError(f"{path} has a damaged header ({err!r}); re-create it with save()") from err
        needed = {"W", cls._components_name, "kept_columns"}
        if not needed <= set(arrays):
            raise StoreError(f"{path} lacks {sorted(needed - set(arrays))}")
        W, components, kept = arrays["W"], arrays[cls._components_name], arrays["kept_columns"]
        r, m = estimator.n_components, estimator.n_parameters_
        consistent = (
            W.ndim == 2 and W.shape[1] == r and components.ndim == 2 and components.shape[0] == r
            and kept.ndim == 1 and kept.shape[0] == components.shape[1] and m == estimator.layout_.n_parameters
            and np.issubdtype(kept.dtype, np.integer) and (kept.size == 0 or (kept.min() >= 0 and kept.max() < m))
            and W.dtype == np.float32 and components.dtype == np.float32
        )
        if not consistent:
            raise StoreError(f"{path} is damaged: its arrays do not fit each other or its header; re-create it with save()")
        estimator.W_ = W
        setattr(estimator, cls._components_name + "_", components)
        estimator.kept_columns_ = kept.astype(np.int64)
        estimator.loss_history_ = {k.split("/", 1)[1]: v for k, v in arrays.items() if k.startswith("losses/")}
        if model is not None:
            estimator.check_model(model, what=f"the decomposition {path}")
        return estimator

    def check_model(self, model: torch.nn.Module, what: str = "this decomposition") -> None:
        """Refuse (StoreError) a model other than the one whose PEFs were decomposed: other
        weights (when the PEFs recorded them), or no parameters of the decomposition's names and shapes."""
        self._check_fitted()
        params = dict(model.named_parameters())
        wrong = [n for n, shape in zip(self.layout_.names, self.layout_.shapes)
                 if n not in params or tuple(params[n].shape) != tuple(shape)]
        if wrong:
            raise StoreError(
                f"{what} was made over parameters this model does not have, or has in other shapes (e.g. {wrong[:3]}): "
                f"it comes from another model ({self.pef_info_.get('model', 'unnamed')}); load that model, or "
                "recompute the PEFs and decomposition with this one"
            )
        check_same_model(self.pef_info_, model, what)


_ALLOWED = {
    "n_components": "a positive integer",
    "min_nonzero_per_col": "a positive integer",
    "normalize": "True or False",
    "log_every": "a positive integer",
    "seed": "an integer",
    "tol": "a number >= 0",
    "progress": "True or False",
    "n_iters_g_only": "an integer >= 0",
    "n_iters_joint": "an integer >= 0",
    "n_iters": "a positive integer",
    "n_iters_transform": "a positive integer",
    "learning_rate": "'auto' or a positive number",
    "orthogonal_reg": "a number >= 0",
    "device": "None, 'cpu', 'cuda' or a torch.device",
    "solver": "'auto', 'primal' or 'dual' (see workbench.lrm_solvers)",
}


def _progress(total: int, desc: str, enabled: bool, initial: int = 0):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, disable=not enabled, leave=False, initial=initial)


def _quartic_argmin(poly: np.ndarray) -> float:
    """The t ≥ 0 minimising c0 + c1 t + c2 t² + c3 t³ + c4 t⁴ (poly = [c0..c4], c4 ≥ 0)."""
    derivative = [4 * poly[4], 3 * poly[3], 2 * poly[2], poly[1]]
    roots = np.roots(np.trim_zeros(derivative, "f")) if np.any(derivative) else np.array([])
    candidates = [0.0] + [r.real for r in roots if abs(r.imag) <= 1e-9 * max(1.0, abs(r.real)) and r.real > 0]
    return min(candidates, key=lambda t: np.polyval(poly[::-1], t))


def _gram_after_step(space, G, GG, GD, DD, t: float) -> torch.Tensor:
    """G Gᵀ (float32) after the step G − t·D.

    The line search's own GG − t·(GDᵀ + DGᵀ) + t²·DDᵀ saves a pass over G (r × m). But when
    a step shrinks G (early in a fit of data on a small scale), its terms cancel and their
    float32 rounding swamps the result; then the Gram is computed anew."""
    terms = (GG.double(), t * (GD + GD.T), t**2 * DD)
    updated = terms[0] - terms[1] + terms[2]
    magnitude = sum(float(torch.linalg.matrix_norm(x)) for x in terms)
    if magnitude > 10 * float(torch.linalg.matrix_norm(updated)):
        return space.gram(G, G).float()
    return updated.float()


def _multiplicative_w_steps(W, numer, Q, n_iters: int, tol: float) -> torch.Tensor:
    """Minimise Σ_i (w_i Q w_iᵀ − 2 numer_i · w_i) over W ≥ 0 by multiplicative updates
    (a non-negative least-squares problem); used to fit coefficients with components fixed."""
    previous = None
    for it in range(n_iters):
        W = W * numer / (W @ Q + EPS)
        if tol and it % 10 == 9:
            objective = float(((W @ Q) * W).sum() - 2 * (W * numer).sum())
            if previous is not None and abs(previous - objective) <= tol * max(abs(previous), 1e-30):
                break
            previous = objective
    return W


# ---------------------------------------------------------------------------------------
# LRM-NPEFF
# ---------------------------------------------------------------------------------------


class LrmNpeff(_NpeffBase):
    """Low-rank NPEFF: F_i ≈ Σ_j W_ij g_j g_jᵀ, W ≥ 0 (method notes, section 3).

    Parameters
    ----------
    n_components : number of components r.
    n_iters_g_only : G steps with W fixed at its random initialisation.
    n_iters_joint : alternating W (multiplicative) and G (gradient) steps.
    learning_rate : "auto" (exact line search, see module docs) or a fixed G step size.
    orthogonal_reg : weight λ of the penalty λ·c·Σ_{j≠k} (g_j·g_k)², pulling G Gᵀ toward a
        diagonal; c = Σ_i ‖F_i‖²_F (n_examples after normalisation). Around 0.1 is strong.
    min_nonzero_per_col : drop parameters non-zero in fewer examples than this.
    normalize : divide each A_i by √‖F_i‖_F so every PEF has unit Frobenius norm.
    log_every : record the loss every this many steps.
    tol : stop the joint phase once the loss changes by less than tol (relative) over
        ``log_every`` steps; 0 runs every iteration.
    n_iters_transform : multiplicative steps when fitting coefficients of new examples.
    device : None (CUDA when available, else CPU), "cpu", "cuda", ...
    solver : where G lives during the fit (:mod:`workbench.lrm_solvers`): "primal" keeps
        G (r × parameters) and reads the sparse PEFs twice a step; "dual" keeps G as a
        combination of its start and the PEFs' rows, with the examples' Gram matrix
        (n_rows², float64) computed once, and a step then costs n_rows² · r, whatever the
        number of parameters. The same fit either way (up to rounding); "auto" takes the
        dual on CPU when its Gram matrix is the smaller work and fits in 1 GiB.

    Attributes
    ----------
    W_ : ndarray of shape (n_examples, n_components), coefficients, ≥ 0.
    G_ : ndarray of shape (n_components, n_kept_columns), the pseudo-Fisher vectors g_j.
    kept_columns_ : ndarray of shape (n_kept_columns,), old (parameter) index of each column.
    loss_history_ : {"g_only": (k, 2), "joint": (k, 2)} arrays of (iteration, loss).
    solver_ : "primal" or "dual", the solver the fit used.
    layout_, n_parameters_, n_classes_, pef_info_ : what the PEFs were computed over.
    """

    _format = "npeff-workbench/lrm-npeff"
    _pefs_type = LrmPefs
    _components_name = "G"
    _parameter_constraints = {
        **_NpeffBase._parameter_constraints,
        "n_iters_g_only": lambda v: isinstance(v, int) and v >= 0,
        "n_iters_joint": lambda v: isinstance(v, int) and v >= 0,
        "learning_rate": lambda v: v == "auto" or (isinstance(v, (int, float)) and v > 0),
        "orthogonal_reg": lambda v: isinstance(v, (int, float)) and v >= 0,
        "n_iters_transform": lambda v: isinstance(v, int) and v >= 1,
        "device": lambda v: v is None or isinstance(v, (str, torch.device)),
        "solver": lambda v: v in SOLVERS,
    }

    def __init__(
        self,
        n_components: int = 32,
        *,
        n_iters_g_only: int = 100,
        n_iters_joint: int = 400,
        learning_rate: float | str = "auto",
        orthogonal_reg: float = 0.0,
        min_nonzero_per_col: int = 1,
        normalize: bool = True,
        log_every: int = 10,
        seed: int = 0,
        tol: float = 0.0,
        n_iters_transform: int = 500,
        device: str | torch.device | None = None,
        solver: str = "auto",
        progress: bool = True,
    ):
        self.n_components = n_components
        self.n_iters_g_only = n_iters_g_only
        self.n_iters_joint = n_iters_joint
        self.learning_rate = learning_rate
        self.orthogonal_reg = orthogonal_reg
        self.min_nonzero_per_col = min_nonzero_per_col
        self.normalize = normalize
        self.log_every = log_every
        self.seed = seed
        self.tol = tol
        self.n_iters_transform = n_iters_transform
        self.device = device
        self.solver = solver
        self.progress = progress

    # -- the data ----------------------------------------------------------------------

    def _matrix(self, pefs: LrmPefs, kept_columns: np.ndarray, reduce=_no_reduce) -> tuple[sp.csr_matrix, float]:
        X = _scaled_rows(pefs.X, np.repeat(self._row_scale(pefs), pefs.n_slots))[:, kept_columns]
        return X, _lrm_squared_norm(X, pefs.n_slots, reduce)

    def _kept_columns(self, pefs: LrmPefs) -> np.ndarray:
        counts = _examples_per_column(pefs.X, pefs.example_of_row(), pefs.n_examples)
        kept = np.flatnonzero(counts >= self.min_nonzero_per_col)
        if kept.size == 0:
            raise ValueError(
                f"no parameter is non-zero in at least min_nonzero_per_col={self.min_nonzero_per_col} examples; "
                "lower min_nonzero_per_col or keep more values per example (n_values)"
            )
        return kept

    # -- the loss and its pieces ------------------------------------------------------

    def _loss(self, data: _Prepared, W, AG, GG, n_slots: int, regularised: bool = True) -> float:
        # float64 for the sums: the loss is a small difference of large terms near a good fit.
        W, GG = W.double(), GG.double()
        numer = AG.double().reshape(data.n_examples, n_slots, -1).square().sum(dim=1)  # (n, r)
        loss = data.squared_norm - 2 * (W * numer).sum() + ((W.T @ W) * GG.square()).sum()
        if self.orthogonal_reg and regularised:
            loss = loss + self._ortho_weight(data) * (GG.square().sum() - GG.diagonal().square().sum())
        return float(loss)

    def _g_gradient(self, space, W, G, AG, GG, n_slots: int):
        """−4 (W ⊙ AG)ᵀ X + C G, in the space's representation (r, m)."""
        W_rows = W.repeat_interleave(n_slots, dim=0)  # (n * c, r)
        data_term = space.data_term(W_rows * AG)  # (r, m) = (W ⊙ AG)ᵀ X
        C = 4 * (W.T @ W) * GG  # (r, r)
        if self.orthogonal_reg:
            C = C + 4 * self._ortho_weight(space.data) * (GG - torch.diag(GG.diagonal()))
        return space.combine(-4.0, data_term, C, G)  # one pass over G

    def _ortho_weight(self, data: _Prepared) -> float:
        # Scaled by the loss's constant term (= n_examples after normalisation), so one
        # orthogonal_reg suits data sets of any size.
        return self.orthogonal_reg * data.squared_norm

    def _solver(self, data: _Prepared, n_kept: int, device) -> str:
        return choose_solver(
            self.solver, n_rows=data.matrix.shape[0], nnz=data.total(float(data.matrix.values().numel())),
            n_components=self.n_components, n_columns=float(n_kept), n_iterations=self.n_iters_g_only + self.n_iters_joint,
            device=device,
        )

    def _fit_arrays(self, data: _Prepared, n_slots: int, n_kept: int, device, checkpoint: FitCheckpoint | None = None):
        """The fitted state {W, G, ...} and loss history; G dense (r, this process's columns)."""
        r = self.n_components
        W = torch.rand((data.n_examples, r), generator=self._generator(0)).to(device)
        sigma = 1.0 / math.sqrt(r * n_kept / 2)
        G0 = data.own_columns(sigma * torch.randn((r, n_kept), generator=self._generator(1))).to(device)
        space = make_space(self._solver(data, n_kept, device), data, G0, self.progress)
        self.solver_ = space.name
        if checkpoint is not None:
            checkpoint.record_solver(space.name)
        G = space.initial(G0)
        AG = space.times_t(G)  # (n * c, r)
        GG = space.gram(G, G).float()
        loss = self._loss(data, W, AG, GG, n_slots)
        if not math.isfinite(loss):
            raise NpeffDivergenceError("the loss is not finite at the start: the PEFs contain NaN or inf values")
        history = {"g_only": [], "joint": []}
        state = dict(W=W, G=G, AG=AG, GG=GG, loss=loss, first_loss=loss)
        saved = checkpoint.load(device) if checkpoint is not None else None
        if saved is not None:  # resume: the state after saved.step steps, exactly
            arrays = saved.arrays
            state.update(W=arrays["W"], AG=arrays["AG"], GG=arrays["GG"], G=space.from_arrays(arrays), **saved.scalars)
            history = saved.history
            if saved.done:
                return dict(state, G=space.dense(state["G"])), history
        total = self.n_iters_g_only + self.n_iters_joint
        step = 0
        with _progress(total, "LRM-NPEFF", self.progress, initial=saved.step if saved else 0) as bar:
            for phase, n_iters in (("g_only", self.n_iters_g_only), ("joint", self.n_iters_joint)):
                for it in range(n_iters):
                    step += 1
                    if saved is not None and step <= saved.step:
                        continue
                    if phase == "joint":
                        self._w_step(data, state, n_slots)
                    self._g_step(space, state, n_slots, phase, it)
                    if it % self.log_every == 0 or it == n_iters - 1:
                        # AG and GG are updated incrementally; recompute them so the logged loss is exact
                        state["G"] = space.refresh(state["G"])
                        state["AG"] = space.times_t(state["G"])
                        state["GG"] = space.gram(state["G"], state["G"]).float()
                        state["loss"] = self._loss(data, state["W"], state["AG"], state["GG"], n_slots)
                        history[phase].append((it, state["loss"]))
                        bar.set_postfix(loss=f"{state['loss']:.4g}", phase=phase)
                        if self._settled(history[phase]) and phase == "joint":
                            bar.update(n_iters - it)
                            break
                    bar.update(1)
                    if checkpoint is not None and checkpoint.due(step):
                        self._save_checkpoint(checkpoint, space, step, state, history)
        if checkpoint is not None:
            self._save_checkpoint(checkpoint, space, step, state, history, done=True)
        if self.tol and self.n_iters_joint and not self._settled(history["joint"]):
            warnings.warn(
                f"LRM-NPEFF used all {self.n_iters_joint} joint iterations before the loss settled to tol={self.tol}; "
                "raise n_iters_joint for a tighter fit",
                NpeffConvergenceWarning,
                stacklevel=3,
            )
        return dict(state, G=space.dense(state["G"])), history

    @staticmethod
    def _save_checkpoint(checkpoint: FitCheckpoint, space, step: int, state: dict, history: dict, done: bool = False) -> None:
        arrays = {k: state[k] for k in ("W", "AG", "GG")} | space.arrays(state["G"])
        checkpoint.save(step, arrays, {"loss": state["loss"], "first_loss": state["first_loss"]}, history, done)

    def _settled(self, history) -> bool:
        if not self.tol or len(history) < 2:
            return False
        (_, before), (_, after) = history[-2], history[-1]
        return abs(before - after) <= self.tol * max(abs(before), 1e-30)

    def _w_step(self, data: _Prepared, state: dict, n_slots: int) -> None:
        numer = state["AG"].reshape(data.n_examples, n_slots, -1).square().sum(dim=1)
        W = state["W"]
        state["W"] = W * numer / (W @ state["GG"].square() + EPS)
        state["loss"] = self._loss(data, state["W"], state["AG"], state["GG"], n_slots)

    def _g_step(self, space, state: dict, n_slots: int, phase: str, it: int) -> None:
        """One gradient step on G, of the size that minimises the loss along the gradient."""
        W, G, AG, GG = state["W"], state["G"], state["AG"], state["GG"]
        grad = self._g_gradient(space, W, G, AG, GG, n_slots)  # (r, m)
        # A unit direction keeps X Dᵀ and D Dᵀ within float32 range whatever the data's scale.
        grad_norm = math.sqrt(space.squared_norm(grad))
        if grad_norm == 0 or not math.isfinite(grad_norm):
            if grad_norm == 0:
                return  # already stationary
            raise NpeffDivergenceError(
                f"the G gradient is not finite at iteration {it} of the {phase} phase: the PEFs hold values whose "
                "squares overflow float32, or NaN/inf; check pefs.X.data and pefs.frobenius_norms"
            )
        D = space.scale(grad, 1 / grad_norm)
        AD = space.times_t(D)  # (n * c, r)
        GD, DD = space.gram(G, D).double(), space.gram(D, D).double()
        poly = self._loss_along(space.data, W, AG, AD, GG, GD, DD, n_slots)
        step = _quartic_argmin(poly) if self.learning_rate == "auto" else float(self.learning_rate) * grad_norm
        loss = float(np.polyval(poly[::-1], step))
        if not math.isfinite(loss) or loss > 10 * state["first_loss"]:
            raise NpeffDivergenceError(
                f"the fit diverged at iteration {it} of the {phase} phase: the loss went from "
                f"{state['first_loss']:.6g} to {loss:.6g} with the fixed learning_rate={self.learning_rate}. "
                "Leave learning_rate='auto' (a line search picks each step), or lower it."
                if np.isfinite(poly).all()
                else f"the loss is not finite at iteration {it} of the {phase} phase: the PEFs hold values whose "
                "squares overflow float32, or NaN/inf; check pefs.X.data and pefs.frobenius_norms"
            )
        G = space.step(G, D, step)
        state.update(G=G, AG=AG - step * AD, GG=_gram_after_step(space, G, GG, GD, DD, step), loss=loss)

    def _loss_along(self, data: _Prepared, W, AG, AD, GG, GD, DD, n_slots: int) -> np.ndarray:
        """Coefficients c0..c4 of the loss at G − t·D, a quartic polynomial in t.

        With AG(t) = AG − t·AD and GG(t) = P0 − t·P1 + t²·P2 (P0 = GGᵀ, P1 = GDᵀ + DGᵀ,
        P2 = DDᵀ), the data term is linear in Σ_y AG(t)² and the model term quadratic in
        GG(t), so every coefficient costs O(n·c·r + r²) once AD = X Dᵀ is known.
        """
        W, AG, AD, GG = (t.double() for t in (W, AG, AD, GG))
        n = data.n_examples

        def per_example(a, b):  # Σ_y a ∘ b, (n, r)
            return (a * b).reshape(n, n_slots, -1).sum(dim=1)

        N0, N1, N2 = per_example(AG, AG), per_example(AG, AD), per_example(AD, AD)
        P0, P1, P2 = GG, GD + GD.T, DD
        M = W.T @ W
        if self.orthogonal_reg:
            M = M + self._ortho_weight(data) * (1 - torch.eye(M.shape[0], dtype=M.dtype, device=M.device))
        c0 = data.squared_norm - 2 * (W * N0).sum() + (M * P0 * P0).sum()
        c1 = 4 * (W * N1).sum() - 2 * (M * P0 * P1).sum()
        c2 = -2 * (W * N2).sum() + (M * (P1 * P1 + 2 * P0 * P2)).sum()
        c3 = -2 * (M * P1 * P2).sum()
        c4 = (M * P2 * P2).sum()
        return np.array([float(c) for c in (c0, c1, c2, c3, c4)])

    # -- the estimator API -------------------------------------------------------------

    def fit(self, pefs: LrmPefs, *, checkpoint: str | os.PathLike | None = None, checkpoint_every: int = 50) -> "LrmNpeff":
        """Fit W_ and G_ to the PEFs; returns self.

        With ``checkpoint`` (a file path), the fit's state is saved there every
        ``checkpoint_every`` steps and at the end; calling ``fit`` again with the same PEFs
        and settings resumes from it (and returns at once if it had finished), ending
        exactly where an uninterrupted fit ends. A checkpoint of other data or settings is
        refused (:class:`~workbench.store.StoreError`). See :mod:`workbench.checkpoint`.
        """
        self._validate_params()
        self._check_pefs(pefs, fitted=False)
        if self.n_components > pefs.n_examples:
            raise ValueError(
                f"n_components={self.n_components} is larger than the number of examples ({pefs.n_examples}); "
                "use at most as many components as examples"
            )
        device = self._device()
        kept = self._kept_columns(pefs)
        X, squared_norm = self._matrix(pefs, kept)
        saver = self._checkpoint(checkpoint, checkpoint_every, X, kept, squared_norm)
        data = _prepare(X, squared_norm, pefs.n_examples, device)
        state, history = self._fit_arrays(data, pefs.n_slots, kept.size, device, saver)
        self.W_ = state["W"].cpu().numpy()
        self.G_ = state["G"].cpu().numpy()
        self.kept_columns_ = kept.astype(np.int64)
        self.n_parameters_ = pefs.n_parameters
        self.n_classes_ = pefs.n_slots
        self.layout_ = pefs.layout
        self.pef_info_ = dict(pefs.info, pefs_fingerprint=fingerprint_pefs(pefs))
        self.loss_history_ = {k: np.asarray(v, dtype=np.float64).reshape(-1, 2) for k, v in history.items()}
        return self

    def transform(self, pefs: LrmPefs) -> np.ndarray:
        """Coefficients W of shape (n_examples, n_components) for (new) PEFs, G_ fixed."""
        self._check_fitted()
        self._check_pefs(pefs, fitted=True)
        device = self._device()
        X, _ = self._matrix(pefs, self.kept_columns_)
        data = _Prepared(_to_torch_csr(X, device), None, 0.0, pefs.n_examples)
        return self._coefficients(data, torch.from_numpy(self.G_).to(device), pefs.n_slots).cpu().numpy()

    def _coefficients(self, data: _Prepared, G: torch.Tensor, n_slots: int) -> torch.Tensor:
        """W (n_examples, r) with G fixed: a non-negative least-squares fit by multiplicative steps."""
        AG = data.times_t(G)
        numer = AG.reshape(data.n_examples, n_slots, -1).square().sum(dim=1)
        Q = data.gram(G, G).square()
        W = torch.rand((data.n_examples, self.n_components), generator=self._generator(2)).to(G.device)
        return _multiplicative_w_steps(W, numer, Q, self.n_iters_transform, tol=1e-7)

    def fit_transform(self, pefs: LrmPefs) -> np.ndarray:
        return self.fit(pefs).W_

    def loss(self, pefs: LrmPefs, W: np.ndarray | None = None) -> float:
        """The (normalised) reconstruction loss Σ_i ‖F_i − Σ_j W_ij g_j g_jᵀ‖²_F on these PEFs."""
        self._check_fitted()
        X, squared_norm = self._matrix(pefs, self.kept_columns_)
        device = self._device()
        data = _Prepared(_to_torch_csr(X, device), None, squared_norm, pefs.n_examples)
        W = torch.from_numpy(self.transform(pefs) if W is None else W).to(device)
        G = torch.from_numpy(self.G_).to(device)
        return self._loss(data, W, data.times_t(G), data.gram(G, G), pefs.n_slots, regularised=False)


# ---------------------------------------------------------------------------------------
# D-NPEFF
# ---------------------------------------------------------------------------------------


class DNpeff(_NpeffBase):
    """Diagonal NPEFF: non-negative matrix factorisation f_i ≈ Σ_j W_ij h_j (method notes, section 4).

    Multiplicative updates (Lee & Seung) on the Frobenius loss, with the sparse D-PEF
    matrix kept sparse in both orientations. Parameters as in :class:`LrmNpeff`;
    ``n_iters`` alternating W and H updates.

    Attributes
    ----------
    W_ : ndarray of shape (n_examples, n_components), ≥ 0.
    H_ : ndarray of shape (n_components, n_kept_columns), ≥ 0.
    kept_columns_, loss_history_ ({"joint": (k, 2)}), layout_, n_parameters_, pef_info_.
    """

    _format = "npeff-workbench/d-npeff"
    _pefs_type = DPefs
    _components_name = "H"
    _parameter_constraints = {
        **_NpeffBase._parameter_constraints,
        "n_iters": lambda v: isinstance(v, int) and v >= 0,
        "n_iters_transform": lambda v: isinstance(v, int) and v >= 1,
        "device": lambda v: v is None or isinstance(v, (str, torch.device)),
    }

    def __init__(
        self,
        n_components: int = 32,
        *,
        n_iters: int = 500,
        min_nonzero_per_col: int = 1,
        normalize: bool = True,
        log_every: int = 10,
        seed: int = 0,
        tol: float = 0.0,
        n_iters_transform: int = 500,
        device: str | torch.device | None = None,
        progress: bool = True,
    ):
        self.n_components = n_components
        self.n_iters = n_iters
        self.min_nonzero_per_col = min_nonzero_per_col
        self.normalize = normalize
        self.log_every = log_every
        self.seed = seed
        self.tol = tol
        self.n_iters_transform = n_iters_transform
        self.device = device
        self.progress = progress

    def _kept_columns(self, pefs: DPefs) -> np.ndarray:
        counts = _examples_per_column(pefs.F, np.arange(pefs.n_examples), pefs.n_examples)
        kept = np.flatnonzero(counts >= self.min_nonzero_per_col)
        if kept.size == 0:
            raise ValueError(
                f"no parameter is non-zero in at least min_nonzero_per_col={self.min_nonzero_per_col} examples; "
                "lower min_nonzero_per_col or keep more values per example (n_values)"
            )
        return kept

    def _matrix(self, pefs: DPefs, kept_columns: np.ndarray, reduce=_no_reduce) -> tuple[sp.csr_matrix, float]:
        D = _scaled_rows(pefs.F, self._row_scale(pefs))[:, kept_columns]
        squared_norm = float(D.astype(np.float64).power(2).sum())
        return D, float(reduce(torch.tensor(squared_norm, dtype=torch.float64)))

    @staticmethod
    def _loss(data: _Prepared, W, HHt, DHt) -> float:
        """‖D − W H‖²_F = ‖D‖² − 2 Σ W ∘ (D Hᵀ) + Σ (WᵀW) ∘ (H Hᵀ)."""
        W, HHt, DHt = W.double(), HHt.double(), DHt.double()
        return float(data.squared_norm - 2 * (W * DHt).sum() + ((W.T @ W) * HHt).sum())

    def fit(self, pefs: DPefs, *, checkpoint: str | os.PathLike | None = None, checkpoint_every: int = 50) -> "DNpeff":
        """Fit W_ and H_ to the D-PEFs; returns self. ``checkpoint``: as in :meth:`LrmNpeff.fit`."""
        self._validate_params()
        self._check_pefs(pefs, fitted=False)
        if self.n_components > pefs.n_examples:
            raise ValueError(
                f"n_components={self.n_components} is larger than the number of examples ({pefs.n_examples}); "
                "use at most as many components as examples"
            )
        device = self._device()
        kept = self._kept_columns(pefs)
        D, squared_norm = self._matrix(pefs, kept)
        saver = self._checkpoint(checkpoint, checkpoint_every, D, kept, squared_norm)
        data = _prepare(D, squared_norm, pefs.n_examples, device)
        W, H, history = self._fit_arrays(data, kept.size, float(D.sum()), device, saver)
        self.W_ = W.cpu().numpy()
        self.H_ = H.cpu().numpy()
        self.kept_columns_ = kept.astype(np.int64)
        self.n_parameters_ = pefs.n_parameters
        self.n_classes_ = pefs.n_classes
        self.layout_ = pefs.layout
        self.pef_info_ = dict(pefs.info, pefs_fingerprint=fingerprint_pefs(pefs))
        self.loss_history_ = {"joint": np.asarray(history, dtype=np.float64).reshape(-1, 2)}
        return self

    def _fit_arrays(self, data: _Prepared, n_kept: int, value_sum: float, device, saver: FitCheckpoint | None = None):
        """W, H and the loss history; ``n_kept`` and ``value_sum`` (the sum of D's entries)
        are over all columns, also where ``data`` holds only some of them."""
        r = self.n_components
        # scikit-learn's "random" init scale: entries of W H start near the mean of D.
        scale = math.sqrt(value_sum / (data.n_examples * n_kept) / r)
        W = (scale * torch.rand((data.n_examples, r), generator=self._generator(0))).to(device)
        H = data.own_columns(scale * torch.rand((r, n_kept), generator=self._generator(1))).to(device)
        history = []
        saved = saver.load(device) if saver is not None else None
        if saved is not None:  # resume after saved.step iterations, exactly
            W, H, history = saved.arrays["W"], saved.arrays["H"], saved.history["joint"]
        start = 0 if saved is None else self.n_iters if saved.done else saved.step
        with _progress(self.n_iters, "D-NPEFF", self.progress, initial=start) as bar:
            for it in range(start, self.n_iters):
                WtD = data.t_times(W)  # (r, m)
                H = H.mul_(WtD.div_(torch.mm(W.T @ W, H).add_(EPS)))  # in place: one (r, m) temporary, not four
                DHt = data.times_t(H)  # (n, r)
                HHt = data.gram(H, H)
                W = W * DHt / (W @ HHt + EPS)
                if it % self.log_every == 0 or it == self.n_iters - 1:
                    loss = self._loss(data, W, HHt, data.times_t(H))
                    if not math.isfinite(loss):
                        raise NpeffDivergenceError(
                            f"the D-NPEFF loss became {loss} at iteration {it}: the D-PEFs hold NaN or inf values, or values "
                            "whose squares overflow float32; check pefs.F.data and pefs.frobenius_norms"
                        )
                    history.append((it, loss))
                    bar.set_postfix(loss=f"{loss:.4g}")
                    if self.tol and len(history) > 1 and abs(history[-2][1] - loss) <= self.tol * abs(history[-2][1]):
                        bar.update(self.n_iters - it)
                        break
                bar.update(1)
                if saver is not None and saver.due(it + 1):
                    saver.save(it + 1, {"W": W, "H": H}, {}, {"joint": history})
        if saver is not None and not (saved is not None and saved.done):
            saver.save(self.n_iters, {"W": W, "H": H}, {}, {"joint": history}, done=True)
        return W, H, history

    def transform(self, pefs: DPefs) -> np.ndarray:
        """Coefficients W of shape (n_examples, n_components) for (new) D-PEFs, H_ fixed."""
        self._check_fitted()
        self._check_pefs(pefs, fitted=True)
        device = self._device()
        D, _ = self._matrix(pefs, self.kept_columns_)
        data = _Prepared(_to_torch_csr(D, device), None, 0.0, pefs.n_examples)
        return self._coefficients(data, torch.from_numpy(self.H_).to(device)).cpu().numpy()

    def _coefficients(self, data: _Prepared, H: torch.Tensor, n_slots: int = 1) -> torch.Tensor:
        """W (n_examples, r) with H fixed (n_slots: one row per example, kept for LrmNpeff's signature)."""
        W = torch.rand((data.n_examples, self.n_components), generator=self._generator(2)).to(H.device)
        return _multiplicative_w_steps(W, data.times_t(H), data.gram(H, H), self.n_iters_transform, tol=1e-7)

    def fit_transform(self, pefs: DPefs) -> np.ndarray:
        return self.fit(pefs).W_

    def loss(self, pefs: DPefs, W: np.ndarray | None = None) -> float:
        """The (normalised) reconstruction loss ‖D − W H‖²_F on these D-PEFs."""
        self._check_fitted()
        D, squared_norm = self._matrix(pefs, self.kept_columns_)
        device = self._device()
        data = _Prepared(_to_torch_csr(D, device), None, squared_norm, pefs.n_examples)
        W = torch.from_numpy(self.transform(pefs) if W is None else W).to(device)
        H = torch.from_numpy(self.H_).to(device)
        return self._loss(data, W, data.gram(H, H), data.times_t(H))
