"""Sharded PEFs and column-split fits on 2 and 3 gloo processes, against one process.

Each world size is started once (``pefs_and_fits``) and its results checked by several
tests; a rank that dies is started separately. See tests/distributed/ranks.py.
"""

import contextlib
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from workbench.distributed import DistributedError, fit_distributed, split_columns, transform_distributed
from workbench import compute_pefs
from workbench.npeff import LrmNpeff
from workbench.npeff.planted import planted_d, planted_lrm
from workbench.store import PefStore, StoreError, load_pefs, read_arrays, save_pefs

from . import jobs
from .ranks import run_ranks

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def _planted_stores(folder: Path) -> None:
    """Fit stores of 60 examples in 4 chunks, and 30 new examples for transform."""
    for name, problem in (("lrm", planted_lrm(90, 300, 4, seed=2)), ("d", planted_d(90, 300, 4, seed=2))):
        save_pefs(problem.pefs[:60], folder / f"{name}_store", examples_per_chunk=16)
        save_pefs(problem.pefs[60:], folder / f"{name}_new", examples_per_chunk=16)


def _single(name: str):
    return jobs.estimator(name)


def _store(name: str) -> str:
    return jobs.FITS[name][2]


@contextlib.contextmanager
def _one_thread():
    """As each rank runs (and much faster for these tiny fits on a loaded machine)."""
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(saved)


@pytest.fixture(scope="module")
def single_fits(tmp_path_factory):
    """One-process fits and transforms of the planted stores, the references."""
    folder = tmp_path_factory.mktemp("single")
    _planted_stores(folder)
    fits = {}
    with _one_thread():
        for name in jobs.FITS:
            fitted = _single(name).fit(load_pefs(folder / f"{_store(name)}_store"))
            fits[name] = (fitted, fitted.transform(load_pefs(folder / f"{_store(name)}_new")))
    return fits


def _assert_ok(outcome) -> None:
    assert outcome.exit_codes == [0] * len(outcome.exit_codes), outcome.errors


