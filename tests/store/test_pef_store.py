"""PEF stores: streaming, resuming, refusing what does not match, and reading back exactly."""

import json

import numpy as np
import pytest

import workbench.fisher.batches as batches
from workbench import compute_pefs, write_pefs
from workbench.npeff.planted import planted_d, planted_lrm
from workbench.store import MANIFEST, PefStore, StoreError, load_pefs, save_pefs
from workbench.store import writer as store_writer


def _assert_same_pefs(a, b):
    matrix = (lambda p: p.X) if a.kind == "lrm" else (lambda p: p.F)
    assert (matrix(a) != matrix(b)).nnz == 0
    np.testing.assert_array_equal(a.frobenius_norms, b.frobenius_norms)
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_array_equal(a.logits, b.logits)
    assert a.layout == b.layout


@pytest.mark.parametrize("kind", ["lrm", "d"])
def test_streamed_store_equals_in_memory(tmp_path, bert3, bert_inputs, kind):
    store = write_pefs(tmp_path / "pefs", bert3, bert_inputs, kind=kind, n_values=300, batch_size=4, progress=False)
    assert store.complete and store.n_chunks == 3
    in_memory = compute_pefs(bert3, bert_inputs, kind=kind, n_values=300, batch_size=4, progress=False)
    _assert_same_pefs(store.load(), in_memory)


def test_interrupted_run_resumes_to_the_same_store(tmp_path, bert3, bert_inputs, monkeypatch):
    reference = write_pefs(tmp_path / "ref", bert3, bert_inputs, n_values=200, batch_size=2, progress=False).load()

    real = batches.batch_in_two_stages  # each batch's model passes; returns the rest
    calls = []

    def crash_on_third_batch(model, plan, batch, labels, config, *rest):
        if config.batch_size == 1:  # the cost estimate's untimed warm-up example
            return real(model, plan, batch, labels, config, *rest)
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(model, plan, batch, labels, config, *rest)

    monkeypatch.setattr(batches, "batch_in_two_stages", crash_on_third_batch)
    with pytest.raises(KeyboardInterrupt):
        write_pefs(tmp_path / "run", bert3, bert_inputs, n_values=200, batch_size=2, progress=False)
    store = PefStore(tmp_path / "run")
    assert not store.complete and store.chunks_on_disk() == [0, 1]
    with pytest.raises(StoreError, match=r"incomplete \(2 of 5 batches"):
        store.load()

    calls.clear()
    monkeypatch.setattr(batches, "batch_in_two_stages", lambda *a: calls.append(a[4].batch_size) or real(*a))
    resumed = write_pefs(tmp_path / "run", bert3, bert_inputs, n_values=200, batch_size=2, progress=False)
    assert [size for size in calls if size != 1] == [2, 2, 2], "only the missing batches are computed"
    _assert_same_pefs(resumed.load(), reference)


def test_resume_removes_the_temporary_files_of_a_killed_writer(tmp_path, bert3, bert_inputs):
    out = tmp_path / "run"
    reference = write_pefs(out, bert3, bert_inputs, n_values=200, batch_size=2, progress=False)
    (out / "chunks" / "000004.safetensors").unlink()
    # ours (atomic_path) and safetensors' own (Rust's tempfile crate), as a SIGKILL mid-write leaves them
    leftovers = [out / "chunks" / ".000004.safetensors.k2j4x9.tmp", out / "chunks" / ".tmpV9oUcl", out / ".tmpAb12Cd"]
    for path in leftovers:
        path.write_bytes(b"half written")
    keep = out / "chunks" / ".tmp-notes"  # not a name a writer makes: left alone
    keep.write_text("mine")

    resumed = write_pefs(out, bert3, bert_inputs, n_values=200, batch_size=2, progress=False)
    assert not any(path.exists() for path in leftovers)
    assert keep.read_text() == "mine"
    _assert_same_pefs(resumed.load(), reference.load())


