"""The original implementation's HDF5 layouts (method notes, section 8)."""

import h5py
import numpy as np
import pytest

from workbench.npeff.interop import (
    read_d_pefs_h5,
    read_lrm_decomposition_h5,
    read_lrm_pefs_h5,
    write_d_pefs_h5,
    write_lrm_decomposition_h5,
    write_lrm_pefs_h5,
)
from workbench.npeff import LrmNpeff
from workbench.core.params import ParameterLayout
from workbench.core.pefs import DPefs, LrmPefs
from workbench.npeff.planted import planted_d, planted_lrm
from workbench.store import StoreError


def _reference_lrm_file(path):
    """A file laid out by hand exactly as the method notes describe, two examples, two classes."""
    with h5py.File(path, "w") as f:
        data = f.create_group("data")
        data["values"] = np.array([[0.5, -1.0, 2.0], [3.0, 0.25, -0.75]], dtype=np.float32)
        data["row_indices"] = np.array([[1, 4, 2], [0, 0, 3]], dtype=np.int32)
        data["col_offsets"] = np.array([[0, 2, 3], [0, 1, 3]], dtype=np.int32)
        data["labels"] = np.array([1, 0], dtype=np.int32)
        data["logits"] = np.array([[0.1, 2.0], [1.0, -1.0]], dtype=np.float32)
        data["pef_frobenius_norms"] = np.array([5.0, 9.5], dtype=np.float32)
        data.attrs["n_classes"] = 2
        data.attrs["n_parameters"] = 5


def test_reads_the_reference_lrm_layout(tmp_path):
    _reference_lrm_file(tmp_path / "ref.h5")
    pefs = read_lrm_pefs_h5(tmp_path / "ref.h5")
    A = pefs.dense()  # (2 examples, 2 slots, 5 parameters)
    expected = np.zeros((2, 2, 5), dtype=np.float32)
    expected[0, 0, 1], expected[0, 0, 4], expected[0, 1, 2] = 0.5, -1.0, 2.0
    expected[1, 0, 0], expected[1, 1, 0], expected[1, 1, 3] = 3.0, 0.25, -0.75
    np.testing.assert_array_equal(A, expected)
    np.testing.assert_array_equal(pefs.classes, [[0, 1], [0, 1]])  # a slot per class: class order, as the original writes
    np.testing.assert_array_equal(pefs.labels, [1, 0])
    np.testing.assert_array_equal(pefs.frobenius_norms, [5.0, 9.5])
    write_lrm_pefs_h5(pefs, tmp_path / "again.h5")
    with h5py.File(tmp_path / "ref.h5") as a, h5py.File(tmp_path / "again.h5") as b:
        for name in ("values", "row_indices", "col_offsets", "labels", "logits", "pef_frobenius_norms"):
            np.testing.assert_array_equal(a["data"][name][()], b["data"][name][()])
        assert dict(a["data"].attrs) == dict(b["data"].attrs)


def test_lrm_pefs_round_trip_with_uneven_sparsity(tmp_path):
    A = planted_lrm(20, 30, 3, density=0.2).pefs.dense()
    A[3] = 0.0
    A[3, 0, 7] = 1.0  # one example with a single entry
    pefs = LrmPefs.from_dense(A, labels=np.arange(20) % 2, logits=np.random.default_rng(0).normal(size=(20, 2)))
    write_lrm_pefs_h5(pefs, tmp_path / "p.h5")
    back = read_lrm_pefs_h5(tmp_path / "p.h5", layout=pefs.layout)
    np.testing.assert_array_equal(back.dense(), pefs.dense())
    np.testing.assert_array_equal(back.labels, pefs.labels)
    np.testing.assert_array_equal(back.frobenius_norms, pefs.frobenius_norms)


def test_d_pefs_round_trip(tmp_path):
    pefs = planted_d(25, 40, 3, density=0.2).pefs
    write_d_pefs_h5(pefs, tmp_path / "d.h5")
    with h5py.File(tmp_path / "d.h5") as f:
        assert f["data/fisher"].attrs["dense_fisher_size"] == 40
        assert f["data/fisher/values"].dtype == np.float32 and f["data/fisher/indices"].dtype == np.int32
    back = read_d_pefs_h5(tmp_path / "d.h5")
    assert isinstance(back, DPefs)
    np.testing.assert_array_equal(back.dense(), pefs.dense())
    np.testing.assert_array_equal(back.frobenius_norms, pefs.frobenius_norms)


