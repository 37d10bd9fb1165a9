"""The main job's fit resumes from its checkpoint in the run folder: a run killed (SIGKILL) during its fit
and run again ends with the decomposition of an uninterrupted run; a run with other fit settings or other
PEFs replaces the checkpoint it finds instead of resuming it."""

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import workbench.npeff.lrm as lrm
from tests.app.run_worker import SETTINGS
from workbench.app import pipeline
from workbench.app.cli import main
from workbench.app.pipeline import run_embedded
from workbench.app.run_folder import DECOMPOSITION, FIT_CHECKPOINT, FIT_CHECKPOINT_EVERY, Run, read_run_record
from workbench.store.checkpoint import FitCheckpoint
from workbench.store.files import read_header

ROOT = Path(__file__).resolve().parents[2]


def _start(out: Path, **env) -> subprocess.Popen:
    environment = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", **env)
    return subprocess.Popen([sys.executable, "-m", "tests.app.run_worker", str(out)], cwd=ROOT, env=environment,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _run(out: Path) -> None:
    process = _start(out)
    _, err = process.communicate(timeout=300)
    assert process.returncode == 0, err.decode()[-3000:]


def _assert_same_decomposition(a: Run, b: Run) -> None:
    """Equal to float32 rounding (bit for bit on this machine's CPU: test_fit_checkpoint.py says where not)."""
    da, db = a.decomposition(), b.decomposition()
    for name in ("W_", "G_"):
        x, y = getattr(da, name), getattr(db, name)
        np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-5 * np.abs(y).max(), err_msg=name)
    np.testing.assert_allclose(a.record["figures"]["final_loss"], b.record["figures"]["final_loss"], rtol=1e-5)


def test_run_killed_in_its_fit_resumes_the_fit(tmp_path):
    reference = tmp_path / "reference"
    _run(reference)

    out = tmp_path / "run"
    process = _start(out, RUN_WORKER_STEP_SECONDS="0.05")  # 5 s of fit, its first save after 2.5 s
    deadline = time.monotonic() + 300
    while not (out / FIT_CHECKPOINT).exists():
        if process.poll() is not None:
            raise AssertionError(f"the run ended before its fit saved: {process.stderr.read().decode()[-2000:]}")
        assert time.monotonic() < deadline, "the fit never saved a checkpoint"
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL
    process.stderr.close()

    record = read_run_record(out)
    assert record["stages"]["fit"]["status"] == "running" and not (out / DECOMPOSITION).exists(), "killed in the fit"
    saved = read_header(out / FIT_CHECKPOINT)
    assert (saved["step"], saved["done"]) == (FIT_CHECKPOINT_EVERY, False)

    _run(out)
    resumed = Run(out)  # opens: the record vouches for the files there
    assert resumed.record["status"] == "complete"
    assert resumed.record["stages"]["fit"]["resumed_after_step"] == FIT_CHECKPOINT_EVERY
    assert not (out / FIT_CHECKPOINT).exists(), "a complete run leaves no checkpoint"
    assert "resumed_after_step" not in Run(reference).record["stages"]["fit"]
    _assert_same_decomposition(resumed, Run(reference))