@pytest.fixture(scope="module", params=[2, 3], ids=["2-ranks", "3-ranks"])
def job(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp(f"world{request.param}")
    _planted_stores(folder)
    outcome = run_ranks("pefs_and_fits", request.param, folder)
    _assert_ok(outcome)
    return folder, request.param


@pytest.mark.parametrize("kind", ["lrm", "d"])
def test_write_pefs_sharded_equals_one_process(job, kind):
    folder, _ = job
    store = PefStore(folder / f"pefs_{kind}")
    assert store.complete and store.n_chunks == 7 and store.n_examples == jobs.N_PEF_EXAMPLES
    x, y = jobs.mlp_data()
    reference = compute_pefs(jobs.Mlp(), x, y, kind=kind, progress=False, **jobs.PEF_ARGS)
    sharded = store.load()
    matrix = (lambda p: p.X) if kind == "lrm" else (lambda p: p.F)
    # every example once, in order: the same rows (bit-equal here, allclose in case BLAS threads differ)
    np.testing.assert_array_equal(sharded.labels, reference.labels)
    np.testing.assert_allclose(matrix(sharded).toarray(), matrix(reference).toarray(), rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(sharded.frobenius_norms, reference.frobenius_norms, rtol=1e-5)
    assert sharded.layout == reference.layout


@pytest.mark.parametrize("name", list(jobs.FITS))
def test_fit_distributed_equals_one_process_fit(job, single_fits, name):
    folder, world_size = job
    single, _ = single_fits[name]
    split = type(single).load(folder / f"{name}.safetensors")
    np.testing.assert_array_equal(split.kept_columns_, single.kept_columns_)
    # measured: max relative differences ~3e-6 (float32 sums in another order)
    np.testing.assert_allclose(split.W_, single.W_, rtol=0, atol=1e-4 * np.abs(single.W_).max())
    np.testing.assert_allclose(split.components_, single.components_, rtol=0, atol=1e-4 * np.abs(single.components_).max())
    first = single.loss_history_["joint"][0, 1]
    np.testing.assert_allclose(split.loss_history_["joint"], single.loss_history_["joint"], rtol=0, atol=1e-4 * first)
    assert split.loss_history_["joint"][-1, 1] < 1e-3 * first, "the planted problem is recovered"
    for rank in range(world_size):  # W is replicated, the components gathered: every rank holds the same
        arrays, _ = read_arrays(folder / f"{name}_rank{rank}.safetensors")
        np.testing.assert_array_equal(arrays["W"], split.W_)
        np.testing.assert_array_equal(arrays["components"], split.components_)


@pytest.mark.parametrize("name", list(jobs.FITS))
def test_transform_distributed_equals_one_process_transform(job, single_fits, name):
    folder, world_size = job
    _, reference = single_fits[name]
    for rank in range(world_size):
        arrays, _ = read_arrays(folder / f"{name}_rank{rank}.safetensors")
        # measured: up to ~4e-4 of the largest coefficient (the stopping test may fire an iteration apart)
        np.testing.assert_allclose(arrays["coefficients"], reference, rtol=0, atol=2e-3 * reference.max())


@pytest.mark.parametrize("name", list(jobs.FITS))
def test_fit_distributed_on_one_process_is_fit(tmp_path, name):
    """Without torchrun the same code runs as a job of one: exactly the plain fit."""
    _planted_stores(tmp_path)
    store = _store(name)
    with _one_thread():
        single = _single(name).fit(load_pefs(tmp_path / f"{store}_store"))
        split = fit_distributed(_single(name), tmp_path / f"{store}_store")
        np.testing.assert_array_equal(split.W_, single.W_)
        np.testing.assert_array_equal(split.components_, single.components_)
        new = load_pefs(tmp_path / f"{store}_new")
        np.testing.assert_array_equal(transform_distributed(split, tmp_path / f"{store}_new"), single.transform(new))


def test_fit_distributed_refuses_the_other_kind(tmp_path):
    _planted_stores(tmp_path)
    with pytest.raises(TypeError, match="holds 'd' PEFs, which DNpeff fits"):
        fit_distributed(LrmNpeff(2), tmp_path / "d_store")


def test_split_columns_balances_weight_and_leaves_no_rank_empty():
    assert split_columns(np.ones(10), 3) == [(0, 3), (3, 6), (6, 10)]
    heavy_first = split_columns(np.array([100, 1, 1, 1, 1, 1]), 3)
    assert heavy_first[0] == (0, 1) and all(stop > start for start, stop in heavy_first)
    assert [b for b in split_columns(np.array([1, 1, 1, 100]), 4)] == [(0, 1), (1, 2), (2, 3), (3, 4)]
    with pytest.raises(ValueError, match="only 2 parameters are kept, fewer than the 3 ranks"):
        split_columns(np.ones(2), 3)


def test_rank_dying_mid_pefs_fails_the_job_and_leaves_the_store_incomplete(tmp_path):
    outcome = run_ranks("pefs_rank_1_dies", 2, tmp_path)
    assert outcome.exit_codes == [1, 3]
    assert "DistributedError: rank 0 of 2" in outcome.errors[0]
    assert "another rank of the job stopped" in outcome.errors[0]
    # it said nothing was saved, when the chunks written before are kept and resumed below
    assert "what was saved before it (the store's chunks" in outcome.errors[0]
    store = PefStore(tmp_path / "pefs")
    assert not store.complete
    with pytest.raises(StoreError, match="incomplete"):
        store.load()
    # the same job again, even on another number of ranks, computes only what is missing
    _assert_ok(run_ranks("pefs_lrm", 3, tmp_path))
    x, y = jobs.mlp_data()
    reference = compute_pefs(jobs.Mlp(), x, y, progress=False, **jobs.PEF_ARGS)
    np.testing.assert_allclose(load_pefs(tmp_path / "pefs").X.toarray(), reference.X.toarray(), rtol=1e-5, atol=1e-8)


def test_rank_dying_mid_fit_fails_the_job_and_saves_nothing(tmp_path):
    _planted_stores(tmp_path)
    outcome = run_ranks("fit_rank_1_dies", 2, tmp_path)
    assert outcome.exit_codes == [1, 3]
    assert "DistributedError: rank 0 of 2: summing over ranks failed" in outcome.errors[0]
    assert not (tmp_path / "lrm.safetensors").exists()
    assert DistributedError.__name__ in outcome.errors[0]


def test_a_fit_killed_on_one_rank_resumes_at_the_last_step_every_rank_saved(tmp_path, single_fits):
    _planted_stores(tmp_path)
    killed = run_ranks("checkpointed_fits_rank_1_dies", 2, tmp_path)
    assert killed.exit_codes[1] == 3
    _assert_ok(run_ranks("checkpointed_fits", 2, tmp_path))
    told = {p.name: p.read_text() for p in tmp_path.glob("resumed_*.txt")}
    # the killed LRM fit resumes where both ranks have a save; the D fit had no checkpoint, and starts
    assert told == {"resumed_LrmNpeff_rank0.txt": "20", "resumed_LrmNpeff_rank1.txt": "20",
                    "resumed_DNpeff_rank0.txt": "None", "resumed_DNpeff_rank1.txt": "None"}
    for name in jobs.CHECKPOINTED:
        single, _ = single_fits[name]
        resumed = type(single).load(tmp_path / f"{name}.safetensors")
        np.testing.assert_allclose(resumed.W_, single.W_, rtol=0, atol=1e-4 * np.abs(single.W_).max())
        np.testing.assert_allclose(resumed.components_, single.components_, rtol=0,
                                   atol=1e-4 * np.abs(single.components_).max())
    assert sorted(p.name for p in tmp_path.glob("lrm_dual.rank*")) == [
        "lrm_dual.rank0-of-2.ckpt", "lrm_dual.rank0-of-2.ckpt.previous", "lrm_dual.rank1-of-2.ckpt",
        "lrm_dual.rank1-of-2.ckpt.previous"]
    with pytest.raises(StoreError, match=r"made by a fit on 2 rank\(s\), not 1"):
        fit_distributed(jobs.estimator("lrm_dual"), tmp_path / "lrm_store", checkpoint=tmp_path / "lrm_dual.ckpt")


def test_cli_fit_with_a_checkpoint_resumes_from_it(tmp_path, caplog):
    from workbench.app.cli import main

    _planted_stores(tmp_path)
    args = ["fit", str(tmp_path / "lrm_store"), "--n-components", "4", "--n-iters-g-only", "15", "--n-iters-joint", "35",
            "--seed", "3", "--device", "cpu", "--checkpoint", str(tmp_path / "fit.ckpt"), "--checkpoint-every", "10"]
    with _one_thread(), caplog.at_level(logging.INFO, logger="workbench"):
        assert main([*args, "--out", str(tmp_path / "a.safetensors")]) == 0
        caplog.clear()
        assert main([*args, "--out", str(tmp_path / "b.safetensors")]) == 0
    assert "resuming LrmNpeff from" in caplog.text and "after step 50" in caplog.text  # the finished fit, at once
    a, b = (LrmNpeff.load(tmp_path / f"{x}.safetensors") for x in "ab")
    np.testing.assert_array_equal(a.W_, b.W_)
    np.testing.assert_array_equal(a.components_, b.components_)
    assert main([*args[:-4], "--checkpoint", str(tmp_path / "a.safetensors"), "--out", str(tmp_path / "a.safetensors")]) == 2


def _torchrun(*args: str, n: int = 2) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(n),
               "-m", "workbench", *args, "--device", "cpu", "--timeout-minutes", "1"]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=180)


