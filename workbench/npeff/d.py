"""D-NPEFF: diagonal PEFs factored as f_i ≈ Σ_j W_ij h_j with W, H ≥ 0 (method notes, section 4).

A non-negative matrix factorisation by multiplicative updates (Lee & Seung) on the
Frobenius loss, with the sparse D-PEF matrix kept sparse in both orientations.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import scipy.sparse as sp
import torch

from ..core.pefs import DPefs
from ..store.checkpoint import FitCheckpoint
from ..store.formats import D_DECOMPOSITION
from .base import NpeffBase, NpeffConvergenceWarning, NpeffDivergenceError, division_floor, multiplicative_w_steps, positive_int, progress_bar
from .data import Columns, FitData, no_reduce, scaled_rows, to_torch_csr
from .expand import Start, continue_from


class DNpeff(NpeffBase):
    """Diagonal NPEFF: non-negative matrix factorisation f_i ≈ Σ_j W_ij h_j (method notes, section 4).

    Parameters as in :class:`~workbench.npeff.LrmNpeff`; ``n_iters`` alternating W and H
    updates. With ``tol``, a fit that uses all of them before the loss settles warns
    (:class:`NpeffConvergenceWarning`, a scikit-learn ``ConvergenceWarning``).

    Attributes
    ----------
    W_ : ndarray of shape (n_examples, n_components), ≥ 0.
    H_ : ndarray of shape (n_components, n_kept_columns), ≥ 0.
    n_classes_ : the model's classes (the D-PEFs summed their slots).
    kept_columns_, loss_history_ ({"joint": (k, 2)}), layout_, n_parameters_, pef_info_.
    """

    kind = DPefs.kind
    file_format = D_DECOMPOSITION
    components_name = "H"
    count_keys = ("n_classes",)
    _parameter_constraints = {
        **NpeffBase._parameter_constraints,
        "n_iters": positive_int(),  # 0 would return the random start as the fit
        "n_iters_transform": positive_int(),
        "device": [None, str, torch.device],
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

    @classmethod
    def for_iterations(cls, n_components: int, n_iters_g_only: int, n_iters_joint: int, **settings) -> "DNpeff":
        """The estimator for a budget given as LRM-NPEFF's two phases: their sum, D-NPEFF having one."""
        return cls(n_components, n_iters=n_iters_g_only + n_iters_joint, **settings)

    @staticmethod
    def _unit_scale(norms: np.ndarray) -> np.ndarray:
        return 1.0 / norms  # f_i / ‖f_i‖

    def _matrix(self, pefs: DPefs, kept_columns: np.ndarray, reduce=no_reduce) -> tuple[sp.csr_matrix, float]:
        D = scaled_rows(pefs.F[:, kept_columns], self._row_scale(pefs))
        squared_norm = float(D.astype(np.float64).power(2).sum())
        return D, float(reduce(torch.tensor(squared_norm, dtype=torch.float64)))

    @staticmethod
    def _loss(data: FitData, W, HHt, DHt) -> float:
        """‖D − W H‖²_F = ‖D‖² − 2 Σ W ∘ (D Hᵀ) + Σ (WᵀW) ∘ (H Hᵀ)."""
        W, HHt, DHt = W.double(), HHt.double(), DHt.double()
        return float(data.squared_norm - 2 * (W * DHt).sum() + ((W.T @ W) * HHt).sum())

    def _fit_prepared(self, data: FitData, matrix: sp.csr_matrix, pefs: DPefs, columns: Columns, device,
                      saver: FitCheckpoint | None, initial: Start | None = None) -> None:
        W, H, history = self._fit_arrays(data, columns.n_kept, data.total(float(matrix.sum())), device, saver, initial)
        self.W_ = W.cpu().numpy()
        self.H_ = columns.joined(H).cpu().numpy()
        self.n_classes_ = pefs.n_classes
        self.loss_history_ = {"joint": np.asarray(history, dtype=np.float64).reshape(-1, 2)}

    def _fit_arrays(self, data: FitData, n_kept: int, value_sum: float, device, saver: FitCheckpoint | None = None,
                    initial: Start | None = None):
        """W, H and the loss history; ``n_kept`` and ``value_sum`` (the sum of D's entries)
        are over all columns, also where ``data`` holds only some of them. With ``initial``,
        W and H start from it and its frozen components' rows of H never move."""
        r = self.n_components
        # scikit-learn's "random" init scale: entries of W H start near the mean of D.
        scale = math.sqrt(value_sum / (data.n_examples * n_kept) / r)
        W = scale * torch.rand((data.n_examples, r), generator=self._generator(0))
        H = scale * torch.rand((r, n_kept), generator=self._generator(1))
        W, H, frozen = continue_from(initial, W, H)
        W, H = W.to(device), data.own_columns(H).to(device)
        history = []
        saved = saver.load(device) if saver is not None else None
        if saved is not None:  # resume after saved.step iterations, exactly
            W, H, history = saved.arrays["W"], saved.arrays["H"], saved.history["joint"]
        start = 0 if saved is None else self.n_iters if saved.done else saved.step
        with progress_bar(self.n_iters, "D-NPEFF", self.progress, initial=start) as bar:
            for it in range(start, self.n_iters):
                WtD = data.t_times(W)  # (r, m)
                ratio = WtD.div_(torch.mm(W.T @ W, H).add_(division_floor(WtD, dim=0)))  # per column: as split
                ratio[:frozen] = 1  # frozen components stay exactly as they are
                H = H.mul_(ratio)  # in place: one (r, m) temporary, not four
                DHt = data.times_t(H)  # (n, r)
                HHt = data.gram(H, H)
                W = W * DHt / (W @ HHt + division_floor(DHt, dim=1))
                if it % self.log_every == 0 or it == self.n_iters - 1:
                    loss = self._loss(data, W, HHt, data.times_t(H))
                    if not math.isfinite(loss):
                        raise NpeffDivergenceError(
                            f"the D-NPEFF loss became {loss} at iteration {it}: the D-PEFs hold NaN or inf values, or values "
                            "whose squares overflow float32; check pefs.F.data and pefs.frobenius_norms"
                        )
                    history.append((it, loss))
                    bar.set_postfix(loss=f"{loss:.4g}")
                    if self.tol and self._settled(history):
                        bar.update(self.n_iters - it)
                        break
                bar.update(1)
                if saver is not None and saver.due(it + 1):
                    saver.save(it + 1, {"W": W, "H": H}, {}, {"joint": history})
        if saver is not None and not (saved is not None and saved.done):
            saver.save(self.n_iters, {"W": W, "H": H}, {}, {"joint": history}, done=True)
        if self.tol and self.n_iters and not self._settled(history):
            warnings.warn(
                f"D-NPEFF used all {self.n_iters} iterations before the loss settled to tol={self.tol}; "
                "raise n_iters for a tighter fit",
                NpeffConvergenceWarning,
                stacklevel=4,
            )
        return W, H, history

    def _settled(self, history) -> bool:
        """Whether the last two logged losses differ by at most ``tol`` (relative): the fit's stopping rule."""
        return len(history) > 1 and abs(history[-2][1] - history[-1][1]) <= self.tol * abs(history[-2][1])

    def _coefficients_of(self, data: FitData, H: torch.Tensor, pefs: DPefs) -> torch.Tensor:
        return self._coefficients(data, H)

    def _coefficients(self, data: FitData, H: torch.Tensor) -> torch.Tensor:
        """W (n_examples, r) with H fixed."""
        return multiplicative_w_steps(data.times_t(H), data.gram(H, H), self.n_iters_transform)

    def loss(self, pefs: DPefs, W: np.ndarray | None = None) -> float:
        """The (normalised) reconstruction loss ‖D − W H‖²_F on these D-PEFs, every entry of D counted: H is
        zero on the parameters the fit pruned (as :meth:`LrmNpeff.loss`)."""
        device = self._device()
        W = self._loss_coefficients(pefs, W, device)
        D, _ = self._matrix(pefs, self.kept_columns_)
        data = FitData(to_torch_csr(D, device), None, self._whole_squared_norm(pefs), pefs.n_examples)
        H = torch.from_numpy(self.H_).to(device)
        return self._loss(data, W, data.gram(H, H), data.times_t(H))
