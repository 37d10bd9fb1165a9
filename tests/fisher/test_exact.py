"""PEF values against the plain per-example loop and finite differences."""

import logging

import numpy as np
import pytest
import torch
from torch import nn
from transformers import GPT2Config, GPT2ForSequenceClassification

from tests.conftest import ScaleLayer, tiny_bert_inputs
from workbench import compute_pefs
from workbench.fisher import PER_EXAMPLE_RULES


def _dense(pefs):
    return pefs.dense()


@pytest.mark.parametrize("kind", ["lrm", "d"])
@pytest.mark.parametrize("batch_size", [1, 4])
def test_hooks_equal_plain_loop(bert3, bert_inputs, kind, batch_size):
    hooks = compute_pefs(bert3, bert_inputs, kind=kind, n_values=None, batch_size=batch_size, progress=False)
    loop = compute_pefs(bert3, bert_inputs, kind=kind, n_values=None, method="loop", progress=False)
    assert hooks.n_parameters == sum(p.numel() for p in bert3.parameters())
    scale = np.abs(_dense(loop)).max()
    np.testing.assert_allclose(_dense(hooks), _dense(loop), atol=2e-6 * scale)
    np.testing.assert_allclose(hooks.frobenius_norms, loop.frobenius_norms, rtol=1e-5)
    np.testing.assert_allclose(hooks.logits, loop.logits, atol=1e-5)


@pytest.mark.parametrize("kind", ["lrm", "d"])
def test_compiled_and_numpy_selection_give_the_same_pefs(bert3, bert_inputs, kind):
    """Written-out gradients are ranked by the numba kernel where it is there, by numpy
    otherwise: the same entries, values and norms."""
    from workbench.core import compiled

    if not compiled.available():
        pytest.skip("needs numba")
    by_kernel = compute_pefs(bert3, bert_inputs, kind=kind, n_values=300, batch_size=4, progress=False)
    with compiled.disabled():
        plain = compute_pefs(bert3, bert_inputs, kind=kind, n_values=300, batch_size=4, progress=False)
    a, b = by_kernel.matrix, plain.matrix
    assert (a != b).nnz == 0
    np.testing.assert_allclose(by_kernel.frobenius_norms, plain.frobenius_norms, rtol=1e-6)


def test_top_k_classes_are_the_most_probable_in_order(bert3, bert_inputs):
    full = compute_pefs(bert3, bert_inputs, n_values=None, progress=False)
    top2 = compute_pefs(bert3, bert_inputs, n_values=None, top_k_classes=2, progress=False)
    order = np.argsort(-full.logits, axis=1)[:, :2]
    np.testing.assert_array_equal(top2.classes, order)
    loop = compute_pefs(bert3, bert_inputs, n_values=None, top_k_classes=2, method="loop", progress=False)
    np.testing.assert_allclose(top2.dense(), loop.dense(), atol=2e-6 * np.abs(loop.dense()).max())
    # each slot is the same class's column of the all-class PEF, which lists classes by probability too
    np.testing.assert_allclose(top2.dense(), full.dense()[:, :2], atol=1e-7)


def test_lrm_norm_is_frobenius_norm_of_full_pef(bert3, bert_inputs):
    pefs = compute_pefs(bert3, bert_inputs, n_values=None, progress=False)
    A = pefs.dense().astype(np.float64)  # (n, c, m)
    for i in range(pefs.n_examples):
        F = A[i].T @ A[i]
        assert pefs.frobenius_norms[i] == pytest.approx(np.linalg.norm(F), rel=1e-5)


def test_sparsified_keeps_largest_entries_and_full_norm(bert3, bert_inputs):
    full = compute_pefs(bert3, bert_inputs, n_values=None, progress=False)
    kept = compute_pefs(bert3, bert_inputs, n_values=500, progress=False)
    np.testing.assert_allclose(kept.frobenius_norms, full.frobenius_norms, rtol=1e-6)
    A_full, A_kept = full.dense(), kept.dense()
    for i in range(full.n_examples):
        nz = A_kept[i] != 0
        assert nz.sum() == 500
        np.testing.assert_allclose(A_kept[i][nz], A_full[i][nz], rtol=1e-6)
        smallest_kept = np.abs(A_kept[i][nz]).min()
        largest_dropped = np.abs(A_full[i][~nz]).max()
        assert smallest_kept >= largest_dropped


