"""Strategies over training, between two models and through the layers, on the embedded task.

The facts checked are the task's own records: each checkpoint's held-out accuracy per
strategy (``checkpoint.json``) and each model's (``training.json``), never a guess of
which strategy comes first. (On seed 0 the marker strategy is learned first, by step 100,
and a model trained without marker words does not carry it.)
"""

import json

import numpy as np
import pytest
import torch

from tests.conftest import tiny_bert, tiny_bert_inputs
from workbench.analysis.matching import OnCoefficients
from workbench.analysis.over_training import checkpoint_series, over_training
from workbench.analysis.trace import hidden_state_change
from workbench.core.params import ParameterLayout
from workbench.models.architectures import available, build, example_inputs
from workbench.models.embedded import (
    DEFAULT_MIX,
    ANALYSIS_SEED_OFFSET,
    default_model,
    load_default_model,
    make_examples,
    tokenize,
)
from workbench.report import model_diff_html, over_training_html, trace_html

LEARNED = 0.9  # a strategy is learned once its accuracy reaches this
CARRIED = 0.9  # a component carries a strategy once this share of its top set holds it


def _first_learned(table):
    """{strategy: first step with accuracy ≥ LEARNED} for the strategies learned at some step."""
    return {s: int(table.index[table[s] >= LEARNED][0]) for s in table.columns if (table[s] >= LEARNED).any()}


@pytest.fixture(scope="module")
def analysed():
    examples = make_examples(600, seed=ANALYSIS_SEED_OFFSET)
    return examples, examples["strategies"].map(tuple).tolist()


@pytest.mark.slow
def test_the_first_strategy_learned_is_carried_by_its_component_when_it_is_learned(analysed):
    examples, groups = analysed
    folder = default_model(checkpoint_every=100, progress=False)
    series = checkpoint_series(folder)
    steps = [s for s, _ in series]  # every 100 steps, and the last step of training
    assert steps[:-1] == list(range(0, steps[-1], 100)) and steps[-1] - steps[-2] <= 100
    assert json.loads((folder / "training.json").read_text())["checkpoints"][1]["step"] == 100
    recorded = {step: json.loads((path / "checkpoint.json").read_text())["accuracy_by_strategy"] for step, path in series}
    # single strategies only: a multi-factor kind is no component's strategy; ties broken by name
    single = {s: t for s, t in _first_learned_steps(recorded).items() if "+" not in s}
    strategy, step = min(single.items(), key=lambda kv: (kv[1], kv[0]))
    # Only what is needed: before, at and after the first learning step.
    chosen = [(s, p) for s, p in series if s in (0, step, series[-1][0])]
    _, tokenizer = load_default_model(folder)
    inputs = tokenize(tokenizer, list(examples["text"]))
    result = over_training(chosen, inputs, examples["label"].to_numpy(), groups, progress=False)
    assert result.steps == [0, step, series[-1][0]]

    analysed_first = _first_learned(result.accuracy_table("analysed"))
    assert analysed_first[strategy] == step == min(analysed_first.values())
    assert _first_learned(result.accuracy_table("recorded"))[strategy] == step
    assert result.accuracy_table("analysed").loc[0].max() < LEARNED  # nothing is learned at step 0

    mass = result.pivot("mass")
    assert np.allclose(mass.sum(axis=1), 1.0)  # shares of each checkpoint's reconstruction
    own = result.reference.index[result.reference["strategy"] == strategy]
    assert len(own), f"no reference component is mostly {strategy}"
    purity = result.pivot("purity")
    assert purity.loc[step, own].max() >= CARRIED, purity.loc[:, own]
    kl = result.pivot("kl_ratio")
    assert np.isfinite(kl.loc[step, own]).all()
    html = over_training_html(result)
    assert "Components over training" in html and "npeff-plot" in html and "recorded" in html


def _first_learned_steps(recorded: dict) -> dict:
    steps = sorted(recorded)
    out = {}
    for s in recorded[steps[-1]]:
        reached = [step for step in steps if recorded[step][s] >= LEARNED]
        if reached:
            out[s] = reached[0]
    return out


