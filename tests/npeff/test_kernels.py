"""The CPU kernels of the fits against scipy's products."""

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from workbench.core import compiled
from workbench.npeff import kernels
from workbench.npeff.data import prepare, to_torch_csr

pytestmark = pytest.mark.skipif(not compiled.available(), reason="numba is not installed")


@pytest.fixture
def two_threads():
    saved = torch.get_num_threads()
    torch.set_num_threads(2)  # row ranges split across threads (where the machine has two cores)
    yield
    torch.set_num_threads(saved)


def _matrix(n_rows=300, n_cols=5_000, density=0.06, seed=0):
    rng = np.random.default_rng(seed)
    X = sp.random(n_rows, n_cols, density=density, format="csr", dtype=np.float32, random_state=rng)
    X[7] = 0  # an empty row
    X.eliminate_zeros()
    return X


def test_products_match_scipy(two_threads):
    X = _matrix()
    assert X.nnz > 1 << 16  # large enough to be split across threads
    rng = np.random.default_rng(1)
    B = rng.standard_normal((X.shape[1], 6)).astype(np.float32)
    M = rng.standard_normal((6, X.shape[0])).astype(np.float32)
    Xt = to_torch_csr(X, torch.device("cpu"))
    np.testing.assert_allclose(kernels.csr_times_dense(Xt, torch.from_numpy(B)).numpy(), X @ B, rtol=1e-4, atol=1e-4)
    got = kernels.csr_transposed_times_dense(Xt, torch.from_numpy(M).T)  # a transposed view, read as it lies
    np.testing.assert_allclose(got.numpy(), X.T @ M.T, rtol=1e-4, atol=1e-4)


def test_prepared_products_equal_torch_products(two_threads):
    X = _matrix(seed=2)
    data = prepare(X, 1.0, X.shape[0], torch.device("cpu"))
    G = torch.randn(5, X.shape[1])
    A = torch.randn(X.shape[0], 5)
    with_kernels = data.times_t(G), data.t_times(A)
    with compiled.disabled():
        assert not compiled.available()
        plain = data.times_t(G), data.t_times(A)
    for ours, reference in zip(with_kernels, plain):
        torch.testing.assert_close(ours, reference, rtol=1e-4, atol=1e-4)


def test_transposed_output_matches(two_threads):
    X = _matrix(seed=3)
    Xt = to_torch_csr(X, torch.device("cpu"))
    B = torch.randn(X.shape[1], 4)
    out = kernels.csr_times_dense_t(Xt, B)
    assert out.shape == (4, X.shape[0]) and out.is_contiguous()
    np.testing.assert_allclose(out.numpy(), (X @ B.numpy()).T, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("with_progress", [False, True])
def test_row_gram_matches_scipy(two_threads, with_progress):
    X = _matrix(seed=4)
    rows_done = []
    K = kernels.row_gram(to_torch_csr(X, torch.device("cpu")), to_torch_csr(X.T.tocsr(), torch.device("cpu")),
                         on_rows_done=rows_done.append if with_progress else None)
    X64 = X.astype(np.float64)
    assert K.dtype == torch.float64 and K.shape == (X.shape[0], X.shape[0])
    np.testing.assert_allclose(K.numpy(), (X64 @ X64.T).toarray(), rtol=1e-12, atol=1e-12)
    assert not K[7].any(), "the empty row"
    assert sum(rows_done) == (X.shape[0] if with_progress else 0)


def test_sparse_gram_of_row_blocks_matches_scipy(monkeypatch):
    """The GPU's Gram (torch's sparse-sparse product, by blocks of rows; here on the CPU)."""
    from workbench.npeff import solvers as lrm_solvers

    monkeypatch.setattr(lrm_solvers, "_GRAM_ROW_BLOCK", 7)  # several blocks, the last one short
    X = _matrix(seed=5)
    K = lrm_solvers.sparse_gram(to_torch_csr(X, torch.device("cpu")), to_torch_csr(X.T.tocsr(), torch.device("cpu")))
    X64 = X.astype(np.float64)
    assert K.dtype == torch.float64 and K.shape == (X.shape[0], X.shape[0])
    np.testing.assert_allclose(K.numpy(), (X64 @ X64.T).toarray(), rtol=1e-12, atol=1e-12)
