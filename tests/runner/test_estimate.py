"""Cost estimates before a PEF run: measured peak memory, disk from the first batch, the
automatic batch size, and the estimate shown in the progress bar."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from workbench import compute_pefs, write_pefs
from workbench.runner import estimate
from workbench.runner.estimate import Probe, choose_batch_size
from workbench.runner.resources import format_bytes


_PEAK_OF_50_MB = """
import numpy as np
from workbench.runner.resources import PeakMemory
with PeakMemory() as memory:
    block = np.ones(50_000_000 // 8)  # 50 MB, every page touched
    del block
print(memory.peak)
"""


def test_peak_memory_sees_a_known_allocation():
    # A fresh process: late in a long test session the allocator can serve the block from
    # memory the process already holds (freed by earlier tests), which no RSS figure sees.
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-c", _PEAK_OF_50_MB], capture_output=True, text=True, check=True,
                          cwd=root, env=dict(os.environ, PYTHONPATH=f"{root}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"))
    peak = int(done.stdout.split()[-1])
    assert 45e6 <= peak <= 150e6, peak


def _store_bytes(path):
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def test_disk_estimate_matches_the_store(tmp_path, bert3, bert_inputs):
    store = write_pefs(tmp_path / "pefs", bert3, bert_inputs, n_values=300, batch_size=4, progress=False)
    estimated, measured = store.estimate.disk_bytes, _store_bytes(tmp_path / "pefs")
    # every example keeps exactly n_values entries here, so only the manifest's size is guessed
    assert abs(estimated - measured) <= 0.05 * measured, (estimated, measured)
    assert store.estimate.seconds_per_example > 0 and store.estimate.batch_size == 4
    assert store.estimate.peak_memory_bytes >= store.estimate.memory_in_use_bytes


def test_resumed_run_estimates_what_is_left(tmp_path, bert3, bert_inputs):
    full = write_pefs(tmp_path / "pefs", bert3, bert_inputs, n_values=300, batch_size=4, progress=False).estimate
    (tmp_path / "pefs" / "chunks" / "000001.safetensors").unlink()
    resumed = write_pefs(tmp_path / "pefs", bert3, bert_inputs, n_values=300, batch_size=4, progress=False).estimate
    assert resumed.n_done == 5 and resumed.disk_bytes == pytest.approx(full.disk_bytes, rel=0.01)
    manifest = full.disk_bytes - 9 * full.bytes_per_example
    assert resumed.disk_bytes_left == pytest.approx(4 * full.bytes_per_example + manifest, rel=0.02)


def test_estimate_is_shown_in_the_progress_bar(tmp_path, bert3, bert_inputs, capsys):
    write_pefs(tmp_path / "pefs", bert3, bert_inputs, n_values=300, batch_size=4, progress=True)
    err = capsys.readouterr().err
    assert "disk≈" in err and "peak≈" in err and "left" in err
    compute_pefs(bert3, bert_inputs, n_values=300, progress=True)
    assert "peak≈" in capsys.readouterr().err


def _probe(work_bytes, size=8, length=10, max_length=20):
    chunk = type("Chunk", (), {"classes": np.zeros((size, 2), np.int64)})()
    return Probe(index=0, start=0, size=size, chunk=chunk, seconds=1.0, work_bytes=work_bytes, baseline_bytes=10**9,
                 length=length, max_length=max_length, chunk_file_bytes=8 * 1000)


def test_choose_batch_size_from_available_memory(monkeypatch):
    n_parameters = 1000  # fixed part: ASSEMBLY_COPIES * 4 bytes * 2 slots * 1000 = 64 KB
    probe = _probe(work_bytes=64_000 + 8 * 1_000_000)  # 1 MB per example at length 10, 2 MB at the longest (20)
    monkeypatch.setattr(estimate, "available_memory", lambda device=None: 20_000_000)  # budget: half of it, 10 MB
    assert choose_batch_size(probe, 1000, None, n_parameters) == 4  # (10 MB - 64 KB) // (2 MB + 2 KB)
    monkeypatch.setattr(estimate, "available_memory", lambda device=None: 10**12)
    assert choose_batch_size(probe, 1000, None, n_parameters) == estimate.MAX_AUTO_BATCH
    assert choose_batch_size(probe, 5, None, n_parameters) == 5
    monkeypatch.setattr(estimate, "available_memory", lambda device=None: 10)
    assert choose_batch_size(probe, 1000, None, n_parameters) == 1


@pytest.mark.parametrize("n, text", [(999, "999 B"), (12_345, "12.3 KB"), (4.2e9, "4.2 GB")])
def test_format_bytes(n, text):
    assert format_bytes(n) == text
