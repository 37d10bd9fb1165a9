"""LRM-NPEFF: low-rank PEFs factored as F_i ≈ Σ_j W_ij g_j g_jᵀ with W ≥ 0 (method notes, section 3).

The G step is gradient descent on a quartic loss, where no fixed step size suits every
data set (1e-2 can recover one problem and give NaN on another). Along the gradient
direction D the loss is an exact quartic polynomial in the step t, whose coefficients
follow from X Dᵀ and small r × r products; the step is its minimiser (an exact line
search). That costs one sparse product per step, the same as recomputing X Gᵀ, which the
line search replaces (X Gᵀ is updated as X Gᵀ − t X Dᵀ and recomputed exactly whenever the
loss is logged). A fixed ``learning_rate`` is kept for comparison with the original
implementation; a fit with one that diverges stops with :class:`NpeffDivergenceError`
instead of returning NaN. Where G lives during the fit, over parameters or over examples,
is :mod:`workbench.npeff.solvers`'.
"""

from __future__ import annotations

import math
import warnings
from numbers import Real

import numpy as np
import scipy.sparse as sp
import torch
from sklearn.utils._param_validation import Interval, InvalidParameterError, StrOptions

from ..core.defaults import N_ITERS_G_ONLY, N_ITERS_JOINT
from ..core.pefs import LrmPefs
from ..store.checkpoint import FitCheckpoint
from ..store.formats import LRM_DECOMPOSITION
from .base import NpeffBase, NpeffConvergenceWarning, NpeffDivergenceError, division_floor, multiplicative_w_steps, positive_int, progress_bar
from .data import Columns, FitData, lrm_squared_norm, no_reduce, scaled_rows, to_torch_csr
from .expand import Start, continue_from
from .solvers import SOLVERS, choose_solver, make_space


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


