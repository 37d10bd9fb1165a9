"""run_model: a model and texts of one's own into a run folder the workbench opens."""

import re

import pandas as pd
import pytest
import torch

from workbench import RunExplorer, run_model
from workbench.models.embedded import default_model, make_examples


@pytest.fixture(scope="module")
def own_run(tmp_path_factory):
    examples = make_examples(80, seed=7)
    attributes = pd.DataFrame({"strategy": examples["strategies"].map(lambda s: s[0])})
    return run_model(tmp_path_factory.mktemp("runs") / "own", default_model(), list(examples["text"]),
                     examples["label"].to_numpy(), attributes=attributes, n_components=4, n_iters_g_only=10,
                     n_iters_joint=20, n_top=10, max_length=48, exclude="classifier|pooler", progress=False)


def test_the_run_opens_with_its_attributes_and_the_model_s_own_length(own_run):
    explorer = RunExplorer.open(own_run.path)
    table = explorer.components().rows
    assert len(explorer.table) == 4 and {"strategy", "strategy_purity", "label_purity"} <= set(explorer.table.columns)
    assert len(table) == 4 and explorer.max_length == 48
    page = explorer.top_examples(int(table.index[0]), page_size=3)
    assert page.examples and all(e.tokens for e in page.examples)
    assert own_run.record["status"] == "complete" and own_run.params["exclude"] == "classifier|pooler"
    # each attribute's mean purity is recorded beside chance's, as the embedded task's strategies are: alone it
    # said nothing of whether the components beat random sets of texts
    figures = own_run.record["figures"]
    assert figures["mean_strategy_purity"] == pytest.approx(explorer.table["strategy_purity"].mean())
    assert 0 < figures["chance_strategy_purity"] < 1


