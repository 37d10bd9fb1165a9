"""Baselines: each method's coefficients on planted data, one scoring rule, and the embedded comparison."""

import numpy as np
import scipy.sparse as sp
import pytest
import torch

from workbench import compute_pefs
from workbench.analysis.baselines import (
    baseline_comparison,
    compare_methods,
    component_strategies,
    dictionary_coefficients,
    explaining_components,
    kmeans_coefficients,
    predicted_class_gradients,
    score_components,
)


def test_score_components_on_an_exact_small_case():
    strategies = ["a", "a", "b", "b", ("a", "b"), ("a", "b")]
    # Component 0 claims the a's, component 1 the b's; each multi-factor example has both.
    both = np.array([[2, 0], [1, 0], [0, 2], [0, 1], [1, 1], [0.5, 0.2]], dtype=float)
    score = score_components(both, strategies, n_top=2)
    assert score["mean_strategy_purity"] == 1.0 and score["strategies_covered"] == 2
    assert score["n_multi_factor"] == 2
    assert score["multi_factor_one_found"] == 1.0 and score["multi_factor_both_found"] == 1.0
    # A hard clustering of the same examples names one strategy per example.
    hard = np.eye(2)[both.argmax(axis=1)]
    score = score_components(hard, strategies, n_top=2)
    assert score["multi_factor_one_found"] == 1.0 and score["multi_factor_both_found"] == 0.0
    table = compare_methods({"soft": both, "hard": hard}, strategies, n_top=2)
    assert list(table.index) == ["soft", "hard"] and table.loc["hard", "multi_factor_both_found"] == 0.0


def test_score_components_by_multi_factor_kind():
    strategies = ["a", "a", "b", "b", "c", "c", ("a", "b"), ("a", "b"), ("a", "c")]
    # Components name a, b, c; the (a, b) examples get a and b, the (a, c) example a alone.
    coefficients = np.array([[2, 0, 0], [1, 0, 0], [0, 2, 0], [0, 1, 0], [0, 0, 2], [0, 0, 1],
                             [1, 1, 0], [0.3, 0.2, 0], [1, 0, 0]], dtype=float)
    score = score_components(coefficients, strategies, n_top=2)
    assert score["a+b_one_found"] == 1.0 and score["a+b_both_found"] == 1.0
    assert score["a+c_one_found"] == 1.0 and score["a+c_both_found"] == 0.0
    assert score["multi_factor_both_found"] == 2 / 3


def test_explaining_components_skip_zero_coefficients():
    coefficients = np.array([[0.0, 3, 1], [0, 0, 2], [0, 0, 0]])
    assert [list(e) for e in explaining_components(coefficients, 2)] == [[1, 2], [2], []]


def test_score_components_refuses_bad_coefficients():
    with pytest.raises(ValueError, match="one row of coefficients per example"):
        score_components(np.ones((3, 2)), ["a", "b"])
    with pytest.raises(ValueError, match="non-negative"):
        score_components(-np.ones((2, 2)), ["a", "b"])


def test_predicted_class_gradients_equal_autograd(bert3, bert_inputs):
    pefs = compute_pefs(bert3, bert_inputs, top_k_classes=1, n_values=None, progress=False)
    gradients = predicted_class_gradients(pefs).toarray()
    params = [p for p in bert3.parameters()]
    for i in (0, 3, 7):
        row = {k: v[i : i + 1, : int(bert_inputs["attention_mask"][i].sum())] for k, v in bert_inputs.items()}
        log_p = torch.log_softmax(bert3(**row).logits[0], -1)
        grads = torch.autograd.grad(log_p.max(), params)
        expected = torch.cat([g.reshape(-1) for g in grads]).numpy()
        np.testing.assert_allclose(gradients[i], expected, atol=1e-5 * np.abs(expected).max())


@pytest.mark.parametrize("order", ["by probability", "by class"])
def test_predicted_class_gradients_take_the_slot_of_the_predicted_class_in_either_order(bert3, bert_inputs, order):
    """A slot per class in class order (the original's files, from_dense) gave every example not predicting class 0
    the gradient of class 0, rescaled by its own probability."""
    from workbench.core.pefs import LrmPefs

    pefs = compute_pefs(bert3, bert_inputs, n_values=None, progress=False)  # every class, by probability
    A = pefs.dense()  # (n, slots, parameters)
    if order == "by class":
        by_class = np.argsort(pefs.classes, axis=1)
        A = np.take_along_axis(A, by_class[:, :, None], axis=1)
        pefs = LrmPefs.from_dense(A, logits=pefs.logits, labels=pefs.labels, layout=pefs.layout)
    truth = compute_pefs(bert3, bert_inputs, top_k_classes=1, n_values=None, progress=False)
    assert (pefs.predictions != 0).any()
    np.testing.assert_allclose(predicted_class_gradients(pefs).toarray(), predicted_class_gradients(truth).toarray(),
                               rtol=1e-4, atol=1e-5 * np.abs(truth.dense()).max())