def test_decomposition_round_trip(tmp_path):
    problem = planted_lrm(40, 30, 3)
    est = LrmNpeff(3, n_iters_g_only=10, n_iters_joint=20, log_every=5, progress=False).fit(problem.pefs)
    write_lrm_decomposition_h5(est, tmp_path / "dec.h5")
    with h5py.File(tmp_path / "dec.h5") as f:
        assert set(f["data"]) == {"W", "G", "new_to_old_col_indices"}
        assert f["losses"].attrs["log_loss_frequency"] == 5
        np.testing.assert_array_equal(f["losses/joint"][()], est.loss_history_["joint"][:, 1].astype(np.float32))
    back = read_lrm_decomposition_h5(tmp_path / "dec.h5", layout=est.layout_)
    np.testing.assert_array_equal(back.W_, est.W_)
    np.testing.assert_array_equal(back.G_, est.G_)
    np.testing.assert_array_equal(back.kept_columns_, est.kept_columns_)
    np.testing.assert_allclose(back.transform(problem.pefs), est.transform(problem.pefs), rtol=1e-6)


def test_the_loss_history_keeps_its_iteration_numbers(tmp_path):
    """The fit also logs each phase's last step: [0, 10, 20, 24] read back as [0, 10, 20, 30]."""
    est = LrmNpeff(3, n_iters_g_only=10, n_iters_joint=25, log_every=10, progress=False).fit(planted_lrm(30, 20, 3).pefs)
    assert est.loss_history_["joint"][-1, 0] == 24
    write_lrm_decomposition_h5(est, tmp_path / "dec.h5")
    back = read_lrm_decomposition_h5(tmp_path / "dec.h5")
    for phase in ("g_only", "joint"):
        np.testing.assert_array_equal(back.loss_history_[phase][:, 0], est.loss_history_[phase][:, 0])
    with h5py.File(tmp_path / "dec.h5", "r+") as f:  # a file of the original implementation: index × frequency
        del f["losses/joint_iterations"]
    assert read_lrm_decomposition_h5(tmp_path / "dec.h5").loss_history_["joint"][:, 0].tolist() == [0, 10, 20, 30]


def test_file_of_another_layout_is_refused(tmp_path):
    with h5py.File(tmp_path / "x.h5", "w") as f:
        f.create_group("data")["something"] = np.zeros(3)
    with pytest.raises(StoreError, match="not in the original NPEFF layout"):
        read_lrm_pefs_h5(tmp_path / "x.h5")


def test_damaged_or_wrong_files_name_the_file(tmp_path):
    pefs = planted_d(10, 20, seed=0).pefs
    path = tmp_path / "d.h5"
    write_d_pefs_h5(pefs, path)
    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(path.read_bytes()[:300])
    with pytest.raises(StoreError, match=r"truncated\.h5 cannot be read as a file of the original NPEFF layout"):
        read_d_pefs_h5(truncated)
    with pytest.raises(StoreError, match="is a folder"):
        read_d_pefs_h5(tmp_path)
    with h5py.File(path, "r+") as f:
        del f["data/fisher"].attrs["dense_fisher_size"]
    with pytest.raises(StoreError, match=r"d\.h5 cannot be read"):
        read_d_pefs_h5(path)
    write_d_pefs_h5(pefs, path)
    with h5py.File(path, "r+") as f:
        values = f["data/fisher/values"]
        values[0, 0] = -abs(values[0, 0]) - 1.0
    with pytest.raises(StoreError, match="negative or non-finite D-PEF values"):
        read_d_pefs_h5(path)


def test_an_lrm_file_with_nan_values_is_refused_as_the_d_reader_refuses_one(tmp_path):
    """The LRM reader took NaN values, and the fit failed later on 'PEFs contain NaN', naming no file."""
    pefs = planted_lrm(10, 20, 2, seed=0).pefs
    write_lrm_pefs_h5(pefs, tmp_path / "p.h5")
    with h5py.File(tmp_path / "p.h5", "r+") as f:
        values = f["data/values"][()]
        values[0, 0] = np.nan
        f["data/values"][...] = values
    with pytest.raises(StoreError, match=r"p\.h5 holds NaN or infinite PEF values"):
        read_lrm_pefs_h5(tmp_path / "p.h5")