def test_cli_fit_under_torchrun_equals_one_process_fit(tmp_path):
    _planted_stores(tmp_path)
    done = _torchrun("fit", str(tmp_path / "lrm_store"), "--out", str(tmp_path / "fit.safetensors"),
                     "--n-components", "4", "--n-iters-g-only", "15", "--n-iters-joint", "35", "--seed", "3")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "on 2 rank(s), cpu: fit in" in done.stdout
    split = LrmNpeff.load(tmp_path / "fit.safetensors")
    with _one_thread():
        single = LrmNpeff(4, n_iters_g_only=15, n_iters_joint=35, seed=3, progress=False).fit(load_pefs(tmp_path / "lrm_store"))
    np.testing.assert_allclose(split.components_, single.components_, rtol=0, atol=1e-4 * np.abs(single.G_).max())


def test_cli_pefs_under_torchrun_writes_one_store(tmp_path, embedded_run):
    from workbench.app.run_folder import MODEL
    from workbench.models.embedded import load_default_model, tokenize
    from workbench.models.embedded.splits import analysis_examples

    done = _torchrun("pefs", "--out", str(tmp_path / "pefs"), "--model-path", str(embedded_run.path / MODEL),
                     "--n-examples", "20", "--batch-size", "6", "--n-values", "256")
    assert done.returncode == 0, done.stderr[-3000:]
    store = PefStore(tmp_path / "pefs")
    assert store.complete and store.n_examples == 20 and store.n_chunks == 4
    model, tokenizer = load_default_model(embedded_run.path / MODEL)
    examples = analysis_examples(20, model_folder=embedded_run.path / MODEL)
    reference = compute_pefs(model, tokenize(tokenizer, list(examples["text"])), examples["label"].to_numpy(),
                             n_values=256, batch_size=6, progress=False)
    np.testing.assert_allclose(store.load().X.toarray(), reference.X.toarray(), rtol=1e-4, atol=1e-7)


