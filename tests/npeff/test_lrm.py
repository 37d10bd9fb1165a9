"""LRM-NPEFF on planted problems with known answers."""

import numpy as np
import pytest
import torch
from sklearn.exceptions import NotFittedError

from workbench.core.pefs import LrmPefs
from workbench.npeff import LrmNpeff, NpeffDivergenceError
from workbench.npeff.planted import match_components, planted_lrm


def _fit(problem, r, **kw):
    kw.setdefault("progress", False)
    return LrmNpeff(r, **kw).fit(problem.pefs)


@pytest.mark.parametrize("solver", ["primal", "dual"])
@pytest.mark.parametrize(
    "n_examples, n_parameters, n_components, seed",
    [(60, 40, 3, 0), (200, 500, 6, 1), (400, 4000, 10, 2), (150, 20000, 8, 3)],
)
def test_recovers_planted_components_with_default_settings(n_examples, n_parameters, n_components, seed, solver):
    problem = planted_lrm(n_examples, n_parameters, n_components, seed=seed)
    est = _fit(problem, n_components, solver=solver)
    assert est.solver_ == solver
    _, cos = match_components(est.G_, problem.components[:, est.kept_columns_])
    assert cos.mean() >= 0.95, cos
    history = np.concatenate([est.loss_history_["g_only"][:, 1], est.loss_history_["joint"][:, 1]])
    assert np.all(np.diff(history) <= 1e-6 * history[0]), "the loss must never rise (beyond float32 rounding)"
    assert history[-1] < 1e-3 * history[0]


def test_loss_history_matches_dense_loss():
    problem = planted_lrm(50, 30, 3, seed=4)
    est = _fit(problem, 3, n_iters_g_only=20, n_iters_joint=30)
    A = problem.pefs.dense().astype(np.float64)
    A = A / np.sqrt(problem.pefs.frobenius_norms)[:, None, None]
    G = np.zeros((3, 30))
    G[:, est.kept_columns_] = est.G_
    dense_loss = sum(
        np.linalg.norm(A[i].T @ A[i] - sum(est.W_[i, j] * np.outer(G[j], G[j]) for j in range(3))) ** 2
        for i in range(50)
    )
    # float32 products: the loss is exact up to ~1e-7 of its constant term (here 50)
    assert est.loss_history_["joint"][-1, 1] == pytest.approx(dense_loss, rel=1e-4, abs=1e-7 * 50)
    assert est.loss(problem.pefs, est.W_) == pytest.approx(dense_loss, rel=1e-4, abs=1e-7 * 50)


def test_transform_recovers_planted_coefficients_of_held_out_examples():
    problem = planted_lrm(300, 400, 5, seed=5)
    train, held_out = problem.pefs[:200], problem.pefs[200:]
    est = LrmNpeff(5, progress=False).fit(train)
    match, _ = match_components(est.G_, problem.components[:, est.kept_columns_])
    truth = problem.W[200:] / held_out.frobenius_norms[:, None]  # normalisation scales each example
    found = est.transform(held_out)[:, match]
    for j in range(5):
        # g_j is fitted up to a scale, so W's column j is up to 1/scale²
        assert np.corrcoef(found[:, j], truth[:, j])[0, 1] > 0.99


def test_transform_with_planted_components_is_exact():
    problem = planted_lrm(80, 60, 4, seed=6)
    est = LrmNpeff(4, n_iters_g_only=1, n_iters_joint=1, progress=False, n_iters_transform=3000).fit(problem.pefs)
    est.G_ = problem.components[:, est.kept_columns_].astype(np.float32)
    truth = problem.W / problem.pefs.frobenius_norms[:, None]
    np.testing.assert_allclose(est.transform(problem.pefs), truth, atol=2e-3)


