"""Every file records its format version and what produced it, and refuses to be mixed with an incompatible one."""

import json
import shutil

import numpy as np
import pytest

from tests.conftest import tiny_bert
from workbench import __version__, compute_pefs, write_pefs
from workbench.npeff import LrmNpeff
from workbench.store import MANIFEST, PefStore, StoreError, read_header


def test_manifest_and_chunks_record_their_producer(tmp_path, bert3, bert_inputs):
    store = write_pefs(tmp_path / "pefs", bert3, bert_inputs, n_values=100, include=r"encoder\.", batch_size=4,
                       progress=False, provenance={"model_path": "/models/tiny", "seed": 7})
    manifest = json.loads((tmp_path / "pefs" / MANIFEST).read_text())
    assert manifest["format"] == "npeff-workbench/pefs" and manifest["format_version"] == 2
    assert manifest["producer"]["package_version"] == __version__
    info = manifest["info"]
    assert info["model"] == "BertForSequenceClassification" and len(info["model_fingerprint"]) == 64
    assert (info["include"], info["exclude"], info["n_values"], info["kind"], info["batch_size"]) == (r"encoder\.", None, 100, "lrm", 4)
    assert info["provenance"] == {"model_path": "/models/tiny", "seed": 7}
    header = read_header(tmp_path / "pefs" / "chunks" / "000001.safetensors")
    assert header["chunk"] == 1 and header["store"] == store.store_id and header["producer"]["package_version"] == __version__


def test_chunk_of_another_run_is_refused_then_recomputed(tmp_path, bert3, bert_inputs):
    a = write_pefs(tmp_path / "a", bert3, bert_inputs, n_values=100, batch_size=4, progress=False)
    b = write_pefs(tmp_path / "b", bert3, bert_inputs, n_values=120, batch_size=4, progress=False)
    reference = b.load()
    shutil.copy(tmp_path / "a" / "chunks" / "000001.safetensors", tmp_path / "b" / "chunks" / "000001.safetensors")
    with pytest.raises(StoreError, match="belongs to another PEF run .*manifest.json was changed since, or the chunk "
                                         "copied in from another store"):
        PefStore(tmp_path / "b").load()
    repaired = write_pefs(tmp_path / "b", bert3, bert_inputs, n_values=120, batch_size=4, progress=False).load()
    assert (repaired.X != reference.X).nnz == 0
    assert a.store_id != b.store_id


def test_resume_keeps_the_recorded_batch_size(tmp_path, bert3, bert_inputs, monkeypatch):
    import workbench.runner.run as run
    from workbench.runner import estimate

    real = run.iter_pef_chunks

    def die_after_first(*args, **kwargs):
        for i, item in enumerate(real(*args, **kwargs)):
            if i == 1:
                raise KeyboardInterrupt
            yield item

    auto = write_pefs(tmp_path / "auto", bert3, bert_inputs, n_values=100, progress=False)
    assert auto.info["batch_size"] == 9, "plenty of memory: one batch of all 9 examples (at most MAX_AUTO_BATCH)"
    reference = write_pefs(tmp_path / "ref", bert3, bert_inputs, n_values=100, batch_size=3, progress=False).load()
    # other batch sizes pad and round differently (here 321 of 900 values differ in their last bits
    # between batches of 9 and of 3): that is why a resume must keep its batch size
    monkeypatch.setattr(run, "iter_pef_chunks", die_after_first)
    with pytest.raises(KeyboardInterrupt):
        write_pefs(tmp_path / "run", bert3, bert_inputs, n_values=100, batch_size=3, progress=False)
    monkeypatch.undo()
    # with little memory a new run would choose batches of 1; the resume keeps the recorded 3
    monkeypatch.setattr(estimate, "available_memory", lambda device=None: 1)
    store = write_pefs(tmp_path / "run", bert3, bert_inputs, n_values=100, progress=False, check_resources=False)
    assert store.info["batch_size"] == 3 and store.n_chunks == 3
    assert (store.load().X != reference.X).nnz == 0


