"""One writer per PEF store: two processes writing one store at once deleted each other's chunks, and
one of them returned a store marked complete that could not be read."""

import numpy as np
import pytest

from tests.conftest import tiny_bert, tiny_bert_inputs
from workbench import write_pefs
from workbench.npeff.planted import planted_lrm
from workbench.store import load_pefs, save_pefs
from workbench.store.lock import FolderBusyError, exclusive


def test_a_store_another_process_is_writing_is_refused_and_left_alone(tmp_path):
    pefs = planted_lrm(n_examples=12, n_parameters=40, n_components=2, seed=0).pefs
    model, inputs = tiny_bert(3), tiny_bert_inputs(6)
    with exclusive(tmp_path / "store", "a PEF store"):  # the lock as the other writer holds it
        with pytest.raises(FolderBusyError, match=r"another process \(pid \d+\) is writing a PEF store into"):
            save_pefs(pefs, tmp_path / "store")
        with pytest.raises(FolderBusyError, match="another process"):
            write_pefs(tmp_path / "store", model, inputs, n_values=64, progress=False)
    assert [p.name for p in (tmp_path / "store").iterdir()] == [".lock"]
    # once it is gone, the folder is a new store's (the lock is all it holds)
    store = write_pefs(tmp_path / "store", model, inputs, n_values=64, progress=False)
    assert store.n_examples == 6 and load_pefs(tmp_path / "store").n_examples == 6


def test_a_store_written_by_another_process_meanwhile_is_not_replaced(tmp_path, monkeypatch):
    """A writer that read the folder empty, then found a store there once it held the lock, stops:
    replacing it would throw away the other process's finished work without a word."""
    from workbench.runner import write as write_module

    pefs = planted_lrm(n_examples=12, n_parameters=40, n_components=2, seed=0).pefs
    model, inputs = tiny_bert(3), tiny_bert_inputs(6)
    read_before = write_module.existing_manifest

    def another_process_writes_meanwhile(out, overwrite):
        existing = read_before(out, overwrite)  # nothing there yet
        save_pefs(pefs, out)
        return existing

    monkeypatch.setattr(write_module, "existing_manifest", another_process_writes_meanwhile)
    with pytest.raises(FolderBusyError, match="another process wrote a PEF store into .* while this one was preparing"):
        write_pefs(tmp_path / "store", model, inputs, n_values=64, progress=False)
    assert np.array_equal(load_pefs(tmp_path / "store").matrix.toarray(), pefs.matrix.toarray())


def test_a_notebook_run_s_lock_is_its_kernel_s_and_no_one_else_s(tmp_path, monkeypatch):
    """A notebook run held no lock: a demo started into its folder mid-run was not refused, and the two left a
    run.json that contradicted the files ("pefs running" over a finished folder, or "running" for ever)."""
    import subprocess
    import sys

    from workbench.store.lock import HELD_FOR_CHILDREN_ENV, exclusive_with_children

    child = ("from workbench.store.lock import FolderBusyError, exclusive\n"
             "try:\n    with exclusive(r'{0}', 'a run'): print('wrote')\n"
             "except FolderBusyError as error: print('refused:', error)")
    folder = tmp_path / "run"
    with exclusive_with_children(folder, "a notebook run"):
        kernel = subprocess.run([sys.executable, "-c", child.format(folder)], capture_output=True, text=True, check=True)
        stranger_env = {k: v for k, v in __import__("os").environ.items() if k != HELD_FOR_CHILDREN_ENV}
        stranger = subprocess.run([sys.executable, "-c", child.format(folder)], capture_output=True, text=True,
                                  check=True, env=stranger_env)
    assert kernel.stdout.strip() == "wrote", kernel.stderr
    assert stranger.stdout.startswith("refused: another process"), stranger.stderr
    assert HELD_FOR_CHILDREN_ENV not in __import__("os").environ
    with exclusive(folder, "a run"):  # released with the block
        pass


def test_the_command_line_s_sharded_writer_takes_the_store_s_lock(tmp_path):
    """python -m workbench pefs (write_pefs_sharded, one process or torchrun) never took the lock: its --overwrite
    deleted the chunks of a store write_pefs was writing, and write_pefs then marked the store complete."""
    from workbench.distributed import write_pefs_sharded

    model, inputs = tiny_bert(3), tiny_bert_inputs(6)
    with exclusive(tmp_path / "store", "a PEF store"):
        with pytest.raises(FolderBusyError, match="another process"):
            write_pefs_sharded(tmp_path / "store", model, inputs, n_values=64, batch_size=2, overwrite=True, progress=False)
    assert [p.name for p in (tmp_path / "store").iterdir()] == [".lock"]
    assert write_pefs_sharded(tmp_path / "store", model, inputs, n_values=64, batch_size=2, progress=False).n_examples == 6


def test_a_store_whose_chunks_went_missing_is_not_marked_complete(tmp_path, monkeypatch):
    """complete() checked only the chunks of other writers: chunks of its own deleted meanwhile read as present."""
    from workbench.store import StoreError
    from workbench.store.writer import PefStoreWriter, chunk_path

    complete = PefStoreWriter.complete

    def chunk_deleted_first(self):
        chunk_path(self.path, 1).unlink()
        return complete(self)

    monkeypatch.setattr(PefStoreWriter, "complete", chunk_deleted_first)
    with pytest.raises(StoreError, match=r"chunks \[1\] of .* are missing: the store cannot be marked complete"):
        write_pefs(tmp_path / "store", tiny_bert(3), tiny_bert_inputs(6), n_values=64, batch_size=2, progress=False)


@pytest.mark.parametrize("call", ["open", "write"])
def test_a_lock_the_disk_cannot_hold_names_its_file_and_the_fix(tmp_path, monkeypatch, call):
    """A run into a folder of a full disk (or a read-only one) stopped at its lock with a bare
    'OSError: [Errno 28] No space left on device', naming no file and no fix."""
    import errno
    import os

    from workbench.store import lock
    from workbench.store.files import StoreWriteError

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(lock.os, call, full)
    with pytest.raises(StoreWriteError, match=r"could not write .*run[/\\]\.lock: No space left on device\. Free space"):
        with exclusive(tmp_path / "run", "a run"):
            pass