def test_d_pef_is_probability_weighted_squared_gradients(bert3, bert_inputs):
    lrm = compute_pefs(bert3, bert_inputs, n_values=None, progress=False)
    d = compute_pefs(bert3, bert_inputs, kind="d", n_values=None, progress=False)
    expected = (lrm.dense().astype(np.float64) ** 2).sum(axis=1)  # Σ_y p_y (∇ log p_y)²
    np.testing.assert_allclose(d.dense(), expected, rtol=1e-4, atol=1e-12)
    np.testing.assert_allclose(d.frobenius_norms, np.linalg.norm(expected, axis=1), rtol=1e-5)


def test_finite_differences_on_tiny_mlp():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3)).double()
    x = torch.randn(6, 4, dtype=torch.float64)
    pefs = compute_pefs(model, x, n_values=None, progress=False)
    theta = torch.nn.utils.parameters_to_vector(model.parameters()).detach().clone()

    def log_probs(vector):
        torch.nn.utils.vector_to_parameters(vector, model.parameters())
        with torch.no_grad():
            return torch.log_softmax(model(x), dim=-1)

    h = 1e-6
    fd = torch.zeros(6, 3, theta.numel(), dtype=torch.float64)
    for k in range(theta.numel()):
        step = torch.zeros_like(theta)
        step[k] = h
        fd[:, :, k] = (log_probs(theta + step) - log_probs(theta - step)) / (2 * h)
    torch.nn.utils.vector_to_parameters(theta, model.parameters())
    p = log_probs(theta).exp()
    expected = np.zeros((6, 3, theta.numel()))
    for i in range(6):
        for s, y in enumerate(pefs.classes[i]):
            expected[i, s] = (p[i, y].sqrt() * fd[i, y]).numpy()
    np.testing.assert_allclose(pefs.dense(), expected, atol=1e-6)


def test_parameter_filter_selects_the_named_columns(bert3, bert_inputs):
    full = compute_pefs(bert3, bert_inputs, n_values=None, progress=False)
    head = compute_pefs(bert3, bert_inputs, n_values=None, include=r"^classifier\.", progress=False)
    assert head.layout.names == ("classifier.weight", "classifier.bias")
    offsets = full.layout.offsets
    start = offsets[full.layout.names.index("classifier.weight")]
    np.testing.assert_allclose(head.dense(), full.dense()[:, :, start : start + head.n_parameters], atol=1e-7)


def test_exclude_filter(bert3, bert_inputs):
    pefs = compute_pefs(bert3, bert_inputs, n_values=10, exclude=["embeddings", "encoder"], progress=False)
    assert all(not n.startswith("bert.embeddings") and "encoder" not in n for n in pefs.layout.names)


def test_layers_without_a_rule_fall_back_to_the_loop(caplog):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 5), ScaleLayer(5), nn.Tanh(), nn.LayerNorm(5), nn.Linear(5, 3))
    assert type(model[1]) not in PER_EXAMPLE_RULES
    x = torch.randn(7, 4)
    with caplog.at_level(logging.INFO, logger="workbench"):
        hooks = compute_pefs(model, x, n_values=None, batch_size=3, progress=False)
    loop = compute_pefs(model, x, n_values=None, method="loop", progress=False)
    np.testing.assert_allclose(hooks.dense(), loop.dense(), atol=1e-6)
    assert "no per-example rule" in caplog.text


def test_gpt2_conv1d_layers():
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=40, n_positions=16, n_embd=16, n_layer=2, n_head=2, num_labels=2, pad_token_id=0)
    model = GPT2ForSequenceClassification(config).eval()
    inputs = tiny_bert_inputs(n=5, length=8)
    hooks = compute_pefs(model, inputs, n_values=None, batch_size=5, progress=False)
    loop = compute_pefs(model, inputs, n_values=None, method="loop", progress=False)
    np.testing.assert_allclose(hooks.dense(), loop.dense(), atol=2e-6 * np.abs(loop.dense()).max())


