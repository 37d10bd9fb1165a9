"""Per-example Fisher matrices (PEFs) held in memory, kept sparse.

Two kinds (method notes, section 1):

- :class:`LrmPefs`, low-rank: example i's Fisher is F_i = A_i A_iᵀ with A_i of shape
  (n_parameters, n_slots), column s = √p(y_s|x_i) ∇θ log p(y_s|x_i) for the s-th most
  probable class y_s. All A_iᵀ are stacked as the rows of one sparse matrix
  ``X`` of shape (n_examples * n_slots, n_parameters): row ``i * n_slots + s``.
- :class:`DPefs`, diagonal: f_i = Σ_y p(y|x_i) (∇θ log p(y|x_i))², the rows of a sparse
  ``F`` of shape (n_examples, n_parameters).

Each keeps only its ``n_values`` largest-magnitude entries per example, plus the
Frobenius norm of the *full* PEF, which normalisation needs.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from .arguments import positive_int
from .params import ParameterLayout


def _top_entries_per_row_block(dense: np.ndarray, n_values: int | None) -> np.ndarray:
    """Mask (same shape as ``dense``) of the n_values largest |entries|; exact zeros dropped."""
    flat = np.abs(dense).ravel()
    keep = flat > 0
    if n_values is not None and keep.sum() > n_values:
        cut = np.argpartition(flat, flat.size - n_values)[flat.size - n_values :]
        keep = np.zeros_like(keep)
        keep[cut] = True
    return keep.reshape(dense.shape)


def _as_labels(labels, n: int, n_classes: int = 0) -> np.ndarray:
    """(n,) int64 class indices, -1 for unknown; below ``n_classes`` where the logits say it."""
    if labels is None:
        return np.full(n, -1, dtype=np.int64)
    array = np.asarray(labels)
    if array.shape != (n,):
        raise ValueError(f"labels has shape {array.shape}, expected ({n},): one class index per example")
    if array.dtype.kind == "f" and not (np.isfinite(array).all() and (array == np.round(array)).all()):
        raise ValueError("labels must be whole class indices (-1 for unknown); some are fractional, NaN or infinite")
    if array.dtype.kind not in "iuf":
        raise TypeError(f"labels must be integer class indices, got {array.dtype}; map them to 0..n_classes-1 first")
    array = array.astype(np.int64)
    bad = (array < -1) | ((array >= n_classes) if n_classes else False)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        top = f"0..{n_classes - 1}" if n_classes else "0 or more"
        raise ValueError(f"label {int(array[i])} of example {i} is out of range: labels must be in {top}, or -1 for unknown")
    return array


def _check_finite(values: np.ndarray, name: str) -> None:
    if not np.isfinite(values).all():
        raise ValueError(f"{name} holds NaN or infinite values; PEFs must be finite: find where they came from "
                         "(a model in half precision, a diverged training) and compute them again")


def _as_logits(logits, n: int) -> np.ndarray:
    if logits is None:
        return np.zeros((n, 0), dtype=np.float32)
    logits = np.asarray(logits, dtype=np.float32)
    if logits.ndim != 2 or logits.shape[0] != n:
        raise ValueError(f"logits has shape {logits.shape}, expected ({n}, n_classes)")
    if not np.isfinite(logits).all():  # NaN logits read as predictions of class 0 in every table
        rows = np.flatnonzero(~np.isfinite(logits).all(axis=1))
        raise ValueError(f"logits of examples {rows[:5].tolist()} are NaN or infinite ({rows.size} rows): pass the "
                         "model's finite logits, or logits=None")
    return logits


def example_rows(n_examples: int, index) -> np.ndarray:
    """The examples ``index`` picks out of ``n_examples``, as PEF sets are indexed: an integer (one
    example, a set of one), a slice, a list of indices or a boolean mask."""
    try:
        return np.atleast_1d(np.arange(n_examples)[index])
    except (IndexError, TypeError, ValueError) as error:  # numpy's own words name no PEFs
        raise IndexError(f"PEFs are indexed by examples (an integer, a slice, a list of indices or a boolean mask "
                         f"of {n_examples}); got {index!r}: {error}") from None


@dataclass(kw_only=True)
class _PefsBase:
    frobenius_norms: np.ndarray  # (n_examples,): norm of the full, unsparsified PEF
    labels: np.ndarray  # (n_examples,) int, -1 where unknown
    logits: np.ndarray  # (n_examples, n_classes) float32; (n_examples, 0) where unknown
    layout: ParameterLayout
    info: dict = field(default_factory=dict)  # provenance: model, parameter filter, n_values, ...

    @property
    def n_examples(self) -> int:
        return int(self.frobenius_norms.shape[0])

    @property
    def n_parameters(self) -> int:
        return self.layout.n_parameters

    @property
    def n_classes(self) -> int:
        return int(self.logits.shape[1])

    @property
    def predictions(self) -> np.ndarray:
        if self.n_classes == 0:
            return np.full(self.n_examples, -1, dtype=np.int64)
        return self.logits.argmax(axis=1)

    def __repr__(self) -> str:  # the dataclass's printed every norm, logit and class slot: 268 lines for 120 examples
        slots = f", {self.n_slots} class slots each" if hasattr(self, "n_slots") else ""
        model = f", model {self.info['model']!r}" if self.info.get("model") else ""
        axis = "sketch coordinates" if self.info.get("sketch") else "parameters"  # a count sketch's d, not the model's
        return (f"{type(self).__name__}({self.n_examples} examples{slots}, {self.n_parameters} {axis}, "
                f"{self.matrix.nnz} values kept{model})")

    def _check_common(self) -> None:
        n = self.n_examples
        if self.labels.shape != (n,) or self.logits.shape[0] != n:
            raise ValueError("labels, logits and frobenius_norms must all have one entry per example")


@dataclass(kw_only=True, repr=False)
class LrmPefs(_PefsBase):
    """Low-rank PEFs. ``X``: csr of shape (n_examples * n_slots, n_parameters)."""

    X: sp.csr_matrix
    classes: np.ndarray  # (n_examples, n_slots) int: the class of each slot

    kind = "lrm"

    def __post_init__(self):
        self.X = sp.csr_matrix(self.X, dtype=np.float32)
        self.classes = np.asarray(self.classes, dtype=np.int64)
        self._check_common()
        if self.X.shape != (self.n_examples * self.n_slots, self.n_parameters):
            raise ValueError(
                f"X has shape {self.X.shape}, expected (n_examples * n_slots, n_parameters) = "
                f"({self.n_examples * self.n_slots}, {self.n_parameters})"
            )

    @property
    def n_slots(self) -> int:
        """Class slots kept per example: rows of ``X`` per example."""
        return int(self.classes.shape[1])

    @property
    def matrix(self) -> sp.csr_matrix:
        """The sparse PEF matrix, whatever the kind: ``X`` here."""
        return self.X

    @property
    def slot_classes(self) -> np.ndarray:
        """(n_examples, n_slots): the class of each slot."""
        return self.classes

    @classmethod
    def from_rows(cls, matrix: sp.csr_matrix, classes: np.ndarray, **common) -> "LrmPefs":
        """The record of a PEF matrix with one row per (example, slot), as stores hold it."""
        return cls(X=matrix, classes=classes, **common)

    def example_of_row(self) -> np.ndarray:
        """(n_examples * n_slots,): the example each row of X belongs to."""
        return np.repeat(np.arange(self.n_examples), self.n_slots)

    def dense(self) -> np.ndarray:
        """A of shape (n_examples, n_slots, n_parameters), for small problems and tests."""
        return self.X.toarray().reshape(self.n_examples, self.n_slots, self.n_parameters)

    def __getitem__(self, index) -> "LrmPefs":
        idx = example_rows(self.n_examples, index)
        rows = (idx[:, None] * self.n_slots + np.arange(self.n_slots)).ravel()
        return dataclasses.replace(
            self,
            X=self.X[rows],
            classes=self.classes[idx],
            frobenius_norms=self.frobenius_norms[idx],
            labels=self.labels[idx],
            logits=self.logits[idx],
        )

    @classmethod
    def from_dense(
        cls,
        A,
        *,
        labels=None,
        logits=None,
        n_values: int | None = None,
        layout: ParameterLayout | None = None,
        info: dict | None = None,
    ) -> "LrmPefs":
        """LRM-PEFs from A of shape (n_examples, n_slots, n_parameters).

        ``A[i, s]`` is √p ∇θ log p of example i's s-th class. With ``n_values``, each
        example keeps its n_values largest-magnitude entries (the norms stay those of the
        full PEFs).
        """
        A = _dense_input(A, "A", n_values, layout, info)
        if A.ndim != 3:
            raise ValueError(f"A must have shape (n_examples, n_slots, n_parameters), got {A.shape}")
        n, c, m = A.shape
        if 0 in A.shape:
            raise ValueError(f"A has shape {A.shape}: it needs at least one example, one class slot and one parameter")
        _check_finite(A, "A")
        gram = np.einsum("icm,idm->icd", A.astype(np.float64), A.astype(np.float64))
        norms = np.sqrt((gram**2).sum(axis=(1, 2))).astype(np.float32)
        kept = np.stack([np.where(_top_entries_per_row_block(A[i], n_values), A[i], 0) for i in range(n)])
        logits = _as_logits(logits, n)
        return cls(
            X=sp.csr_matrix(kept.reshape(n * c, m)),
            classes=np.tile(np.arange(c), (n, 1)),
            frobenius_norms=norms,
            labels=_as_labels(labels, n, logits.shape[1]),
            logits=logits,
            layout=layout or ParameterLayout.anonymous(m),
            info=dict(info or {}, source="dense", n_values=n_values),
        )


@dataclass(kw_only=True, repr=False)
class DPefs(_PefsBase):
    """Diagonal PEFs. ``F``: csr of shape (n_examples, n_parameters), non-negative."""

    F: sp.csr_matrix

    kind = "d"

    def __post_init__(self):
        self.F = sp.csr_matrix(self.F, dtype=np.float32)
        self._check_common()
        if self.F.shape != (self.n_examples, self.n_parameters):
            raise ValueError(f"F has shape {self.F.shape}, expected ({self.n_examples}, {self.n_parameters})")

    @property
    def matrix(self) -> sp.csr_matrix:
        """The sparse PEF matrix, whatever the kind: ``F`` here."""
        return self.F

    def example_of_row(self) -> np.ndarray:
        """(n_examples,): the example each row of F belongs to, itself."""
        return np.arange(self.n_examples)

    @property
    def slot_classes(self) -> np.ndarray:
        """(n_examples, 0): D-PEFs sum their slots, which are not kept."""
        return np.zeros((self.n_examples, 0), np.int64)

    @classmethod
    def from_rows(cls, matrix: sp.csr_matrix, classes: np.ndarray, **common) -> "DPefs":
        """The record of a PEF matrix with one row per example (``classes`` are not kept)."""
        return cls(F=matrix, **common)

    def dense(self) -> np.ndarray:
        """f of shape (n_examples, n_parameters), for small problems and tests."""
        return self.F.toarray()

    def __getitem__(self, index) -> "DPefs":
        idx = example_rows(self.n_examples, index)
        return dataclasses.replace(
            self,
            F=self.F[idx],
            frobenius_norms=self.frobenius_norms[idx],
            labels=self.labels[idx],
            logits=self.logits[idx],
        )

    @classmethod
    def from_dense(
        cls,
        f,
        *,
        labels=None,
        logits=None,
        n_values: int | None = None,
        layout: ParameterLayout | None = None,
        info: dict | None = None,
    ) -> "DPefs":
        """D-PEFs from f of shape (n_examples, n_parameters), non-negative."""
        f = _dense_input(f, "f", n_values, layout, info)
        if f.ndim != 2:
            raise ValueError(f"f must have shape (n_examples, n_parameters), got {f.shape}")
        _check_finite(f, "f")
        if (f < 0).any():
            raise ValueError("D-PEFs are non-negative (sums of squared gradients); f has negative entries")
        n, m = f.shape
        if 0 in f.shape:
            raise ValueError(f"f has shape {f.shape}: it needs at least one example and one parameter")
        norms = np.linalg.norm(f.astype(np.float64), axis=1).astype(np.float32)
        kept = np.stack([np.where(_top_entries_per_row_block(f[i], n_values), f[i], 0) for i in range(n)])
        logits = _as_logits(logits, n)
        return cls(
            F=sp.csr_matrix(kept),
            frobenius_norms=norms,
            labels=_as_labels(labels, n, logits.shape[1]),
            logits=logits,
            layout=layout or ParameterLayout.anonymous(m),
            info=dict(info or {}, source="dense", n_values=n_values),
        )


def _dense_input(values, name: str, n_values, layout, info) -> np.ndarray:
    """The arguments of ``from_dense`` checked, its array as float32: numpy's own errors (a string
    that is no number, a sparse matrix read as one object) named no argument, and a complex array
    lost its imaginary part with a warning only."""
    if sp.issparse(values):
        raise TypeError(f"{name} is a scipy sparse matrix; from_dense takes a dense array: pass {name}.toarray()")
    if hasattr(values, "detach"):  # a torch tensor, maybe still in a graph or on a GPU: its values
        values = values.detach().cpu()
    array = np.asarray(values)
    if array.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold real numbers (gradients), got {array.dtype} values")
    if n_values is not None:
        positive_int(n_values, "n_values")
    if layout is not None and not isinstance(layout, ParameterLayout):
        raise TypeError(f"layout must be a ParameterLayout (or None), got {type(layout).__name__}")
    if info is not None and not isinstance(info, dict):
        raise TypeError(f"info must be a dict of facts about the PEFs (or None), got {type(info).__name__}")
    return array.astype(np.float32)
