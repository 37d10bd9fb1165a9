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
