"""Sketched PEFs (workbench.core.sketch, workbench.fisher.sketch): the count sketch is a JL
embedding of inner products, and a sketched run's PEFs are exactly the sketch of the exact PEFs."""

import numpy as np
import pytest

from tests.conftest import tiny_bert, tiny_bert_inputs
from workbench import compute_pefs, write_pefs
from workbench.core.sketch import CountSketch
from workbench.store import StoreError, load_pefs


def _variance(u, v, d):
    """Var ⟨Su, Sv⟩ of a count sketch of dimension d (E = ⟨u, v⟩)."""
    return ((u @ u) * (v @ v) + (u @ v) ** 2 - 2 * np.sum(u**2 * v**2)) / d


def test_hashes_are_reproducible_and_blockwise():
    sketch = CountSketch(100, 10_000, seed=7)
    buckets, signs = sketch.hashes()
    again, again_signs = CountSketch(100, 10_000, seed=7).hashes()
    assert np.array_equal(buckets, again) and np.array_equal(signs, again_signs)
    part, part_signs = sketch.hashes(3_000, 4_000)  # any block, in any order, gets the same hashes
    assert np.array_equal(part, buckets[3_000:4_000]) and np.array_equal(part_signs, signs[3_000:4_000])
    assert not np.array_equal(CountSketch(100, 10_000, seed=8).hashes()[0], buckets)
    counts = np.bincount(buckets, minlength=100)  # buckets about uniform, signs balanced
    assert counts.min() > 60 and counts.max() < 140 and abs(signs.mean()) < 0.05
    assert set(np.unique(signs)) == {-1.0, 1.0}


def test_inner_products_are_unbiased_within_the_jl_bound_on_random_vectors():
    rng = np.random.default_rng(0)
    m, d, n_seeds = 4_000, 256, 300
    u = rng.standard_normal(m)
    v = 0.6 * u + 0.8 * rng.standard_normal(m)  # correlated, so ⟨u, v⟩ is far from 0
    sd = np.sqrt(_variance(u, v, d))
    z = np.array([(CountSketch(d, m, s).apply(u) @ CountSketch(d, m, s).apply(v) - u @ v) / sd for s in range(n_seeds)])
    # standardised errors: mean 0 and variance 1 up to sampling error (4 standard errors), no outliers beyond 5σ
    assert abs(z.mean()) < 4 / np.sqrt(n_seeds)
    assert abs(z.var() - 1) < 4 * np.sqrt(2 / n_seeds)
    assert np.abs(z).max() < 5
    # the JL form: |error| ≤ ε‖u‖‖v‖ with ε = 5·√(2/d)
    assert np.abs(z * sd).max() <= 5 * np.sqrt(2 / d) * np.linalg.norm(u) * np.linalg.norm(v)


def test_sketched_pefs_preserve_real_pefs_grams_and_norms_within_the_jl_bound():
    model, inputs = tiny_bert(3), tiny_bert_inputs(12)
    exact = compute_pefs(model, inputs, n_values=None, progress=False)
    sketched = compute_pefs(model, inputs, sketch=512, sketch_seed=1, progress=False)
    X, Xs = exact.X.toarray().astype(np.float64), sketched.X.toarray().astype(np.float64)
    K, Ks = X @ X.T, Xs @ Xs.T  # every pair of slots' inner product, of all examples
    sd = np.sqrt(np.array([[_variance(a, b, 512) for b in X] for a in X]))
    assert np.all(np.abs(Ks - K) <= 5 * sd + 1e-6 * np.abs(K).max())
    # each example's ‖Ãᵀ Ã‖_F against its exact PEF's norm (which the sketched PEFs keep)
    grams = Ks.reshape(12, 3, 12, 3)[np.arange(12), :, np.arange(12), :]
    norms = np.linalg.norm(grams, axis=(1, 2))
    np.testing.assert_allclose(sketched.frobenius_norms, exact.frobenius_norms, rtol=1e-5)
    assert np.all(np.abs(norms / exact.frobenius_norms - 1) < 5 * np.sqrt(2 / 512))