def test_overwrite_never_replaces_a_folder_that_is_not_a_store(tmp_path, bert3, bert_inputs):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    with pytest.raises(StoreError, match="not a PEF store"):
        write_pefs(tmp_path / "mine", bert3, bert_inputs, overwrite=True, progress=False)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep"


@pytest.fixture
def decomposition_and_pefs(tmp_path, bert_inputs):
    pefs = compute_pefs(tiny_bert(3, seed=0), bert_inputs, n_values=200, progress=False)
    est = LrmNpeff(2, n_iters_g_only=3, n_iters_joint=3, progress=False).fit(pefs)
    est.save(tmp_path / "d.safetensors")
    return est, pefs


def test_decomposition_records_what_it_was_fitted_to(tmp_path, decomposition_and_pefs):
    est, pefs = decomposition_and_pefs
    header = read_header(tmp_path / "d.safetensors")
    assert header["format"] == "npeff-workbench/lrm-npeff" and header["producer"]["package_version"] == __version__
    assert header["params"]["seed"] == 0 and header["params"]["n_components"] == 2
    info = header["pef_info"]
    assert info["model_fingerprint"] == pefs.info["model_fingerprint"] and len(info["pefs_fingerprint"]) == 64
    assert (info["model"], info["n_values"], info["kind"]) == ("BertForSequenceClassification", 200, "lrm")


def test_coefficients_for_pefs_of_another_model_are_refused(decomposition_and_pefs, bert_inputs):
    est, _ = decomposition_and_pefs
    other = compute_pefs(tiny_bert(3, seed=1), bert_inputs, n_values=200, progress=False)
    with pytest.raises(StoreError, match=r"these PEFs come from another model .* pefs\.info\.pop\('model_fingerprint'\)"):
        est.transform(other)
    other.info.pop("model_fingerprint")
    assert est.transform(other).shape == (9, 2)  # comparing models on purpose


def test_decomposition_load_checks_the_model(tmp_path, decomposition_and_pefs):
    LrmNpeff.load(tmp_path / "d.safetensors", model=tiny_bert(3, seed=0))  # the same model: accepted
    with pytest.raises(StoreError, match="computed from another model"):
        LrmNpeff.load(tmp_path / "d.safetensors", model=tiny_bert(3, seed=2))


def test_decomposition_of_other_format_version_is_refused(tmp_path, decomposition_and_pefs):
    from safetensors.numpy import load_file, save_file

    arrays = load_file(str(tmp_path / "d.safetensors"))
    header = read_header(tmp_path / "d.safetensors")
    save_file(arrays, str(tmp_path / "v3.safetensors"), metadata={"header": json.dumps(dict(header, format_version=3))})
    with pytest.raises(StoreError, match="format version 3; this package .* reads version 1 or 2. Re-create it"):
        LrmNpeff.load(tmp_path / "v3.safetensors")
    np.testing.assert_array_equal(LrmNpeff.load(tmp_path / "d.safetensors").W_, decomposition_and_pefs[0].W_)


def test_a_flipped_bit_in_a_chunk_is_named_and_recomputed_on_resume(tmp_path, bert3, bert_inputs):
    """Issue 19: one flipped exponent bit in a chunk's values (0.02 → 1e36) loaded without a word."""
    from safetensors import safe_open

    from workbench.store.files import file_checksum

    store = write_pefs(tmp_path / "pefs", bert3, bert_inputs, n_values=100, batch_size=4, progress=False)
    reference = store.load()
    manifest = json.loads((tmp_path / "pefs" / MANIFEST).read_text())
    chunk = tmp_path / "pefs" / "chunks" / "000001.safetensors"
    assert manifest["checksums"][1] == file_checksum(chunk)
    before = chunk.read_bytes()
    with safe_open(str(chunk), framework="np") as f:
        values = f.get_tensor("values")
    # the last value's most significant exponent bit: a finite value, far too large, still a valid file
    position = before.rindex(values.tobytes()) + values.nbytes - 1
    damaged = bytearray(before)
    damaged[position] ^= 0x40
    chunk.write_bytes(bytes(damaged))
    with pytest.raises(StoreError, match=r"chunk 1 of the PEF store .* is corrupted: its sha256 is .* Delete .*000001"):
        PefStore(tmp_path / "pefs").load()
    # the same call again finds the changed chunk by its checksum and recomputes it, alone
    again = write_pefs(tmp_path / "pefs", bert3, bert_inputs, n_values=100, batch_size=4, progress=False)
    assert chunk.read_bytes() == before
    assert (again.load().X != reference.X).nnz == 0


