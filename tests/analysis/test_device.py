"""Perturbation checks and highlights on a named device: the CPU here, CUDA where there is one."""

import copy

import numpy as np
import pytest
import torch

from workbench.analysis import top_examples
from workbench.analysis.highlights import token_scores
from workbench.analysis.perturb import perturbation_check

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_a_named_device_is_used_or_refused_clearly(embedded):
    _, model, _, examples, inputs, decomposition = embedded
    top = top_examples(decomposition.W_, 1, 8)
    rows = {k: v[top[:3]] for k, v in inputs.items()}
    on_cpu = perturbation_check(model, decomposition, 1, inputs, examples["label"], top, np.arange(40), device="cpu")
    assert on_cpu.kl_ratio > 0 and next(model.parameters()).device.type == "cpu"
    assert len(token_scores(model, decomposition, 1, rows, device="cpu")) == 3
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no usable CUDA GPU"):
            perturbation_check(model, decomposition, 1, inputs, examples["label"], top, device="cuda")
        with pytest.raises(ValueError, match="no usable CUDA GPU"):
            token_scores(model, decomposition, 1, rows, device="cuda")


@needs_cuda
def test_cuda_results_match_the_cpu_and_weights_are_restored_on_the_gpu(embedded):
    _, model, _, examples, inputs, decomposition = embedded
    gpu_model = copy.deepcopy(model)
    top = top_examples(decomposition.W_, 2, 20)
    baseline = np.arange(300, 360)
    cpu = perturbation_check(model, decomposition, 2, inputs, examples["label"], top, baseline, epsilon=0.2, device="cpu")
    gpu = perturbation_check(gpu_model, decomposition, 2, inputs, examples["label"], top, baseline, epsilon=0.2, device="cuda")
    assert next(gpu_model.parameters()).is_cuda
    for sign in ("+", "-"):
        assert gpu.kl_top[sign] == pytest.approx(cpu.kl_top[sign], rel=1e-3)
        assert gpu.kl_baseline[sign] == pytest.approx(cpu.kl_baseline[sign], rel=1e-3)
    for p, q in zip(gpu_model.parameters(), model.parameters()):
        assert torch.equal(p.cpu(), q)  # restored bit for bit on the GPU
    rows = {k: v[top[:5]] for k, v in inputs.items()}
    on_cpu = token_scores(model, decomposition, 2, rows, device="cpu")
    on_gpu = token_scores(gpu_model, decomposition, 2, rows, device="cuda")
    for a, b in zip(on_cpu, on_gpu):
        np.testing.assert_allclose(b.scores, a.scores, atol=1e-4)
        assert b.projection == pytest.approx(a.projection, rel=1e-3)
