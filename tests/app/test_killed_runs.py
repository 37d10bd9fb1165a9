"""A run killed before it wrote its first record: opening its folder says it is incomplete and how to finish
it, and the same command again finishes it."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from workbench import RunExplorer
from tests.app.run_worker import SETTINGS
from workbench.app.pipeline import run_embedded
from workbench.app.run_folder import RUN_RECORD, IncompleteRunError, Run
from workbench.store.files import StoreError
from workbench.store.lock import LOCK

ROOT = Path(__file__).resolve().parents[2]


def test_a_run_killed_before_its_first_record_is_named_incomplete_and_the_same_run_finishes_it(tmp_path):
    """Killed with its lock taken and its record half-written, the folder held only those: opening it said it
    was not a run folder (to give the folder a run wrote, which it was), and the same command refused it as a
    folder of the user's files, which it would not replace."""
    out = tmp_path / "run"
    environment = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", RUN_WORKER_KILL_AT="first_record")
    killed = subprocess.run([sys.executable, "-m", "tests.app.run_worker", str(out)], cwd=ROOT, env=environment,
                            capture_output=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr.decode()[-2000:]
    assert not (out / RUN_RECORD).exists() and LOCK in os.listdir(out) and len(os.listdir(out)) == 2
    for opening in (Run.open, RunExplorer.open):
        with pytest.raises(IncompleteRunError, match=r"is incomplete: a run started into it was stopped \(killed\) "
                                                     r"before it wrote its run\.json.*running the same command again"):
            opening(out)

    run = run_embedded(out, progress=False, **SETTINGS)
    assert run.record["status"] == "complete" and sorted(os.listdir(out)) == sorted(
        [LOCK, RUN_RECORD, "model", "examples.parquet", "pefs", "decomposition.safetensors", "components.csv"])


def test_a_folder_without_a_lock_is_still_no_run_folder(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / ".notes.tmp").write_text("x")
    for folder in (tmp_path / "mine", tmp_path):
        with pytest.raises(StoreError, match="is not a run folder") as error:
            Run.open(folder)
        assert not isinstance(error.value, IncompleteRunError)