def test_transform_converges_to_the_non_negative_least_squares_solution_as_steps_are_added():
    """The steps stopped when the objective summed over the examples settled, which it did while the
    coefficients were still 0.1% from the solution: 500 and 5000 steps gave the same coefficients."""
    from scipy.optimize import nnls

    problem = planted_lrm(120, 80, 4, seed=7)
    est = LrmNpeff(4, n_iters_joint=50, progress=False).fit(problem.pefs[:80])
    held_out = problem.pefs[80:]
    X = held_out.X.toarray().reshape(held_out.n_examples, held_out.n_slots, -1)[:, :, est.kept_columns_]
    X = X.astype(np.float64) / np.sqrt(held_out.frobenius_norms.astype(np.float64))[:, None, None]
    G = est.G_.astype(np.float64)
    numer, Q = (np.einsum("isa,ja->isj", X, G) ** 2).sum(1), (G @ G.T) ** 2
    L = np.linalg.cholesky(Q)  # min w·Qw − 2 numer·w = ‖Lᵀw − L⁻¹numer‖² + const
    exact = np.stack([nnls(L.T, np.linalg.solve(L, b))[0] for b in numer])
    errors = [np.abs(est.set_params(n_iters_transform=n).transform(held_out) - exact).max() / exact.max()
              for n in (50, 500, 5000)]
    assert errors[0] > errors[1] > errors[2] and errors[2] < 1e-4, errors


def test_transform_refuses_pefs_kept_with_other_settings():
    """A fit of PEFs kept at n_values=256 gave other coefficients to the same examples' PEFs kept at 16,
    without a word: [0.32, 1.12, 0.29] against [0, 0.04, 0]."""
    problem = planted_lrm(60, 50, 3, seed=8)
    problem.pefs.info.update(n_values=256, top_k_classes=None)
    est = LrmNpeff(3, n_iters_g_only=2, n_iters_joint=2, progress=False).fit(problem.pefs)
    other = problem.pefs[:10]
    other.info = dict(problem.pefs.info, n_values=16)
    with pytest.raises(ValueError, match=r"other settings .*: n_values=16 \(the fit's 256\).*not be comparable"):
        est.transform(other)
    other.info = dict(problem.pefs.info, sketch={"method": "count", "dim": 64, "seed": 0, "parameters": {}})
    est.transform(other)  # a setting the fit did not record is not compared


def test_component_is_a_full_parameter_vector():
    problem = planted_lrm(40, 50, 3, seed=7, density=0.05)
    est = _fit(problem, 3, n_iters_g_only=5, n_iters_joint=5, min_nonzero_per_col=2)
    assert est.kept_columns_.size < 50
    g = est.component(1)
    assert g.shape == (50,)
    np.testing.assert_array_equal(g[est.kept_columns_], est.G_[1])
    dropped = np.setdiff1d(np.arange(50), est.kept_columns_)
    assert np.all(g[dropped] == 0)


def test_seed_makes_fits_reproducible():
    problem = planted_lrm(50, 40, 3, seed=8)
    a = _fit(problem, 3, n_iters_g_only=10, n_iters_joint=10, seed=3)
    b = _fit(problem, 3, n_iters_g_only=10, n_iters_joint=10, seed=3)
    c = _fit(problem, 3, n_iters_g_only=10, n_iters_joint=10, seed=4)
    np.testing.assert_array_equal(a.G_, b.G_)
    assert not np.array_equal(a.G_, c.G_)


def test_orthogonal_regularisation_lowers_overlap():
    problem = planted_lrm(100, 80, 4, seed=9)
    plain = _fit(problem, 6, n_iters_joint=200)
    ortho = _fit(problem, 6, n_iters_joint=200, orthogonal_reg=0.1)

    def overlap(G):
        U = G / np.linalg.norm(G, axis=1, keepdims=True)
        C = np.abs(U @ U.T)
        return (C.sum() - np.trace(C)) / (C.size - len(C))

    assert overlap(ortho.G_) < overlap(plain.G_)


def test_save_and_load_round_trip(tmp_path):
    problem = planted_lrm(40, 30, 3, seed=10)
    est = _fit(problem, 3, n_iters_g_only=5, n_iters_joint=5)
    est.save(tmp_path / "decomposition.safetensors")
    back = LrmNpeff.load(tmp_path / "decomposition.safetensors")
    np.testing.assert_array_equal(back.W_, est.W_)
    np.testing.assert_array_equal(back.G_, est.G_)
    np.testing.assert_array_equal(back.kept_columns_, est.kept_columns_)
    assert back.get_params() == est.get_params()
    assert back.layout_ == est.layout_
    for phase in ("g_only", "joint"):
        np.testing.assert_array_equal(back.loss_history_[phase], est.loss_history_[phase])
    np.testing.assert_allclose(back.transform(problem.pefs), est.transform(problem.pefs))


