"""The fits on a CUDA GPU agree with the CPU's (skipped where there is no GPU)."""

import numpy as np
import pytest
import torch

from workbench.npeff import DNpeff, LrmNpeff
from workbench.npeff.planted import match_components, planted_d, planted_lrm

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.mark.parametrize("solver", ["primal", "dual"])
def test_lrm_fit_and_transform_on_cuda_match_the_cpu(tmp_path, solver):
    problem = planted_lrm(240, 1500, 6, seed=11)
    train, held_out = problem.pefs[:200], problem.pefs[200:]
    on_cpu = LrmNpeff(6, progress=False, device="cpu", solver=solver).fit(train)
    on_gpu = LrmNpeff(6, progress=False, device="cuda", solver=solver).fit(train)
    assert on_gpu.solver_ == on_cpu.solver_ == solver

    assert isinstance(on_gpu.W_, np.ndarray) and isinstance(on_gpu.G_, np.ndarray)
    np.testing.assert_array_equal(on_gpu.kept_columns_, on_cpu.kept_columns_)
    _, cos = match_components(on_gpu.G_, problem.components[:, on_gpu.kept_columns_])
    assert cos.mean() >= 0.99, cos
    # the same algorithm from the same seed: only the order of float32 sums differs
    match, cos = match_components(on_gpu.G_, on_cpu.G_)
    assert cos.min() >= 0.999, cos
    gpu_loss, cpu_loss = on_gpu.loss_history_["joint"][-1, 1], on_cpu.loss_history_["joint"][-1, 1]
    assert gpu_loss == pytest.approx(cpu_loss, rel=0.05, abs=1e-6 * on_cpu.loss_history_["g_only"][0, 1])

    W_gpu, W_cpu = on_gpu.transform(held_out), on_cpu.transform(held_out)
    for j in range(6):
        assert np.corrcoef(W_gpu[:, j], W_cpu[:, match[j]])[0, 1] > 0.99

    on_gpu.save(tmp_path / "fit.safetensors")
    loaded = LrmNpeff.load(tmp_path / "fit.safetensors")
    np.testing.assert_array_equal(loaded.G_, on_gpu.G_)


def test_d_fit_on_cuda_matches_the_cpu():
    problem = planted_d(200, 1000, 5, seed=12)
    on_cpu = DNpeff(5, progress=False, device="cpu").fit(problem.pefs)
    on_gpu = DNpeff(5, progress=False, device="cuda").fit(problem.pefs)
    _, cos = match_components(on_gpu.H_, on_cpu.H_)
    assert cos.min() >= 0.999, cos
    W_gpu = on_gpu.transform(problem.pefs)
    assert np.all(W_gpu >= 0) and np.isfinite(W_gpu).all()
