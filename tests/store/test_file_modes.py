"""Files written atomically get the mode the process umask gives a plain open() (0644 under the
usual 022), not mkstemp's 0600: a store shared on a cluster file system stays readable to the group."""

import os
import stat
from pathlib import Path

import numpy as np
import pytest

from workbench.app.run_folder import RunRecorder
from workbench.npeff import DNpeff
from workbench.npeff.planted import planted_d
from workbench.store import save_pefs, write_arrays, write_json


@pytest.fixture
def umask(request):
    before = os.umask(request.param)
    yield request.param
    os.umask(before)


@pytest.mark.parametrize("umask", [0o022, 0o007, 0o077], indirect=True)
def test_every_file_written_has_the_umask_mode(tmp_path, umask):
    write_json(tmp_path / "a.json", {"a": 1})
    write_arrays(tmp_path / "a.safetensors", {"x": np.zeros(3, np.float32)}, {"format": "test"})
    pefs = planted_d(20, 15, 2, seed=0).pefs
    save_pefs(pefs, tmp_path / "store", examples_per_chunk=8)
    DNpeff(2, n_iters=4, progress=False).fit(pefs, checkpoint=tmp_path / "fit.ckpt", checkpoint_every=2) \
        .save(tmp_path / "d.safetensors")
    RunRecorder(tmp_path / "run", {"n": 1}).finish()

    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(files) == 10  # the two above, manifest + 3 chunks + lock, checkpoint, decomposition, run.json
    modes = {p.relative_to(tmp_path).as_posix(): oct(stat.S_IMODE(p.stat().st_mode)) for p in files}
    assert set(modes.values()) == {oct(0o666 & ~umask)}, modes


@pytest.mark.parametrize("umask", [0o022, 0o007], indirect=True)
def test_a_run_folders_model_is_readable_as_the_umask_gives(tmp_path, umask):
    # save_pretrained's weights are 0600 (safetensors' temporary file), and so were the run's copy of them: a run
    # shared with another user opened, and its model failed as "No such file or directory"
    from tests.conftest import tiny_bert
    from workbench.app.run_folder import copy_model
    from workbench.models.embedded.model import build_tokenizer

    tiny_bert().save_pretrained(tmp_path / "saved")
    build_tokenizer(tmp_path / "saved")
    copy_model(tmp_path / "saved", tmp_path / "run")

    weights = tmp_path / "run" / "model" / "model.safetensors"
    assert oct(stat.S_IMODE(weights.stat().st_mode)) == oct(0o666 & ~umask)


def test_a_model_this_user_may_not_read_is_named_as_such_not_as_damaged(tmp_path, monkeypatch):
    from tests.conftest import tiny_bert
    from transformers import AutoModelForSequenceClassification

    from workbench.models import loading
    from workbench.models.embedded.model import build_tokenizer

    tiny_bert().save_pretrained(tmp_path / "model")
    build_tokenizer(tmp_path / "model")
    weights = tmp_path / "model" / "model.safetensors"
    weights.write_bytes(b"")  # root reads any file: what safetensors says of one it may not read is played here
    monkeypatch.setattr(loading.os, "access", lambda path, mode: Path(path) != weights)
    with pytest.raises(PermissionError, match=r"cannot be read by this user: model.safetensors .*chmod -R a\+rX"):
        loading.load_saved(AutoModelForSequenceClassification, tmp_path / "model")