def _killed_after_first_save(monkeypatch, out: Path, **settings) -> None:
    real = FitCheckpoint.save

    def save(self, step, *args, **kwargs):
        real(self, step, *args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(FitCheckpoint, "save", save)
    with pytest.raises(KeyboardInterrupt):
        run_embedded(out, progress=False, **settings)
    monkeypatch.undo()
    assert (out / FIT_CHECKPOINT).exists()


@pytest.mark.parametrize("change, why", [
    ({"n_components": 2}, "other settings (n_components: 3 → 2)"),
    ({"n_iters_joint": 60}, "other settings (n_iters_joint: 90 → 60)"),
    ({"n_values": 300}, "other data"),  # the same fit settings, of other PEFs
])
def test_run_with_other_fit_settings_or_pefs_replaces_the_checkpoint(tmp_path, monkeypatch, caplog, change, why):
    out = tmp_path / "run"
    _killed_after_first_save(monkeypatch, out, **SETTINGS)

    changed = dict(SETTINGS, **change)
    with caplog.at_level(logging.INFO, logger="workbench.app.stages"):
        run = run_embedded(out, progress=False, **changed)
    assert "replacing the run folder's fit checkpoint, which this fit cannot resume" in caplog.text and why in caplog.text
    assert "resumed_after_step" not in run.record["stages"]["fit"]
    assert run.record["status"] == "complete" and not (out / FIT_CHECKPOINT).exists()
    _assert_same_decomposition(run, run_embedded(tmp_path / "fresh", progress=False, **changed))


def test_run_with_the_same_fit_resumes_a_finished_fit_at_once(tmp_path, monkeypatch):
    """Killed after its fit (in the analysis), the same run does not fit again; n_top, which the fit does not
    read, may differ."""
    out = tmp_path / "run"
    monkeypatch.setattr("workbench.app.pipeline.strategy_table", lambda *a: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):
        run_embedded(out, progress=False, **SETTINGS)
    monkeypatch.undo()
    assert read_header(out / FIT_CHECKPOINT)["done"]

    steps = []
    real = lrm.LrmNpeff._g_step
    monkeypatch.setattr(lrm.LrmNpeff, "_g_step", lambda self, *a: steps.append(1) or real(self, *a))
    run = run_embedded(out, progress=False, **dict(SETTINGS, n_top=4))
    assert steps == [] and run.record["stages"]["fit"]["resumed_after_step"] == 100
    assert not (out / FIT_CHECKPOINT).exists()


def test_an_interrupted_demo_is_told_that_its_fit_resumes(tmp_path, monkeypatch, caplog):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "run_embedded", interrupted)
    assert main(["demo", "--out", str(tmp_path / "demo")]) == 130
    assert "the same command resumes the run: its PEF store where it stopped, its fit from the fit's last checkpoint" \
        in caplog.text


@pytest.mark.parametrize("damage", ["garbage", "flipped byte"])
def test_a_damaged_checkpoint_is_replaced(tmp_path, monkeypatch, caplog, damage):
    out = tmp_path / "run"
    _killed_after_first_save(monkeypatch, out, **SETTINGS)
    path = out / FIT_CHECKPOINT
    data = bytearray(path.read_bytes())
    if damage == "garbage":
        data = bytearray(b"not a checkpoint")
    else:
        data[-5] ^= 0xFF  # in the arrays: their checksum no longer matches
    path.write_bytes(bytes(data))
    with caplog.at_level(logging.INFO, logger="workbench.app.stages"):
        run = run_embedded(out, progress=False, **SETTINGS)
    assert "replacing the run folder's fit checkpoint" in caplog.text
    assert "resumed_after_step" not in run.record["stages"]["fit"] and run.record["status"] == "complete"


@pytest.fixture(scope="module")
def complete_run(tmp_path_factory):
    return run_embedded(tmp_path_factory.mktemp("complete") / "run", progress=False,
                        **dict(SETTINGS, n_iters_g_only=2, n_iters_joint=3))


@pytest.mark.parametrize("name", [FIT_CHECKPOINT, FIT_CHECKPOINT + ".previous"])
def test_a_folder_where_the_run_saves_its_fit_checkpoint_is_refused_before_the_run(complete_run, tmp_path, name):
    """The run computed its PEFs and failed in its fit with IsADirectoryError (or FileNotFoundError for the previous
    save's path), its record saying the fit had failed."""
    import shutil

    out = tmp_path / "run"
    shutil.copytree(complete_run.path, out)
    (out / name).mkdir()
    record = (out / "run.json").read_bytes()
    with pytest.raises(ValueError, match=f"{name} is a folder, where the run saves its fit's checkpoint .*: move or "
                                         "remove that folder"):
        run_embedded(out, progress=False, **dict(SETTINGS, n_iters_g_only=2, n_iters_joint=3))
    assert (out / "run.json").read_bytes() == record


def test_a_damaged_previous_save_beside_the_checkpoint_is_replaced(complete_run, tmp_path):
    """Its UnusableCheckpointError removed the checkpoint, which was not there: FileNotFoundError."""
    import shutil

    out = tmp_path / "run"
    shutil.copytree(complete_run.path, out)
    (out / (FIT_CHECKPOINT + ".previous")).write_bytes(b"")
    run = run_embedded(out, progress=False, **dict(SETTINGS, n_iters_g_only=2, n_iters_joint=3))
    assert run.record["status"] == "complete" and not (out / (FIT_CHECKPOINT + ".previous")).exists()