def test_store_refuses_other_arguments(tmp_path, bert3, bert_inputs):
    write_pefs(tmp_path / "pefs", bert3, bert_inputs, n_values=100, progress=False)
    with pytest.raises(StoreError, match="differs: .*n_values"):
        write_pefs(tmp_path / "pefs", bert3, bert_inputs, n_values=200, progress=False)
    other_inputs = dict(bert_inputs, input_ids=bert_inputs["input_ids"].flip(0))
    with pytest.raises(StoreError, match="fingerprints"):
        write_pefs(tmp_path / "pefs", bert3, other_inputs, n_values=100, progress=False)
    store = write_pefs(tmp_path / "pefs", bert3, bert_inputs, n_values=200, progress=False, overwrite=True)
    assert store.info["n_values"] == 200


def test_the_same_weights_loaded_through_another_path_resume_the_store(tmp_path, bert3, bert_inputs, monkeypatch):
    """The model's name is the path it was loaded from: relative then absolute, another working folder or a
    moved run folder made a killed run's store 'other arguments' (info.model), recomputed from 0."""
    bert3.config._name_or_path = "models/mine"
    write_pefs(tmp_path / "pefs", bert3, bert_inputs, n_values=100, batch_size=2, progress=False)
    (tmp_path / "pefs" / "chunks" / "000001.safetensors").unlink()  # as a killed run leaves it
    bert3.config._name_or_path = "/home/me/models/mine"
    real = batches.batch_in_two_stages
    calls = []
    monkeypatch.setattr(batches, "batch_in_two_stages", lambda *a: calls.append(a[4].batch_size) or real(*a))
    resumed = write_pefs(tmp_path / "pefs", bert3, bert_inputs, n_values=100, batch_size=2, progress=False)
    assert [size for size in calls if size != 1] == [2], "only the missing batch is computed"
    assert resumed.info["model"] == "models/mine"  # as first recorded
    other = type(bert3)(bert3.config)  # other weights under the same name are another run
    with pytest.raises(StoreError, match="differs: fingerprints"):
        write_pefs(tmp_path / "pefs", other, bert_inputs, n_values=100, batch_size=2, progress=False)


def test_folder_that_is_not_a_store_is_refused(tmp_path, bert3, bert_inputs):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(StoreError, match="not a PEF store"):
        write_pefs(tmp_path, bert3, bert_inputs, progress=False)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_truncated_chunk_is_reported(tmp_path):
    store = save_pefs(planted_lrm(30, 20, 2).pefs, tmp_path / "pefs", examples_per_chunk=10)
    chunk = tmp_path / "pefs" / "chunks" / "000001.safetensors"
    chunk.write_bytes(chunk.read_bytes()[:-20])
    with pytest.raises(StoreError, match="000001.safetensors cannot be read"):
        store.load()


