"""One batch's PEFs as the store writes them, and the in-memory PEF set made from several.

:class:`PefChunk` is the unit everything between the model and the disk passes around:
:mod:`workbench.fisher` makes one per batch, :mod:`workbench.store` writes and reads
them as one file each, and :func:`chunks_to_pefs` joins them into an
:class:`~workbench.core.pefs.LrmPefs` or :class:`~workbench.core.pefs.DPefs`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from .kinds import kind as kind_named
from .params import ParameterLayout


@dataclass
class PefChunk:
    """The PEFs of one batch, sparse, in the layout the store writes.

    LRM: entries of row r = i * n_slots + s (example i, slot s) are
    ``values[row_offsets[r]:row_offsets[r+1]]`` at parameter ``indices[...]``.
    D: one row per example, so n_slots is 1 and ``classes`` is still (b, k).
    """

    values: np.ndarray  # (nnz,) float32
    indices: np.ndarray  # (nnz,) int64, parameter index on the flat axis
    row_offsets: np.ndarray  # (n_rows + 1,) int64
    classes: np.ndarray  # (b, k) int64
    frobenius_norms: np.ndarray  # (b,) float32
    labels: np.ndarray  # (b,) int64
    logits: np.ndarray  # (b, n_classes) float32
    arrays_order = ("values", "indices", "row_offsets", "classes", "frobenius_norms", "labels", "logits")

    @property
    def n_examples(self) -> int:
        return int(self.labels.shape[0])

    def arrays(self) -> dict[str, np.ndarray]:
        return {name: getattr(self, name) for name in self.arrays_order}


def join_chunks(parts: list[PefChunk], examples: np.ndarray) -> PefChunk:
    """One batch's chunk from chunks of parts of it: ``examples[j]`` is the batch row of the
    parts' j-th example, counted over the parts in order."""
    order = np.argsort(np.asarray(examples), kind="stable")  # batch row -> its place in the parts
    values = np.concatenate([c.values for c in parts])
    indices = np.concatenate([c.indices for c in parts])
    counts = np.concatenate([np.diff(c.row_offsets) for c in parts])
    offsets = np.concatenate([[0], np.cumsum(counts)])
    per_example = len(counts) // len(order)  # LRM: one row per slot; D: one
    rows = (order[:, None] * per_example + np.arange(per_example)).ravel()
    lengths = counts[rows]
    # the entries of each row in turn: its start, then consecutive positions
    take = np.repeat(offsets[rows] - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths) + np.arange(lengths.sum())
    joined = {name: np.concatenate([getattr(c, name) for c in parts])[order]
              for name in ("classes", "frobenius_norms", "labels", "logits")}
    return PefChunk(values=values[take], indices=indices[take],
                    row_offsets=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64), **joined)


def chunks_to_pefs(chunks: list[PefChunk], kind: str, layout: ParameterLayout, info: dict | None = None):
    """Concatenate chunks into one in-memory PEF set (:class:`LrmPefs` or :class:`DPefs`)."""
    if not chunks:
        raise ValueError("no PEF chunks to concatenate")
    m = layout.n_parameters
    values = np.concatenate([c.values for c in chunks])
    indices = np.concatenate([c.indices for c in chunks])
    row_counts = np.concatenate([np.diff(c.row_offsets) for c in chunks])
    indptr = np.concatenate([[0], np.cumsum(row_counts)]).astype(np.int64)
    matrix = sp.csr_matrix((values, indices, indptr), shape=(len(row_counts), m))
    return kind_named(kind).pefs_type.from_rows(
        matrix,
        np.concatenate([c.classes for c in chunks]),
        frobenius_norms=np.concatenate([c.frobenius_norms for c in chunks]),
        labels=np.concatenate([c.labels for c in chunks]),
        logits=np.concatenate([c.logits for c in chunks]),
        layout=layout,
        info=dict(info or {}),
    )
