"""The fit's pre-processing against truth: the counts a block of rows at a time, the scaling exact."""

import numpy as np
import pytest
import scipy.sparse as sp

from workbench.npeff import data


def _pefs_matrix(n_examples: int, n_slots: int, n_columns: int, seed: int = 0) -> sp.csr_matrix:
    rng = np.random.default_rng(seed)
    dense = rng.random((n_examples * n_slots, n_columns)) * (rng.random((n_examples * n_slots, n_columns)) < 0.3)
    return sp.csr_matrix(dense.astype(np.float32))


@pytest.mark.parametrize("block_values", [1, 7, 50, 1 << 20])
def test_examples_per_column_counts_an_example_once_however_its_rows_are_blocked(monkeypatch, block_values):
    """Blocks of a few values split an example's class slots between two blocks unless they are kept together:
    a column two of its slots touch then counted it twice."""
    monkeypatch.setattr(data, "BLOCK_VALUES", block_values)
    n_examples, n_slots = 13, 3
    matrix = _pefs_matrix(n_examples, n_slots, 11)
    example_of_row = np.repeat(np.arange(n_examples), n_slots)
    touched = (matrix.toarray().reshape(n_examples, n_slots, -1) != 0).any(axis=1)
    np.testing.assert_array_equal(data.examples_per_column(matrix, example_of_row, n_examples), touched.sum(axis=0))


@pytest.mark.parametrize("block_values", [1, 7, 1 << 20])
def test_scaled_rows_are_the_sparse_product_array_for_array(monkeypatch, block_values):
    """A fit's checkpoint names its data by these arrays: scaled in the store's order, every checkpoint saved
    before was refused as of other data. Each product is taken in float64 and rounded once."""
    monkeypatch.setattr(data, "BLOCK_VALUES", block_values)
    matrix, scale = _pefs_matrix(9, 2, 8, seed=1), np.random.default_rng(2).random(18) * 1e3
    unsorted = matrix.copy()
    unsorted.indices[: unsorted.indptr[1]] = unsorted.indices[: unsorted.indptr[1]][::-1]  # the product's own order
    unsorted.data[: unsorted.indptr[1]] = unsorted.data[: unsorted.indptr[1]][::-1]
    unsorted.has_sorted_indices = False
    for given in (matrix, unsorted):
        product = sp.csr_matrix(sp.diags(scale) @ given.astype(np.float64), dtype=np.float32)
        scaled = data.scaled_rows(given, scale)
        for name in ("data", "indices", "indptr"):
            np.testing.assert_array_equal(getattr(scaled, name), getattr(product, name))
        assert scaled.dtype == np.float32
    assert matrix.toarray().max() < 1  # the input is left as it was


def test_an_empty_matrix_has_no_blocks_to_count():
    matrix = sp.csr_matrix((0, 4), dtype=np.float32)
    assert data.examples_per_column(matrix, np.zeros(0, np.int64), 0).tolist() == [0, 0, 0, 0]
    assert data.scaled_rows(matrix, np.zeros(0)).shape == (0, 4)
