"""Outputs of the stand-alone commands and of the Python API that would land in a run folder, and paths
checked before the work that fills them."""

import json
import shutil
from pathlib import Path

import pytest

from workbench.app.cli import main
from workbench.npeff import LrmNpeff
from workbench.npeff.planted import planted_lrm
from workbench.store import save_pefs
from workbench.store.files import StoreWriteError


def _run_of_another_process(folder):
    """A run folder this process did not make: its record is all it needs to be one."""
    folder.mkdir()
    (folder / "run.json").write_text(json.dumps({"format": "npeff-workbench/run", "format_version": 1,
                                                 "status": "complete", "params": {}}))
    return folder


@pytest.fixture
def planted_store(tmp_path):
    store = tmp_path / "pefs"
    save_pefs(planted_lrm(n_examples=12, n_parameters=40, n_components=2, seed=0).pefs, store)
    return store


def test_the_commands_write_nothing_into_a_run_folder(tmp_path, planted_store, caplog):
    """fit --out RUN/decomposition.safetensors replaced the run's own decomposition, and RunExplorer.open(RUN) then
    refused the folder as one that 'mixes files of different runs'; pefs --out RUN/pefs --overwrite its store."""
    run = _run_of_another_process(tmp_path / "run")
    fit = ["fit", str(planted_store), "--n-components", "2", "--device", "cpu"]
    for argv in ([*fit, "--out", str(run / "decomposition.safetensors")],
                 [*fit, "--out", str(tmp_path / "fit.safetensors"), "--checkpoint", str(run / "fit.ckpt")],
                 ["pefs", "--out", str(run / "pefs"), "--overwrite", "--n-examples", "8"]):
        caplog.clear()
        assert main(argv) == 2, argv
        assert f"is inside the run folder {run}" in caplog.text
        assert f"e.g. {tmp_path / 'run-'}" in caplog.text and "run it again: python -m workbench demo --out" in caplog.text
    assert sorted(p.name for p in run.iterdir()) == ["run.json"]
    assert not (tmp_path / "fit.safetensors").exists()


def test_the_python_api_writes_into_a_run_folder_only_for_its_run(tmp_path, planted_store):
    """The writers a run uses (LrmNpeff.save, write_pefs, save_pefs) refuse a run folder another process made,
    and serve the run this process records."""
    from workbench.app.run_folder import RunRecorder

    planted = planted_lrm(n_examples=12, n_parameters=40, n_components=2, seed=0)
    estimator = LrmNpeff(2, n_iters_g_only=2, n_iters_joint=3, device="cpu", progress=False).fit(planted.pefs)
    run = _run_of_another_process(tmp_path / "run")
    with pytest.raises(ValueError, match="is inside the run folder .* e.g. .*run-decomposition.safetensors"):
        estimator.save(run / "decomposition.safetensors")
    with pytest.raises(ValueError, match="the PEF store .* is inside the run folder"):
        save_pefs(planted.pefs, run / "pefs", overwrite=True)
    assert sorted(p.name for p in run.iterdir()) == ["run.json"]

    ours = tmp_path / "ours"
    RunRecorder(ours, {})
    estimator.save(ours / "decomposition.safetensors")
    save_pefs(planted.pefs, ours / "pefs")


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs /proc, where os.access says yes to root")
def test_an_output_nowhere_writable_is_refused_before_the_work(planted_store, monkeypatch, caplog):
    """fit --out /proc/f.safetensors failed after the whole fit: os.access says yes to root, also in /proc."""
    import workbench.distributed as distributed

    def fit(*args, **kwargs):
        raise AssertionError("the fit ran")

    monkeypatch.setattr(distributed, "fit_distributed", fit)
    fit_argv = ["fit", str(planted_store), "--n-components", "2", "--device", "cpu"]
    for argv in ([*fit_argv, "--out", "/proc/npeff-f.safetensors"],
                 [*fit_argv, "--out", str(planted_store.parent / "f.safetensors"), "--checkpoint", "/proc/f.ckpt"],
                 ["pefs", "--out", "/proc/npeff-pefs", "--n-examples", "8", "--model-path", "/nowhere"]):
        caplog.clear()
        assert main(argv) == 2, argv
        assert "may not write there" in caplog.text or "cannot write the PEF store" in caplog.text, caplog.text
    with pytest.raises(StoreWriteError, match="cannot write the PEF store /proc/npeff-pefs"):
        save_pefs(planted_lrm(n_examples=12, n_parameters=40, n_components=2, seed=0).pefs, "/proc/npeff-pefs")


