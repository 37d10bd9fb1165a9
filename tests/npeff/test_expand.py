"""Growing a fitted dictionary (workbench.npeff.expand): planted components the first fit
lacked are found by the new ones, and the kept ones stay exactly as they were."""

import numpy as np
import pytest
from sklearn.base import clone

from workbench.npeff import DNpeff, LrmNpeff
from workbench.npeff.planted import match_components, planted_d, planted_lrm

N_OLD, N_NEW = 4, 3


def _first_components_only(problem):
    """The examples that use only the first N_OLD planted components: what the first fit sees."""
    return np.flatnonzero((problem.W[:, N_OLD:] == 0).all(axis=1))


def _check_growth(first, grown, problem):
    def full(est):  # every component on the whole parameter axis (zeros where pruned)
        return np.stack([est.component(j) for j in range(est.n_components)])

    components = problem.components
    _, cos_first = match_components(full(first), components[:N_OLD])
    assert cos_first.min() >= 0.95, cos_first  # the first fit found its planted components
    # The kept components are exactly the first fit's, column for column
    assert np.array_equal(full(grown)[:N_OLD], full(first))
    # The new ones are the planted components the first fit lacked
    _, cos_new = match_components(full(grown)[N_OLD:], components[N_OLD:])
    assert cos_new.min() >= 0.95, cos_new
    _, cos_all = match_components(full(grown), components)
    assert cos_all.min() >= 0.95, cos_all


@pytest.mark.parametrize("solver", ["primal", "dual"])
def test_lrm_expansion_finds_the_planted_components_the_first_fit_lacked(solver):
    problem = planted_lrm(300, 400, N_OLD + N_NEW, seed=11)
    subset = problem.pefs[_first_components_only(problem)]
    first = LrmNpeff(N_OLD, solver=solver, progress=False).fit(subset)
    grown = first.expand(problem.pefs, N_NEW)
    assert grown.n_components == N_OLD + N_NEW and first.n_components == N_OLD  # the first fit is left as it was
    _check_growth(first, grown, problem)
    # The loss history continues the first fit's: its records first, iterations counting on
    for phase in ("g_only", "joint"):
        old, new = first.loss_history_[phase], grown.loss_history_[phase]
        assert np.array_equal(new[: len(old)], old) and len(new) > len(old)
        assert np.all(np.diff(new[:, 0]) > 0)
    assert grown.loss(problem.pefs) < 1e-3 * problem.pefs.n_examples


def test_lrm_fit_with_init_is_expand():
    problem = planted_lrm(150, 200, 5, seed=12)
    first = LrmNpeff(3, n_iters_joint=100, progress=False).fit(problem.pefs)
    by_fit = clone(first).set_params(n_components=5).fit(problem.pefs, init=first)
    by_expand = first.expand(problem.pefs, 2)
    assert np.array_equal(by_fit.G_, by_expand.G_) and np.array_equal(by_fit.W_, by_expand.W_)
    assert np.array_equal(by_fit.G_[:3], first.G_)


def test_warm_start_lets_every_component_move_and_lowers_the_loss():
    problem = planted_lrm(200, 300, 6, seed=13)
    first = LrmNpeff(6, n_iters_g_only=10, n_iters_joint=20, progress=False).fit(problem.pefs)
    more = clone(first).fit(problem.pefs, init=first, keep_init=False)
    assert not np.array_equal(more.G_, first.G_)
    assert more.loss_history_["joint"][-1, 1] < first.loss_history_["joint"][-1, 1]


def test_d_expansion_finds_the_planted_components_the_first_fit_lacked():
    problem = planted_d(300, 400, N_OLD + N_NEW, seed=14)
    subset = problem.pefs[_first_components_only(problem)]
    first = DNpeff(N_OLD, n_iters=800, progress=False).fit(subset)
    grown = first.expand(problem.pefs, N_NEW, n_iters=800)
    _check_growth(first, grown, problem)
    old = first.loss_history_["joint"]
    assert np.array_equal(grown.loss_history_["joint"][: len(old)], old)


def test_expansion_refuses_what_it_cannot_continue():
    problem = planted_lrm(60, 50, 3, seed=15)
    first = LrmNpeff(3, n_iters_g_only=5, n_iters_joint=5, progress=False).fit(problem.pefs)
    with pytest.raises(ValueError, match="must be larger than init's 3"):
        LrmNpeff(2, progress=False).fit(problem.pefs, init=first)
    with pytest.raises(ValueError, match="keep_init=False"):
        LrmNpeff(3, progress=False).fit(problem.pefs, init=first)
    with pytest.raises(TypeError, match="fitted LrmNpeff"):
        LrmNpeff(4, progress=False).fit(problem.pefs, init=DNpeff(3))
    with pytest.raises(ValueError, match="n_new must be a positive integer"):
        first.expand(problem.pefs, 0)
    with pytest.raises(ValueError, match="not checkpointed"):
        LrmNpeff(4, progress=False).fit(problem.pefs, init=first, checkpoint="x.safetensors")


def test_keep_init_must_be_a_bool():
    """keep_init="no" is true to Python: it kept every component of init."""
    problem = planted_lrm(60, 80, 3, seed=2)
    first = LrmNpeff(n_components=2, n_iters_g_only=3, n_iters_joint=3, progress=False).fit(problem.pefs)
    with pytest.raises(TypeError, match="keep_init must be True or False"):
        LrmNpeff(n_components=3, n_iters_g_only=3, n_iters_joint=3, progress=False).fit(problem.pefs, init=first,
                                                                                         keep_init="no")


def test_expand_names_n_components_as_its_own():
    problem = planted_lrm(60, 80, 3, seed=2)
    first = LrmNpeff(n_components=2, n_iters_g_only=3, n_iters_joint=3, progress=False).fit(problem.pefs)
    with pytest.raises(TypeError, match=r"expand sets n_components itself \(2 \+ n_new\); .*expand\(pefs, 3\)"):
        first.expand(problem.pefs, 1, n_components=5)