@pytest.mark.slow
def test_a_strategy_added_by_further_training_is_gained(analysed):
    from workbench.analysis.model_diff import model_diff

    examples, groups = analysed
    without = default_model(mix={k: v for k, v in DEFAULT_MIX.items() if "marker" not in k}, progress=False)  # no marker word at all
    added = default_model(init_from=without, epochs=4, progress=False)
    acc_a = json.loads((without / "training.json").read_text())["accuracy_by_strategy"]
    acc_b = json.loads((added / "training.json").read_text())["accuracy_by_strategy"]
    truly_gained = {s for s in acc_a if acc_a[s] < 0.6 and acc_b[s] >= LEARNED}
    carried_by_both = {s for s in acc_a if acc_a[s] >= LEARNED and acc_b[s] >= LEARNED}
    assert truly_gained == {"marker"}  # what the training data made true
    model_a, tokenizer = load_default_model(without)
    model_b, _ = load_default_model(added)
    inputs = tokenize(tokenizer, list(examples["text"][:400]))
    # The pooler and classifier serve every strategy; without them the encoder's strategies stand out.
    diff = model_diff(model_a, model_b, inputs, examples["label"].to_numpy()[:400], groups[:400],
                      names=("no markers", "markers added"), n_components=12, n_iters_g_only=50, n_iters_joint=200,
                      exclude=r"pooler|classifier")
    # Model A never saw a marker word, so their embedding rows are untrained and only marker
    # examples have gradients there: A's fit may claim the marker examples by that token alone
    # (a top set of 0.70-1.00 marker examples on task version 3, against the 0.8 that names a
    # strategy: "named" is by purity alone), so "kept" is allowed and B must name marker.
    for s in truly_gained:
        assert diff.status(s) in ("gained", "kept"), diff.strategies
        assert diff.strategies.loc[s, "named_b"], diff.strategies
    for s in carried_by_both & set(diff.strategies.index):
        assert diff.status(s) != "lost", diff.strategies
    assert set(diff.components["status"]) <= {"kept", "changed", "gained", "lost"}
    gained = diff.strategies.loc["marker"]
    assert gained["best_purity_b"] >= 0.95
    html = model_diff_html(diff)
    assert "markers added" in html and "gained" in html


def planted_direction(model, prefix: str, n_examples: int):
    """A one-component decomposition whose direction is random on the parameters named ``prefix...``
    and zero elsewhere."""
    names, shapes = zip(*[(n, tuple(p.shape)) for n, p in model.named_parameters()])
    layout = ParameterLayout(names, shapes)
    pieces = layout.split(np.zeros(layout.n_parameters))
    rng = np.random.default_rng(0)
    for n in names:
        if n.startswith(prefix):
            pieces[n][...] = rng.standard_normal(pieces[n].shape)
    full = np.concatenate([pieces[n].ravel() for n in names])

    class Fit:
        components_ = full[None, :].astype(np.float32)
        kept_columns_ = np.arange(layout.n_parameters)
        n_parameters_ = layout.n_parameters
        layout_ = layout
        kind = "lrm"

    return OnCoefficients(Fit, np.ones((n_examples, 1)))


def test_the_trace_moves_only_the_layers_at_and_after_the_perturbed_parameters():
    """Planted: a direction on the second encoder layer's weights only; the embeddings and the first
    layer's outputs cannot change, the second's and after must."""
    model = tiny_bert(2)
    inputs = tiny_bert_inputs(n=4)
    decomposition = planted_direction(model, "bert.encoder.layer.1.", 4)
    before = [p.detach().clone() for p in model.parameters()]
    change = hidden_state_change(model, decomposition, 0, inputs, epsilon=0.5)
    assert change.shape == (4, 3, inputs["input_ids"].shape[1])  # embeddings + 2 layers
    assert np.all(change[:, :2] == 0)
    real = inputs["attention_mask"].numpy().astype(bool)
    assert np.all(change[:, 2][real] > 0) and np.all(change[:, 2][~real] == 0)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))  # weights restored
    assert np.all(hidden_state_change(model, decomposition, 0, inputs, epsilon=0.0) == 0)