@pytest.mark.parametrize("n_classes", [2, 3])
@pytest.mark.parametrize("method", ["hooks", "loop"])
def test_sketched_run_is_the_sketch_of_the_exact_pefs(n_classes, method):
    model, inputs = tiny_bert(n_classes), tiny_bert_inputs()
    exact = compute_pefs(model, inputs, n_values=None, method="loop", progress=False)
    sketched = compute_pefs(model, inputs, sketch=64, sketch_seed=3, method=method, batch_size=4, progress=False)
    reference = CountSketch(64, exact.n_parameters, 3).apply(exact.dense())
    np.testing.assert_allclose(sketched.dense(), reference, atol=1e-6 * np.abs(reference).max())
    np.testing.assert_allclose(sketched.frobenius_norms, exact.frobenius_norms, rtol=1e-5)
    assert sketched.layout == CountSketch(64, exact.n_parameters, 3).layout()
    sketch, parameters = CountSketch.from_info(sketched.info)
    assert (sketch.dim, sketch.seed, parameters) == (64, 3, exact.layout)
    assert sketched.info["n_values"] is None


def test_a_sketched_store_records_its_sketch_and_refuses_another(tmp_path, bert3, bert_inputs):
    store = write_pefs(tmp_path / "s", bert3, bert_inputs, sketch=32, sketch_seed=5, batch_size=4, progress=False)
    assert store.info["sketch"]["dim"] == 32 and store.info["sketch"]["seed"] == 5
    assert store.layout.n_parameters == 32
    loaded = load_pefs(tmp_path / "s")
    in_memory = compute_pefs(bert3, bert_inputs, sketch=32, sketch_seed=5, batch_size=4, progress=False)
    assert (loaded.X != in_memory.X).nnz == 0 and loaded.info["sketch"] == in_memory.info["sketch"]
    for other in (dict(sketch=32, sketch_seed=6), dict(sketch=16, sketch_seed=5), dict(n_values=100)):
        with pytest.raises(StoreError):
            write_pefs(tmp_path / "s", bert3, bert_inputs, batch_size=4, progress=False, **other)
    unsketched = write_pefs(tmp_path / "t", bert3, bert_inputs, n_values=100, batch_size=4, progress=False)
    assert "sketch" not in unsketched.info  # unsketched stores are recorded as before


def test_bad_sketch_arguments_are_refused_before_anything_runs(bert3, bert_inputs):
    with pytest.raises(ValueError, match="kind='lrm' only"):
        compute_pefs(bert3, bert_inputs, kind="d", sketch=16, progress=False)
    with pytest.raises(ValueError, match="positive integer"):
        compute_pefs(bert3, bert_inputs, sketch=0, progress=False)
    with pytest.raises(TypeError, match="integer"):
        compute_pefs(bert3, bert_inputs, sketch=16.5, progress=False)


def test_compiled_and_torch_sketches_agree():
    """The numba kernel (one pass: buckets, signs and Grams) and torch's index_add give the same sketched PEFs."""
    from workbench.core import compiled

    if not compiled.available():
        pytest.skip("needs numba")
    model, inputs = tiny_bert(3), tiny_bert_inputs()
    by_kernel = compute_pefs(model, inputs, sketch=48, sketch_seed=2, batch_size=4, progress=False)
    with compiled.disabled():
        by_torch = compute_pefs(model, inputs, sketch=48, sketch_seed=2, batch_size=4, progress=False)
    np.testing.assert_allclose(by_kernel.dense(), by_torch.dense(), atol=1e-6 * np.abs(by_torch.dense()).max())
    np.testing.assert_allclose(by_kernel.frobenius_norms, by_torch.frobenius_norms, rtol=1e-6)
