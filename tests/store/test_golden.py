"""Files written before the restructure of issue 16 (commit f41fb30) still load, and this
version writes the same files.

``golden/f41fb30/`` holds what ``golden/make_golden.py`` wrote with that commit: two PEF
stores, an LRM and a D decomposition and their fit checkpoints. Headers and integer arrays
must match exactly; float arrays to float32 rounding, since another CPU rounds its sums
differently (on the machine that wrote them they are equal byte for byte, and so are the
embedded model's stores and fits: benchmarks/same_files.py). Where the PEFs came out
different in their last bits (an Intel Xeon's logits differ from those of the AMD EPYC that
wrote the files by 1e-10), a header's numbers (a fit's losses) are compared to rounding too,
and its fingerprints of the fitted PEFs, hashes of their bits, are left out.
"""

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import load_file

import workbench.fisher.batches as batches
from tests.conftest import tiny_bert
from tests.store.golden.make_golden import D_SETTINGS, LRM_SETTINGS, PEF_ARGS, inputs, write
from workbench import DNpeff, LrmNpeff, PefStore, write_pefs
from workbench.store.files import CHECKSUM, arrays_checksum, file_checksum

GOLDEN = Path(__file__).parent / "golden" / "f41fb30"
FILES = sorted(str(p.relative_to(GOLDEN)) for p in GOLDEN.rglob("*") if p.is_file())
#: what a file records of the versions that wrote it
VERSIONS = ("producer",)
#: LRM decompositions: format version 2 names the slots "n_slots" (version 1: "n_classes")
RENAMED = {"lrm.safetensors": {"format_version": (1, 2), "n_classes": (3, None), "n_slots": (None, 3)}}
# PEF stores: format version 2 records the chunks' checksums in the manifest, and its chunks name the
# store by a hash that includes the manifest's version (checked against each store's own id below)
for _kind in ("lrm", "d"):
    RENAMED[f"{_kind}-store/manifest.json"] = {"format_version": (1, 2)}


#: a fit's hashes of the PEFs it fitted, in its header
FINGERPRINTS = (("data",), ("pef_info", "pefs_fingerprint"))


def _same_bits(folder: Path) -> bool:
    """Whether this machine wrote the golden stores' arrays bit for bit."""
    for path in GOLDEN.glob("*-store/chunks/*"):
        old, new = load_file(str(path)), load_file(str(folder / path.relative_to(GOLDEN)))
        if any(not np.array_equal(old[key], new[key]) for key in old):
            return False
    return True


def _assert_same_to_rounding(new, old, where="header"):
    if isinstance(old, dict) and isinstance(new, dict):
        assert sorted(new) == sorted(old), where
        for key in old:
            _assert_same_to_rounding(new[key], old[key], f"{where}.{key}")
    elif isinstance(old, list) and isinstance(new, list):
        assert len(new) == len(old), where
        for i, (a, b) in enumerate(zip(new, old)):
            _assert_same_to_rounding(a, b, f"{where}[{i}]")
    elif isinstance(old, float) or isinstance(new, float):
        assert math.isclose(new, old, rel_tol=1e-4, abs_tol=1e-9), (where, new, old)
    else:
        assert new == old, where


def _header(path: Path) -> dict:
    if path.suffix == ".json":
        return json.loads(path.read_text())
    with safe_open(str(path), framework="np") as f:
        return json.loads(f.metadata()["header"])


