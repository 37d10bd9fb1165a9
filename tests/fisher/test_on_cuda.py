"""PEFs computed on a CUDA GPU equal the CPU's to float tolerance (skipped where there is no GPU)."""

import copy

import numpy as np
import pytest
import torch

from tests.conftest import tiny_bert, tiny_bert_inputs
from workbench import compute_pefs, write_pefs

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.mark.parametrize("kind", ["lrm", "d"])
def test_pefs_on_cuda_match_the_cpu(kind):
    model, inputs = tiny_bert(3), tiny_bert_inputs()
    on_cpu = compute_pefs(copy.deepcopy(model), inputs, torch.arange(9) % 3, kind=kind, n_values=None,
                          batch_size=4, device="cpu", progress=False)
    on_gpu = compute_pefs(copy.deepcopy(model), inputs, torch.arange(9) % 3, kind=kind, n_values=None,
                          batch_size=4, device="cuda", progress=False)
    a, b = (on_cpu.X, on_gpu.X) if kind == "lrm" else (on_cpu.F, on_gpu.F)
    a, b = a.toarray(), b.toarray()
    np.testing.assert_allclose(b, a, rtol=1e-3, atol=1e-5 * np.abs(a).max())
    np.testing.assert_allclose(on_gpu.frobenius_norms, on_cpu.frobenius_norms, rtol=1e-4)
    np.testing.assert_allclose(on_gpu.logits, on_cpu.logits, rtol=1e-4, atol=1e-5)


def test_sparsified_store_written_from_cuda_keeps_the_same_entries(tmp_path):
    model, inputs = tiny_bert(3), tiny_bert_inputs()
    labels = torch.arange(9) % 3
    cpu = write_pefs(tmp_path / "cpu", copy.deepcopy(model), inputs, labels, n_values=300, batch_size=4,
                     device="cpu", progress=False).load()
    gpu = write_pefs(tmp_path / "gpu", copy.deepcopy(model), inputs, labels, n_values=300, batch_size=4,
                     device="cuda", progress=False).load()
    assert gpu.X.shape == cpu.X.shape and gpu.X.nnz == cpu.X.nnz
    same = cpu.X.multiply(gpu.X != 0).nnz / cpu.X.nnz  # entries chosen by both; near-ties may swap
    assert same >= 0.99, same
    np.testing.assert_allclose(gpu.frobenius_norms, cpu.frobenius_norms, rtol=1e-4)


def test_gpu_writes_large_models_out_whole_and_selects_what_the_cpu_blockwise_path_does(monkeypatch):
    import workbench.fisher.sparsify as sparsify

    monkeypatch.setattr(sparsify, "DENSE_MAX_ENTRIES", 0)  # every model counts as large
    assert sparsify.writes_out_whole(10**7, torch.device("cuda"))
    assert not sparsify.writes_out_whole(10**7, torch.device("cpu"))
    model, inputs = tiny_bert(3), tiny_bert_inputs()
    blockwise = compute_pefs(copy.deepcopy(model), inputs, kind="lrm", n_values=300, batch_size=4,
                             device="cpu", progress=False)
    whole = compute_pefs(copy.deepcopy(model), inputs, kind="lrm", n_values=300, batch_size=4,
                         device="cuda", progress=False)
    assert whole.X.nnz == blockwise.X.nnz
    same = blockwise.X.multiply(whole.X != 0).nnz / blockwise.X.nnz  # near-ties at the cut may swap
    assert same >= 0.99, same
    both = blockwise.X.multiply(whole.X != 0)
    np.testing.assert_allclose(whole.X.multiply(blockwise.X != 0).data, both.data, rtol=1e-3,
                               atol=1e-5 * np.abs(blockwise.X.data).max())
    np.testing.assert_allclose(whole.frobenius_norms, blockwise.frobenius_norms, rtol=1e-4)
