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