@pytest.mark.parametrize("labels, message", [([0.5, 1, 0, 1, 0, 1, 0, 1, 0, 1], "not a whole number"),
                                             ([7, 1, 0, 1, 0, 1, 0, 1, 0, 1], "label 7 of example 0 is out of range")])
def test_an_lrm_file_s_labels_are_checked_as_a_user_s_are(tmp_path, labels, message):
    """A label 0.5 was cut to 0 and a label 7 of 2 classes taken."""
    pefs = planted_lrm(10, 20, 2, seed=0).pefs
    write_lrm_pefs_h5(pefs, tmp_path / "p.h5")
    with h5py.File(tmp_path / "p.h5", "r+") as f:
        del f["data/labels"]
        f["data/labels"] = np.asarray(labels, dtype=np.float64)
    with pytest.raises(StoreError, match=rf"p\.h5 holds labels that are no class indices.*{message}"):
        read_lrm_pefs_h5(tmp_path / "p.h5")


@pytest.mark.parametrize("dataset, value, message", [
    ("new_to_old_col_indices", lambda kept: np.full_like(kept, 10**6), "kept columns"),
    ("new_to_old_col_indices", lambda kept: kept[:-1], "kept columns"),
    ("G", lambda G: np.where(G == G.max(), np.nan, G), "NaN, infinite or negative"),
    ("new_to_old_col_indices", lambda kept: kept + 0.5, r"kept columns .* are float64, not the integer indices"),
])
def test_a_damaged_decomposition_file_is_refused_as_it_is_read(tmp_path, dataset, value, message):
    """Kept columns out of range or of the wrong length, NaN in G: read without a word, they failed later
    inside component()."""
    fit = LrmNpeff(n_components=2, n_iters_g_only=3, n_iters_joint=3, progress=False).fit(planted_lrm(20, 30, 2).pefs)
    write_lrm_decomposition_h5(fit, tmp_path / "d.h5")
    _change_dataset(tmp_path / "d.h5", dataset, value)
    with pytest.raises(StoreError, match=message):
        read_lrm_decomposition_h5(tmp_path / "d.h5")


def test_a_file_whose_arrays_have_too_few_dimensions_is_named(tmp_path):
    pefs = planted_lrm(10, 20, 2, seed=0).pefs
    write_lrm_pefs_h5(pefs, tmp_path / "p.h5")
    with h5py.File(tmp_path / "p.h5", "r+") as f:
        offsets = f["data/col_offsets"][()]
        del f["data/col_offsets"]
        f["data/col_offsets"] = offsets[:, 0]
    with pytest.raises(StoreError, match=r"p\.h5 holds arrays of other shapes than the original NPEFF layout's"):
        read_lrm_pefs_h5(tmp_path / "p.h5")


@pytest.mark.parametrize("dataset, change, message", [
    ("col_offsets", lambda offsets: np.concatenate([np.ones_like(offsets[:, :1]), offsets[:, 1:]], axis=1),
     r"p\.h5: its offsets do not fit its values"),
    ("labels", lambda labels: labels[:-1], r"p\.h5 is damaged: its col_offsets hold 10 examples of 2 classes, but"),
    ("pef_frobenius_norms", lambda norms: norms[:-1], r"p\.h5 is damaged: .*'pef_frobenius_norms': 9"),
])
def test_an_lrm_file_whose_arrays_disagree_is_named(tmp_path, dataset, change, message):
    """Offsets not from 0 shifted every entry to another slot, without a word; a table one entry short was
    numpy's own error, naming no file."""
    pefs = planted_lrm(10, 20, 2, seed=0).pefs
    write_lrm_pefs_h5(pefs, tmp_path / "p.h5")
    _change_dataset(tmp_path / "p.h5", dataset, change)
    with pytest.raises(StoreError, match=message):
        read_lrm_pefs_h5(tmp_path / "p.h5")


def _change_dataset(path, dataset: str, change) -> None:
    """Replace the file's dataset data/<dataset> by ``change`` of its values, as a damaged or edited file holds it."""
    with h5py.File(path, "r+") as f:
        changed = change(f[f"data/{dataset}"][()])
        del f[f"data/{dataset}"]
        f[f"data/{dataset}"] = changed


def _pefs_with_slots(A, classes, logits):
    """LrmPefs whose slot s of example i is class classes[i, s] (as compute_pefs orders them: by probability)."""
    n, k = classes.shape
    rows = np.stack([A[i, classes[i]] for i in range(n)]).reshape(n * k, -1)
    import scipy.sparse as sp

    return LrmPefs(X=sp.csr_matrix(rows), classes=classes, frobenius_norms=np.ones(n, dtype=np.float32),
                   labels=np.zeros(n, dtype=np.int64), logits=logits, layout=ParameterLayout.anonymous(A.shape[2]))