def test_the_command_line_names_its_flags_not_the_python_api_s_arguments(tmp_path, planted_store, monkeypatch, caplog):
    """'n_components=100 is larger ...', 'raise n_iters_joint' and 'compute the PEFs with write_pefs(...)' named the
    Python API to a user of python -m workbench."""
    import warnings

    import workbench.distributed as distributed

    out = str(tmp_path / "f.safetensors")
    assert main(["fit", str(planted_store), "--out", out, "--n-components", "100", "--device", "cpu"]) == 2
    assert "--n-components 100 is larger than the number of examples (12)" in caplog.text
    assert main(["fit", str(tmp_path / "none"), "--out", out]) == 2
    assert "compute the PEFs with python -m workbench pefs" in caplog.text and "write_pefs" not in caplog.text

    def unsettled(*args, **kwargs):
        warnings.warn("the loss did not settle; raise n_iters_joint (e.g. n_iters_joint=400)", UserWarning)
        raise KeyboardInterrupt

    monkeypatch.setattr(distributed, "fit_distributed", unsettled)
    with pytest.warns(UserWarning, match=r"raise --n-iters-joint \(e\.g\. --n-iters-joint 400\)"):
        main(["fit", str(planted_store), "--out", out, "--n-components", "2", "--device", "cpu"])


def test_a_run_folder_given_for_its_store_or_its_model_names_the_part(tmp_path, caplog):
    """fit RUN was told that RUN 'is not a PEF store: compute the PEFs with write_pefs(...)', and --model-path RUN
    that it is no saved model folder."""
    from workbench.store import load_pefs

    run = _run_of_another_process(tmp_path / "run")
    assert main(["fit", str(run), "--out", str(tmp_path / "f.safetensors")]) == 2
    assert f"{run} is a run folder; pass its pefs, {run / 'pefs'}" in caplog.text
    assert main(["pefs", "--out", str(tmp_path / "pefs"), "--model-path", str(run)]) == 2
    assert f"{run} is a run folder; pass its model, {run / 'model'}" in caplog.text
    with pytest.raises(ValueError, match="is a run folder; pass its pefs"):
        load_pefs(run)


def test_a_run_folder_given_for_its_decomposition_names_the_file(planted_store, tmp_path, caplog):
    """transform RUN STORE was told that RUN 'is a folder; give the .safetensors file inside it that you mean', where
    fit RUN is pointed to RUN/pefs."""
    from workbench.npeff import LrmNpeff

    run = _run_of_another_process(tmp_path / "run")
    assert main(["transform", str(run), str(planted_store), "--out", str(tmp_path / "W.safetensors")]) == 2
    assert f"{run} is a run folder; pass its decomposition.safetensors, {run / 'decomposition.safetensors'}" in caplog.text
    with pytest.raises(ValueError, match="is a run folder; pass its decomposition.safetensors"):
        LrmNpeff.load(run)
    assert not (tmp_path / "W.safetensors").exists()


def test_a_pef_store_given_for_a_decomposition_is_named_as_one(planted_store, tmp_path, caplog):
    """transform STORE STORE (or LrmNpeff.load(STORE)) was told that STORE 'is a folder, not a file: give the
    .safetensors file inside it that you mean', which is one of its chunks."""
    out = tmp_path / "W.safetensors"
    assert main(["transform", str(planted_store), str(planted_store), "--out", str(out)]) == 2
    text = " ".join(caplog.text.split())
    assert f"{planted_store} is a PEF store" in text and "not a decomposition file" in text
    assert f"python -m workbench fit {planted_store} --out FILE.safetensors" in text and "inside it" not in text
    assert not out.exists()
    run = _run_of_another_process(tmp_path / "run")
    shutil.copytree(planted_store, run / "pefs")  # as the run wrote it
    (run / "decomposition.safetensors").write_bytes(b"")
    with pytest.raises(ValueError, match="is a PEF store .* pass the decomposition fitted to it, "
                                         f"{run / 'decomposition.safetensors'}"):
        LrmNpeff.load(run / "pefs")
