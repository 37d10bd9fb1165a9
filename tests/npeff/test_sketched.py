"""LRM-NPEFF of sketched PEFs and the way back to the parameters (workbench.npeff.sketched,
workbench.analysis.unsketch): planted components recovered after mapping back."""

import numpy as np
import pytest

from tests.conftest import tiny_bert, tiny_bert_inputs
from workbench import compute_pefs
from workbench.analysis import unsketch
from workbench.core.sketch import CountSketch
from workbench.npeff import DNpeff, LrmNpeff
from workbench.npeff.planted import match_components, planted_d, planted_lrm
from workbench.npeff.sketched import back_projection, sketch_pefs


def _components(est):
    return np.stack([est.component(j) for j in range(est.n_components)])


@pytest.mark.parametrize("d", [128, 512])
def test_planted_components_are_recovered_in_the_sketch_and_after_mapping_back(d):
    problem = planted_lrm(300, 5000, 6, seed=1)
    sketched = sketch_pefs(problem.pefs, d, seed=2)
    est = LrmNpeff(6, progress=False).fit(sketched)
    sketch = CountSketch(d, 5000, 2)
    _, cos_sketched = match_components(_components(est), sketch.apply(problem.components))
    assert cos_sketched.min() >= 0.95  # the fit in the sketch finds the sketched components
    full = unsketch(est, sketched, problem.pefs)
    assert full.layout_ == problem.pefs.layout and full.n_parameters_ == 5000
    _, cos = match_components(_components(full), problem.components)
    assert cos.min() >= 0.95, cos
    # exact in the sketch: S G is the fitted G̃ (the fit's stationarity condition)
    back = sketch.apply(_components(full))
    assert np.linalg.norm(back - _components(est)) <= 1e-4 * np.linalg.norm(_components(est))
    # the plain adjoint Sᵀ G̃ is no way back: its cosine with the truth is about √(d/m)
    _, cos_adjoint = match_components(sketch.adjoint(_components(est)), problem.components)
    assert cos_adjoint.mean() < 2 * np.sqrt(d / 5000)
    # the mapped-back fit reads PEFs on the parameter axis
    assert full.transform(problem.pefs[:5]).shape == (5, 6)


def test_mapping_back_through_the_model_equals_mapping_back_through_its_exact_pefs():
    model, inputs = tiny_bert(3), tiny_bert_inputs(20)
    sketched = compute_pefs(model, inputs, sketch=128, progress=False)
    exact = compute_pefs(model, inputs, n_values=None, progress=False)
    est = LrmNpeff(3, n_iters_g_only=30, n_iters_joint=100, progress=False).fit(sketched)
    by_model = unsketch(est, sketched, model, inputs, batch_size=7, progress=False)
    by_pefs = unsketch(est, sketched, exact)
    G_model, G_pefs = _components(by_model), _components(by_pefs)
    np.testing.assert_allclose(G_model, G_pefs, atol=1e-5 * np.abs(G_pefs).max())
    assert by_model.component_by_parameter(0)["bert.pooler.dense.weight"].shape == (16, 16)
    np.testing.assert_array_equal(by_model.W_, est.W_)
    # two classes: the model path's one-gradient-per-example rows give the same
    model2 = tiny_bert(2)
    sketched2 = compute_pefs(model2, inputs, sketch=128, progress=False)
    est2 = LrmNpeff(2, n_iters_g_only=10, n_iters_joint=20, progress=False).fit(sketched2)
    exact2 = compute_pefs(model2, inputs, n_values=None, progress=False)
    a, b = _components(unsketch(est2, sketched2, model2, inputs, progress=False)), _components(unsketch(est2, sketched2, exact2))
    np.testing.assert_allclose(a, b, atol=1e-5 * np.abs(b).max())


def test_mapping_back_refuses_what_does_not_belong():
    model, inputs = tiny_bert(3), tiny_bert_inputs(12)
    sketched = compute_pefs(model, inputs, sketch=64, progress=False)
    est = LrmNpeff(2, n_iters_g_only=5, n_iters_joint=5, progress=False).fit(sketched)
    exact = compute_pefs(model, inputs, n_values=None, progress=False)
    with pytest.raises(ValueError, match="not sketched"):
        back_projection(LrmNpeff(2, n_iters_g_only=5, n_iters_joint=5, progress=False).fit(exact), exact)
    with pytest.raises(ValueError, match="another axis"):
        back_projection(est, compute_pefs(model, inputs, sketch=64, sketch_seed=1, progress=False))
    with pytest.raises(ValueError, match="examples"):
        unsketch(est, sketched, exact[:6])
    with pytest.raises(ValueError, match="not the inputs"):
        unsketch(est, sketched, model, tiny_bert_inputs(12, seed=5), progress=False)
    with pytest.raises(TypeError, match="inputs are needed"):
        unsketch(est, sketched, model)
    with pytest.raises(TypeError, match="source must be the model the sketched PEFs came from"):
        unsketch(est, sketched, "model", inputs)
    other = compute_pefs(tiny_bert(3, seed=1), inputs, n_values=None, progress=False)  # same shapes, other weights
    with pytest.raises(ValueError, match="source PEFs come from another model"):
        unsketch(est, sketched, other)
    d_fit = DNpeff(2, n_iters=5, progress=False).fit(planted_d(20, 30, 2).pefs)
    with pytest.raises(TypeError, match="only LRM-NPEFF"):
        back_projection(d_fit, sketched)


@pytest.mark.parametrize("solver", ["primal", "dual"])
def test_the_way_back_is_exact_in_the_sketch_with_the_orthogonal_penalty_too(solver):
    problem = planted_lrm(120, 800, 4, seed=3)
    sketched = sketch_pefs(problem.pefs, 96, seed=4)
    est = LrmNpeff(4, orthogonal_reg=0.05, solver=solver, n_iters_joint=600, progress=False).fit(sketched)
    full = unsketch(est, sketched, problem.pefs)
    back = CountSketch(96, 800, 4).apply(_components(full))
    assert np.linalg.norm(back - _components(est)) <= 1e-3 * np.linalg.norm(_components(est))
