"""Token highlights: exact decomposition of the Fisher projection, and the known deciding words."""

import numpy as np
import pytest
import torch

from tests.conftest import PaddingLeaks
from workbench import compute_pefs
from workbench.analysis import top_examples
from workbench.models.embedded import deciding_token_positions
from workbench.analysis.highlights import token_scores
from workbench.app.pipeline import DEFAULT_SCOPE, SCOPES
from workbench.core.params import ParameterLayout
from workbench.models.architectures import available, build, example_inputs


def test_projection_and_shares_are_exact(embedded):
    _, model, _, _, inputs, decomposition = embedded
    rows = {k: v[:6] for k, v in inputs.items()}
    # the same parameters as the run's decomposition (the default scope leaves out the head)
    pefs = compute_pefs(model, rows, n_values=None, progress=False, **SCOPES[DEFAULT_SCOPE["tiny"]])
    g = decomposition.component(5).astype(np.float64)
    expected = ((pefs.dense().astype(np.float64) @ g) ** 2).sum(axis=1)  # Σ_s (a_s · g)²
    scores = token_scores(model, decomposition, 5, rows)
    np.testing.assert_allclose([s.projection for s in scores], expected, rtol=1e-4)
    for s, mask in zip(scores, rows["attention_mask"]):
        assert len(s.scores) == int(mask.sum())
        assert s.scores.sum() + s.head_share == pytest.approx(1.0, abs=1e-9)


def test_top_tokens_are_the_deciding_words(embedded):
    """Measured on the default run: the highest-scored visible token (special tokens left out,
    as the panels read them) of a top example is one of its deciding words 80% of the time,
    against 20% for a visible token drawn at random."""
    _, model, tokenizer, examples, inputs, decomposition = embedded
    hits, chance = [], []
    for j in range(decomposition.n_components):
        top = top_examples(decomposition.W_, j, 20)
        for i, s in zip(top, token_scores(model, decomposition, j, {k: v[top] for k, v in inputs.items()})):
            words = examples["text"].iloc[i].split(" ")
            word_ids = tokenizer(words, is_split_into_words=True).word_ids()
            positions = deciding_token_positions(examples.iloc[i], word_ids)
            visible = np.where([w is None for w in word_ids], -np.inf, s.scores)
            hits.append(int(np.argmax(visible)) in positions)
            chance.append(len(positions) / len(words))
    assert np.mean(hits) >= 0.7
    assert np.mean(hits) >= 3 * np.mean(chance)


def test_needs_tokenized_inputs(embedded):
    _, model, _, _, inputs, decomposition = embedded
    with pytest.raises(TypeError, match="input_ids"):
        token_scores(model, decomposition, 0, inputs["input_ids"])


class RandomDirection:
    """A decomposition of one component: a random direction over all of ``model``'s parameters."""

    def __init__(self, model, seed: int = 0):
        names, shapes = zip(*[(n, tuple(p.shape)) for n, p in model.named_parameters()])
        self.layout_ = ParameterLayout(names, shapes)
        self.n_parameters_ = self.layout_.n_parameters
        self.kept_columns_ = np.arange(self.n_parameters_)
        self.components_ = np.random.default_rng(seed).standard_normal((1, self.n_parameters_)).astype(np.float32)

    def component(self, j: int) -> np.ndarray:
        return self.components_[j]