def test_a_store_of_format_version_1_is_read_and_resumed_in_its_version(tmp_path, bert3, bert_inputs):
    store = write_pefs(tmp_path / "pefs", bert3, bert_inputs, n_values=100, batch_size=4, progress=False)
    reference = store.load()
    # what version 1 wrote: no checksums, and chunks that name the store by its version-1 identity
    from workbench.store.pef_store import store_id
    from workbench.store.writer import PefStoreWriter

    old = {k: v for k, v in store.manifest.items() if k != "checksums"} | {"format_version": 1, "complete": False}
    writer = PefStoreWriter(tmp_path / "old", old)
    writer.open(None, set())
    for index in range(store.n_chunks - 1):  # one chunk missing: an unfinished store
        writer.write_chunk(index, store.read_chunk(index))
    assert writer.store_id == store_id(old)
    resumed = write_pefs(tmp_path / "old", bert3, bert_inputs, n_values=100, batch_size=4, progress=False)
    manifest = json.loads((tmp_path / "old" / MANIFEST).read_text())
    assert manifest["format_version"] == 1 and manifest["complete"] and "checksums" not in manifest
    assert (resumed.load().X != reference.X).nnz == 0


def test_a_changed_byte_of_a_decomposition_or_a_fit_checkpoint_is_named(tmp_path):
    """A flipped bit of a decomposition's W (0.027 read 0.107) was read as is by every reader, and one of a fit
    checkpoint gave a 'resumed' fit that was not the interrupted one's."""
    from safetensors import safe_open

    from workbench.npeff.planted import planted_lrm

    pefs = planted_lrm(30, 40, 2, seed=3).pefs
    fit = LrmNpeff(2, n_iters_g_only=3, n_iters_joint=3, progress=False).fit(pefs)
    path = tmp_path / "fit.safetensors"
    fit.save(path)
    checkpoint = tmp_path / "fit.ckpt.safetensors"
    LrmNpeff(2, n_iters_g_only=3, n_iters_joint=3, progress=False).fit(pefs, checkpoint=checkpoint)
    for file in (path, checkpoint):
        with safe_open(str(file), framework="np") as f:
            W = f.get_tensor("W")
        data = bytearray(file.read_bytes())
        data[data.rindex(W.tobytes()) + 2] ^= 0x01  # a low bit of W's first entry: a finite, plausible value
        file.write_bytes(bytes(data))
    with pytest.raises(StoreError, match=r"fit\.safetensors is damaged: its arrays differ from those written"):
        LrmNpeff.load(path)
    with pytest.raises(StoreError, match=r"fit\.ckpt\.safetensors is damaged: its arrays differ.*a fit checkpoint: delete it"):
        LrmNpeff(2, n_iters_g_only=3, n_iters_joint=3, progress=False).fit(pefs, checkpoint=checkpoint)


def test_a_deleted_chunk_is_not_asked_to_be_deleted(tmp_path, bert3, bert_inputs):
    """'... does not exist. Delete this chunk file' asked for what was done, and named write_pefs to a run's user."""
    write_pefs(tmp_path / "pefs", bert3, bert_inputs, n_values=100, batch_size=4, progress=False)
    (tmp_path / "pefs" / "chunks" / "000001.safetensors").unlink()
    with pytest.raises(StoreError) as error:
        PefStore(tmp_path / "pefs").load()
    assert "Delete this chunk" not in str(error.value) and "Run the command that wrote the store again" in str(error.value)
