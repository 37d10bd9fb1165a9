"""A checkpointed fit killed (SIGKILL) at several points and resumed each time in a new process
saves a decomposition identical, byte for byte, to an uninterrupted fit's: LRM-NPEFF with either
solver and D-NPEFF. In-process interruptions (test_fit_checkpoint.py) cannot see state that only a
fresh process loses, such as the dual solver's K Hᵀ (issue 19)."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _fit(fit: str, checkpoint, out: Path, kill: str | None = None) -> int:
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    env.pop("FIT_WORKER_KILL", None)
    if kill:
        env["FIT_WORKER_KILL"] = kill
    done = subprocess.run([sys.executable, "-m", "tests.npeff.fit_worker", fit, str(checkpoint), str(out)], cwd=ROOT,
                          env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=300)
    if kill is None:
        assert done.returncode == 0, done.stderr.decode()[-3000:]
    return done.returncode


@pytest.mark.parametrize("fit", ["lrm-primal", "lrm-dual", "d"])
def test_fit_killed_and_resumed_in_new_processes_saves_the_same_bytes(tmp_path, fit):
    reference = tmp_path / "reference.safetensors"
    _fit(fit, "-", reference)

    checkpoint, out = tmp_path / "fit.ckpt.safetensors", tmp_path / "resumed.safetensors"
    # before the first checkpoint (resumes from the start), right after one, and between two
    for kill in ("step:3", "after-save:14", "step:19"):
        assert _fit(fit, checkpoint, out, kill) == -signal.SIGKILL, kill
        assert not out.exists()
    assert checkpoint.exists()
    _fit(fit, checkpoint, out)
    assert out.read_bytes() == reference.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fit.ckpt.safetensors", "reference.safetensors",
                                                           "resumed.safetensors"], "no temporary file left behind"