def test_a_run_folder_and_model_folder_given_the_wrong_way_round_are_said_to_be_swapped(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    with pytest.raises(ValueError, match=r"model_path .*new-run is not a saved model folder \(it does not exist\): the "
                                         r"run folder .*model is one: were the two swapped\? Give the model's folder"):
        run_model(model, tmp_path / "new-run", ["a text"], labels=[0], progress=False)
    with pytest.raises(ValueError, match=r"(?s)is not a saved model folder \(no config\.json there\)(?!.*swapped)"):
        run_model(tmp_path / "new-run", tmp_path, ["a text"], labels=[0], progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_bad_arguments_are_named(tmp_path):
    with pytest.raises(ValueError, match="not a saved model folder"):
        run_model(tmp_path / "a", tmp_path, ["a text"])
    with pytest.raises(TypeError, match="texts must be strings; example 1"):
        run_model(tmp_path / "a", default_model(), ["a text", 3])
    with pytest.raises(ValueError, match="attributes has 1 rows for 2 texts"):
        run_model(tmp_path / "a", default_model(), ["a", "b"], attributes=pd.DataFrame({"x": [1]}))
    assert not (tmp_path / "a").exists()


def test_labels_read_the_texts_as_the_pefs_did(own_run, monkeypatch):
    """Component labels score the tokens the run's PEFs saw: texts cut at the run's max_length."""
    from workbench.analysis import labels

    seen = {}
    real = labels.top_tokens

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(labels, "top_tokens", spy)
    RunExplorer.open(own_run.path).label_components()
    assert seen["max_length"] == 48


def test_texts_that_give_no_tokens_are_refused_before_anything_is_written(tmp_path):
    from transformers import GPT2Config, GPT2ForSequenceClassification

    from tests.models.lm.conftest import prompt_tokenizer

    folder = tmp_path / "gpt2"
    GPT2ForSequenceClassification(GPT2Config(vocab_size=60, n_positions=16, n_embd=8, n_layer=1, n_head=2,
                                             pad_token_id=0)).save_pretrained(folder)
    prompt_tokenizer().save_pretrained(folder)  # adds no special tokens, as GPT-2's
    with pytest.raises(ValueError, match=r"1 texts give no tokens at all \(first: \[1\]"):
        run_model(tmp_path / "run", folder, ["good film", "", "bad film"], n_components=2)
    assert not (tmp_path / "run").exists()


def test_texts_with_words_and_no_tokens_blame_the_tokenizer_not_the_texts():
    """transformers loaded a Qwen2 folder's tokenizer as another class, which gave no tokens for
    'bright dull short good': the message said the texts were empty."""
    from workbench.app.model_run import _check_tokenizable

    def reads_nothing(texts):
        return {"input_ids": [[] for _ in texts]}

    with pytest.raises(ValueError, match=r"e\.g\. 'bright dull', which is not empty: the tokenizer loaded from the "
                                         r"model folder \(function\) does not read them"):
        _check_tokenizable(reads_nothing, ["bright dull", "good"])


def test_a_classifier_saved_in_half_precision_runs_in_float32(tmp_path):
    """A bf16 fine-tune, as users often save them: run_model loads the folder itself, so it casts."""
    import torch

    from workbench.models.embedded import load_default_model

    model, tokenizer = load_default_model(default_model())
    model.to(torch.bfloat16).save_pretrained(tmp_path / "bf16")
    tokenizer.save_pretrained(tmp_path / "bf16")
    loaded, _ = load_default_model(tmp_path / "bf16")
    assert {p.dtype for p in loaded.parameters()} == {torch.float32}
    examples = make_examples(12, seed=3)
    run = run_model(tmp_path / "run", tmp_path / "bf16", list(examples["text"]), examples["label"].to_numpy(),
                    n_components=2, n_iters_g_only=2, n_iters_joint=2, n_top=4, progress=False)
    assert run.record["status"] == "complete"


def test_float32_weights_under_a_config_naming_a_half_dtype_load_bit_for_bit(tmp_path):
    """transformers loads a folder in the dtype its config.json names: float32 weights under "dtype": "bfloat16"
    were rounded to bfloat16 (1e-4 off) and cast back, so the run's PEFs and logits were of another model."""
    import json

    import torch

    from workbench.models.embedded import load_default_model
    from workbench.models.loading import load_classifier

    model, tokenizer = load_default_model(default_model())
    model.save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    config = json.loads((tmp_path / "model" / "config.json").read_text())
    (tmp_path / "model" / "config.json").write_text(json.dumps({**config, "dtype": "bfloat16",
                                                                 "torch_dtype": "bfloat16"}))
    for loaded in (load_default_model(tmp_path / "model")[0], load_classifier(tmp_path / "model")[0]):
        for (name, p), q in zip(model.named_parameters(), loaded.parameters()):
            assert q.dtype == torch.float32 and torch.equal(p, q), name


@pytest.fixture(scope="module")
def small_gpt2(tmp_path_factory):
    """An untrained tiny causal LM and a sequence classifier of the same shape, each with the prompt tokenizer."""
    from transformers import GPT2Config, GPT2ForSequenceClassification, GPT2ForTokenClassification, GPT2LMHeadModel

    from tests.models.lm.conftest import prompt_tokenizer

    root = tmp_path_factory.mktemp("models")
    config = GPT2Config(vocab_size=len(prompt_tokenizer()), n_positions=32, n_embd=8, n_layer=1, n_head=2, pad_token_id=0)
    for name, cls in (("lm", GPT2LMHeadModel), ("classifier", GPT2ForSequenceClassification),
                      ("token", GPT2ForTokenClassification)):
        cls(config).save_pretrained(root / name)
        prompt_tokenizer().save_pretrained(root / name)
    GPT2ForSequenceClassification(GPT2Config(**config.to_diff_dict(), num_labels=1, problem_type="regression")
                                  ).save_pretrained(root / "regression")
    prompt_tokenizer().save_pretrained(root / "regression")
    for name, heads in (("multi_label", dict(num_labels=3, problem_type="multi_label_classification")),
                        ("regression3", dict(num_labels=3, problem_type="regression"))):
        GPT2ForSequenceClassification(GPT2Config(**config.to_diff_dict(), **heads)).save_pretrained(root / name)
        prompt_tokenizer().save_pretrained(root / name)
    GPT2ForSequenceClassification(config).save_pretrained(root / "nopad")
    unpadded = prompt_tokenizer()
    unpadded.pad_token = None  # and no end-of-text token to pad with
    unpadded.save_pretrained(root / "nopad")
    return root


TEXTS = ["good film", "bad film", "good plot", "bad plot"]


@pytest.mark.parametrize("call, error, message", [
    # a model whose saved weights do not cover what it is loaded as: the rest would be random
    (dict(model="lm"), ValueError, r"holds GPT2LMHeadModel, whose saved weights lack 1 tensors of a "
                                   r"GPT2ForSequenceClassification \(e\.g\. score\.weight\).*template= and label_words="),
    (dict(model="classifier", template="{text} sentiment :", label_words=["bad", "good"]), ValueError,
     r"holds GPT2ForSequenceClassification, whose classification head a GPT2LMHeadModel would drop; it is a sequence "
     r"classifier: leave out template="),
    # a token classifier's head loads as a sequence classifier's, without a missing weight
    (dict(model="token"), ValueError, r"holds GPT2ForTokenClassification, a token classifier.*Save a "
                                      r"\.\.\.ForSequenceClassification"),
    (dict(model="lm", template="{text} sentiment :", label_words=["bad", "zzz"]), ValueError,
     r"label word 'zzz' is not in the tokenizer's vocabulary"),
    (dict(model="lm", template="{text} {x} :", label_words=["bad", "good"]), ValueError, r"slots other than '\{text\}'"),
    (dict(model="lm", template="{text} {", label_words=["bad", "good"]), ValueError, r"is not a format string"),
    # the messages of core.validation, as write_pefs gives them, only earlier
    (dict(labels=[0, 1]), ValueError, r"labels has shape \(2,\); expected \(4,\), one class index per example"),
    (dict(labels=[0, 1, 5, 1]), ValueError, r"label 5 of example 2 is out of range for a model with 2 classes"),
    (dict(labels=["good", "bad", "good", "bad"]), TypeError, r"labels must be integer class indices"),
    (dict(kind="lmr"), ValueError, r"kind must be one of"),
    (dict(include="no_such_layer"), ValueError, r"matches none of the model's"),
    (dict(attributes=["a", "b", "a", "b"]), TypeError, r"attributes must be a pandas DataFrame"),
    # attributes the run could not keep: a column it writes itself, cells no table holds
    (dict(attributes=pd.DataFrame({"mass": [1, 2, 3, 4]})), ValueError, r"column 'mass' would stand for a column written from the run itself"),
    (dict(attributes=pd.DataFrame({"text": list("abab")})), ValueError, r"column 'text' would stand for"),
    (dict(attributes=pd.DataFrame({"name": list("abab")})), ValueError, r"column 'name' would stand for"),
    (dict(attributes=pd.DataFrame({"topic": [{"a": 1}, 2, 3, 4]})), TypeError, r"column 'topic' holds a dict"),
    (dict(attributes=pd.DataFrame({"topic": [1, "x", 2, 3]})), TypeError, r"column 'topic' mixes kinds of values"),
    (dict(progress="no"), TypeError, r"progress must be True or False"),
    # it failed in the run's examples stage, with transformers' advice to pad with an end-of-text token it lacks
    (dict(model="nopad"), ValueError, r"has no padding token and no end-of-text token to pad with.*add_special_tokens"),
    (dict(model="regression", labels=None), ValueError, r"with 1 output \(problem_type 'regression'\).*regression head"),
    # of several outputs they ran, warned of from inside the PEF stage, into a folder of readings of a softmax
    (dict(model="multi_label", labels=None), ValueError, r"holds a multi-label classifier .*: pass a sequence classifier"),
    (dict(model="regression3", labels=None), ValueError, r"holds a regression model .*: pass a sequence classifier"),
    (dict(n_components=0), ValueError, r"n_components must be an integer of at least 1"),
    # settings the fit would refuse, after the PEFs: refused now
    (dict(n_iters_g_only=0, n_iters_joint=0), ValueError, r"needs at least one iteration"),
    (dict(include=lambda name: "h" in name), ValueError, r"cannot record a function as its parameter filter"),
    (dict(n_components=5), ValueError, r"n_components=5 is more than the 4 texts"),
    (dict(n_top=0), ValueError, r"n_top must be an integer of at least 1"),
    (dict(max_length=0), ValueError, r"max_length must be an integer of at least 2"),
    (dict(max_length=100), ValueError, r"max_length=100 is more than the model's 32 positions"),
])
def test_every_bad_argument_and_model_is_refused_before_the_run_folder_is_touched(small_gpt2, tmp_path, call, error,
                                                                                   message):
    call = dict(call)
    folder = small_gpt2 / call.pop("model", "classifier")
    with pytest.raises(error, match=message):
        run_model(tmp_path / "run", folder, TEXTS, call.pop("labels", [0, 1, 0, 1]), **{"n_components": 2, **call})
    assert not (tmp_path / "run").exists()


def test_labels_given_as_the_model_s_class_names_are_refused_naming_its_label2id(small_gpt2, tmp_path):
    """The refusal of text labels advised pandas.factorize, which numbers names in the order they first appear: with
    the first text's label the model's class 1, every label was read as the other class."""
    from transformers import AutoConfig, GPT2ForSequenceClassification

    from tests.models.lm.conftest import prompt_tokenizer

    config = AutoConfig.from_pretrained(small_gpt2 / "classifier", id2label={0: "neg", 1: "pos"},
                                        label2id={"neg": 0, "pos": 1})
    GPT2ForSequenceClassification(config).save_pretrained(tmp_path / "named")
    prompt_tokenizer().save_pretrained(tmp_path / "named")
    with pytest.raises(TypeError, match=r"got names such as 'pos'.*\{'neg': 0, 'pos': 1\}.*label2id\[name\].*not "
                                        r"pandas.factorize.*\(1 names are not the model's, e.g. 'neutral'\)"):
        run_model(tmp_path / "run", tmp_path / "named", TEXTS, ["pos", "neg", "neutral", "pos"], n_components=2)
    assert not (tmp_path / "run").exists()


def test_a_compiled_pattern_and_a_torch_device_are_recorded_as_text(small_gpt2, tmp_path):
    """Accepted by write_pefs, they failed as 'cannot write Pattern as JSON' once the run folder existed."""
    run = run_model(tmp_path / "run", small_gpt2 / "classifier", TEXTS, [0, 1, 0, 1], n_components=2, n_values=50,
                    n_iters_g_only=2, n_iters_joint=2, include=re.compile(r"H\.0\.", re.I), device=torch.device("cpu"),
                    progress=False)
    assert run.record["params"]["include"] == r"(?i)H\.0\." and run.record["params"]["device"] == "cpu"


def test_pandas_texts_and_labels_of_different_indexes_are_refused(small_gpt2, tmp_path):
    """Read by position, a filtered Series of texts beside unfiltered labels paired each text with
    another example's label."""
    frame = pd.DataFrame({"text": TEXTS * 2, "label": [0, 1] * 4})
    kept = frame[frame.index % 2 == 0]
    with pytest.raises(ValueError, match=r"texts and labels are pandas objects with different indexes.*labels\.loc"):
        run_model(tmp_path / "run", small_gpt2 / "classifier", kept["text"], frame["label"].iloc[:4], n_components=2)
    assert not (tmp_path / "run").exists()


def test_a_run_folder_inside_the_model_folder_is_refused(small_gpt2, tmp_path):
    """The run copies the model folder into itself: inside it, the copy would copy itself without end."""
    import shutil

    folder = shutil.copytree(small_gpt2 / "classifier", tmp_path / "model")
    with pytest.raises(ValueError, match="is inside the model_path folder"):
        run_model(folder / "run", folder, TEXTS, [0, 1, 0, 1], n_components=2)
    assert not (folder / "run").exists()


def test_a_model_folder_without_its_tokenizer_is_refused(small_gpt2, tmp_path):
    import shutil

    folder = shutil.copytree(small_gpt2 / "classifier", tmp_path / "no-tokenizer",
                             ignore=lambda _, names: [n for n in names if "token" in n])
    with pytest.raises(FileNotFoundError, match=r"holds no tokenizer .*tokenizer\.save_pretrained\(folder\)"):
        run_model(tmp_path / "run", folder, TEXTS, n_components=2)
    assert not (tmp_path / "run").exists()


def test_texts_are_cut_at_the_model_s_positions_unless_told(small_gpt2, tmp_path):
    run = run_model(tmp_path / "run", small_gpt2 / "classifier", TEXTS, [0, 1, -1, -1], n_components=2,
                    n_iters_g_only=2, n_iters_joint=2, progress=False)
    assert run.params["max_length"] == 32
    examples = run.examples.iloc[:2]  # the accuracy is of the labelled examples: unknown labels are no mistakes
    assert run.record["figures"]["analysis_accuracy"] == (examples["prediction"] == examples["label"]).mean()


def test_a_damaged_model_file_is_named(small_gpt2, tmp_path):
    import shutil

    folder = shutil.copytree(small_gpt2 / "classifier", tmp_path / "damaged")
    (folder / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(OSError, match=r"the model saved in .*damaged cannot be loaded \(SafetensorError.*save the model "
                                      r"again"):
        run_model(tmp_path / "run", folder, TEXTS, n_components=2)
    assert not (tmp_path / "run").exists()


def test_every_entry_point_refuses_a_tokenizer_that_cannot_pad_before_writing(small_gpt2, tmp_path, caplog):
    """The check was run_model's alone: run_embedded and the CLI failed mid-run with transformers' advice to pad
    with an end-of-text token the tokenizer lacks, and run_embedded left a failed run folder."""
    from workbench.app.cli import main
    from workbench.app.pipeline import run_embedded

    with pytest.raises(ValueError, match="has no padding token and no end-of-text token to pad with"):
        run_embedded(tmp_path / "run", model_path=small_gpt2 / "nopad", n_examples=20, n_components=2, progress=False)
    assert main(["pefs", "--out", str(tmp_path / "pefs"), "--model-path", str(small_gpt2 / "nopad"),
                 "--n-examples", "4"]) == 2
    assert "has no padding token and no end-of-text token to pad with" in caplog.text
    assert list(tmp_path.iterdir()) == []


def test_a_run_made_again_in_place_with_its_own_model_keeps_it(tmp_path):
    """Removing the run's model/ before copying the model in deleted the model when it was that folder."""
    import shutil

    from workbench.app.run_folder import MODEL, copy_model

    shutil.copytree(default_model(), tmp_path / "run" / MODEL)
    before = sorted(p.name for p in (tmp_path / "run" / MODEL).iterdir())
    copy_model(tmp_path / "run" / MODEL, tmp_path / "run")
    assert sorted(p.name for p in (tmp_path / "run" / MODEL).iterdir()) == before
    copy_model(default_model(), tmp_path / "other")
    assert sorted(p.name for p in (tmp_path / "other" / MODEL).iterdir()) == before


def test_run_embedded_encodes_a_model_folder_s_texts_with_its_model(embedded_run, tmp_path):
    """run_embedded tokenized without the model: with a DistilBERT of the user's beside a BERT tokenizer it warned
    that the token_type_ids it had made itself are no argument of the model, in the run and in its notebook's page."""
    import warnings

    from transformers import AutoTokenizer, BertTokenizerFast, DistilBertConfig, DistilBertForSequenceClassification

    from workbench.app.pipeline import run_embedded

    words = AutoTokenizer.from_pretrained(embedded_run.model_path)
    tokenizer = BertTokenizerFast(tokenizer_object=words.backend_tokenizer, pad_token=words.pad_token,  # BERT's kind
                                  unk_token=words.unk_token, cls_token=words.cls_token, sep_token=words.sep_token)
    assert "token_type_ids" in tokenizer("a text")
    config = DistilBertConfig(vocab_size=len(tokenizer), dim=32, n_layers=1, n_heads=2, hidden_dim=64, num_labels=2,
                              pad_token_id=tokenizer.pad_token_id)
    folder = tmp_path / "distilbert"
    DistilBertForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run_embedded(tmp_path / "run", model_path=folder, n_examples=30, n_components=2, n_iters_g_only=2,
                     n_iters_joint=4, progress=False)
    assert not [w for w in caught if "token_type_ids" in str(w.message)], [str(w.message) for w in caught]


def test_the_dashboard_of_a_run_whose_top_set_holds_every_example_says_why_it_has_no_sweep(tmp_path):
    """Six examples, a top set of 20: RunExplorer.dashboard(j) failed whole ('no example is left outside the top
    set'), its histogram, location and tokens with it, for the perturbation sweep it adds by default. The dashboard
    comes without the sweep and a note says why and what gives one."""
    examples = make_examples(6, seed=7)
    run = run_model(tmp_path / "few", default_model(), list(examples["text"]), examples["label"].to_numpy(),
                    n_components=1, n_iters_g_only=2, n_iters_joint=3, max_length=48, progress=False)
    explorer = RunExplorer.open(run.path)
    dashboard = explorer.dashboard(0)
    assert dashboard.sweep is None and dashboard.top_tokens is not None and len(dashboard.histogram)
    assert any("no example is left outside the top set" in note and "n_top" in note for note in dashboard.notes)
    assert "no example is left outside the top set" in dashboard._repr_mimebundle_()["text/html"]
    with pytest.raises(ValueError, match="no example is left outside the top set"):
        explorer.sweep(0, [0.1])  # asked for on its own, the sweep is refused as before
    assert RunExplorer.open(run.path, n_top=2).dashboard(0, sweep=(0.1,)).sweep is not None


def test_labels_that_cannot_be_saved_are_refused_before_the_model_scores_anything(own_run, tmp_path, monkeypatch):
    """A run folder this user may not write (or one moved since it was opened) was refused only after every
    component's top examples were scored: as 'Free space on that disk', or as 'run again since it was opened'."""
    import shutil

    from workbench.analysis import labels
    from workbench.app import run_folder

    def scored(*args, **kwargs):
        raise AssertionError("the model scored the top examples of labels that cannot be saved")

    monkeypatch.setattr(labels, "top_tokens", scored)
    shutil.copytree(own_run.path, tmp_path / "run")
    explorer = RunExplorer.open(tmp_path / "run")
    with monkeypatch.context() as patched:  # root writes everywhere: the check's answer for a read-only folder
        patched.setattr(run_folder, "cannot_write_in", lambda folder: "Permission denied")
        with pytest.raises(PermissionError, match=r"cannot save the labels \(labels\.csv\) into the run folder .*run: "
                                                  r"this user may not write there \(Permission denied\); copy the run"):
            explorer.label_components()
    (tmp_path / "run").rename(tmp_path / "moved")
    with pytest.raises(FileNotFoundError, match=r"the run folder .*run was moved or deleted since it was opened; open "
                                                r"it again where it is now"):
        explorer.label_components()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["moved"]