def test_a_slot_per_class_is_written_and_read_in_class_order_as_the_original_writes_it(tmp_path):
    """The original's compute_pefs.py sorts the logits only for a top-k: in a file with a slot per class, slot s is
    class s. The reader took the slots by descending logit, so every example not predicting class 0 had its classes
    swapped (its predicted-class gradient 1.6-1.8 off), and PEFs kept by probability were written so."""
    rng = np.random.default_rng(0)
    A = rng.normal(size=(6, 3, 8)).astype(np.float32)  # A[i, c]: class c's row
    logits = rng.normal(size=(6, 3)).astype(np.float32)
    by_probability = np.argsort(-logits, axis=1)
    write_lrm_pefs_h5(_pefs_with_slots(A, by_probability, logits), tmp_path / "p.h5")
    with h5py.File(tmp_path / "p.h5") as f:  # read as the original reads it: slot s of the file is class s
        values, indices, offsets = (f["data"][name][()] for name in ("values", "row_indices", "col_offsets"))
    for i in range(6):
        for c in range(3):
            row = np.zeros(8, dtype=np.float32)
            np.add.at(row, indices[i, offsets[i, c]:offsets[i, c + 1]], values[i, offsets[i, c]:offsets[i, c + 1]])
            np.testing.assert_array_equal(row, A[i, c])
    back = read_lrm_pefs_h5(tmp_path / "p.h5")
    np.testing.assert_array_equal(back.classes, np.tile(np.arange(3), (6, 1)))
    np.testing.assert_array_equal(back.dense(), A)


def test_a_top_k_of_classes_is_kept_by_descending_logit(tmp_path):
    rng = np.random.default_rng(1)
    A = rng.normal(size=(5, 4, 6)).astype(np.float32)
    logits = rng.normal(size=(5, 4)).astype(np.float32)
    top2 = np.argsort(-logits, axis=1)[:, :2]
    write_lrm_pefs_h5(_pefs_with_slots(A, top2, logits), tmp_path / "p.h5")
    back = read_lrm_pefs_h5(tmp_path / "p.h5")
    np.testing.assert_array_equal(back.classes, top2)
    np.testing.assert_array_equal(back.dense(), np.stack([A[i, top2[i]] for i in range(5)]))
    with pytest.raises(ValueError, match=r"2 slots of 4 classes that are not the top 2 by logit in descending order"):
        write_lrm_pefs_h5(_pefs_with_slots(A, top2[:, ::-1].copy(), logits), tmp_path / "q.h5")
    assert not (tmp_path / "q.h5").exists()


def test_more_parameters_than_int32_indices_hold_are_refused_before_writing(tmp_path):
    """Indices past 2**31 - 1 were written wrapped to negative numbers, and reading blamed the file."""
    import scipy.sparse as sp

    X = sp.csr_matrix((np.ones(2, dtype=np.float32), np.array([5, 2_500_000_000]), np.array([0, 1, 2])),
                      shape=(2, 3_000_000_000))
    pefs = LrmPefs(X=X, classes=np.zeros((2, 1), dtype=np.int64), frobenius_norms=np.ones(2, dtype=np.float32),
                   labels=np.zeros(2, dtype=np.int64), logits=np.zeros((2, 1), dtype=np.float32),
                   layout=ParameterLayout.anonymous(3_000_000_000))
    with pytest.raises(ValueError, match=r"3,000,000,000 parameters, but the original layout stores parameter indices as int32"):
        write_lrm_pefs_h5(pefs, tmp_path / "p.h5")
    assert not list(tmp_path.iterdir())