def test_other_format_version_is_refused(tmp_path):
    save_pefs(planted_lrm(10, 20, 2).pefs, tmp_path / "pefs")
    manifest = json.loads((tmp_path / "pefs" / MANIFEST).read_text())
    manifest["format_version"] = 99
    (tmp_path / "pefs" / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(StoreError, match="format version 99"):
        load_pefs(tmp_path / "pefs")


@pytest.mark.parametrize("make", [planted_lrm, planted_d])
def test_save_and_load_round_trip(tmp_path, make):
    pefs = make(45, 30, 3).pefs
    save_pefs(pefs, tmp_path / "pefs", examples_per_chunk=20)
    back = load_pefs(tmp_path / "pefs")
    _assert_same_pefs(back, pefs)
    assert type(back) is type(pefs)


def test_missing_store_is_reported(tmp_path):
    with pytest.raises(StoreError, match="does not exist"):
        load_pefs(tmp_path / "nowhere")


def test_chunk_writer_raises_a_failed_write_and_writes_nothing_after_it(tmp_path, monkeypatch):
    """Chunks are written on a background thread, in order: a write that fails (a full disk)
    stops the ones queued after it, and the error reaches the run."""
    import time

    written = []

    def write_chunk(out, index, chunk, identity):
        if index == 1:
            raise OSError("No space left on device")
        time.sleep(0.01)
        written.append(index)

    monkeypatch.setattr(store_writer, "write_chunk", write_chunk)
    with pytest.raises(OSError, match="No space left"):
        with store_writer.ChunkWriter(tmp_path, "store-id") as writer:
            for index in range(6):
                writer.submit(index, None)
    assert written == [0]


def test_a_disk_error_mid_run_leaves_a_store_that_resumes(tmp_path, bert3, bert_inputs, monkeypatch):
    real, calls = store_writer.write_chunk, []

    def fail_on_third(out, index, chunk, identity):
        calls.append(index)
        if len(calls) == 3:
            raise OSError("No space left on device")
        real(out, index, chunk, identity)

    monkeypatch.setattr(store_writer, "write_chunk", fail_on_third)
    with pytest.raises(OSError, match="No space left"):
        write_pefs(tmp_path / "pefs", bert3, bert_inputs, n_values=64, batch_size=2, progress=False)
    monkeypatch.undo()
    resumed = write_pefs(tmp_path / "pefs", bert3, bert_inputs, n_values=64, batch_size=2, progress=False)
    _assert_same_pefs(resumed.load(), compute_pefs(bert3, bert_inputs, n_values=64, batch_size=2, progress=False))


def test_a_full_disk_is_a_store_write_error_that_names_the_file_and_leaves_a_store_that_resumes(
        tmp_path, bert3, bert_inputs, monkeypatch):
    """Issue 19: a full disk surfaced as safetensors' own error. Now it names the file and the fix,
    leaves no temporary file and keeps the chunks written before it."""
    from safetensors import SafetensorError

    import workbench.store.files as files
    from workbench.store import StoreWriteError

    real, calls = files.save_file, []

    def full_at_third(arrays, path, metadata=None):
        calls.append(path)
        if len(calls) == 3:
            raise SafetensorError("Error while serializing: IoError(Os { code: 28, kind: StorageFull, "
                                  "message: \"No space left on device\" })")
        real(arrays, path, metadata=metadata)

    monkeypatch.setattr(files, "save_file", full_at_third)
    with pytest.raises(StoreWriteError, match=r"could not write .*000002\.safetensors: .*No space left on device.*"
                                              r"Free space on that disk.*resumes"):
        write_pefs(tmp_path / "pefs", bert3, bert_inputs, n_values=64, batch_size=2, progress=False)
    monkeypatch.undo()
    assert [p.name for p in (tmp_path / "pefs" / "chunks").iterdir() if p.name.startswith(".")] == []
    assert not PefStore(tmp_path / "pefs").complete
    resumed = write_pefs(tmp_path / "pefs", bert3, bert_inputs, n_values=64, batch_size=2, progress=False)
    _assert_same_pefs(resumed.load(), compute_pefs(bert3, bert_inputs, n_values=64, batch_size=2, progress=False))


def test_a_store_killed_between_its_manifest_and_its_chunks_folder_resumes(tmp_path, bert3, bert_inputs):
    """A store left with its manifest and no chunks folder (a writer killed in between)."""
    out = tmp_path / "pefs"
    whole = write_pefs(out, bert3, bert_inputs, n_values=50, batch_size=3, progress=False)
    expected = whole.load()
    manifest = json.loads((out / MANIFEST).read_text())
    for chunk in (out / "chunks").iterdir():
        chunk.unlink()
    (out / "chunks").rmdir()
    (out / MANIFEST).write_text(json.dumps({k: v for k, v in manifest.items() if k != "checksums"} | {"complete": False}))
    resumed = write_pefs(out, bert3, bert_inputs, n_values=50, batch_size=3, progress=False)
    _assert_same_pefs(resumed.load(), expected)


def test_replacing_a_store_keeps_the_other_files_of_its_folder(tmp_path, bert3, bert_inputs):
    out = tmp_path / "pefs"
    write_pefs(out, bert3, bert_inputs, n_values=50, batch_size=3, progress=False)
    (out / "NOTES.md").write_text("what these PEFs are for")
    write_pefs(out, bert3, bert_inputs, n_values=20, batch_size=3, overwrite=True, progress=False)
    assert (out / "NOTES.md").read_text() == "what these PEFs are for"
    assert load_pefs(out).info["n_values"] == 20
    save_pefs(planted_lrm(10, 20, 2).pefs, out, overwrite=True)
    assert (out / "NOTES.md").exists() and load_pefs(out).n_examples == 10