def test_old_stores_load_and_resume_as_complete(tmp_path, monkeypatch):
    x, y = inputs()
    calls = []
    real = batches.batch_in_two_stages
    monkeypatch.setattr(batches, "batch_in_two_stages", lambda *a: calls.append(1) or real(*a))
    for kind in ("lrm", "d"):
        folder = shutil.copytree(GOLDEN / f"{kind}-store", tmp_path / kind)
        chunks = {p.name: p.read_bytes() for p in (folder / "chunks").iterdir()}
        pefs = PefStore(folder).load()
        assert pefs.kind == kind and pefs.n_examples == 6 and pefs.n_parameters == 51
        # the same run with this version is that store: nothing is recomputed or rewritten
        store = write_pefs(folder, tiny_bert(3), x, y, kind=kind, **PEF_ARGS)
        assert store.complete and calls == [] and store.store_id == PefStore(GOLDEN / f"{kind}-store").store_id
        assert {p.name: p.read_bytes() for p in (folder / "chunks").iterdir()} == chunks


def test_old_decompositions_and_checkpoints_load(tmp_path):
    pefs = {kind: PefStore(GOLDEN / f"{kind}-store").load() for kind in ("lrm", "d")}
    lrm = LrmNpeff.load(GOLDEN / "lrm.safetensors")  # format version 1: the slots saved as "n_classes"
    assert lrm.n_slots_ == 3 and lrm.W_.shape == (6, 2) and lrm.get_params()["n_iters_joint"] == 3
    assert lrm.transform(pefs["lrm"]).shape == (6, 2)
    d = DNpeff.load(GOLDEN / "d.safetensors")
    assert d.n_classes_ == 3 and d.H_.shape[0] == 2
    # a fit with the checkpoint of the old version resumes from it: it had finished, so its state comes back
    for estimator, kind, saved in ((LrmNpeff(**LRM_SETTINGS), "lrm", lrm), (DNpeff(**D_SETTINGS), "d", d)):
        checkpoint = shutil.copy(GOLDEN / f"{kind}-checkpoint.safetensors", tmp_path / f"{kind}.safetensors")
        estimator.fit(pefs[kind], checkpoint=checkpoint)
        np.testing.assert_array_equal(estimator.W_, saved.W_)
        np.testing.assert_array_equal(estimator.components_, saved.components_)


@pytest.mark.parametrize("name", FILES)
def test_this_version_writes_the_same_files(tmp_path_factory, name):
    folder = tmp_path_factory.getbasetemp() / "golden-now"
    if not folder.exists():
        write(folder)
    old, new = _header(GOLDEN / name), _header(folder / name)
    if name.endswith(".safetensors"):  # since then, each file's header holds its arrays' checksum
        assert CHECKSUM not in old and new.pop(CHECKSUM) == arrays_checksum(load_file(str(folder / name)))
    for key, (before, after) in RENAMED.get(name, {}).items():
        assert (old.get(key), new.get(key)) == (before, after)
        old.pop(key, None), new.pop(key, None)
    if "-store/" in name:
        store = name.split("/")[0]
        if name.endswith("manifest.json"):
            chunks = sorted((folder / store / "chunks").iterdir())
            assert "checksums" not in old and new.pop("checksums") == [file_checksum(p) for p in chunks]
        else:
            assert old.pop("store") == PefStore(GOLDEN / store).store_id
            assert new.pop("store") == PefStore(folder / store).store_id
    for header in (old, new):
        for key in VERSIONS:
            header.pop(key, None)
        header.get("info", {}).pop("package_version", None)
    if _same_bits(folder):
        assert new == old
    else:
        for header in (old, new):
            for *parents, key in FINGERPRINTS:
                inner = header
                for parent in parents:
                    inner = inner.get(parent, {})
                inner.pop(key, None)
        _assert_same_to_rounding(new, old)
    if name.endswith(".json"):
        return
    arrays_old, arrays_new = load_file(str(GOLDEN / name)), load_file(str(folder / name))
    assert sorted(arrays_new) == sorted(arrays_old)
    for key, a in arrays_old.items():
        b = arrays_new[key]
        assert b.dtype == a.dtype and b.shape == a.shape, key
        if np.issubdtype(a.dtype, np.integer):
            np.testing.assert_array_equal(b, a, err_msg=key)
        else:
            np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-7 * np.abs(a).max(initial=0), err_msg=key)
