"""LrmNpeff and DNpeff are scikit-learn estimators: clone, get_params/set_params, checked settings,
NotFittedError, numpy integers, a ConvergenceWarning at the iteration limit; save/load keep it all."""

import inspect
import warnings

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning, NotFittedError

from workbench import DNpeff, LrmNpeff
from workbench.npeff import NpeffConvergenceWarning, estimator_for
from workbench.npeff.planted import planted_d, planted_lrm

PROBLEMS = {LrmNpeff: lambda: planted_lrm(40, 60, 3, seed=4).pefs, DNpeff: lambda: planted_d(40, 60, 3, seed=4).pefs}
SHORT = {LrmNpeff: dict(n_iters_g_only=5, n_iters_joint=5), DNpeff: dict(n_iters=10)}


@pytest.mark.parametrize("cls", [LrmNpeff, DNpeff])
def test_get_params_is_every_init_argument_and_clone_copies_them(cls):
    estimator = cls(n_components=4, seed=7, progress=False)
    arguments = set(inspect.signature(cls.__init__).parameters) - {"self"}
    assert set(estimator.get_params()) == arguments
    copy = clone(estimator)
    assert copy is not estimator and copy.get_params() == estimator.get_params()
    assert clone(LrmNpeff(n_components=4)).get_params()["n_components"] == 4


@pytest.mark.parametrize("cls", [LrmNpeff, DNpeff])
def test_settings_are_checked_at_fit_against_one_table(cls):
    pefs = PROBLEMS[cls]()
    estimator = cls(n_components=3, progress=False, **SHORT[cls]).set_params(n_components=0)  # set_params does not check
    with pytest.raises(ValueError, match=f"'n_components' parameter of {cls.__name__} must be an int in the range"):
        estimator.fit(pefs)
    with pytest.raises(ValueError, match="'tol' parameter"):
        cls(tol=-1.0, progress=False).fit(pefs)
    with pytest.raises(TypeError, match="'normalize' parameter"):  # InvalidParameterError is both
        cls(normalize="yes", progress=False).fit(pefs)
    assert set(cls._parameter_constraints) == set(cls().get_params()), "one table covers every setting"


@pytest.mark.parametrize("cls", [LrmNpeff, DNpeff])
def test_numpy_integers_and_bools_are_integers_and_bools(cls, tmp_path):
    pefs = PROBLEMS[cls]()
    settings = {k: np.int64(v) for k, v in SHORT[cls].items()}
    # a numpy bool, which scikit-learn's checks take, failed at save as "cannot write bool as JSON"
    fitted = cls(n_components=np.int64(3), seed=np.int64(1), progress=np.bool_(False), **settings).fit(pefs)
    reference = cls(n_components=3, seed=1, progress=False, **SHORT[cls]).fit(pefs)
    np.testing.assert_array_equal(fitted.W_, reference.W_)
    np.testing.assert_array_equal(cls(n_components=3, seed=1, progress=False, **SHORT[cls]).fit_transform(pefs), reference.W_)
    fitted.save(tmp_path / "fit.safetensors")
    assert cls.load(tmp_path / "fit.safetensors").get_params() == reference.get_params()


@pytest.mark.parametrize("cls", [LrmNpeff, DNpeff])
def test_transform_before_fit_raises_not_fitted(cls, tmp_path):
    with pytest.raises(NotFittedError):
        cls(3).transform(PROBLEMS[cls]())
    with pytest.raises(NotFittedError):
        cls(3).save(tmp_path / "x.safetensors")
    with pytest.raises(NotFittedError):
        cls(3).component(0)


@pytest.mark.parametrize("cls", [LrmNpeff, DNpeff])
def test_the_iteration_limit_warns_as_scikit_learn_does(cls):
    pefs = PROBLEMS[cls]()
    with pytest.warns(ConvergenceWarning, match="before the loss settled"):
        cls(3, tol=1e-12, log_every=1, progress=False, **SHORT[cls]).fit(pefs)
    assert issubclass(NpeffConvergenceWarning, ConvergenceWarning)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        cls(3, progress=False, **SHORT[cls]).fit(pefs)  # tol=0 runs every iteration by design: no warning
        cls(3, tol=1.0, log_every=1, progress=False, **SHORT[cls]).fit(pefs)  # settled at once: no warning


