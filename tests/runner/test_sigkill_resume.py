"""A PEF run killed with SIGKILL at random points resumes to a store identical, byte for byte,
to an uninterrupted run's."""

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.runner import pef_worker
from workbench.store import MANIFEST, PefStore, StoreError

ROOT = Path(__file__).resolve().parents[2]
N_CHUNKS = -(-pef_worker.N_EXAMPLES // pef_worker.BATCH_SIZE)


def _chunks(out: Path) -> list[Path]:
    return sorted((out / "chunks").glob("[0-9]*.safetensors")) if (out / "chunks").exists() else []


def _start(out: Path, **env) -> subprocess.Popen:
    environment = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", **env)
    return subprocess.Popen([sys.executable, "-m", "tests.runner.pef_worker", str(out)], cwd=ROOT, env=environment,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _kill_when(process: subprocess.Popen, ready, delay: float = 0.0, timeout: float = 120) -> None:
    """SIGKILL ``process`` ``delay`` seconds after ``ready()`` first holds."""
    deadline = time.monotonic() + timeout
    while not ready():
        if process.poll() is not None:
            raise AssertionError(f"the run ended before the kill point: {process.stderr.read().decode()[-2000:]}")
        assert time.monotonic() < deadline, "the kill point was never reached"
        time.sleep(0.002)
    time.sleep(delay)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("reference") / "pefs"
    threads = torch.get_num_threads()
    try:
        pef_worker.run(out)
    finally:
        torch.set_num_threads(threads)
    return out


def test_sigkill_at_random_points_resumes_to_the_same_bytes(tmp_path, reference):
    out = tmp_path / "pefs"
    rng = random.Random(20240607)
    states = []

    # 1. killed as soon as the store exists: a manifest and no chunk yet
    process = _start(out)
    _kill_when(process, lambda: (out / MANIFEST).exists())
    states.append(len(_chunks(out)))

    # 2-4. killed at three random points: after a random number of chunks, plus a random delay
    #      that lands anywhere in the next batch's computation or file write
    done = len(_chunks(out))
    for target in sorted(rng.sample(range(done + 1, N_CHUNKS - 4), 3)):
        process = _start(out)
        _kill_when(process, lambda: len(_chunks(out)) >= target, delay=rng.uniform(0, 0.03))
        store = PefStore(out)
        assert not store.complete
        with pytest.raises(StoreError, match="incomplete"):
            store.load()
        states.append(len(_chunks(out)))

    # 5. killed in the middle of writing a chunk: its temporary file is on disk, not yet renamed
    hang = len(_chunks(out)) + 1
    process = _start(out, PEF_WORKER_HANG_IN_WRITE=str(hang))
    half_written = f".{hang:06d}.safetensors.tmp-*/{hang:06d}.safetensors"  # in the writer's staging folder
    _kill_when(process, lambda: any((out / "chunks").glob(half_written)))
    assert list((out / "chunks").glob(half_written)), "the kill left a half-written temporary file"
    assert not (out / "chunks" / f"{hang:06d}.safetensors").exists()
    states.append(len(_chunks(out)))

    assert states == sorted(states) and states[-1] < N_CHUNKS, states

    # resumed with the same arguments: only the missing batches are computed
    threads = torch.get_num_threads()
    try:
        pef_worker.run(out)
    finally:
        torch.set_num_threads(threads)

    assert sorted(p.name for p in out.rglob("*")) == sorted(p.name for p in reference.rglob("*")), "no leftovers"
    assert (out / MANIFEST).read_bytes() == (reference / MANIFEST).read_bytes()
    for ours, theirs in zip(_chunks(out), _chunks(reference), strict=True):
        assert ours.read_bytes() == theirs.read_bytes(), ours.name
    a, b = PefStore(out).load(), PefStore(reference).load()
    assert (a.X != b.X).nnz == 0
    np.testing.assert_array_equal(a.frobenius_norms, b.frobenius_norms)
    np.testing.assert_array_equal(a.logits, b.logits)


def test_sigkill_at_chosen_batches_and_before_complete_resumes_in_a_new_process_to_the_same_bytes(tmp_path, reference):
    """Deterministic kill points, each in its own process (the env hook of pef_worker): in the
    middle of the run, again later, and after every chunk is on disk but before "complete";
    the last resume is a new process too."""
    out = tmp_path / "pefs"
    for when in ("batch:7", "batch:19", "complete"):
        process = _start(out, PEF_WORKER_KILL_AT=when)
        process.wait(timeout=300)
        assert process.returncode == -signal.SIGKILL, (when, process.stderr.read().decode()[-2000:])
        assert not PefStore(out).complete
    assert len(_chunks(out)) == N_CHUNKS
    process = _start(out)
    assert process.wait(timeout=300) == 0, process.stderr.read().decode()[-2000:]
    assert sorted(p.name for p in out.rglob("*")) == sorted(p.name for p in reference.rglob("*")), "no leftovers"
    assert (out / MANIFEST).read_bytes() == (reference / MANIFEST).read_bytes()
    for ours, theirs in zip(_chunks(out), _chunks(reference), strict=True):
        assert ours.read_bytes() == theirs.read_bytes(), ours.name
