"""Fit checkpoints: a fit interrupted after a checkpoint resumes and ends where an uninterrupted
fit ends (to float rounding; bit for bit where the BLAS is deterministic); a checkpoint of other
data or settings is refused."""

import numpy as np
import pytest

from workbench.store import checkpoint as ckpt
from workbench.npeff import DNpeff, LrmNpeff
from workbench.npeff.planted import planted_d, planted_lrm
from workbench.store import StoreError


def _lrm(**kw):
    return LrmNpeff(4, n_iters_g_only=10, n_iters_joint=25, log_every=5, progress=False, **kw)


def _d(**kw):
    return DNpeff(4, n_iters=30, log_every=5, progress=False, **kw)


def _interrupt_before_saving(monkeypatch, at_step):
    """The fit dies just before writing the checkpoint of step ``at_step``: the steps since the
    previous checkpoint are lost and must be recomputed on resume."""
    real = ckpt.FitCheckpoint.save
    saved_steps = []

    def save(self, step, *args, **kwargs):
        if step == at_step:
            raise KeyboardInterrupt
        saved_steps.append(step)
        return real(self, step, *args, **kwargs)

    monkeypatch.setattr(ckpt.FitCheckpoint, "save", save)
    return saved_steps


def _assert_same_fit(a, b, components):
    """Equal up to float32 rounding. Measured: bit-identical on this 2-core machine and on a 16-core
    one in a fresh process; in a long-lived process on 16 cores (BLAS rounding that depends on memory
    alignment) and with CUDA's sparse products, W and G differ by up to ~5e-6 relative and the loss by
    ~1e-6 of its first value, as two uninterrupted fits there do."""
    np.testing.assert_allclose(a.W_, b.W_, rtol=1e-4, atol=1e-5 * np.abs(b.W_).max())
    np.testing.assert_allclose(getattr(a, components), getattr(b, components), rtol=1e-4,
                               atol=1e-5 * np.abs(getattr(b, components)).max())
    assert a.loss_history_.keys() == b.loss_history_.keys()
    # the loss is a small difference of terms of the order of its first value: rounding is relative to that
    scale = max(float(h[:, 1].max()) for h in b.loss_history_.values() if len(h))
    for phase in a.loss_history_:
        np.testing.assert_array_equal(a.loss_history_[phase][:, 0], b.loss_history_[phase][:, 0])
        np.testing.assert_allclose(a.loss_history_[phase][:, 1], b.loss_history_[phase][:, 1], rtol=1e-5, atol=1e-5 * scale)


def _lrm_dual(**kw):
    return _lrm(solver="dual", **kw)


@pytest.mark.parametrize("make, problem, components", [
    (_lrm, lambda: planted_lrm(80, 60, 4, seed=1).pefs, "G_"),
    (_lrm_dual, lambda: planted_lrm(80, 60, 4, seed=1).pefs, "G_"),
    (_d, lambda: planted_d(80, 60, 4, seed=1).pefs, "H_"),
])
def test_fit_checkpoint_resumed_fit_equals_uninterrupted(tmp_path, monkeypatch, make, problem, components):
    pefs = problem()
    reference = make().fit(pefs)
    path = tmp_path / "fit.ckpt.safetensors"

    saved_steps = _interrupt_before_saving(monkeypatch, at_step=21)
    with pytest.raises(KeyboardInterrupt):
        make().fit(pefs, checkpoint=path, checkpoint_every=7)
    assert saved_steps == [7, 14] and path.exists()
    monkeypatch.undo()

    resumed = make().fit(pefs, checkpoint=path, checkpoint_every=7)
    _assert_same_fit(resumed, reference, components)


def test_fit_checkpoint_resume_skips_the_steps_done(tmp_path, monkeypatch):
    pefs = planted_lrm(60, 40, 3, seed=2).pefs
    path = tmp_path / "fit.safetensors"
    _interrupt_before_saving(monkeypatch, at_step=30)
    with pytest.raises(KeyboardInterrupt):
        _lrm().fit(pefs, checkpoint=path, checkpoint_every=10)
    monkeypatch.undo()

    steps = []
    real = LrmNpeff._g_step
    monkeypatch.setattr(LrmNpeff, "_g_step", lambda self, *a: steps.append(1) or real(self, *a))
    _lrm().fit(pefs, checkpoint=path, checkpoint_every=10)
    assert len(steps) == 35 - 20, "resumed after the checkpoint of step 20"
    steps.clear()
    again = _lrm().fit(pefs, checkpoint=path, checkpoint_every=10)
    assert steps == [], "a finished checkpoint returns the fit without iterating"
    _assert_same_fit(again, _lrm().fit(pefs), "G_")


def test_fit_checkpoint_of_other_data_or_settings_is_refused(tmp_path):
    pefs = planted_lrm(60, 40, 3, seed=3).pefs
    path = tmp_path / "fit.safetensors"
    _lrm().fit(pefs, checkpoint=path, checkpoint_every=10)
    with pytest.raises(StoreError, match="other data"):
        _lrm().fit(planted_lrm(60, 40, 3, seed=4).pefs, checkpoint=path)
    with pytest.raises(StoreError, match=r"other settings \(seed: 0 → 1"):
        _lrm(seed=1).fit(pefs, checkpoint=path)
    with pytest.raises(StoreError, match="LrmNpeff fit, not DNpeff"):
        _d().fit(planted_d(60, 40, 3).pefs, checkpoint=path)
    # settings that do not change the arithmetic may differ
    _lrm(n_iters_transform=7).fit(pefs, checkpoint=path)


