"""The fast hooks paths (whole examples written out, or block by block with bounds) against the plain loop."""

from functools import lru_cache

import numpy as np
import pytest
import torch
from torch import nn
from transformers import GPT2Config, GPT2ForSequenceClassification

import workbench.fisher.batches as batches
import workbench.fisher.sparsify as sparsify
from tests.conftest import ScaleLayer, tiny_bert, tiny_bert_inputs
from workbench import compute_pefs
from workbench.core import compiled
from workbench.fisher.rules import EmbeddingGradient, OuterProductGradient

PATHS = {"dense": 1 << 30, "blockwise": 0}


@lru_cache(maxsize=None)
def _loop(kind: str):
    """The plain loop's PEFs, all values, of bert3 on five examples; computed once per module."""
    return compute_pefs(tiny_bert(3), _inputs(), kind=kind, n_values=None, method="loop", progress=False)


def _inputs():
    return tiny_bert_inputs(n=5)


@pytest.fixture(params=sorted(PATHS))
def path(request, monkeypatch):
    monkeypatch.setattr(sparsify, "DENSE_MAX_ENTRIES", PATHS[request.param])
    return request.param


def _assert_selects_top(fast, full, n_values):
    """fast keeps, per example, the n_values largest |entries| of the full (all values) PEFs:
    same values where it keeps one, and kept sets that differ only at float near-ties of the cut."""
    A_fast, A_full = fast.dense(), full.dense()
    scale = np.abs(A_full).max()
    for i in range(fast.n_examples):
        magnitudes = np.abs(A_full[i]).ravel()
        kept = A_fast[i].ravel() != 0
        assert kept.sum() == min(n_values, (magnitudes > 0).sum())
        np.testing.assert_allclose(A_fast[i].ravel()[kept], A_full[i].ravel()[kept], atol=2e-6 * scale)
        cut = np.sort(magnitudes)[-kept.sum()]
        assert magnitudes[kept].min() >= cut * (1 - 1e-5)
        assert magnitudes[~kept].max(initial=0) <= cut * (1 + 1e-5)
    np.testing.assert_allclose(fast.frobenius_norms, full.frobenius_norms, rtol=1e-5)


@pytest.mark.parametrize("kind", ["lrm", "d"])
def test_blockwise_equals_plain_loop_all_values(bert3, monkeypatch, kind):
    monkeypatch.setattr(sparsify, "DENSE_MAX_ENTRIES", 0)  # the dense path: tests/fisher/test_exact.py
    fast = compute_pefs(bert3, _inputs(), kind=kind, n_values=None, batch_size=3, progress=False)
    loop = _loop(kind)
    scale = np.abs(loop.dense()).max()
    np.testing.assert_allclose(fast.dense(), loop.dense(), atol=2e-6 * scale)
    np.testing.assert_allclose(fast.frobenius_norms, loop.frobenius_norms, rtol=1e-5)


@pytest.mark.parametrize("kind", ["lrm", "d"])
def test_fast_paths_select_the_plain_loops_top_values(bert3, path, kind):
    fast = compute_pefs(bert3, _inputs(), kind=kind, n_values=300, batch_size=3, progress=False)
    _assert_selects_top(fast, _loop(kind), 300)


def test_blockwise_gpt2_conv1d_and_fallback_layers(monkeypatch):
    monkeypatch.setattr(sparsify, "DENSE_MAX_ENTRIES", 0)
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=40, n_positions=16, n_embd=16, n_layer=2, n_head=2, num_labels=2, pad_token_id=0)
    model = GPT2ForSequenceClassification(config).eval()
    inputs = tiny_bert_inputs(n=5, length=8)
    fast = compute_pefs(model, inputs, n_values=200, batch_size=5, progress=False)
    full = compute_pefs(model, inputs, n_values=None, method="loop", progress=False)
    _assert_selects_top(fast, full, 200)


def test_blockwise_fallback_layer_is_ranked_with_the_rest(monkeypatch):
    monkeypatch.setattr(sparsify, "DENSE_MAX_ENTRIES", 0)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 5), ScaleLayer(5), nn.Tanh(), nn.Linear(5, 3))
    x = torch.randn(6, 4)
    full = compute_pefs(model, x, n_values=None, method="loop", progress=False)
    for n_values in (None, 7):
        fast = compute_pefs(model, x, n_values=n_values, batch_size=4, progress=False)
        _assert_selects_top(fast, full, n_values or fast.n_parameters * 3)


def test_outer_product_bounds_and_entries_cover_every_large_entry():
    torch.manual_seed(0)
    g, x = torch.randn(2, 3, 5, 7), torch.randn(3, 5, 4)
    g[:, :, 4] = 0  # a padded position
    x[:, 4] = 100.0  # whose input must not loosen the bounds
    for transposed in (False, True):
        block = OuterProductGradient(g, x, transposed)
        dense = block.dense()  # (k, e, numel)
        assert (block.bounds() >= dense.abs().amax(dim=(0, 2))).all()
        assert block.bounds().max() < 100  # the padded position was left out
        for i in range(3):
            floor = float(dense[:, i].abs().quantile(0.8))
            slots, positions, values = block.entries(i, floor, None)
            expected = (dense[:, i].abs() >= floor).nonzero()
            got = torch.stack([slots, positions], dim=1)
            assert sorted(map(tuple, got.tolist())) == sorted(map(tuple, expected.tolist()))
            torch.testing.assert_close(values, dense[:, i][slots, positions], rtol=1e-5, atol=1e-6)


