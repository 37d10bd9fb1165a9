"""Where LRM-NPEFF keeps its components G during a fit: over parameters, or over examples.

The G step (:meth:`workbench.npeff.lrm.LrmNpeff._g_step`) needs only a few things of G and of
its gradient direction D: the products X Gᵀ (n_rows, r), the Grams G Dᵀ (r, r), and linear
combinations of them. Every gradient of the loss has the form −4·Bᵀ X + C·G, with B of
shape (n_rows, r) and C of shape (r, r), so from its random start G₀ the fit never leaves
the span of G₀'s rows and X's rows:

    G = P G₀ + H X        P: (r, r), H: (r, n_rows), n_rows = examples × slots.

- :class:`ParameterSpace` ("primal") stores G itself, (r, m): each step makes two passes
  over the sparse X (see :mod:`workbench.npeff.kernels`) and r × m dense work.
- :class:`ExampleSpace` ("dual") stores (P, H), with the examples' Gram matrix
  K = X Xᵀ (n_rows, n_rows), Z = X G₀ᵀ and Q₀ = G₀ G₀ᵀ computed once. Then
  X Gᵀ = Z Pᵀ + K Hᵀ and G₁ G₂ᵀ = P₁ Q₀ P₂ᵀ + P₁ Zᵀ H₂ᵀ + H₁ Z P₂ᵀ + H₁ K H₂ᵀ, so a step
  costs one (n_rows × n_rows)·(n_rows × r) product and never reads X or anything of
  size m; G is formed once, at the end. In exact arithmetic the iterates are the
  primal's. Everything is kept in float64: near a minimum ‖D‖² is a small sum of large
  terms that cancel, which float32 would lose.

The dual pays off when K is smaller than X and G (n_rows² ≤ nnz + r·m) and is worth its
one-off cost (K reads one column of X per non-zero, at random: about as long as five to
ten primal steps); :func:`choose_solver` decides for ``solver="auto"``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch

from ..core import compiled
from ..store.files import StoreError
from . import kernels
from .data import FitData

SOLVERS = ("auto", "primal", "dual")
MAX_GRAM_BYTES = 2**30  # "auto" keeps K (float64) within this
MIN_ITERATIONS_FOR_DUAL = 20  # "auto" on a CPU: fewer steps than this do not repay K
# On a GPU K costs tens of primal steps, and both solvers' steps are bound by kernel
# launches until the primal's work (nnz + r·m) is large; the thresholds below come from
# the measurements on an H200 in benchmarks/README.md ("GPU").
MIN_GPU_ITERATIONS_FOR_DUAL = 40
MIN_GPU_WORK_FOR_DUAL = 3e7


def choose_solver(solver: str, *, n_rows: int, nnz: float, n_components: int, n_columns: float, n_iterations: int,
                  device: torch.device) -> str:
    """The solver that "auto" means for this problem ("primal" or "dual"); others pass through.

    ``nnz`` and ``n_columns`` are totals over all processes of a column-split fit, so every
    process decides alike. On a CPU the dual needs the compiled kernels that make K fast;
    on a GPU, a problem large enough that the primal's steps are not bound by launches.
    """
    if solver != "auto":
        return solver
    primal_work = nnz + n_components * n_columns
    fits_in_memory = 8 * n_rows**2 <= MAX_GRAM_BYTES
    cheaper_steps = n_rows**2 <= primal_work
    if device.type == "cuda":
        worth_it = n_iterations >= MIN_GPU_ITERATIONS_FOR_DUAL and primal_work >= MIN_GPU_WORK_FOR_DUAL
    else:
        worth_it = n_iterations >= MIN_ITERATIONS_FOR_DUAL and device.type == "cpu" and compiled.available()
    return "dual" if fits_in_memory and cheaper_steps and worth_it else "primal"


def make_space(solver: str, data: FitData, G0: torch.Tensor, progress: bool = False):
    """The space a fit with this (chosen) solver works in, for data and the initial G₀ (r, m)."""
    return ExampleSpace(data, G0, progress) if solver == "dual" else ParameterSpace(data)


def squared_norm(t: torch.Tensor) -> torch.Tensor:
    """‖t‖² as float64. Summed in float32 (torch sums in cascades, so this is accurate, and
    it scales only the G step's direction, which the line search undoes); float64 only
    where the float32 squares overflow."""
    norm = torch.linalg.vector_norm(t)
    if not torch.isfinite(norm):
        norm = torch.linalg.vector_norm(t, dtype=torch.float64)
    return norm.double().square()


class ParameterSpace:
    """G stored as it is, (r, m) float32 over this process's columns (the primal solver).

    A step works in place on two (r, m) arrays, G and the gradient's: a fresh array of
    that size each time (a gradient, a new G) costs its page faults, a quarter of a step
    at m = 2 M. So G is updated in place (the fit owns it) and :meth:`data_term` reuses
    one buffer, which :meth:`combine` and :meth:`scale` then overwrite."""

    name = "primal"

    def __init__(self, data: FitData):
        self.data = data
        self._buffer: torch.Tensor | None = None

    def initial(self, G0: torch.Tensor) -> torch.Tensor:
        return G0

    def data_term(self, B: torch.Tensor) -> torch.Tensor:
        """Bᵀ X for B of shape (n_rows, r), in the space's buffer (the previous one's is overwritten)."""
        self._buffer = self.data.t_times(B, out=self._buffer)
        return self._buffer

    def combine(self, a: float, T: torch.Tensor, C: torch.Tensor, G: torch.Tensor) -> torch.Tensor:
        """a·T + C·G, into T, in one pass over G."""
        return T.addmm_(C, G, beta=a)

    def scale(self, g: torch.Tensor, s: float) -> torch.Tensor:
        return g.mul_(s)

    def freeze(self, g: torch.Tensor, n: int) -> torch.Tensor:
        """g with its first n rows zero (a step that leaves those components as they are), in place."""
        g[:n] = 0
        return g

    def step(self, G: torch.Tensor, D: torch.Tensor, t: float) -> torch.Tensor:
        """G − t·D, in place."""
        return G.add_(D, alpha=-t)

    def times_t(self, g: torch.Tensor) -> torch.Tensor:
        """X gᵀ, (n_rows, r) float32, summed over all processes."""
        return self.data.times_t(g)

    def gram(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """a bᵀ, (r, r), summed over all processes."""
        return self.data.gram(a, b)

    def squared_norm(self, g: torch.Tensor) -> float:
        return float(self.data.reduce(squared_norm(g)))

    def refresh(self, g: torch.Tensor) -> torch.Tensor:
        return g

    def dense(self, g: torch.Tensor) -> torch.Tensor:
        return g

    def arrays(self, g: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"G": g}

    def from_arrays(self, arrays: dict[str, torch.Tensor]) -> torch.Tensor:
        if "G" not in arrays:
            raise StoreError("the checkpoint holds a fit by solver='dual'; resume it with solver='dual', or delete it")
        return arrays["G"]


@dataclass
class Coords:
    """A matrix P G₀ + H X of shape (r, m), by its coordinates (all float64)."""

    P: torch.Tensor  # (r, r)
    H: torch.Tensor  # (r, n_rows)
    KH: torch.Tensor  # (n_rows, r) = K Hᵀ, carried along so that a step multiplies by K once


class ExampleSpace:
    """G stored as P G₀ + H X (the dual solver); see the module's notes."""

    name = "dual"

    def __init__(self, data: FitData, G0: torch.Tensor, progress: bool = False):
        self.data = data
        self.G0 = G0  # (r, m) float32, this process's columns
        self.K = data.reduce(examples_gram(data, progress).to(G0.device))  # (n_rows, n_rows)
        self.Z = data.times_t(G0).double()  # (n_rows, r) = X G₀ᵀ
        G0_64 = G0.double()
        self.Q0 = data.reduce(G0_64 @ G0_64.T)  # (r, r)

    def initial(self, G0: torch.Tensor) -> Coords:
        """G₀ itself: P = I, H = 0."""
        r, n_rows = G0.shape[0], self.K.shape[0]
        like = dict(dtype=torch.float64, device=G0.device)
        return Coords(torch.eye(r, **like), torch.zeros((r, n_rows), **like), torch.zeros((n_rows, r), **like))

    def data_term(self, B: torch.Tensor) -> Coords:
        B = B.double()
        return Coords(torch.zeros_like(self.Q0), B.T, self.K @ B)

    def combine(self, a: float, T: Coords, C: torch.Tensor, G: Coords) -> Coords:
        C = C.double()
        return Coords(a * T.P + C @ G.P, a * T.H + C @ G.H, a * T.KH + G.KH @ C.T)

    def scale(self, g: Coords, s: float) -> Coords:
        return Coords(g.P * s, g.H * s, g.KH * s)

    def freeze(self, g: Coords, n: int) -> Coords:
        """g with its first n rows zero (a step that leaves those components as they are)."""
        P, H, KH = g.P.clone(), g.H.clone(), g.KH.clone()
        P[:n], H[:n], KH[:, :n] = 0, 0, 0
        return Coords(P, H, KH)

    def step(self, G: Coords, D: Coords, t: float) -> Coords:
        return Coords(G.P - t * D.P, G.H - t * D.H, G.KH - t * D.KH)

    def times_t(self, g: Coords) -> torch.Tensor:
        return (self.Z @ g.P.T + g.KH).float()

    def gram(self, a: Coords, b: Coords) -> torch.Tensor:
        """a bᵀ in float64 (r, r)."""
        return a.P @ self.Q0 @ b.P.T + (a.P @ self.Z.T) @ b.H.T + (a.H @ self.Z) @ b.P.T + a.H @ b.KH

    def squared_norm(self, g: Coords) -> float:
        return float(torch.trace(self.gram(g, g)))

    def refresh(self, g: Coords) -> Coords:
        """g with K Hᵀ recomputed, undoing the rounding that the steps' updates of it gather."""
        return Coords(g.P, g.H, self.K @ g.H.T)

    def dense(self, g: Coords) -> torch.Tensor:
        """P G₀ + H X, (r, m) float32, this process's columns: one pass over X."""
        return torch.addmm(self.data.t_times(g.H.T.float().contiguous()), g.P.float(), self.G0)

    def arrays(self, g: Coords) -> dict[str, torch.Tensor]:
        # K Hᵀ too: the steps carry it forward with their own rounding, which K @ H.T on resume
        # would not reproduce (a resumed fit ended 4e-6 away from the uninterrupted one)
        return {"P": g.P, "H": g.H, "KH": g.KH}

    def from_arrays(self, arrays: dict[str, torch.Tensor]) -> Coords:
        if "P" not in arrays or "H" not in arrays:
            raise StoreError("the checkpoint holds a fit by solver='primal'; resume it with solver='primal', or delete it")
        coords = Coords(arrays["P"].double(), arrays["H"].double(), None)
        if "KH" not in arrays:  # a checkpoint written before K Hᵀ was saved: rebuilt, exact to rounding
            return self.refresh(coords)
        return Coords(coords.P, coords.H, arrays["KH"].double())


