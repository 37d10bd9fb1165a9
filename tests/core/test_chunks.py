"""Chunks of parts of a batch joined back in the batch's order (a padding-sensitive model's
batch is computed in groups of one length, which need not be consecutive)."""

import numpy as np
import pytest

from workbench.core.chunks import PefChunk, join_chunks
from workbench.npeff.planted import planted_d, planted_lrm


def _chunk(pefs) -> PefChunk:
    matrix = pefs.matrix
    return PefChunk(values=matrix.data.astype(np.float32), indices=matrix.indices.astype(np.int64),
                    row_offsets=matrix.indptr.astype(np.int64), classes=pefs.slot_classes,
                    frobenius_norms=pefs.frobenius_norms, labels=pefs.labels, logits=pefs.logits)


@pytest.mark.parametrize("pefs", [planted_lrm(7, 30, 2, seed=1).pefs, planted_d(7, 30, seed=1).pefs], ids=["lrm", "d"])
def test_parts_in_any_order_join_back_to_the_batch(pefs):
    groups = [np.array([1, 4, 5]), np.array([0, 6]), np.array([2, 3])]
    joined = join_chunks([_chunk(pefs[rows]) for rows in groups], np.concatenate(groups))
    whole = _chunk(pefs)
    for name in PefChunk.arrays_order:
        np.testing.assert_array_equal(getattr(joined, name), getattr(whole, name), err_msg=name)


@pytest.mark.parametrize("problem", [planted_lrm(6, 8, 2, seed=1), planted_d(6, 8, 2, seed=1)], ids=["lrm", "d"])
def test_pef_sets_are_indexed_by_examples_one_included(problem):
    """pefs[0] raised numpy's 'invalid index to scalar variable'; a string, its own words about NumPy."""
    pefs = problem.pefs
    one = pefs[0]
    assert one.n_examples == 1 and np.array_equal(one.dense(), pefs[[0]].dense())
    assert pefs[np.arange(6) % 2 == 0].n_examples == 3 and pefs[1:3].n_examples == 2
    with pytest.raises(IndexError, match=r"PEFs are indexed by examples .* got 'a'"):
        pefs["a"]
    with pytest.raises(IndexError, match=r"PEFs are indexed by examples .* got 9"):
        pefs[9]


def test_dense_pefs_from_a_tensor_in_a_graph_are_its_values():
    """from_dense(A) of a tensor that requires grad was torch's "Can't call numpy() on Tensor that requires grad"."""
    import torch

    from workbench import LrmPefs

    A = torch.ones(2, 2, 3, requires_grad=True)
    assert np.array_equal(LrmPefs.from_dense(A).dense(), np.ones((2, 2, 3), dtype=np.float32))
