"""The data a fit sees: the PEF matrix pruned and normalised, on the device in both orientations.

Pre-processing (method notes, section 2): parameters (columns) that too few examples touch
are pruned, each PEF is scaled to unit Frobenius norm, and the sparse matrix is kept in
CSR in both orientations, since torch's product with a transposed CSR matrix is an order
of magnitude slower than with a stored one. :class:`FitData` holds it and does the
products a fit needs; :class:`Columns` says which columns a process holds when the fit
is split across processes (:mod:`workbench.distributed`).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch

from ..core import compiled
from ..core.params import ParameterLayout
from . import kernels


def check_finite_norms(norms: np.ndarray) -> None:
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


#: Non-zeros of the PEF matrix handled at once where a whole-matrix temporary would cost several times the matrix.
BLOCK_VALUES = 1 << 20


def row_blocks(matrix: sp.csr_matrix, example_of_row: np.ndarray | None = None):
    """(first row, row after the last) of consecutive blocks of rows of about :data:`BLOCK_VALUES` non-zeros each;
    with ``example_of_row``, no example's rows are split between two blocks."""
    starts = np.searchsorted(matrix.indptr, np.arange(0, matrix.nnz, BLOCK_VALUES), side="right") - 1
    if example_of_row is not None and len(example_of_row):
        firsts = np.flatnonzero(np.r_[True, example_of_row[1:] != example_of_row[:-1]])  # an example's first row
        starts = firsts[np.searchsorted(firsts, starts, side="right") - 1]
    starts = np.unique(np.append(starts, 0))
    return zip(starts, np.append(starts[1:], matrix.shape[0]))


def examples_per_column(matrix: sp.csr_matrix, example_of_row: np.ndarray, n_examples: int) -> np.ndarray:
    """(n_columns,) int32: how many examples have a non-zero in each column (an example's class slots that
    share a column count once). Counted a block of rows at a time (:func:`row_blocks`): a COO matrix of the whole
    (an index pair and a one per non-zero, then sorted) took 230 MB over the 40 MB PEFs of 400 MiniLM examples."""
    counts = np.zeros(matrix.shape[1], np.int32)
    n_columns, rows_per_value = np.int64(matrix.shape[1]), np.diff(matrix.indptr)
    for start, stop in row_blocks(matrix, example_of_row):
        first, last = matrix.indptr[start], matrix.indptr[stop]
        examples = np.repeat(example_of_row[start:stop].astype(np.int64), rows_per_value[start:stop])
        pairs = np.unique(examples * n_columns + matrix.indices[first:last])  # (example, column), each once
        columns, n = np.unique(pairs % n_columns, return_counts=True)
        counts[columns] += n.astype(np.int32)
    return counts


def scaled_rows(matrix: sp.csr_matrix, row_scale: np.ndarray) -> sp.csr_matrix:
    """``matrix`` with row i times ``row_scale[i]``, in float32, each product taken in float64, laid out as the
    sparse product ``diags(row_scale) @ matrix`` lays it out (each row's entries in reverse order): a fit's
    checkpoint names its data by these arrays, and a copy in the store's order made every checkpoint saved before
    unusable. Made a block of rows at a time (:func:`row_blocks`): the product's float64 copies of the whole
    matrix took three times the memory. A matrix the product would change otherwise (entries to merge or drop)
    goes through the product itself."""
    row_scale = np.asarray(row_scale, dtype=np.float64)
    if not matrix.has_canonical_format or not row_scale.all() or not matrix.data.all():
        return sp.csr_matrix(sp.diags(row_scale) @ matrix.astype(np.float64), dtype=np.float32)
    indptr = matrix.indptr
    indices, data = np.empty_like(matrix.indices), np.empty(matrix.nnz, dtype=np.float32)
    for start, stop in row_blocks(matrix):
        per_row = np.diff(indptr[start:stop + 1])
        first, last = indptr[start], indptr[stop]
        # the k-th entry of a row is its (length − 1 − k)-th as stored
        source = np.repeat(indptr[start + 1:stop + 1] - 1, per_row) - (np.arange(first, last) - np.repeat(indptr[start:stop], per_row))
        indices[first:last] = matrix.indices[source]
        data[first:last] = matrix.data[source] * np.repeat(row_scale[start:stop], per_row)
    return sp.csr_matrix((data, indices, indptr.copy()), shape=matrix.shape)