def test_a_decomposition_keeps_its_fit_settings_in_the_original_layout(tmp_path):
    """Fitted with normalize=False, it was read back normalising, and transform() of the same PEFs moved by 92%."""
    pefs = planted_lrm(40, 30, 3, density=0.5, seed=2).pefs
    fit = LrmNpeff(3, n_iters_g_only=20, n_iters_joint=20, normalize=False, min_nonzero_per_col=np.int64(2),
                   n_iters_transform=50, seed=np.int64(3), progress=False).fit(pefs)  # numpy scalars are settings too
    write_lrm_decomposition_h5(fit, tmp_path / "d.h5")
    back = read_lrm_decomposition_h5(tmp_path / "d.h5")
    assert (back.normalize, back.min_nonzero_per_col, back.n_iters_transform) == (False, 2, 50)
    np.testing.assert_allclose(back.transform(pefs), fit.transform(pefs), rtol=1e-5, atol=1e-6)
    with h5py.File(tmp_path / "d.h5", "a") as f:  # the original's files have no such attribute: its defaults
        del f["data"].attrs["workbench_settings"]
    assert read_lrm_decomposition_h5(tmp_path / "d.h5").normalize is True


def test_a_d_file_with_nan_or_non_positive_norms_or_nan_logits_is_refused(tmp_path):
    pefs = planted_d(6, 10, 2, density=0.5).pefs
    for dataset, value in (("dense_fisher_norms", np.nan), ("dense_fisher_norms", -1.0), ("predicted_logits", np.nan)):
        write_d_pefs_h5(pefs, tmp_path / "d.h5")
        with h5py.File(tmp_path / "d.h5", "a") as f:
            array = f["data"][dataset][()] if dataset == "dense_fisher_norms" else np.zeros((6, 2), dtype=np.float32)
            array[0] = value
            del f["data"][dataset]
            f["data"][dataset] = array
        with pytest.raises(StoreError, match=r"d\.h5 holds NaN, infinite or non-positive norms"):
            read_d_pefs_h5(tmp_path / "d.h5")


def test_fractional_indices_or_offsets_are_refused_not_cut(tmp_path):
    for dataset in ("row_indices", "col_offsets"):
        _reference_lrm_file(tmp_path / "ref.h5")
        with h5py.File(tmp_path / "ref.h5", "a") as f:
            array = f["data"][dataset][()].astype(np.float64) + (0.5 if dataset == "row_indices" else 0.0)
            del f["data"][dataset]
            f["data"][dataset] = array
        with pytest.raises(StoreError, match=r"ref\.h5: its (parameter indices|col_offsets) are float64, not integer"):
            read_lrm_pefs_h5(tmp_path / "ref.h5")


def test_original_files_of_coefficients_only_or_of_d_npeff_are_named(tmp_path):
    with h5py.File(tmp_path / "w.h5", "w") as f:
        f["data/W"] = np.ones((3, 2), dtype=np.float32)
        f["data/new_to_old_col_indices"] = np.arange(4, dtype=np.int32)
    with pytest.raises(StoreError, match=r"holds coefficients only \(data/W, written with --write_G_to_output=false\)"):
        read_lrm_decomposition_h5(tmp_path / "w.h5")
    with h5py.File(tmp_path / "h.h5", "w") as f:
        f["data/W"] = np.ones((3, 2), dtype=np.float32)
        f["data/H"] = np.ones((2, 4), dtype=np.float32)
    with pytest.raises(StoreError, match=r"holds a D-NPEFF decomposition \(data/H\) of the original code"):
        read_lrm_decomposition_h5(tmp_path / "h.h5")


FULL_DISK_WRITES = """
import resource, signal, sys
import numpy as np
from workbench.core.pefs import DPefs, LrmPefs
from workbench.npeff import LrmNpeff
from workbench.npeff.interop import write_d_pefs_h5, write_lrm_decomposition_h5, write_lrm_pefs_h5
from workbench.store import StoreError

rng = np.random.default_rng(0)
A = rng.random((40, 2, 1000)).astype(np.float32)
A[rng.random(A.shape) > 0.13] = 0  # sparse as PEFs are: HDF5 buffers their small datasets and writes them later
pefs = LrmPefs.from_dense(A)
fit = LrmNpeff(2, n_iters_g_only=2, n_iters_joint=2, progress=False).fit(pefs)
# a file may not grow past 10 kB: writes beyond fail (EFBIG), as they fail on a full disk (ENOSPC)
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (10_000, 10_000))
for write, what in ((write_lrm_pefs_h5, pefs), (write_d_pefs_h5, DPefs.from_dense(A.sum(axis=1))),
                    (write_lrm_decomposition_h5, fit)):
    try:
        write(what, sys.argv[1])
    except StoreError as error:
        print(type(error).__name__, str(error).split(":")[0])
"""