def test_labels_kept_and_predictions_from_logits(bert3, bert_inputs):
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2])
    pefs = compute_pefs(bert3, dict(bert_inputs, labels=labels), n_values=10, progress=False)
    np.testing.assert_array_equal(pefs.labels, labels.numpy())
    np.testing.assert_array_equal(pefs.predictions, pefs.logits.argmax(1))
    with torch.no_grad():
        expected = bert3(**bert_inputs).logits.numpy()
    np.testing.assert_allclose(pefs.logits, expected, atol=1e-5)


def test_two_class_models_take_one_backward_pass_and_equal_the_loop(bert_inputs):
    """Two classes: both slots' gradients come from one backward pass (multiples of
    ∇(z₀ − z₁)). Against the plain loop in float64 they are as close as float32 allows,
    also for confident examples, where the float32 loop's 1 − p₀ rounds (its slot-0
    gradients, p₁ ∇(z₀ − z₁) with p₁ near 1e-6, were 2% off)."""
    import copy

    from tests.conftest import tiny_bert

    model = tiny_bert(2)
    with torch.no_grad():  # class 0 far more probable for every example
        model.classifier.bias.copy_(torch.tensor([7.0, -7.0]))
    backward_passes = []
    real_grad = torch.autograd.grad

    def counting_grad(*args, **kwargs):
        backward_passes.append(1)
        return real_grad(*args, **kwargs)

    # The fast path's check against the loop runs on a model's first run, and is cached
    compute_pefs(model, {k: v[:2] for k, v in bert_inputs.items()}, n_values=None, progress=False)
    torch.autograd.grad = counting_grad
    try:
        hooks = compute_pefs(model, bert_inputs, n_values=None, batch_size=9, progress=False)
    finally:
        torch.autograd.grad = real_grad
    # one batch, one pass: the probe's warm-up example ran in the model's first call above
    assert len(backward_passes) == 1, "one backward pass for the batch's two slots"
    reference = _float64_lrm_pefs(copy.deepcopy(model).double(), bert_inputs)
    plain = compute_pefs(model, bert_inputs, n_values=None, method="loop", progress=False).dense()
    ours = hooks.dense()
    for slot in range(2):
        scale = np.abs(reference[:, slot]).max()
        np.testing.assert_allclose(ours[:, slot], reference[:, slot], atol=1e-5 * scale)
    assert np.abs(ours[:, 0] - reference[:, 0]).max() < np.abs(plain[:, 0] - reference[:, 0]).max() / 10
    norms = [np.linalg.norm(a.T @ a) for a in reference.transpose(0, 2, 1)]
    np.testing.assert_allclose(hooks.frobenius_norms, norms, rtol=1e-5)


def _float64_lrm_pefs(model, inputs) -> np.ndarray:
    """(n, k, m): √p(y|x) ∇ log p(y|x) of every class, most probable first, all in float64."""
    params = list(model.parameters())
    rows = []
    for i in range(inputs["input_ids"].shape[0]):
        log_p = torch.log_softmax(model(**{k: v[i : i + 1] for k, v in inputs.items()}).logits[0], dim=-1)
        slots = []
        for y in log_p.argsort(descending=True):
            grads = torch.autograd.grad(log_p[y], params, retain_graph=True, allow_unused=True)
            flat = torch.cat([(torch.zeros_like(p) if g is None else g).reshape(-1) for g, p in zip(grads, params)])
            slots.append((log_p[y].detach() / 2).exp() * flat)
        rows.append(torch.stack(slots))
    return torch.stack(rows).detach().numpy()


@pytest.mark.parametrize("kind", ["lrm", "d"])
def test_a_batch_written_in_several_groups_gives_what_one_group_gives(bert3, bert_inputs, kind, monkeypatch):
    """A batch larger than the entries written at a time is selected group by group and
    joined into one chunk: the same entries, values and norms as one group."""
    import workbench.fisher.sparsify as sparsify

    whole = compute_pefs(bert3, bert_inputs, kind=kind, n_values=300, batch_size=4, progress=False)
    m = whole.n_parameters
    monkeypatch.setattr(sparsify, "_DENSE_GROUP_ENTRIES", 3 * m)  # groups of at most 3 examples (or 1, with 2 rows each)
    grouped = compute_pefs(bert3, bert_inputs, kind=kind, n_values=300, batch_size=4, progress=False)
    assert (whole.matrix != grouped.matrix).nnz == 0
    np.testing.assert_array_equal(whole.frobenius_norms, grouped.frobenius_norms)