def test_bad_inputs_give_clear_errors():
    problem = planted_lrm(10, 20, 2, seed=11)
    with pytest.raises(ValueError, match="larger than the number of examples"):
        LrmNpeff(11, progress=False).fit(problem.pefs)
    with pytest.raises(ValueError, match="'n_components' parameter of LrmNpeff must be an int in the range"):
        LrmNpeff(0, progress=False).fit(problem.pefs)
    with pytest.raises(NotFittedError, match="not fitted yet"):
        LrmNpeff(2).transform(problem.pefs)
    A = problem.pefs.dense()
    A[3] = 0
    with pytest.raises(ValueError, match="all-zero PEFs"):
        LrmNpeff(2, progress=False).fit(LrmPefs.from_dense(A))
    A[3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        LrmNpeff(2, progress=False).fit(LrmPefs.from_dense(A))


def test_a_fixed_step_that_diverges_raises_instead_of_returning_nan():
    problem = planted_lrm(30, 20, 2, seed=12)
    with pytest.raises(NpeffDivergenceError, match="learning_rate='auto'"):
        LrmNpeff(2, learning_rate=1e3, progress=False).fit(problem.pefs)


@pytest.mark.parametrize("solver", ["primal", "dual"])
@pytest.mark.parametrize("scale", [1e-8, 1.0, 1e6])
def test_line_search_needs_no_tuning_at_any_scale(scale, solver):
    """Unnormalised PEFs scaled by many orders of magnitude: the same defaults fit them all, components and
    coefficients (at 1e-8 the components came out right while every coefficient was 0: the multiplicative
    updates' fixed floor of 1e-9 swamped their denominators)."""
    problem = planted_lrm(120, 300, 4, seed=13)
    pefs = problem.pefs
    pefs.X = pefs.X * np.float32(scale)
    est = LrmNpeff(4, normalize=False, progress=False, solver=solver).fit(pefs)
    _, cos = match_components(est.G_, problem.components[:, est.kept_columns_])
    assert cos.mean() >= 0.95
    assert np.isfinite(est.W_).all() and np.isfinite(est.G_).all()
    nothing = est.loss(pefs, np.zeros_like(est.W_))
    assert est.loss(pefs, est.W_) < 1e-4 * nothing
    assert est.loss(pefs, est.transform(pefs)) < 1e-4 * nothing


def test_overflowing_pefs_give_a_clear_error():
    problem = planted_lrm(30, 20, 2, seed=14)
    pefs = problem.pefs
    pefs.X.data[:] = np.float32(3e38)  # squares overflow float32
    pefs.frobenius_norms[:] = 1.0
    with pytest.raises(NpeffDivergenceError, match="not finite"):
        LrmNpeff(2, progress=False).fit(pefs)


@pytest.mark.parametrize("settings", [{}, {"orthogonal_reg": 0.1}, {"learning_rate": 0.002}])
def test_dual_solver_takes_the_primal_steps(settings):
    """G = P G₀ + H X is the same iterate as G itself: the losses after every step and the
    components agree to float32 rounding (measured: ~2e-6 of the first loss, ~2e-5 of G)."""
    problem = planted_lrm(150, 3000, 5, seed=7)
    fits = {solver: _fit(problem, 5, n_iters_g_only=15, n_iters_joint=15, log_every=1, solver=solver, **settings)
            for solver in ("primal", "dual")}
    primal, dual = fits["primal"], fits["dual"]
    first = primal.loss_history_["g_only"][0, 1]
    for phase in ("g_only", "joint"):
        np.testing.assert_allclose(dual.loss_history_[phase], primal.loss_history_[phase], rtol=0, atol=1e-4 * first)
    np.testing.assert_allclose(dual.G_, primal.G_, rtol=0, atol=1e-3 * np.abs(primal.G_).max())
    np.testing.assert_allclose(dual.W_, primal.W_, rtol=0, atol=1e-3 * np.abs(primal.W_).max())


def test_auto_solver_takes_the_dual_where_its_gram_is_the_smaller_work():
    """The rules of choose_solver, on the sizes benchmarks/README.md measured (no GPU needed)."""
    from workbench.core import compiled
    from workbench.npeff.solvers import choose_solver

    cpu = torch.device("cpu")
    choose = dict(n_components=32, n_iterations=500, device=cpu)
    dual_if_kernels = "dual" if compiled.available() else "primal"
    assert choose_solver("auto", n_rows=4_000, nnz=50e6, n_columns=2e6, **choose) == dual_if_kernels
    assert choose_solver("auto", n_rows=40_000, nnz=50e6, n_columns=2e6, **choose) == "primal", "K of 12.8 GB"
    assert choose_solver("auto", n_rows=4_000, nnz=1e5, n_columns=1e3, **choose) == "primal", "K larger than X"
    assert choose_solver("auto", n_rows=4_000, nnz=50e6, n_columns=2e6, **dict(choose, n_iterations=5)) == "primal"
    gpu = dict(choose, device=torch.device("cuda"))
    assert choose_solver("auto", n_rows=4_000, nnz=50e6, n_columns=2e6, **gpu) == "dual", "measured 4.7x per step"
    assert choose_solver("auto", n_rows=1_200, nnz=1e7, n_columns=8e4, **gpu) == "primal", "launch-bound: the primal's"
    assert choose_solver("auto", n_rows=4_000, nnz=50e6, n_columns=2e6, **dict(gpu, n_iterations=30)) == "primal"
    assert choose_solver("dual", n_rows=40_000, nnz=1.0, n_columns=1.0, **choose) == "dual", "as asked"


def test_solver_is_recorded_and_checked(tmp_path):
    problem = planted_lrm(40, 30, 2, seed=8)
    est = _fit(problem, 2, n_iters_g_only=2, n_iters_joint=2, solver="dual")
    est.save(tmp_path / "fit.safetensors")
    assert LrmNpeff.load(tmp_path / "fit.safetensors").solver_ == "dual"
    with pytest.raises(ValueError, match="solver"):
        _fit(problem, 2, solver="gram")


def test_dual_solver_without_the_compiled_kernels():
    """Without numba the Gram matrix comes from scipy and the products from torch: same fit."""
    from workbench.core import compiled

    problem = planted_lrm(100, 800, 4, seed=9)
    with_kernels = _fit(problem, 4, n_iters_g_only=10, n_iters_joint=10, solver="dual")
    with compiled.disabled():
        without = _fit(problem, 4, n_iters_g_only=10, n_iters_joint=10, solver="dual")
        assert _fit(problem, 4, n_iters_g_only=30, n_iters_joint=0).solver_ == "primal", "auto needs the kernels"
    np.testing.assert_allclose(without.G_, with_kernels.G_, rtol=0, atol=1e-4 * np.abs(with_kernels.G_).max())


def _dense_lrm_loss(A, W, G, orthogonal_reg=0.0):
    """The loss of the method notes (section 3) on dense float64 arrays, with the orthogonal penalty
    λ·Σ_i‖F_i‖²·Σ_{j≠k}(g_j·g_k)² of LrmNpeff's docstring: A (n, c, m), W (n, r), G (r, m)."""
    F = np.einsum("icm,icn->imn", A, A)
    loss = ((F - np.einsum("ij,jm,jn->imn", W, G, G)) ** 2).sum()
    GG = G @ G.T
    return loss + orthogonal_reg * (F**2).sum() * ((GG**2).sum() - (np.diag(GG) ** 2).sum())


@pytest.mark.parametrize("orthogonal_reg", [0.0, 0.3])
def test_the_g_gradient_and_the_line_search_are_those_of_the_loss(orthogonal_reg):
    """Truth from the dense loss in float64: the G step's gradient against central differences, and the
    line search's quartic against the loss at G − tD. The fits only showed a falling loss, which a wrong
    orthogonal term in the gradient (the line search then steps along the wrong direction) still gives."""
    import scipy.sparse as sp

    from workbench.npeff.data import lrm_squared_norm, prepare
    from workbench.npeff.solvers import ParameterSpace

    rng = np.random.default_rng(0)
    n, c, m, r = 6, 2, 7, 3
    A = rng.standard_normal((n, c, m))
    X = sp.csr_matrix(A.reshape(n * c, m))
    data = prepare(X, lrm_squared_norm(X, c), n, torch.device("cpu"))
    assert data.squared_norm == pytest.approx(sum(np.linalg.norm(a.T @ a) ** 2 for a in A), rel=1e-12)
    W = rng.uniform(0.1, 1.0, (n, r)).astype(np.float32).astype(np.float64)
    G = rng.standard_normal((r, m)).astype(np.float32).astype(np.float64)
    D = rng.standard_normal((r, m)).astype(np.float32).astype(np.float64)
    est, space = LrmNpeff(r, orthogonal_reg=orthogonal_reg), ParameterSpace(data)
    Wt, Gt, Dt = (torch.tensor(v, dtype=torch.float32) for v in (W, G, D))
    AG, GG = space.times_t(Gt), space.gram(Gt, Gt)
    truth = _dense_lrm_loss(A, W, G, orthogonal_reg)
    assert est._loss(data, Wt, AG, GG, c) == pytest.approx(truth, rel=1e-6)
    h, fd = 1e-6, np.zeros_like(G)
    for j, k in np.ndindex(r, m):
        step = np.zeros_like(G)
        step[j, k] = h
        fd[j, k] = (_dense_lrm_loss(A, W, G + step, orthogonal_reg) - _dense_lrm_loss(A, W, G - step, orthogonal_reg)) / (2 * h)
    gradient = est._g_gradient(space, Wt, Gt, AG, GG, c).numpy()
    np.testing.assert_allclose(gradient, fd, rtol=0, atol=1e-5 * np.abs(fd).max())
    poly = est._loss_along(data, Wt, AG, space.times_t(Dt), GG, space.gram(Gt, Dt).double(), space.gram(Dt, Dt).double(), c)
    for t in (0.0, 0.3, -1.2, 2.0):
        assert np.polyval(poly[::-1], t) == pytest.approx(_dense_lrm_loss(A, W, G - t * D, orthogonal_reg), rel=1e-6)


def test_the_line_search_takes_the_lowest_point_of_the_quartic():
    from workbench.npeff.lrm import _quartic_argmin

    t = np.linspace(0, 5, 500_001)
    for poly in ([3.0, -4.0, -1.0, 0.5, 0.05], [1.0, 2.0, 1.0, 0.0, 1.0], [0.0, -1.0, 0.5, 0.0, 0.0], [2.0, -6.0, 11.0, -6.0, 1.0]):
        grid = t[np.argmin(np.polyval(poly[::-1], t))]
        assert _quartic_argmin(np.array(poly)) == pytest.approx(grid, abs=2e-5), poly


def test_a_w_step_is_the_multiplicative_update_of_the_method_notes():
    """W ← W ∘ numer / (W (GG ∘ GG) + ε), numer_ij = Σ_y AG[(i,y),j]², checked in numpy; it never raises the loss."""
    import scipy.sparse as sp

    from workbench.npeff.data import lrm_squared_norm, prepare

    rng = np.random.default_rng(1)
    n, c, m, r = 8, 3, 10, 4
    A = rng.standard_normal((n, c, m))
    X = sp.csr_matrix(A.reshape(n * c, m))
    data = prepare(X, lrm_squared_norm(X, c), n, torch.device("cpu"))
    W = rng.uniform(0.1, 1.0, (n, r)).astype(np.float32).astype(np.float64)
    G = rng.standard_normal((r, m)).astype(np.float32).astype(np.float64)
    Gt = torch.tensor(G, dtype=torch.float32)
    state = {"W": torch.tensor(W, dtype=torch.float32), "AG": data.times_t(Gt), "GG": data.gram(Gt, Gt)}
    LrmNpeff(r)._w_step(data, state, c)
    numer = ((A.reshape(n * c, m) @ G.T).reshape(n, c, r) ** 2).sum(axis=1)
    expected = W * numer / (W @ (G @ G.T) ** 2)
    np.testing.assert_allclose(state["W"].numpy(), expected, rtol=1e-5)
    assert _dense_lrm_loss(A, expected, G) <= _dense_lrm_loss(A, W, G)
