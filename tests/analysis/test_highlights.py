"""Token highlights: exact decomposition of the Fisher projection, and the known deciding words."""

import numpy as np
import pytest

from workbench import compute_pefs
from workbench.analysis import top_examples
from workbench.models.embedded import deciding_token_positions
from workbench.analysis.highlights import token_scores
from workbench.app.pipeline import DEFAULT_SCOPE, SCOPES


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