@pytest.mark.parametrize("name, padding_side", [("a convolution over padding", "right"), ("GPT-2", "left")])
def test_each_example_is_scored_as_alone_where_padding_changes_the_outputs(name, padding_side):
    """A convolution over the padded positions (as ConvBERT's and CANINE's), and GPT-2, which numbers
    positions from the first column so that left padding moves its tokens: an example's scores in a
    padded batch are its scores alone, as its PEF is (fisher.checks)."""
    if name == "GPT-2":
        model, ids = build(name), example_inputs(name, n=5, length=7)["input_ids"]
    else:
        torch.manual_seed(0)
        model, ids = PaddingLeaks().eval(), torch.randint(1, 20, (5, 7), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    for i, pads in enumerate([0, 2, 3, 0, 1]):
        cut = slice(0, pads) if padding_side == "left" else slice(7 - pads, 7)
        mask[i, cut], ids[i, cut] = 0, 0
    decomposition = RandomDirection(model)
    batched = token_scores(model, decomposition, 0, {"input_ids": ids, "attention_mask": mask})
    for i, scored in enumerate(batched):
        real = mask[i].bool()
        alone = token_scores(model, decomposition, 0, {"input_ids": ids[i, real][None],
                                                       "attention_mask": torch.ones((1, int(real.sum())), dtype=torch.long)})[0]
        scale = np.abs(alone.scores).max()
        assert scored.scores.shape == alone.scores.shape
        assert np.abs(scored.scores - alone.scores).max() < 1e-4 * scale
        assert scored.projection == pytest.approx(alone.projection, rel=1e-4)


def padded_gpt2():
    """GPT-2 (absolute positions) on left-padded inputs: padding changes its outputs."""
    model, ids = build("GPT-2"), example_inputs("GPT-2", n=6, length=7)["input_ids"]
    mask = torch.ones_like(ids)
    for i, pads in enumerate([0, 2, 3, 0, 1, 4]):
        mask[i, :pads], ids[i, :pads] = 0, 0
    return model, {"input_ids": ids, "attention_mask": mask}


def test_perturbation_checks_and_logit_changes_see_each_example_as_alone():
    """Batches of one example are each example alone: batched results must equal them."""
    from workbench.analysis.dashboard import logit_change
    from workbench.analysis.perturb import perturbation_check

    model, inputs = padded_gpt2()
    decomposition = RandomDirection(model)
    labels = np.zeros(6, dtype=int)
    check = {size: perturbation_check(model, decomposition, 0, inputs, labels, top=[0, 1, 2], baseline=[3, 4, 5],
                                      epsilon=0.05, batch_size=size) for size in (6, 1)}
    for sign in "+-":
        assert check[6].kl_top[sign] == pytest.approx(check[1].kl_top[sign], rel=1e-4)
        assert check[6].kl_baseline[sign] == pytest.approx(check[1].kl_baseline[sign], rel=1e-4)
    change = {size: logit_change(model, decomposition, 0, inputs, epsilon=0.05, batch_size=size) for size in (6, 1)}
    alone = change[1].to_numpy()
    assert np.abs(change[6].to_numpy() - alone).max() < 1e-4 * np.abs(alone).max()  # float32 rounding


def test_the_trace_sees_each_example_as_alone():
    from workbench.analysis.trace import hidden_state_change

    model, inputs = padded_gpt2()
    decomposition = RandomDirection(model)
    batched = hidden_state_change(model, decomposition, 0, inputs, epsilon=0.05)
    for i in range(6):
        real = inputs["attention_mask"][i].bool()
        alone = hidden_state_change(model, decomposition, 0, {"input_ids": inputs["input_ids"][i, real][None],
                                                              "attention_mask": torch.ones((1, int(real.sum())), dtype=torch.long)},
                                    epsilon=0.05)[0]
        assert np.allclose(batched[i][:, real.numpy()], alone, rtol=1e-5, atol=1e-9)
        assert np.all(batched[i][:, ~real.numpy()] == 0)


class OneEmbeddingRow:
    """A decomposition whose one component moves one row of the word embeddings: one word's vector."""

    def __init__(self, model, token: int):
        names, shapes = zip(*[(n, tuple(p.shape)) for n, p in model.named_parameters()])
        self.layout_ = ParameterLayout(names, shapes)
        self.n_parameters_ = self.layout_.n_parameters
        self.kept_columns_ = np.arange(self.n_parameters_)
        embedding = getattr(model, "lm", model).get_input_embeddings().weight  # a ZeroShotClassifier's is its LM's
        name = next(n for n, p in model.named_parameters() if p is embedding)
        pieces = self.layout_.split(np.zeros(self.n_parameters_, dtype=np.float32))
        pieces[name][token] = np.random.default_rng(0).standard_normal(embedding.shape[1])
        self.components_ = np.concatenate([pieces[n].ravel() for n in names])[None].astype(np.float32)

    def component(self, j: int) -> np.ndarray:
        return self.components_[j]


@pytest.mark.parametrize("name", [n for n in available() if n != "XLNet"])
def test_moving_one_word_s_embedding_scores_that_word(name):
    """Only that word's embedding moves, so only computations reading the word change: its
    score is all the mass, in every family of the matrix. An encoder-decoder's decoder reads the
    input shifted right (its position t holds token t − 1): its share belongs to the word too, not
    to the next token. Longformer pads to its window itself: those positions hold nothing. A
    mixture's experts (called with their routing) are left out, with a warning. XLNet's layers
    are called time-major and are all left out (its pages say so: no highlights)."""
    model, inputs = build(name), example_inputs(name, n=1, length=7)
    ids = inputs["input_ids"][0].tolist()
    word = next(k for k in range(1, len(ids) - 1) if ids.count(ids[k]) == 1)
    scores = token_scores(model, OneEmbeddingRow(model, ids[word]), 0, inputs)[0]
    assert scores.scores[word] == pytest.approx(1.0, abs=1e-6)
    assert np.abs(np.delete(scores.scores, word)).max() < 1e-6 and abs(scores.head_share) < 1e-6


def test_scores_and_baselines_of_another_model_are_refused():
    """token_scores and baseline_coefficients ran on any model with the decomposition's parameter names:
    another fine-tune's scores read as this one's, its k-means compared with this NPEFF."""
    import copy

    from tests.conftest import tiny_bert, tiny_bert_inputs
    from workbench import LrmNpeff, compute_pefs
    from workbench.analysis.baselines import baseline_coefficients
    from workbench.analysis.highlights import token_scores
    from workbench.store import StoreError

    model, inputs = tiny_bert(3), tiny_bert_inputs(8)
    fit = LrmNpeff(n_components=2, n_iters_g_only=3, n_iters_joint=3, progress=False).fit(
        compute_pefs(model, inputs, n_values=256, progress=False))
    other = copy.deepcopy(model)
    with torch.no_grad():
        next(other.parameters()).add_(0.01)
    with pytest.raises(StoreError, match="computed from another model"):
        token_scores(other, fit, 0, inputs)
    with pytest.raises(StoreError, match="computed from another model"):
        baseline_coefficients(other, inputs, fit)
    # the baselines' settings, named before their PEFs are computed (scikit-learn named KMeans.random_state)
    for settings, message in [(dict(seed=-1), "seed must be an integer of at least 0"),
                              (dict(alpha=-1), "alpha .* must be a positive number"),
                              (dict(gradients=np.ones(5)), r"gradients must be a finite \(n_examples, n_parameters\)")]:
        with pytest.raises(ValueError, match=message):
            baseline_coefficients(model, inputs, fit, **settings)
    assert len(token_scores(model, fit, 0, inputs)) == 8


@pytest.mark.parametrize("name", [n for n in ("BART", "MBart", "OPT", "BERT") if n in available()])
def test_every_parameter_of_a_family_read_per_token_is_in_the_scores(name):
    """BART's decoder positions (an embedding that computes its own indices, called once for the batch) were left
    out of every highlight: 18% of a component's mass, with a note that blamed XLNet and a mixture's experts. The
    projection is the PEFs' Σ_s (a_s · g)², and nothing is left out."""
    model, inputs = build(name), example_inputs(name, n=4)
    decomposition = RandomDirection(model)
    g = decomposition.component(0).astype(np.float64)
    pefs = compute_pefs(model, inputs, n_values=None, progress=False)
    expected = ((pefs.dense().astype(np.float64) @ g) ** 2).sum(axis=1)
    scores = token_scores(model, decomposition, 0, inputs)
    assert all(s.left_out_share == 0 and not s.left_out for s in scores)
    np.testing.assert_allclose([s.projection for s in scores], expected, rtol=1e-4)
    for s in scores:
        assert s.scores.sum() + s.head_share == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("context", ["no_grad", "inference_mode", "autocast"])
def test_readings_of_the_model_do_not_depend_on_the_caller_s_mode(context):
    """Token scores under a caller's torch.no_grad() were all 0 (the explorer then said no layer could be
    read per token), and a perturbation check under torch.autocast(bfloat16) read another model than the
    PEFs (its KL ratio 15% off): they run in the PEFs' own mode, as compute_pefs does."""
    from tests.conftest import tiny_bert, tiny_bert_inputs
    from workbench import LrmNpeff
    from workbench.analysis import perturbation_check

    model, inputs = tiny_bert(3), tiny_bert_inputs(12)
    pefs = compute_pefs(model, inputs, n_values=None, progress=False)
    fit = LrmNpeff(n_components=2, n_iters_g_only=20, n_iters_joint=20, progress=False).fit(pefs)
    top = top_examples(fit.W_, 0, 4)

    def read():
        scores = np.concatenate([s.scores for s in token_scores(model, fit, 0, inputs)])
        return scores, perturbation_check(model, fit, 0, inputs, pefs.labels, top=top).kl_ratio

    scores, ratio = read()
    with {"no_grad": torch.no_grad(), "inference_mode": torch.inference_mode(),
          "autocast": torch.autocast("cpu", dtype=torch.bfloat16)}[context]:
        scores_there, ratio_there = read()
    assert np.abs(scores).max() > 0
    np.testing.assert_allclose(scores_there, scores, rtol=1e-6, atol=1e-9)
    assert ratio_there == pytest.approx(ratio, rel=1e-6)


def test_token_scores_of_layers_frozen_after_the_fit_are_those_of_the_model_unfrozen():
    """Embeddings frozen after the PEFs (requires_grad=False) have outputs autograd does not track: their share of
    the component was dropped from every token score without a word (scores 0.03 off on the tiny model)."""
    from tests.conftest import tiny_bert, tiny_bert_inputs
    from workbench import LrmNpeff

    model, inputs = tiny_bert(3), tiny_bert_inputs(6)
    fit = LrmNpeff(n_components=2, n_iters_g_only=5, n_iters_joint=5, progress=False).fit(
        compute_pefs(model, inputs, n_values=300, progress=False))
    expected = [s.scores for s in token_scores(model, fit, 0, inputs)]
    model.bert.embeddings.requires_grad_(False)
    for scores, want in zip(token_scores(model, fit, 0, inputs), expected):
        np.testing.assert_allclose(scores.scores, want, rtol=1e-6, atol=1e-9)
    assert not any(p.requires_grad for p in model.bert.embeddings.parameters())  # frozen again, as it was given


def test_a_model_cast_after_the_fit_is_named_by_its_dtype():
    """A float32 fit read with model.double() (or the model loaded in float16) was refused as 'computed from another
    model', naming two fingerprints and nothing of the dtype, which the fingerprint covers."""
    import copy

    from tests.conftest import tiny_bert, tiny_bert_inputs
    from workbench import LrmNpeff
    from workbench.store import StoreError

    model, inputs = tiny_bert(3), tiny_bert_inputs(4)
    fit = LrmNpeff(n_components=2, n_iters_g_only=3, n_iters_joint=3, progress=False).fit(
        compute_pefs(model, inputs, n_values=256, progress=False))
    with pytest.raises(StoreError, match=r"computed from this model in float32, and its weights are float64 now .*"
                                         r"model\.to\(torch\.float32\)"):
        token_scores(copy.deepcopy(model).double(), fit, 0, inputs)
    for dtype in (torch.float16, torch.bfloat16):
        with pytest.raises(StoreError, match=f"holds {str(dtype)[6:]} weights: the fingerprint covers their dtype, "
                                             r"so load the model .* in float32 \(e\.g\. from_pretrained"):
            token_scores(copy.deepcopy(model).to(dtype), fit, 0, inputs)
    assert len(token_scores(copy.deepcopy(model).double().float(), fit, 0, inputs)) == 4