def examples_gram(data: FitData, progress: bool = False) -> torch.Tensor:
    """K = X Xᵀ of this process's columns, float64 (n_rows, n_rows): on a GPU by cuSPARSE's
    sparse-sparse product, on the CPU by the numba kernel (scipy without it)."""
    from tqdm.auto import tqdm

    if data.matrix.device.type == "cuda":
        return sparse_gram(data.matrix, data.matrix_t)
    matrix, matrix_t = data.matrix.cpu(), data.matrix_t.cpu()
    if compiled.available():
        with tqdm(total=matrix.shape[0], desc="examples' Gram (dual solver)", unit="row", disable=not progress,
                  leave=False) as bar:
            return kernels.row_gram(matrix, matrix_t, on_rows_done=bar.update)
    X = sp.csr_matrix(
        (matrix.values().numpy().astype(np.float64), matrix.col_indices().numpy(), matrix.crow_indices().numpy()),
        shape=tuple(matrix.shape),
    )
    return torch.from_numpy((X @ X.T).toarray())


# Rows of X per sparse-sparse product: bounds the product's workspace (it grows with the
# row block's non-zeros times their columns' lengths).
_GRAM_ROW_BLOCK = 256


def sparse_gram(matrix: torch.Tensor, matrix_t: torch.Tensor) -> torch.Tensor:
    """X Xᵀ (n_rows, n_rows) float64 from X and Xᵀ in CSR, by torch's sparse-sparse product,
    a block of rows of X at a time."""
    X_t = matrix_t.to(torch.float64)
    crow, columns, values = matrix.crow_indices(), matrix.col_indices(), matrix.values().to(torch.float64)
    n_rows = matrix.shape[0]
    K = torch.empty((n_rows, n_rows), dtype=torch.float64, device=matrix.device)
    for start in range(0, n_rows, _GRAM_ROW_BLOCK):
        stop = min(start + _GRAM_ROW_BLOCK, n_rows)
        first, last = int(crow[start]), int(crow[stop])
        block = torch.sparse_csr_tensor(crow[start : stop + 1] - first, columns[first:last], values[first:last],
                                        size=(stop - start, matrix.shape[1]), check_invariants=False)
        K[start:stop] = (block @ X_t).to_dense()
    return K