def test_slots_are_named_n_slots():
    pefs = PROBLEMS[LrmNpeff]()
    fitted = LrmNpeff(3, progress=False, **SHORT[LrmNpeff]).fit(pefs)
    assert fitted.n_slots_ == pefs.n_slots == 2 and not hasattr(fitted, "n_classes_")


def test_estimators_are_found_by_kind():
    assert estimator_for("lrm") is LrmNpeff and estimator_for("d") is DNpeff
    with pytest.raises(ValueError, match="kind must be 'lrm' or 'd', got 'diagonal'"):
        estimator_for("diagonal")


@pytest.mark.parametrize("cls", [LrmNpeff, DNpeff])
def test_a_bool_count_is_refused_at_fit_not_taken_for_one(cls):
    """scikit-learn counts True as the integer 1; torch then failed deep inside on n_components=True."""
    pefs = PROBLEMS[cls]()
    for name in ("n_components", "log_every"):
        estimator = cls(progress=False, **SHORT[cls]).set_params(**{name: True})
        with pytest.raises(TypeError, match=f"'{name}' parameter of {cls.__name__} must be an int .*not a bool"):
            estimator.fit(pefs)
    with pytest.raises(ValueError, match="not a bool. Got np.True_"):
        cls(n_components=np.bool_(True), progress=False).fit(pefs)


def test_a_fit_without_iterations_is_refused_not_returned_as_its_random_start():
    with pytest.raises(ValueError, match=r"'n_iters' parameter of DNpeff must be an int in the range \[1, inf\)"):
        DNpeff(3, n_iters=0, progress=False).fit(PROBLEMS[DNpeff]())
    with pytest.raises(ValueError, match=r"n_iters_g_only and n_iters_joint are both 0; raise n_iters_joint"):
        LrmNpeff(3, n_iters_g_only=0, n_iters_joint=0, progress=False).fit(PROBLEMS[LrmNpeff]())
    LrmNpeff(3, n_iters_g_only=5, n_iters_joint=0, progress=False).fit(PROBLEMS[LrmNpeff]())  # G steps alone: a fit


@pytest.mark.parametrize("cls", [LrmNpeff, DNpeff])
def test_a_store_given_for_its_pefs_names_load(cls, tmp_path):
    """A PefStore has the kind of its PEFs: the fit took it, and failed on a missing attribute."""
    from workbench.store import save_pefs

    store = save_pefs(PROBLEMS[cls](), tmp_path / "store")
    with pytest.raises(TypeError, match=r"got a PefStore: pass store\.load\(\)"):
        cls(n_components=2, progress=False).fit(store)


def test_load_with_a_model_that_is_no_torch_model_says_to_load_it(tmp_path):
    fit = LrmNpeff(n_components=2, progress=False, **SHORT[LrmNpeff]).fit(PROBLEMS[LrmNpeff]())
    fit.save(tmp_path / "fit.safetensors")
    with pytest.raises(TypeError, match="model must be the torch model the PEFs were computed from, got str"):
        LrmNpeff.load(tmp_path / "fit.safetensors", model="bert")


@pytest.mark.parametrize("cls", [LrmNpeff, DNpeff])
def test_a_pipeline_fits_it_and_its_loss_checks_what_it_is_given(cls):
    """scikit-learn's meta-estimators pass y: fit(pefs, None) was a TypeError. loss() skipped transform's checks:
    a W of another shape raised torch's own error, a negative W was scored as it was, and PEFs over other
    parameters were scored silently."""
    from sklearn.pipeline import Pipeline

    from workbench.core.params import ParameterLayout

    pefs = PROBLEMS[cls]()
    pipeline = Pipeline([("npeff", cls(3, progress=False, **SHORT[cls]))]).fit(pefs)
    estimator = pipeline.named_steps["npeff"]
    np.testing.assert_array_equal(pipeline.transform(pefs), estimator.transform(pefs))
    assert cls(3, progress=False, **SHORT[cls]).fit_transform(pefs, None).shape == (40, 3)
    for W in (estimator.W_[:5], -estimator.W_, np.full_like(estimator.W_, np.nan)):
        with pytest.raises(ValueError, match=r"W must be finite non-negative coefficients of shape \(40, 3\)"):
            estimator.loss(pefs, W)
    other = type(pefs).from_dense(pefs.dense(), layout=ParameterLayout(("other.weight",), ((60,),)))
    with pytest.raises(ValueError, match="computed over other parameters"):
        estimator.loss(other, estimator.W_)
    wrong_kind = PROBLEMS[LrmNpeff if cls is DNpeff else DNpeff]()
    with pytest.raises(TypeError, match=r"takes '(d|lrm)' PEFs \((D|Lrm)Pefs\), got"):
        estimator.loss(wrong_kind)
    assert estimator.loss(pefs, estimator.W_) == pytest.approx(estimator.loss(pefs, estimator.W_.astype(np.float64)))