def test_kmeans_coefficients_are_hard_and_find_planted_clusters():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 40)) * 5
    truth = np.repeat(np.arange(3), 30)
    features = centres[truth] + rng.normal(size=(90, 40))
    coefficients = kmeans_coefficients(features, 3, seed=0)
    assert ((coefficients > 0).sum(axis=1) == 1).all()
    table = component_strategies(coefficients, truth, n_top=10)
    assert (table["strategy_purity"] == 1.0).all() and set(table["strategy"]) == {0, 1, 2}
    # A cluster's top example is its most central member.
    j = int(np.argmax(coefficients[0]))
    members = np.flatnonzero(coefficients[:, j])
    centroid = (features[members] / np.linalg.norm(features[members], axis=1, keepdims=True)).mean(0)
    units = features / np.linalg.norm(features, axis=1, keepdims=True)
    assert np.argmax(coefficients[:, j]) == members[np.argmin(np.linalg.norm(units[members] - centroid, axis=1))]


def test_kmeans_on_sparse_features_ignores_untouched_columns():
    """Sparse gradients of a large model touch few columns: the same clusters as dense."""
    rng = np.random.default_rng(1)
    centres = rng.normal(size=(3, 20)) * 5
    dense = centres[np.repeat(np.arange(3), 20)] + rng.normal(size=(60, 20))
    wide = np.zeros((60, 5000))
    wide[:, rng.choice(5000, size=20, replace=False)] = dense
    np.testing.assert_allclose(kmeans_coefficients(sp.csr_matrix(wide), 3, seed=0), kmeans_coefficients(dense, 3, seed=0))


def test_dictionary_coefficients_recover_planted_atoms():
    rng = np.random.default_rng(0)
    atoms = np.linalg.qr(rng.normal(size=(32, 4)))[0].T  # 4 orthonormal atoms in 32 dimensions
    truth = rng.integers(0, 4, size=200)
    codes = np.zeros((200, 4))
    codes[np.arange(200), truth] = rng.uniform(1, 2, size=200)
    coefficients = dictionary_coefficients(codes @ atoms + 0.01 * rng.normal(size=(200, 32)), 4, seed=0)
    assert (coefficients >= 0).all()
    table = component_strategies(coefficients, truth, n_top=20)
    assert (table["strategy_purity"] == 1.0).all() and set(table["strategy"]) == {0, 1, 2, 3}


def test_baselines_beside_npeff_on_the_embedded_run(embedded):
    """Measured by ``python -m workbench.evaluate`` on the same settings (600 held-out
    examples, 16 components, seed 0, scope no-head; k-means on the gradients of the same
    parameters; task version 3):

    method                               purity  covered  one found  both found
    NPEFF                                 0.91     4/4      0.99       0.21
    k-means on gradients                  0.85     4/4      0.99       0
    dictionary learning on activations    0.88     4/4      1.00       0.02
    (150 multi-factor examples of two kinds; docs/evaluation.md has the other scopes,
    seeds and fit settings: NPEFF's "both found" moves between 0.11 and 0.39 with them)

    So the structural facts, loose floors and the ordering the docs claim are asserted: a
    hard clustering never finds both, and NPEFF finds both at least as often as a dictionary
    of the same size.
    """
    _, model, _, examples, inputs, decomposition = embedded
    table = baseline_comparison(model, inputs, decomposition, examples["strategies"].map(tuple).tolist(), progress=False)
    assert list(table.index) == ["NPEFF", "k-means on gradients", "dictionary learning on activations"]
    assert (table["n_components"] == decomposition.n_components).all()
    assert (table["mean_strategy_purity"] >= table["chance_strategy_purity"] + 0.3).all()
    assert table.loc["NPEFF", "mean_strategy_purity"] >= 0.78
    assert table.loc["k-means on gradients", "mean_strategy_purity"] >= 0.8  # measured 0.85
    assert table.loc["dictionary learning on activations", "mean_strategy_purity"] >= 0.83
    assert (table["strategies_covered"] >= 4).all()
    assert (table["n_multi_factor"] == examples["strategy"].str.contains("+", regex=False).sum()).all()
    assert table.loc["k-means on gradients", "multi_factor_both_found"] == 0.0
    assert table.loc["NPEFF", "multi_factor_both_found"] >= max(0.1, table.loc["dictionary learning on activations",
                                                                             "multi_factor_both_found"])
    assert table.loc["NPEFF", "multi_factor_one_found"] >= 0.8
