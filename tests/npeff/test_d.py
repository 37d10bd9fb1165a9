"""D-NPEFF (NMF of diagonal PEFs) on planted problems."""

import numpy as np
import pytest

from workbench.npeff import DNpeff
from workbench.npeff.planted import match_components, planted_d


@pytest.mark.parametrize("n_examples, n_parameters, n_components, seed", [(100, 80, 4, 0), (300, 2000, 8, 1)])
def test_recovers_planted_components(n_examples, n_parameters, n_components, seed):
    problem = planted_d(n_examples, n_parameters, n_components, seed=seed)
    est = DNpeff(n_components, progress=False).fit(problem.pefs)
    _, cos = match_components(est.H_, problem.components[:, est.kept_columns_])
    assert cos.mean() >= 0.95
    assert (est.H_ >= 0).all() and (est.W_ >= 0).all()
    losses = est.loss_history_["joint"][:, 1]
    assert np.all(np.diff(losses) <= 1e-6 * losses[0])


@pytest.mark.parametrize("scale", [1e-12, 1e-6, 1.0, 1e6])
def test_unnormalised_pefs_at_any_scale_fit_alike(scale):
    """The same problem in other units gives the same fit, coefficients scaled: at 1e-12 (D-PEFs of a real
    model are near 1e-7) every coefficient was 0, at 1e-6 the error was 65 times that at 1, since the
    multiplicative updates' fixed floor of 1e-9 swamped their denominators."""
    problem = planted_d(120, 200, 4, seed=1)
    reference = DNpeff(4, normalize=False, progress=False).fit(problem.pefs)
    pefs = type(problem.pefs).from_dense(problem.pefs.dense() * scale)
    est = DNpeff(4, normalize=False, progress=False).fit(pefs)
    np.testing.assert_allclose(est.H_ / np.linalg.norm(est.H_, axis=1, keepdims=True),
                               reference.H_ / np.linalg.norm(reference.H_, axis=1, keepdims=True), atol=1e-3)
    D = pefs.dense()[:, est.kept_columns_]
    assert np.linalg.norm(D - est.W_ @ est.H_) < 1e-3 * np.linalg.norm(D)
    assert np.linalg.norm(D - est.transform(pefs) @ est.H_) < 1e-3 * np.linalg.norm(D)


def test_loss_matches_dense_frobenius():
    problem = planted_d(40, 30, 3, seed=2)
    est = DNpeff(3, n_iters=50, progress=False).fit(problem.pefs)
    D = problem.pefs.dense() / problem.pefs.frobenius_norms[:, None]
    H = np.zeros((3, 30))
    H[:, est.kept_columns_] = est.H_
    dense = np.linalg.norm(D - est.W_ @ H) ** 2
    # float32 products: exact up to float32 rounding of terms the size of ‖D‖² = 40
    # (measured over seeds 2-6: 0.3e-7 to 1.3e-7 of it)
    assert est.loss(problem.pefs, est.W_) == pytest.approx(dense, rel=1e-4, abs=2e-7 * 40)


def test_transform_and_save_load(tmp_path):
    problem = planted_d(200, 100, 4, seed=3)
    est = DNpeff(4, progress=False).fit(problem.pefs[:150])
    match, _ = match_components(est.H_, problem.components[:, est.kept_columns_])
    held_out = problem.pefs[150:]
    found = est.transform(held_out)[:, match]
    truth = problem.W[150:] / held_out.frobenius_norms[:, None]
    for j in range(4):
        assert np.corrcoef(found[:, j], truth[:, j])[0, 1] > 0.99
    est.save(tmp_path / "d.safetensors")
    back = DNpeff.load(tmp_path / "d.safetensors")
    np.testing.assert_array_equal(back.H_, est.H_)
    np.testing.assert_allclose(back.transform(held_out), est.transform(held_out))


def test_an_iteration_is_lee_and_seung_s_multiplicative_update_from_the_documented_start():
    """Replayed in numpy on normalised, pruned D-PEFs: H ← H ∘ WᵀD / (WᵀW H), then W ← W ∘ DHᵀ / (W HHᵀ),
    from the start the fit draws (scikit-learn's "random" scale, torch generators seed and seed + 1)."""
    import torch

    from workbench.core.pefs import DPefs

    rng = np.random.default_rng(1)
    D = rng.uniform(0, 1, (12, 9)) * (rng.random((12, 9)) < 0.7)
    D[:, 0] += 0.1
    D[:, 4] = 0.0  # a column no example touches is pruned
    est = DNpeff(3, n_iters=1, seed=5, progress=False).fit(DPefs.from_dense(D))
    np.testing.assert_array_equal(est.kept_columns_, [0, 1, 2, 3, 5, 6, 7, 8])
    D = (D / np.linalg.norm(D, axis=1, keepdims=True))[:, est.kept_columns_]
    n, m = D.shape
    scale = np.sqrt(D.sum() / (n * m) / 3)
    W = scale * torch.rand((n, 3), generator=torch.Generator().manual_seed(5)).double().numpy()
    H = scale * torch.rand((3, m), generator=torch.Generator().manual_seed(6)).double().numpy()
    H = H * (W.T @ D) / (W.T @ W @ H)
    W = W * (D @ H.T) / (W @ H @ H.T)
    np.testing.assert_allclose(est.H_, H, rtol=1e-5)
    np.testing.assert_allclose(est.W_, W, rtol=1e-5)
    assert est.loss_history_["joint"][-1, 1] == pytest.approx(np.linalg.norm(D - W @ H) ** 2, rel=1e-6)


def test_transform_converges_to_the_non_negative_least_squares_solution():
    """With H fixed the coefficients of new D-PEFs solve min_w ‖f − wH‖², w ≥ 0 (method notes, section 5):
    scipy's exact NNLS, approached as steps are added (the held-out check was a correlation of 0.99)."""
    from scipy.optimize import nnls

    problem = planted_d(60, 40, 3, seed=3)
    est = DNpeff(3, n_iters=100, progress=False).fit(problem.pefs[:40])
    held_out = problem.pefs[40:]
    D = held_out.dense()[:, est.kept_columns_].astype(np.float64) / held_out.frobenius_norms[:, None].astype(np.float64)
    exact = np.stack([nnls(est.H_.astype(np.float64).T, f)[0] for f in D])
    errors = [np.abs(est.set_params(n_iters_transform=n).transform(held_out) - exact).max() / exact.max()
              for n in (50, 500, 5000)]
    assert errors[0] > errors[1] > errors[2] and errors[2] < 1e-4, errors