def no_reduce(t: torch.Tensor) -> torch.Tensor:
    return t


@dataclass
class FitData:
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
    reduce: Callable[[torch.Tensor], torch.Tensor] = no_reduce
    columns: slice | None = None  # this process's part of all kept columns; None: all of them

    def own_columns(self, M: torch.Tensor) -> torch.Tensor:
        """This process's columns of M (r, n_kept over all processes), so a random
        initialisation drawn whole is the same whatever the number of processes."""
        return M if self.columns is None else M[:, self.columns].contiguous()

    def total(self, value: float) -> float:
        """A scalar summed over all columns (all processes)."""
        return float(self.reduce(torch.tensor(value, dtype=torch.float64, device=self.matrix.device)))

    def _on_cpu_kernels(self) -> bool:
        return self.matrix_t is not None and self.matrix_t.device.type == "cpu" and compiled.available()

    def times_t(self, M: torch.Tensor) -> torch.Tensor:
        """X Mᵀ for M of shape (r, n_kept): (n_rows, r)."""
        if self._on_cpu_kernels():  # one streaming pass over Xᵀ (see workbench.npeff.kernels)
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


def to_torch_csr(matrix: sp.csr_matrix, device: torch.device) -> torch.Tensor:
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


def prepare(matrix: sp.csr_matrix, squared_norm: float, n_examples: int, device: torch.device,
            reduce: Callable[[torch.Tensor], torch.Tensor] = no_reduce, columns: slice | None = None) -> FitData:
    """The fit's data from the pruned, normalised PEF matrix (scipy CSR), both orientations on ``device``."""
    return FitData(
        to_torch_csr(matrix, device), to_torch_csr(matrix.T.tocsr(), device), squared_norm, n_examples, reduce, columns
    )


def lrm_squared_norm(X: sp.csr_matrix, n_slots: int, reduce=no_reduce) -> float:
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


@dataclass
class Columns:
    """The kept parameter columns a fit works on, and how they are split across processes.

    One process: all kept columns (``own``), sums and results as they are. A fit with the
    columns split across processes (:mod:`workbench.distributed`): this process's columns,
    ``span`` of all kept ones; ``reduce`` sums a quantity over every process's columns and
    ``gather`` joins results of shape (r, own columns) into (r, all kept columns);
    ``gather_steps`` tells each process's saved checkpoint steps to all of them.
    """

    own: np.ndarray  # this process's kept columns: indices on the full parameter axis, ascending
    n_kept: int  # kept columns over all processes
    layout: ParameterLayout  # the full parameter axis
    span: slice | None = None  # this process's part of all kept columns; None: all of them
    reduce: Callable[[torch.Tensor], torch.Tensor] = no_reduce
    gather: Callable[[torch.Tensor], torch.Tensor] | None = None
    #: every process's saved checkpoint steps (a checkpointed fit resumes at a step all of them hold)
    gather_steps: Callable[[list[int]], list[list[int]]] | None = None

    @classmethod
    def all_kept(cls, kept: np.ndarray, layout: ParameterLayout) -> "Columns":
        """Every kept column, in one process."""
        return cls(kept, kept.size, layout)

    def joined(self, part: torch.Tensor) -> torch.Tensor:
        """(r, this process's columns) → (r, all kept columns)."""
        return part if self.gather is None else self.gather(part)

    def kept_columns(self) -> np.ndarray:
        """All kept columns' indices on the full parameter axis."""
        if self.gather is None:
            return self.own.astype(np.int64)
        return self.gather(torch.from_numpy(self.own[None, :])).cpu().numpy()[0].astype(np.int64)