def test_ranks_with_other_data_are_refused_before_anything_is_written(tmp_path):
    outcome = run_ranks("pefs_rank_1_other_labels", 2, tmp_path)
    assert outcome.exit_codes == [1, 1]
    for rank in (0, 1):
        assert "ranks [1] hold other model weights, data or PEF arguments than rank 0" in outcome.errors[rank]
    assert not (tmp_path / "pefs").exists()


def test_backend_is_nccl_for_cuda_and_gloo_for_the_cpu():
    from workbench.distributed import backend_for

    assert backend_for(torch.device("cuda", 1)) == "nccl" and backend_for("cuda") == "nccl"
    assert backend_for("cpu") == "gloo"


def test_ranks_on_one_machine_share_its_cores(tmp_path):
    """Two torchrun "nodes" on one machine (each LOCAL_WORLD_SIZE 1, no OMP_NUM_THREADS) count
    each other by host name and take half the cores each, not all of them each; torchrun's
    own OMP_NUM_THREADS (1, for several processes per node) is kept."""
    from workbench.distributed.group import threads_per_rank, usable_cores

    assert [threads_per_rank(c, r) for c, r in ((16, 2), (2, 2), (2, 3), (8, 1), (3, 2))] == [8, 1, 1, 8, 1]
    for as_nodes, expected in ((True, threads_per_rank(usable_cores(), 2)), (False, 1)):
        folder = tmp_path / str(as_nodes)
        _assert_ok(run_ranks("threads", 2, folder, as_nodes=as_nodes))
        for rank in range(2):
            assert (folder / f"threads{rank}.txt").read_text() == f"{expected} 2"


def test_ranks_that_disagree_on_a_transform_or_a_checkpoint_are_refused(tmp_path, single_fits):
    """Another decomposition on one rank gave coefficients of neither, with exit 0; another checkpoint_every
    hung both ranks for the whole timeout, then blamed 'another rank of the job stopped'."""
    _planted_stores(tmp_path)
    fitted, _ = single_fits["lrm"]
    fitted.save(tmp_path / "lrm.safetensors")
    jobs.estimator("lrm").set_params(seed=1).fit(load_pefs(tmp_path / "lrm_store")).save(tmp_path / "lrm_seed1.safetensors")
    outcome = run_ranks("transform_rank_1_other_decomposition", 2, tmp_path)
    assert outcome.exit_codes == [1, 1]
    assert all("ranks [1] hold other decomposition or store than rank 0" in e for e in outcome.errors.values())
    outcome = run_ranks("fit_rank_1_other_checkpoint_every", 2, tmp_path)
    assert outcome.exit_codes == [1, 1]
    assert all("other estimator settings, store or checkpoint arguments than rank 0" in e for e in outcome.errors.values())


def test_a_store_folder_a_rank_does_not_share_is_named_as_such(tmp_path):
    """Rank 1 said only 'there is no PEF store at …' of a folder rank 0 had opened on its own node."""
    outcome = run_ranks("pefs_rank_1_own_folder", 2, tmp_path)
    assert outcome.exit_codes[1] != 0
    assert "rank 1 finds no PEF store at" in outcome.errors[1] and "one folder all ranks share" in outcome.errors[1]
