"""PEFT (LoRA) adapter folders: loaded on their base with the adapters merged, exactly as peft computes them, and
run by run_model into a run folder that opens without the adapter's base."""

import json
import shutil

import pytest
import torch

from workbench import RunExplorer, run_model
from workbench.models.loading import load_classifier

peft = pytest.importorskip("peft")

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "the", "cat", "dog", "sat", "is", "on", "mat", "good",
         "bad", "not"]
TEXTS = ["the cat sat", "a dog is good", "not bad", "the mat is bad", "a cat is not good", "the dog sat on a mat"] * 2


def _save_base(folder, n_classes=2):
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    folder.mkdir(parents=True)
    (folder / "vocab.txt").write_text("\n".join(VOCAB))
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(VOCAB), hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                        intermediate_size=64, max_position_embeddings=32, num_labels=n_classes)
    BertForSequenceClassification(config).eval().save_pretrained(folder)
    BertTokenizerFast(str(folder / "vocab.txt"), model_max_length=32).save_pretrained(folder)
    return folder


def _save_adapter(base, folder, n_classes=2, **lora):
    """A LoRA fine-tune of ``base`` with a head of ``n_classes``, its adapters moved off zero so they count."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(base, num_labels=n_classes, ignore_mismatched_sizes=True)
    model = peft.get_peft_model(model, peft.LoraConfig(task_type="SEQ_CLS", r=2, target_modules=["query", "value"],
                                                       **lora))
    torch.manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name or "modules_to_save" in name:
                p.normal_(0, 0.5)
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(base).save_pretrained(folder)
    return model.eval()


@pytest.fixture(scope="module")
def adapter(tmp_path_factory):
    root = tmp_path_factory.mktemp("lora")
    base = _save_base(root / "base")
    return root / "adapter", _save_adapter(base, root / "adapter")


def _inputs(tokenizer):
    return tokenizer(TEXTS[:4], return_tensors="pt", padding=True)


def test_an_adapter_folder_loads_merged_as_peft_computes_it(adapter):
    folder, reference = adapter
    model, tokenizer = load_classifier(folder)
    assert type(model).__name__ == "BertForSequenceClassification"
    assert not any("lora" in name for name, _ in model.named_parameters())
    assert all(p.requires_grad for p in model.parameters()), "peft froze them to load; the PEFs need them"
    inputs = _inputs(tokenizer)
    torch.testing.assert_close(model(**inputs).logits, reference(**inputs).logits, rtol=1e-5, atol=1e-6)


def test_a_run_of_an_adapter_folder_saves_the_merged_model_and_opens_without_the_base(adapter, tmp_path):
    """run_model refused an adapter folder as 'not a saved model folder (no config.json there)'."""
    folder, reference = adapter
    shutil.copytree(folder.parent, tmp_path / "lora")
    run = run_model(tmp_path / "run", tmp_path / "lora" / "adapter", TEXTS, [i % 2 for i in range(len(TEXTS))],
                    n_components=2, n_iters_g_only=5, n_iters_joint=5, n_top=3, progress=False)
    assert (run.path / "model" / "config.json").is_file() and not (run.path / "model" / "adapter_config.json").exists()
    record = json.loads((run.path / "run.json").read_text())
    assert record["stages"]["model"]["adapter_base"] == str(folder.parent / "base")  # what model/ was merged from
    shutil.rmtree(tmp_path / "lora")  # the run keeps what it read
    explorer = RunExplorer.open(run.path)
    model, tokenizer = explorer.model_and_tokenizer()
    inputs = tokenizer(TEXTS, return_tensors="pt", padding=True)
    assert explorer.predictions.tolist() == reference(**inputs).logits.argmax(-1).tolist()
    assert len(explorer.lookup("a good dog").loadings) == 2


def test_an_adapter_with_a_head_of_other_classes_than_its_base_loads_that_head(tmp_path):
    base = _save_base(tmp_path / "base", n_classes=2)
    reference = _save_adapter(base, tmp_path / "adapter", n_classes=3)
    model, tokenizer = load_classifier(tmp_path / "adapter")
    assert model.config.num_labels == 3
    inputs = _inputs(tokenizer)
    torch.testing.assert_close(model(**inputs).logits, reference(**inputs).logits, rtol=1e-5, atol=1e-6)


def test_an_adapter_folder_names_a_relative_base_from_its_own_folder(adapter, tmp_path):
    folder, reference = adapter
    shutil.copytree(folder.parent, tmp_path / "lora")
    config_path = tmp_path / "lora" / "adapter" / "adapter_config.json"
    config = json.loads(config_path.read_text())
    config_path.write_text(json.dumps(dict(config, base_model_name_or_path="../base")))
    model, tokenizer = load_classifier(tmp_path / "lora" / "adapter")
    inputs = _inputs(tokenizer)
    torch.testing.assert_close(model(**inputs).logits, reference(**inputs).logits, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("change, match", [
    ({"task_type": "CAUSAL_LM"}, "holds a CAUSAL_LM adapter: NPEFF reads a sequence classifier"),
    ({"base_model_name_or_path": None}, "names no base_model_name_or_path: set it to the base model's folder"),
])
def test_adapters_that_are_not_a_classifier_s_are_refused_with_the_fix(adapter, tmp_path, change, match):
    folder, _ = adapter
    shutil.copytree(folder, tmp_path / "adapter")
    config_path = tmp_path / "adapter" / "adapter_config.json"
    config_path.write_text(json.dumps(dict(json.loads(config_path.read_text()), **change)))
    with pytest.raises(ValueError, match=match):
        load_classifier(tmp_path / "adapter")
    with pytest.raises(ValueError, match=match):
        run_model(tmp_path / "run", tmp_path / "adapter", TEXTS, n_components=2, progress=False)
    assert not (tmp_path / "run").exists()


def test_the_embedded_task_s_run_and_load_default_model_read_an_adapter_folder_merged(adapter, tmp_path):
    """run_embedded (the quickstart's model_path, `demo --model-path`) copied the adapter folder as the run's model and
    loaded it unmerged with every weight frozen: its PEFs stopped at 'all frozen ... no gradient to compute'."""
    from workbench.app.pipeline import run_embedded
    from workbench.core.provenance import model_name
    from workbench.models.embedded import load_default_model

    folder, reference = adapter
    model, tokenizer = load_default_model(folder)
    assert not any("lora" in name for name, _ in model.named_parameters())
    assert all(p.requires_grad for p in model.parameters())
    assert model_name(model) == str(folder)  # the fine-tune the PEFs are of, where the store named its base
    inputs = _inputs(tokenizer)
    torch.testing.assert_close(model(**inputs).logits, reference(**inputs).logits, rtol=1e-5, atol=1e-6)
    shutil.copytree(folder.parent, tmp_path / "lora")
    run = run_embedded(tmp_path / "run", model_path=tmp_path / "lora" / "adapter", n_examples=21, n_components=2,
                       n_iters_g_only=2, n_iters_joint=2, progress=False)
    assert (run.path / "model" / "config.json").is_file() and not (run.path / "model" / "adapter_config.json").exists()
    record = json.loads((run.path / "run.json").read_text())
    assert record["stages"]["model"]["adapter_base"] == str(folder.parent / "base")  # what model/ was merged from
    shutil.rmtree(tmp_path / "lora")
    assert RunExplorer.open(run.path).model_and_tokenizer()[0].config.num_labels == 2


def _other_base(root, kind):
    from transformers import BertConfig, BertModel, GPT2Config, GPT2ForSequenceClassification

    folder = root / kind
    if kind == "gpt2":
        GPT2ForSequenceClassification(GPT2Config(vocab_size=len(VOCAB), n_embd=32, n_layer=1, n_head=4, n_positions=32,
                                                 bos_token_id=0, eos_token_id=0)).save_pretrained(folder)
        return folder
    config = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=4, intermediate_size=64,
                  max_position_embeddings=32)
    if kind in ("small vocabulary", "other vocabulary"):
        from transformers import BertForSequenceClassification, BertTokenizerFast

        vocabulary = VOCAB[:8] if kind == "small vocabulary" else VOCAB + [f"w{i}" for i in range(24)]
        BertForSequenceClassification(BertConfig(vocab_size=len(vocabulary), **config)).save_pretrained(folder)
        (root / "vocab.txt").write_text("\n".join(vocabulary))
        BertTokenizerFast(str(root / "vocab.txt")).save_pretrained(folder)
    else:  # a base without a head, as MiniLM
        BertModel(BertConfig(vocab_size=len(VOCAB), **config)).save_pretrained(folder)
    return folder


def _rebase(folder, base):
    path = folder / "adapter_config.json"
    path.write_text(json.dumps(dict(json.loads(path.read_text()), base_model_name_or_path=str(base))))


def _damage(folder, root, damage):
    weights = folder / "adapter_model.safetensors"
    if damage == "no weights":
        weights.unlink()
    elif damage == "damaged weights":
        weights.write_bytes(weights.read_bytes()[:100])
    elif damage == "empty weights":
        weights.write_bytes(b"")
    elif damage == "config not JSON":
        (folder / "adapter_config.json").write_text("{'r': 2")
    elif damage == "config a list":
        (folder / "adapter_config.json").write_text("[]")
    elif damage == "missing base":
        _rebase(folder, root / "gone")
    elif damage == "Hub base not cached":
        _rebase(folder, "someone/no-such-model")
    elif damage == "base not a string":
        _rebase(folder, "x")
        path = folder / "adapter_config.json"
        path.write_text(json.dumps(dict(json.loads(path.read_text()), base_model_name_or_path=["base"])))
    elif damage == "base an adapter":
        shutil.copytree(folder, root / "other adapter")
        _rebase(folder, root / "other adapter")
    elif damage in ("gpt2", "small vocabulary", "other vocabulary"):
        _rebase(folder, _other_base(root, damage))
    elif damage == "prompt tuning":
        from transformers import AutoModelForSequenceClassification

        shutil.rmtree(folder)
        model = AutoModelForSequenceClassification.from_pretrained(root / "base")
        peft.get_peft_model(model, peft.PromptTuningConfig(task_type="SEQ_CLS", num_virtual_tokens=2)).save_pretrained(
            folder)
    elif damage == "no head on a headless base":
        from transformers import AutoTokenizer, BertForSequenceClassification

        shutil.rmtree(folder)
        base = _other_base(root, "headless")
        AutoTokenizer.from_pretrained(root / "base").save_pretrained(base)
        model = BertForSequenceClassification.from_pretrained(base)  # a new head, which the adapter does not save
        peft.get_peft_model(model, peft.LoraConfig(r=2, target_modules=["query"])).save_pretrained(folder)


REFUSALS = [
    ("no weights", FileNotFoundError, "holds adapter_config.json but no adapter_model.safetensors, the adapter's "
                                      "weights: save the adapter with model.save_pretrained"),
    ("damaged weights", OSError, "adapter_model.safetensors cannot be read .*: the file is damaged or cut; save"),
    ("empty weights", OSError, "adapter_model.safetensors cannot be read .*: the file is damaged or cut; save"),
    ("config not JSON", ValueError, "adapter_config.json cannot be read as JSON .*: it is damaged; save the adapter"),
    ("config a list", ValueError, "adapter_config.json holds a list, not a peft config"),
    ("missing base", FileNotFoundError, "the base model of the adapter in .* \\(adapter_config.json's "
                                        "base_model_name_or_path '.*gone'\\) cannot be loaded: there is no folder"),
    ("Hub base not cached", OSError, "base_model_name_or_path 'someone/no-such-model'\\) cannot be loaded: .* "
                                     "neither a local folder nor in the Hugging Face cache"),
    ("base not a string", ValueError, "base_model_name_or_path is \\['base'\\]: set it to the base model's folder"),
    ("base an adapter", ValueError, "other adapter is itself an adapter folder: set base_model_name_or_path to the "
                                    "model its adapter was trained on"),
    ("gpt2", ValueError, "does not fit its base model .*gpt2 .*: set base_model_name_or_path in its "
                         "adapter_config.json to the model the adapter was trained on"),
    ("small vocabulary", ValueError, "has 16 tokens, and its base model .* embeds 8: the base is not the model the "
                                     "adapter was trained on"),
    # another model whose vocabulary holds the adapter's ids: it ran, reading other words
    ("other vocabulary", ValueError, "has 16 tokens, and its base model .* has a tokenizer of 40: the base is not the "
                                     "model the adapter was trained on"),
    ("prompt tuning", ValueError, "holds a PROMPT_TUNING adapter, which adds learned virtual tokens .* cannot be "
                                  "merged .*LoraConfig"),
    ("no head on a headless base", ValueError, "saved no classification head .* random at every load.*"
                                               "task_type='SEQ_CLS'"),
]


@pytest.mark.parametrize("damage, error, match", REFUSALS)
def test_an_adapter_folder_that_cannot_make_its_classifier_is_refused_with_the_fix(adapter, tmp_path, monkeypatch,
                                                                                    damage, error, match):
    """Each failed deep in peft, safetensors or json (HFValidationError 'Repo id must be a string', 'header too
    large', NoMatchingPeftModuleError, "no attribute 'merge_and_unload'"), or loaded a random head silently."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    folder, _ = adapter
    shutil.copytree(folder.parent, tmp_path / "lora")
    _damage(tmp_path / "lora" / "adapter", tmp_path / "lora", damage)
    with pytest.raises(error, match=match):
        load_classifier(tmp_path / "lora" / "adapter")
    with pytest.raises(error, match=match):
        run_model(tmp_path / "run", tmp_path / "lora" / "adapter", TEXTS, n_components=2, progress=False)
    assert not (tmp_path / "run").exists()


def test_an_adapter_folder_without_peft_asks_for_it(adapter, tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "peft", None)
    with pytest.raises(ImportError, match="holds a PEFT adapter .*, which needs peft to load: pip install"):
        run_model(tmp_path / "run", adapter[0], TEXTS, n_components=2, progress=False)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("damage, error, match", [r for r in REFUSALS if r[0] in (
    "no weights", "config not JSON", "Hub base not cached", "base not a string", "prompt tuning",
    "no head on a headless base")])
def test_run_embedded_refuses_an_adapter_folder_that_cannot_make_its_classifier_before_its_record(
        adapter, tmp_path, monkeypatch, damage, error, match):
    """It loads its model in the run's model stage: each left a run folder with a failed record (run.json, .lock),
    and an adapter that saved no tokenizer (its base's is read) was refused as a folder that holds none."""
    from workbench.app.pipeline import run_embedded

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    shutil.copytree(adapter[0].parent, tmp_path / "lora")
    _damage(tmp_path / "lora" / "adapter", tmp_path / "lora", damage)
    with pytest.raises(error, match=match):
        run_embedded(tmp_path / "run", model_path=tmp_path / "lora" / "adapter", n_examples=21, n_components=2,
                     progress=False)
    assert not (tmp_path / "run").exists()


def test_run_embedded_reads_an_adapter_that_saved_no_tokenizer_with_its_base_s(adapter, tmp_path):
    """It was refused as a folder that holds no tokenizer, where load_adapter reads the base's."""
    from workbench.app.pipeline import run_embedded
    from workbench.models.loading import TOKENIZER_FILES

    shutil.copytree(adapter[0].parent, tmp_path / "lora")
    for name in [*TOKENIZER_FILES, "special_tokens_map.json"]:
        (tmp_path / "lora" / "adapter" / name).unlink(missing_ok=True)
    run = run_embedded(tmp_path / "run", model_path=tmp_path / "lora" / "adapter", n_examples=21, n_components=2,
                       n_iters_g_only=2, n_iters_joint=2, progress=False)
    assert run.record["status"] == "complete" and any((run.path / "model" / name).is_file() for name in TOKENIZER_FILES)