def test_embedding_gradient_adds_repeated_tokens_and_skips_padding():
    ids = torch.tensor([[1, 2, 1, 0], [3, 3, 3, 0]])
    g = torch.randn(2, 2, 4, 3)
    block = EmbeddingGradient(ids, g, n_rows=5, padding_idx=0)
    dense = block.dense().reshape(2, 2, 5, 3)
    torch.testing.assert_close(dense[:, 0, 1], g[:, 0, 0] + g[:, 0, 2])
    torch.testing.assert_close(dense[:, 1, 3], g[:, 1, :3].sum(dim=1))
    assert (dense[:, :, 0] == 0).all()
    flat = dense.reshape(2, 2, -1)
    torch.testing.assert_close(block.gram(), torch.einsum("sen,ten->est", flat.double(), flat.double()))
    assert (block.bounds() >= flat.abs().amax(dim=(0, 2))).all()
    positions, values = block.example(0)
    torch.testing.assert_close(values, flat[:, 0, positions])


def test_selection_on_a_second_core_beside_the_next_batch_gives_the_same_pefs(bert3, bert_inputs, monkeypatch):
    """With torch allowed two threads on a CPU, each batch's selection runs on a worker
    thread while the next batch's passes run (torch on one thread meanwhile): the PEFs are
    those of the serial run, in order, and torch's setting is restored after."""
    import threading

    if not compiled.available():
        pytest.skip("the selection is deferred only where the compiled kernel runs it")
    where = []
    real = batches.select_written
    monkeypatch.setattr(batches, "select_written", lambda *a: where.append(threading.current_thread().name) or real(*a))
    saved = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        serial = compute_pefs(bert3, bert_inputs, n_values=300, batch_size=2, progress=False)
        assert not any(name.startswith("workbench-pefs") for name in where)
        where.clear()
        torch.set_num_threads(2)
        overlapped = compute_pefs(bert3, bert_inputs, n_values=300, batch_size=2, progress=False)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(saved)
    assert sum(name.startswith("workbench-pefs") for name in where) >= 3, where
    assert (serial.X != overlapped.X).nnz == 0
    np.testing.assert_array_equal(serial.frobenius_norms, overlapped.frobenius_norms)
    np.testing.assert_array_equal(serial.logits, overlapped.logits)


def _confident_two_class_case():
    """A two-class model with one confident class (slot multiples of very different sizes), six
    examples and the plain loop's PEFs of them, every value."""
    model = tiny_bert(2)
    with torch.no_grad():
        model.classifier.bias.copy_(torch.tensor([2.0, -2.0]))
    inputs = tiny_bert_inputs(n=6)
    return model, inputs, compute_pefs(model, inputs, n_values=None, method="loop", progress=False)


@pytest.mark.parametrize("threads", [1, 2])
def test_two_class_blockwise_takes_each_block_once_for_both_slots(monkeypatch, threads):
    """A two-class model taken block by block: the blocks hold one gradient per example and
    both slots are its multiples (sparsify._scaled_entries), of unequal sizes here; the
    kept entries and norms are the plain loop's. With two torch threads the examples are
    split between worker threads, and torch's setting is restored after."""
    import threading

    monkeypatch.setattr(sparsify, "DENSE_MAX_ENTRIES", 0)
    model, inputs, full = _confident_two_class_case()
    where = []
    real = sparsify._scaled_entries
    monkeypatch.setattr(sparsify, "_scaled_entries", lambda *a: where.append(threading.current_thread().name) or real(*a))
    saved = torch.get_num_threads()
    try:
        torch.set_num_threads(threads)
        for n_values in (None, 50, 3000):
            where.clear()
            fast = compute_pefs(model, inputs, n_values=n_values, batch_size=6, progress=False)
            assert torch.get_num_threads() == threads
            if n_values is None:  # every value (the loop's exact zeros may come out as 1e-15 here)
                np.testing.assert_allclose(fast.dense(), full.dense(), atol=2e-6 * np.abs(full.dense()).max())
                np.testing.assert_allclose(fast.frobenius_norms, full.frobenius_norms, rtol=1e-5)
            else:
                _assert_selects_top(fast, full, n_values)
            assert where, "the two-class blocks were not taken once for both slots"
            # on the kernels' worker threads (split into ranges) with two threads, else here
            assert all(name.startswith("workbench-kernels") == (threads > 1) for name in where), set(where)
    finally:
        torch.set_num_threads(saved)


def test_two_class_pefs_selected_by_torch_keep_one_gradient_per_example(monkeypatch):
    """The GPU's path on a two-class model (written out whole, then selected by torch over all of a
    group's rows at once, taken here on the CPU): the blocks hold one gradient per example, written
    out once for both slots, and the kept entries and norms are the plain loop's. It wrote both
    slots out, twice the outer products and the buffer of what the one gradient needs."""
    from workbench.fisher.selection import top_entries_of_rows

    model, inputs, full = _confident_two_class_case()
    written_rows = []
    real_groups = sparsify.written_groups

    def spied_groups(grads, grams):
        for rows, A_t in real_groups(grads, grams):
            written_rows.append(A_t.shape[1])
            yield rows, A_t

    monkeypatch.setattr(sparsify, "written_groups", spied_groups)
    monkeypatch.setattr(sparsify, "top_entries", lambda row, n: top_entries_of_rows(row[None], n)[0])
    with compiled.disabled():  # torch selects, as on a GPU
        for n_values in (None, 50, 3000):
            written_rows.clear()
            fast = compute_pefs(model, inputs, n_values=n_values, batch_size=6, progress=False)
            assert written_rows and set(written_rows) == {1}, "both slots were written out"
            if n_values is None:
                np.testing.assert_allclose(fast.dense(), full.dense(), atol=2e-6 * np.abs(full.dense()).max())
            else:
                _assert_selects_top(fast, full, n_values)
            np.testing.assert_allclose(fast.frobenius_norms, full.frobenius_norms, rtol=1e-5)