@pytest.mark.parametrize("name", available())
def test_every_family_of_the_matrix_can_be_traced(name):
    """Encoder-decoders name their encoder's and decoder's layers; Funnel's pooled layers (fewer
    positions than tokens) are left out; every layer kept has one value per token."""
    from workbench.analysis.trace import _layer_changes

    model, inputs = build(name), example_inputs(name)
    layers, change = _layer_changes(model, planted_direction(model, "", len(inputs["input_ids"])), 0, inputs, 0.5, None)
    assert change.shape == (len(inputs["input_ids"]), len(layers), inputs["input_ids"].shape[1])
    assert np.isfinite(change).all() and change[:, -1].max() > 0
    if getattr(getattr(model, "config", None), "is_encoder_decoder", False):
        assert layers[0] == "encoder embeddings" and any(n.startswith("decoder layer") for n in layers)
    else:
        assert layers[0] == "embeddings" and layers[1] == "layer 0"  # numbered as the parameters' layers


def test_the_trace_shows_tokens_as_the_text_spells_them():
    """A WordPiece tokenizer writes 'unbelievable' as un ##believ ##able: the heatmap's columns read
    un, believ, able (the tokenizer's tokens are kept beside them)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    from workbench.analysis.trace import perturbation_trace

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "un", "##believ", "##able", "film", "good"]
    backend = Tokenizer(models.WordPiece({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]",
                                                           special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="[PAD]", unk_token="[UNK]",
                                        cls_token="[CLS]", sep_token="[SEP]")
    model = tiny_bert(2)
    texts = ["unbelievable film", "good film"]
    trace = perturbation_trace(model, tokenizer, planted_direction(model, "bert.encoder.layer.0.", 2), 0, texts,
                               top=[0], baseline=[1], epsilon=0.5)
    assert trace.tokens[0] == ["[CLS]", "un", "##believ", "##able", "film", "[SEP]"]
    assert trace.spelled[0] == ["[CLS]", "un", "believ", "able", "film", "[SEP]"]
    assert list(trace.heatmap(0).columns) == ["0:[CLS]", "1:un", "2:believ", "3:able", "4:film", "5:[SEP]"]
    assert trace.heatmaps[1].shape[1] == 4  # the shorter example's own tokens, not its padding
    frame = trace.to_frame()
    assert frame.loc[frame["token"] == "##able", "spelled"].eq("able").all()


@pytest.mark.slow
def test_the_explorer_traces_a_component_and_labels_it(embedded_run, tmp_path):
    import shutil

    from workbench.app.explore import RunExplorer

    shutil.copytree(embedded_run.path, tmp_path / "run", ignore=shutil.ignore_patterns("pefs"))
    ex = RunExplorer.open(tmp_path / "run")
    assert ex.table.columns[0] == "name" and ex.table["name"].str.contains("label").all()
    j = int(ex.table["mass"].idxmax())
    trace = ex.trace(j, epsilon=0.5, n_top=5, n_baseline=5)
    assert trace.sets.count("top") == 5 and trace.sets.count("baseline") == 5
    assert trace.heatmaps[0].shape == (len(trace.layers), len(trace.tokens[0]))
    assert trace.profile.shape == (len(trace.layers), 3) and (trace.profile[["top", "baseline"]] >= 0).all().all()
    assert "Perturbation trace of component" in trace_html(trace)
    names = ex.label_components(n_examples=5)
    assert (tmp_path / "run" / "labels.csv").exists() and ex.table["name"].equals(names.reindex(ex.table.index))
    # Most pure marker components are labelled by a marker word. Not all: on task version 3 one
    # claims the marker-first examples whose verb is "seemed" and puts 50-70% of their mass on
    # "seemed" (docs/reading.md, "How far the highlights can be trusted"); its label says so.
    marker = ex.table[(ex.table["strategy"] == "marker") & (ex.table["strategy_purity"] >= 0.9)]
    named_by_marker = marker["name"].str.contains("'zorp'|'blick'")
    assert len(marker) >= 2 and named_by_marker.mean() >= 0.5, marker["name"].tolist()
    exported = ex.export(format="csv")
    assert "name" in open(exported["components"]).readline()