class LrmNpeff(NpeffBase):
    """Low-rank NPEFF: F_i ≈ Σ_j W_ij g_j g_jᵀ, W ≥ 0 (method notes, section 3).

    Parameters
    ----------
    n_components : number of components r.
    n_iters_g_only : G steps with W fixed at its random initialisation.
    n_iters_joint : alternating W (multiplicative) and G (gradient) steps.
    learning_rate : "auto" (exact line search, see the module's notes) or a fixed G step size.
    orthogonal_reg : weight λ of the penalty λ·c·Σ_{j≠k} (g_j·g_k)², pulling G Gᵀ toward a
        diagonal; c = Σ_i ‖F_i‖²_F (n_examples after normalisation). Around 0.1 is strong.
    min_nonzero_per_col : drop parameters non-zero in fewer examples than this.
    normalize : divide each A_i by √‖F_i‖_F so every PEF has unit Frobenius norm.
    log_every : record the loss every this many steps.
    tol : stop the joint phase once the loss changes by less than tol (relative) over
        ``log_every`` steps; 0 runs every iteration.
    n_iters_transform : the most multiplicative steps when fitting coefficients of new examples; they stop
        earlier once no coefficient moves by more than 1e-7 of the largest in 10 steps.
    seed : draws the starting W (row i for the i-th example) and G. The examples' order is part of the draw:
        the same PEFs in another order start elsewhere and may settle on other components (on the tiny run,
        one of 16, and a mean strategy purity 0.872-0.931 over orders as over seeds), so report a reading over
        seeds (``python -m workbench.evaluate``), not from one fit.
    progress : show progress bars (tqdm).
    device : None (CUDA when available, else CPU), "cpu", "cuda", ...
    solver : where G lives during the fit (:mod:`workbench.npeff.solvers`): "primal" keeps
        G (r × parameters) and reads the sparse PEFs twice a step; "dual" keeps G as a
        combination of its start and the PEFs' rows, with the examples' Gram matrix
        (n_rows², float64) computed once, and a step then costs n_rows² · r, whatever the
        number of parameters. The same fit either way (up to rounding); "auto" takes the
        dual when its Gram matrix is the smaller work and fits in 1 GiB (on a GPU, also only
        when the problem is large enough that the steps are not bound by kernel launches).

    Attributes
    ----------
    W_ : ndarray of shape (n_examples, n_components), coefficients, ≥ 0.
    G_ : ndarray of shape (n_components, n_kept_columns), the pseudo-Fisher vectors g_j.
    kept_columns_ : ndarray of shape (n_kept_columns,), old (parameter) index of each column.
    loss_history_ : {"g_only": (k, 2), "joint": (k, 2)} arrays of (iteration, loss).
    solver_ : "primal" or "dual", the solver the fit used.
    n_slots_ : class slots per example: rows of X per example.
    layout_, n_parameters_, pef_info_ : what the PEFs were computed over.
    """

    kind = LrmPefs.kind
    file_format = LRM_DECOMPOSITION
    components_name = "G"
    count_keys = ("n_slots", "n_classes")  # files of format version 1 called the slots "n_classes"
    _parameter_constraints = {
        **NpeffBase._parameter_constraints,
        "n_iters_g_only": positive_int(0),
        "n_iters_joint": positive_int(0),
        "learning_rate": [StrOptions({"auto"}), Interval(Real, 0, None, closed="neither")],
        "orthogonal_reg": [Interval(Real, 0, None, closed="left")],
        "n_iters_transform": positive_int(),
        "device": [None, str, torch.device],
        "solver": [StrOptions(set(SOLVERS))],
    }

    def __init__(
        self,
        n_components: int = 32,
        *,
        n_iters_g_only: int = N_ITERS_G_ONLY,
        n_iters_joint: int = N_ITERS_JOINT,
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

    @classmethod
    def for_iterations(cls, n_components: int, n_iters_g_only: int, n_iters_joint: int, **settings) -> "LrmNpeff":
        """The estimator for a budget given as both phases' iterations (as the command line and
        the main job give it, whatever the kind)."""
        return cls(n_components, n_iters_g_only=n_iters_g_only, n_iters_joint=n_iters_joint, **settings)

    def _validate_params(self) -> None:
        super()._validate_params()
        if self.n_iters_g_only + self.n_iters_joint == 0:  # the fit would return its random start
            raise InvalidParameterError(
                f"{type(self).__name__} needs at least one iteration: n_iters_g_only and n_iters_joint are both 0; "
                "raise n_iters_joint (e.g. n_iters_joint=400)")

    # -- the data ----------------------------------------------------------------------

    @staticmethod
    def _unit_scale(norms: np.ndarray) -> np.ndarray:
        return 1.0 / np.sqrt(norms)  # A_i / √‖F_i‖ gives ‖A_i A_iᵀ‖ = 1

    def _matrix(self, pefs: LrmPefs, kept_columns: np.ndarray, reduce=no_reduce) -> tuple[sp.csr_matrix, float]:
        X = scaled_rows(pefs.X[:, kept_columns], np.repeat(self._row_scale(pefs), pefs.n_slots))
        return X, lrm_squared_norm(X, pefs.n_slots, reduce)

    # -- the loss and its pieces ------------------------------------------------------

    def _loss(self, data: FitData, W, AG, GG, n_slots: int, regularised: bool = True) -> float:
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

    def _ortho_weight(self, data: FitData) -> float:
        # Scaled by the loss's constant term (= n_examples after normalisation), so one
        # orthogonal_reg suits data sets of any size.
        return self.orthogonal_reg * data.squared_norm

    def _solver(self, data: FitData, n_kept: int, device) -> str:
        return choose_solver(
            self.solver, n_rows=data.matrix.shape[0], nnz=data.total(float(data.matrix.values().numel())),
            n_components=self.n_components, n_columns=float(n_kept), n_iterations=self.n_iters_g_only + self.n_iters_joint,
            device=device,
        )

    def _fit_arrays(self, data: FitData, n_slots: int, n_kept: int, device, checkpoint: FitCheckpoint | None = None,
                    start: Start | None = None):
        """The fitted state {W, G, ...} and loss history; G dense (r, this process's columns).
        With ``start``, W and G start from it and its frozen components' rows never move."""
        r = self.n_components
        W = torch.rand((data.n_examples, r), generator=self._generator(0))
        sigma = 1.0 / math.sqrt(r * n_kept / 2)
        G0 = sigma * torch.randn((r, n_kept), generator=self._generator(1))
        W, G0, frozen = continue_from(start, W, G0)
        W, G0 = W.to(device), data.own_columns(G0).to(device)
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
        with progress_bar(total, "LRM-NPEFF", self.progress, initial=saved.step if saved else 0) as bar:
            for phase, n_iters in (("g_only", self.n_iters_g_only), ("joint", self.n_iters_joint)):
                for it in range(n_iters):
                    step += 1
                    if saved is not None and step <= saved.step:
                        continue
                    if phase == "joint":
                        self._w_step(data, state, n_slots)
                    self._g_step(space, state, n_slots, phase, it, frozen)
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
                stacklevel=4,
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

    def _w_step(self, data: FitData, state: dict, n_slots: int) -> None:
        numer = state["AG"].reshape(data.n_examples, n_slots, -1).square().sum(dim=1)
        W = state["W"]
        state["W"] = W * numer / (W @ state["GG"].square() + division_floor(numer, dim=1))
        state["loss"] = self._loss(data, state["W"], state["AG"], state["GG"], n_slots)

    def _g_step(self, space, state: dict, n_slots: int, phase: str, it: int, frozen: int = 0) -> None:
        """One gradient step on G, of the size that minimises the loss along the gradient
        (the first ``frozen`` components left as they are: their rows of the step are zero)."""
        W, G, AG, GG = state["W"], state["G"], state["AG"], state["GG"]
        grad = self._g_gradient(space, W, G, AG, GG, n_slots)  # (r, m)
        if frozen:
            grad = space.freeze(grad, frozen)
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

    def _loss_along(self, data: FitData, W, AG, AD, GG, GD, DD, n_slots: int) -> np.ndarray:
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

    def _fit_prepared(self, data: FitData, matrix: sp.csr_matrix, pefs: LrmPefs, columns: Columns, device,
                      saver: FitCheckpoint | None, start: Start | None = None) -> None:
        state, history = self._fit_arrays(data, pefs.n_slots, columns.n_kept, device, saver, start)
        self.W_ = state["W"].cpu().numpy()
        self.G_ = columns.joined(state["G"]).cpu().numpy()
        self.n_slots_ = pefs.n_slots
        self.loss_history_ = {k: np.asarray(v, dtype=np.float64).reshape(-1, 2) for k, v in history.items()}

    def _coefficients_of(self, data: FitData, G: torch.Tensor, pefs: LrmPefs) -> torch.Tensor:
        return self._coefficients(data, G, pefs.n_slots)

    def _coefficients(self, data: FitData, G: torch.Tensor, n_slots: int) -> torch.Tensor:
        """W (n_examples, r) with G fixed: a non-negative least-squares fit by multiplicative steps."""
        AG = data.times_t(G)
        numer = AG.reshape(data.n_examples, n_slots, -1).square().sum(dim=1)
        Q = data.gram(G, G).square()
        return multiplicative_w_steps(numer, Q, self.n_iters_transform)

    def loss(self, pefs: LrmPefs, W: np.ndarray | None = None) -> float:
        """The (normalised) reconstruction loss Σ_i ‖F_i − Σ_j W_ij g_j g_jᵀ‖²_F on these PEFs, every entry
        of F_i counted: the components are zero on the parameters the fit pruned (on the fitted PEFs with
        ``min_nonzero_per_col`` > 1 it is then above the logged loss, which, as the original's, leaves them out)."""
        device = self._device()
        W = self._loss_coefficients(pefs, W, device)
        X, _ = self._matrix(pefs, self.kept_columns_)
        data = FitData(to_torch_csr(X, device), None, self._whole_squared_norm(pefs), pefs.n_examples)
        G = torch.from_numpy(self.G_).to(device)
        return self._loss(data, W, data.times_t(G), data.gram(G, G), pefs.n_slots, regularised=False)