def test_a_file_that_is_no_fit_checkpoint_is_refused_not_moved_aside(tmp_path):
    """The command line's fit (through fit_distributed) took a user's notes.txt given as --checkpoint for "no
    step to resume", moved it to notes.txt.previous at the first save and overwrote that at the next;
    a decomposition given there went the same way."""
    from workbench import write_pefs
    from workbench.distributed import fit_distributed
    from tests.conftest import tiny_bert, tiny_bert_inputs

    store = write_pefs(tmp_path / "pefs", tiny_bert(3), tiny_bert_inputs(12), n_values=64, progress=False)
    notes = tmp_path / "notes.txt"
    notes.write_text("my precious notes")
    decomposition = tmp_path / "d.safetensors"
    _lrm().fit(store.load()).save(decomposition)
    kept = decomposition.read_bytes()
    for path in (notes, decomposition):
        with pytest.raises(StoreError, match=r"exists and is not a fit checkpoint.*pass another checkpoint path"):
            fit_distributed(_lrm(), store, checkpoint=path, checkpoint_every=5)
        with pytest.raises(StoreError, match=r"exists and is not a fit checkpoint"):
            _lrm().fit(store.load(), checkpoint=path, checkpoint_every=5)
    assert notes.read_text() == "my precious notes" and decomposition.read_bytes() == kept
    assert not list(tmp_path.glob("*.previous"))


def test_another_fit_s_save_beside_the_checkpoint_is_never_taken_for_this_one_s(tmp_path, monkeypatch):
    """An earlier fit's x.ckpt.previous (a later step) was moved over this fit's x.ckpt on resume, and the fit
    then refused, naming the user's file: the fit's own progress was lost."""
    import shutil

    from workbench import write_pefs
    from workbench.distributed import fit_distributed
    from tests.conftest import tiny_bert, tiny_bert_inputs

    store = write_pefs(tmp_path / "pefs", tiny_bert(3), tiny_bert_inputs(12), n_values=64, progress=False)
    _lrm(seed=1).fit(store.load(), checkpoint=tmp_path / "a.ckpt", checkpoint_every=5)  # another fit, to its end
    whole = fit_distributed(_lrm(seed=2), store)
    saved = _interrupt_before_saving(monkeypatch, at_step=15)
    with pytest.raises(KeyboardInterrupt):
        fit_distributed(_lrm(seed=2), store, checkpoint=tmp_path / "x.ckpt", checkpoint_every=5)
    monkeypatch.undo()
    assert saved == [5, 10]
    shutil.copy(tmp_path / "a.ckpt", tmp_path / "x.ckpt.previous")  # the earlier fit's, of a later step
    mine = (tmp_path / "x.ckpt").read_bytes()
    resumed = fit_distributed(_lrm(seed=2), store, checkpoint=tmp_path / "x.ckpt", checkpoint_every=5)
    _assert_same_fit(resumed, whole, "G_")
    assert (tmp_path / "x.ckpt").read_bytes() != mine  # saved on from its own step 10, not replaced by the other fit's


def test_fit_checkpoint_every_must_be_positive(tmp_path):
    with pytest.raises(ValueError, match="checkpoint_every must be a positive integer"):
        _lrm().fit(planted_lrm(20, 10, 2).pefs, checkpoint=tmp_path / "c", checkpoint_every=0)
    assert not (tmp_path / "c").exists()


def test_fit_checkpoint_records_the_solver_it_ran_and_old_ones_the_primal(tmp_path):
    """A checkpoint records the solver the fit ran, so "auto" resumes what it chose; one
    written before the dual solver existed (no such setting) was made by the primal."""
    import json

    from safetensors import safe_open

    from workbench.store import write_arrays

    pefs = planted_lrm(40, 2000, 3, seed=5).pefs  # 80 rows, many parameters: "auto" takes the dual
    path = tmp_path / "fit.safetensors"
    _lrm(solver="dual").fit(pefs, checkpoint=path, checkpoint_every=10)
    assert _lrm(solver="auto").fit(pefs, checkpoint=path).solver_ == "dual"  # auto takes the dual here
    with pytest.raises(StoreError, match="solver: 'dual' → 'primal'"):
        _lrm(solver="primal").fit(pefs, checkpoint=path)

    path = tmp_path / "old.safetensors"
    _lrm(solver="primal").fit(pefs, checkpoint=path, checkpoint_every=10)
    with safe_open(str(path), framework="np") as f:
        header = json.loads(f.metadata()["header"])
        arrays = {k: f.get_tensor(k) for k in f.keys()}
    del header["settings"]["solver"]
    write_arrays(path, arrays, header)
    resumed = _lrm(solver="primal").fit(pefs, checkpoint=path)
    assert resumed.solver_ == "primal"
    with pytest.raises(StoreError, match="solver: 'primal' → 'dual'"):
        _lrm(solver="dual").fit(pefs, checkpoint=path)