def test_a_full_disk_while_an_hdf5_file_is_written_is_an_error_naming_it_not_a_crash(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    target = tmp_path / "out.h5"
    done = subprocess.run([sys.executable, "-c", FULL_DISK_WRITES, str(target)], capture_output=True, text=True,
                          cwd=Path(__file__).parents[2], timeout=120)
    # HDF5's own writes met the full disk in a dataset's close: a flood of "Exception ignored" tracebacks, then a
    # segmentation fault of the process (a notebook's kernel died)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines() == [f"StoreWriteError could not write {target}"] * 3, done.stdout
    assert "Exception ignored" not in done.stderr
    assert list(tmp_path.iterdir()) == []  # nothing half-written, no staging folder


def test_reads_the_reference_d_layout_and_writes_its_names_dtypes_and_shapes(tmp_path):
    """A D-PEF file as the original's StreamingDPefSaver writes it: n_values entries per example from
    tf.math.top_k (largest value first, not by index), zeros where an example has fewer non-zero entries."""
    with h5py.File(tmp_path / "ref.h5", "w") as f:
        data = f.create_group("data")
        fisher = data.create_group("fisher")
        fisher.attrs["dense_fisher_size"] = 6
        fisher["values"] = np.array([[4.0, 2.5, 1.0], [3.0, 0.0, 0.0]], dtype=np.float32)
        fisher["indices"] = np.array([[5, 0, 3], [2, 1, 4]], dtype=np.int32)
        data["labels"] = np.array([1, 0], dtype=np.int32)
        data["predicted_logits"] = logits = np.array([[0.2, 1.5, -1.0], [2.0, 0.0, 0.5]], dtype=np.float32)
        data["dense_fisher_norms"] = np.array([5.0, 3.5], dtype=np.float32)
    pefs = read_d_pefs_h5(tmp_path / "ref.h5")
    expected = np.zeros((2, 6), dtype=np.float32)
    expected[0, [5, 0, 3]] = [4.0, 2.5, 1.0]
    expected[1, 2] = 3.0
    np.testing.assert_array_equal(pefs.dense(), expected)
    np.testing.assert_array_equal(pefs.labels, [1, 0])
    np.testing.assert_array_equal(pefs.frobenius_norms, [5.0, 3.5])
    np.testing.assert_array_equal(pefs.logits, logits)
    write_d_pefs_h5(pefs, tmp_path / "again.h5")
    with h5py.File(tmp_path / "ref.h5") as a, h5py.File(tmp_path / "again.h5") as b:
        assert b["data/fisher"].attrs["dense_fisher_size"] == 6
        for name in ("fisher/values", "fisher/indices", "labels", "predicted_logits", "dense_fisher_norms"):
            ours, theirs = b["data"][name], a["data"][name]
            assert (ours.dtype, ours.shape) == (theirs.dtype, theirs.shape), name
    assert read_d_pefs_h5(tmp_path / "again.h5").dense().tolist() == expected.tolist()


def test_a_decomposition_is_written_in_the_original_dtypes_and_shapes(tmp_path):
    """What the original's LrmNpeffDecomposition.load reads: W f32 (n, r), G f32 (r, kept), new_to_old_col_indices
    i32 (kept), n_parameters and n_classes on data, losses G_only and joint with log_loss_frequency."""
    problem = planted_lrm(30, 25, 3, density=0.1, seed=2)
    est = LrmNpeff(3, n_iters_g_only=4, n_iters_joint=6, log_every=2, min_nonzero_per_col=2, progress=False)
    est.fit(problem.pefs)
    write_lrm_decomposition_h5(est, tmp_path / "dec.h5")
    n_kept = est.kept_columns_.size
    with h5py.File(tmp_path / "dec.h5") as f:
        assert (f["data/W"].dtype, f["data/W"].shape) == (np.float32, (30, 3))
        assert (f["data/G"].dtype, f["data/G"].shape) == (np.float32, (3, n_kept))
        kept = f["data/new_to_old_col_indices"]
        assert (kept.dtype, kept.shape) == (np.int32, (n_kept,)) and n_kept < 25
        np.testing.assert_array_equal(kept[()], est.kept_columns_)
        assert (f["data"].attrs["n_parameters"], f["data"].attrs["n_classes"]) == (25, problem.pefs.n_slots)
        assert f["losses"].attrs["log_loss_frequency"] == 2
        assert f["losses/G_only"].shape == (len(est.loss_history_["g_only"]),)
        assert f["losses/joint"].shape == (len(est.loss_history_["joint"]),)
