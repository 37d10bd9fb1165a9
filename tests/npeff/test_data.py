"""The fit's pre-processing, a block of rows at a time, against the whole-matrix computation it replaced."""

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
def test_scaled_rows_are_the_float64_products_rounded_once(monkeypatch, block_values):
    monkeypatch.setattr(data, "BLOCK_VALUES", block_values)
    matrix, scale = _pefs_matrix(9, 2, 8, seed=1), np.random.default_rng(2).random(18) * 1e3
    expected = (np.diag(scale) @ matrix.toarray().astype(np.float64)).astype(np.float32)
    scaled = data.scaled_rows(matrix, scale)
    assert scaled.dtype == np.float32 and matrix.toarray().max() < 1  # the input is left as it was
    np.testing.assert_array_equal(scaled.toarray(), expected)


def test_an_empty_matrix_has_no_blocks_to_count():
    matrix = sp.csr_matrix((0, 4), dtype=np.float32)
    assert data.examples_per_column(matrix, np.zeros(0, np.int64), 0).tolist() == [0, 0, 0, 0]
    assert data.scaled_rows(matrix, np.zeros(0)).shape == (0, 4)