@pytest.mark.parametrize("cls, make", [(LrmNpeff, planted_lrm), (DNpeff, planted_d)])
def test_an_example_s_coefficients_do_not_depend_on_the_batch_it_comes_in(cls, make):
    """The steps started from random coefficients drawn for the whole batch and stopped when the whole
    batch settled: the same 100 D-PEFs got coefficients 4e-4 apart alone and among 200."""
    pefs = make(200, 500, 6, seed=0).pefs
    estimator = cls(n_components=6, seed=0, progress=False, **SHORT[cls]).fit(pefs)
    together = estimator.transform(pefs)
    for rows in (np.arange(100, 200), np.arange(50, 53), np.array([7])):
        np.testing.assert_allclose(estimator.transform(pefs[rows]), together[rows], rtol=1e-5, atol=1e-7 * together.max())
    assert estimator.transform(pefs).tolist() == together.tolist(), "the same batch gets the same answer"


@pytest.mark.parametrize("cls", [LrmNpeff, DNpeff])
def test_no_examples_are_named_as_what_was_asked(cls):
    """transform of no examples said there were 'no examples to fit', of an estimator already fitted."""
    pefs = PROBLEMS[cls]()
    estimator = cls(n_components=3, progress=False, **SHORT[cls])
    with pytest.raises(ValueError, match="no examples to fit"):
        estimator.fit(pefs[[]])
    with pytest.raises(ValueError, match="no examples to find coefficients of; pass the PEFs of at least one example"):
        estimator.fit(pefs).transform(pefs[[]])


@pytest.mark.parametrize("cls", [LrmNpeff, DNpeff])
def test_the_loss_of_new_pefs_counts_their_entries_outside_the_fit_s_parameters(cls):
    """loss(pefs) is Σ_i ‖F_i − reconstruction‖² of the PEFs given, the components zero outside the fit's kept
    parameters. It dropped every entry there, from the PEFs' own norm too: held-out LRM-PEFs with a third of
    their mass on parameters no training example touched scored 3e-7 where the true loss was 9.4 (of 20)."""
    make = planted_lrm if cls is LrmNpeff else planted_d
    problem = make(60, 40, 3, seed=3)
    estimator = cls(3, progress=False, **SHORT[cls]).fit(problem.pefs[:40])
    unused = np.setdiff1d(np.arange(40), estimator.kept_columns_)
    assert unused.size > 5
    dense = problem.pefs.dense()[40:].astype(np.float64)
    if cls is LrmNpeff:
        dense[:, 0, unused] = 0.5
    else:
        dense[:, unused] = 0.5
    held_out = type(problem.pefs).from_dense(dense)
    W = estimator.transform(held_out).astype(np.float64)
    components = np.zeros((3, 40))
    components[:, estimator.kept_columns_] = estimator.components_
    norms = held_out.frobenius_norms.astype(np.float64)
    if cls is LrmNpeff:
        F = np.einsum("icm,icn->imn", dense, dense) / norms[:, None, None]
        truth = ((F - np.einsum("ij,jm,jn->imn", W, components, components)) ** 2).sum()
    else:
        truth = ((dense / norms[:, None] - W @ components) ** 2).sum()
    assert truth > 1.0
    assert estimator.loss(held_out, W) == pytest.approx(truth, rel=1e-4)
