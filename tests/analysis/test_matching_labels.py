"""Matching components by |cos|, offline labels and the grouped tables: exact small cases."""

import numpy as np
import pandas as pd
import pytest

from workbench.analysis.labels import aggregate_tokens, component_label, component_labels
from workbench.analysis.matching import cosine_matrix, match_components, match_quality
from workbench.analysis.tables import accuracy_by_group, coefficient_mass, value_shares


def test_matching_recovers_a_planted_permutation_with_signs_scales_and_an_extra_component():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((5, 400))
    order = np.array([3, 0, 4, 1, 2])  # b's row k is a's row order[k]
    b = a[order] * rng.choice([-1.0, 1.0], 5)[:, None] * rng.uniform(0.1, 10, 5)[:, None]
    b = np.vstack([b + 0.05 * rng.standard_normal(b.shape), rng.standard_normal((1, 400))])
    matches = match_components(a, b)
    pairs = matches[matches["matched"]].set_index("a")["b"]
    assert {int(order[k]): k for k in range(5)} == pairs.to_dict()
    assert (matches.loc[matches["matched"], "cos"] > 0.99).all()
    extra = matches[matches["b"] == 5]
    assert len(extra) == 1 and extra["a"].item() == -1 and not extra["matched"].item()
    assert match_quality(matches) == pytest.approx({"n_matched": 5, "n_unmatched_a": 0, "n_unmatched_b": 1,
                                                    "mean_cos": matches.loc[matches["matched"], "cos"].mean(),
                                                    "min_cos": matches.loc[matches["matched"], "cos"].min()})


def test_hungarian_beats_greedy_and_weak_pairs_are_no_match():
    # |cos| matrix M: greedy gives a0 its best (b0, 0.6) and leaves a1 with b1 (0.05), total 0.65;
    # the assignment a0-b1 (0.5), a1-b0 (0.55) has the larger total 1.05.
    M = np.array([[0.6, 0.5], [0.55, 0.05]])
    a = np.hstack([np.eye(2), np.zeros((2, 1))])
    b = np.column_stack([M.T, np.sqrt(1 - (M**2).sum(axis=0))])  # unit rows with cos(a_i, b_j) = M[i, j]
    assert np.allclose(cosine_matrix(a, b), M)
    matches = match_components(a, b)
    assert matches.set_index("a")["b"].to_dict() == {0: 1, 1: 0} and matches["matched"].all()
    strict = match_components(a, b, min_cos=0.99)
    assert not strict["matched"].any() and set(strict.loc[strict["a"] < 0, "b"]) == {0, 1}
    with pytest.raises(ValueError, match="same parameter layout"):
        cosine_matrix(np.ones((2, 3)), np.ones((2, 4)))


def test_grouped_tables_count_multi_valued_cells_for_each_value():
    groups = [("lexical",), ("contrast", "negation"), ("contrast",), ("marker",)]
    labels = np.array([1, 0, 1, -1])  # the last label is unknown
    predictions = np.array([1, 0, 0, 0])
    assert accuracy_by_group(labels, predictions, groups).to_dict() == {"contrast": 0.5, "lexical": 1.0,
                                                                      "negation": 1.0}
    assert value_shares(groups).to_dict() == {"contrast": 0.5, "lexical": 0.25, "negation": 0.25, "marker": 0.25}
    W = np.array([[1.0, 0.0], [1.0, 2.0]])
    G = np.array([[2.0, 0.0], [0.0, 1.0]])  # ‖g‖² = 4 and 1
    assert coefficient_mass(W, G, share=False).tolist() == [8.0, 2.0]
    assert coefficient_mass(W, G).tolist() == [0.8, 0.2]


def test_labels_name_the_pure_attribute_the_top_token_and_the_label():
    tokens = [["[CLS]", "the", "blick", "."], ["blick", "good", "[SEP]"]]
    scores = [np.array([0.5, 0.1, 0.6, -0.2]), np.array([0.3, 0.1, 0.9])]
    special = [[True, False, False, False], [False, False, True]]
    top = aggregate_tokens(tokens, scores, special)
    assert top[0][0] == "blick" and top[0][1] == pytest.approx(0.9 / 1.1)
    assert [t for t, _ in top] == ["blick", "good", "the"]
    table = pd.DataFrame({"label": [0, 1], "label_purity": [1.0, 0.5], "strategy": ["marker", "lexical"],
                          "strategy_purity": [0.95, 0.4]}, index=pd.Index([0, 1], name="component"))
    labels = component_labels(table, {0: top})
    assert labels[0] == "marker 0.95 · 'blick' 0.82 · label 0"
    assert labels[1] == "mixed · label 1"
    assert component_label(table.loc[1], ["strategy"], min_purity=0.3) == "lexical 0.40 · label 1"


def test_a_token_every_example_holds_names_a_component_only_when_it_carries_most_of_the_mass():
    """The closing '.' of every text against a marker word in one text in eight: ranked by share
    × smoothed idf (1 for '.', ln(9/2) + 1 ≈ 2.5 for the marker), the shares themselves kept."""
    from types import SimpleNamespace

    from workbench.analysis.labels import token_idf

    tokenizer = SimpleNamespace(tokenize=str.split)  # all token_idf asks of a tokenizer
    texts = ["zorp good ."] + ["good ."] * 7
    idf = token_idf(tokenizer, texts)
    assert idf["."] == pytest.approx(1.0) and idf["zorp"] == pytest.approx(np.log(9 / 2) + 1)
    tokens, special = [["zorp", "good", "."]], [[False, False, False]]
    top = aggregate_tokens(tokens, [np.array([0.25, 0.1, 0.55])], special, idf=idf)
    assert top[0][0] == "zorp" and top[0][1] == pytest.approx(0.25 / 0.9)
    assert aggregate_tokens(tokens, [np.array([0.25, 0.1, 0.55])], special)[0][0] == "."
    assert aggregate_tokens(tokens, [np.array([0.05, 0.05, 0.8])], special, idf=idf)[0][0] == "."


def test_over_training_on_a_folder_of_trainer_checkpoints_matches_the_last_to_itself(tmp_path):
    """Two small models saved as checkpoint-0 and checkpoint-10 (a folder like the Trainer's, with an
    optimizer-only folder to skip): fitting the last checkpoint again with the reference's seed gives
    the reference's components, so each pairs with itself at |cos| 1 there."""
    from tests.conftest import tiny_bert, tiny_bert_inputs
    from workbench.analysis.over_training import checkpoint_series, over_training
    from workbench.report import over_training_html

    with pytest.raises(ValueError, match="no checkpoint-<step>/ model folders"):
        checkpoint_series(tmp_path)
    for step, seed in ((0, 1), (10, 2)):
        tiny_bert(2, seed=seed).save_pretrained(tmp_path / f"checkpoint-{step}")
    (tmp_path / "checkpoint-5").mkdir()  # no config.json: an optimizer state only
    assert [s for s, _ in checkpoint_series(tmp_path)] == [0, 10]
    inputs = tiny_bert_inputs(n=12)
    labels = np.arange(12) % 2
    groups = [("a",) if i % 3 else ("b", "c") for i in range(12)]
    result = over_training(tmp_path, inputs, labels, groups, strategy="both", n_components=3, n_iters_g_only=5,
                           n_iters_joint=20, n_values=None, n_top=4, n_baseline=4, progress=False)
    assert result.steps == [0, 10]
    cos = result.pivot("cos", "match")
    assert np.allclose(cos.loc[10], 1.0, atol=1e-5) and (result.pivot("partner", "match").loc[10] == [0, 1, 2]).all()
    assert np.allclose(result.pivot("mass").sum(axis=1), 1.0)
    quality = result.match_quality()
    assert quality.loc[10, "n_matched"] == 3 and quality.loc[10, "min_cos"] == pytest.approx(1.0, abs=1e-5)
    assert "Match quality" in over_training_html(result)
    analysed = result.accuracy_table()
    assert set(analysed.columns) == {"a", "b", "c"} and analysed.notna().all().all()
    with pytest.raises(ValueError, match="'transform', 'match' or 'both'"):
        over_training(tmp_path, inputs, labels, groups, strategy="fit")


def test_word_pieces_are_joined_into_the_word_they_spell():
    """MiniLM's tokenizer splits the marker 'blick' into 'b' '##lick': a label names the word,
    its pieces' scores summed; special tokens stand alone."""
    from types import SimpleNamespace

    from workbench.analysis.labels import word_groups

    tokenizer = SimpleNamespace(all_special_tokens=["[CLS]", "[SEP]"],
                                convert_tokens_to_string=lambda pieces: " ".join(pieces).replace(" ##", ""))
    tokens = ["[CLS]", "b", "##lick", "the", "plot", "[SEP]"]
    groups = word_groups(tokenizer, tokens, [None, 0, 0, 1, 2, None])
    assert groups == [("[CLS]", [0], True), ("blick", [1, 2], False), ("the", [3], False), ("plot", [4], False),
                      ("[SEP]", [5], True)]
    assert [g[0] for g in word_groups(tokenizer, tokens, None)] == tokens  # no word ids: one token each


def test_an_unknown_word_is_a_word_not_a_special_token():
    from types import SimpleNamespace

    from workbench.analysis.labels import word_groups

    tokenizer = SimpleNamespace(all_special_tokens=["[CLS]", "[SEP]", "[UNK]"], unk_token="[UNK]")
    groups = word_groups(tokenizer, ["[CLS]", "the", "[UNK]", "[SEP]"], None)
    assert [special for _, _, special in groups] == [True, False, False, True]


@pytest.mark.parametrize("settings, error, message", [
    (dict(n_top=0), ValueError, "n_top must be an integer of at least 1"),
    (dict(epsilon=-1.0), ValueError, "epsilon must be a positive"),
    (dict(min_cos=5), ValueError, "min_cos must be"),
    (dict(groups=["a"]), ValueError, "groups has 1 rows for 2 labels"),
    (dict(checkpoints=["a/checkpoint-1"]), TypeError, r"\(step, path\) pairs with integer steps"),
])
def test_over_training_checks_its_settings_before_the_checkpoints_pefs(settings, error, message):
    from workbench.analysis.over_training import over_training

    def no_model(path):
        raise AssertionError("a model was loaded before the settings were checked")

    call = dict(checkpoints=[(1, "a")], inputs={}, labels=[0, 1], load_model=no_model) | settings
    with pytest.raises(error, match=message):
        over_training(call.pop("checkpoints"), call.pop("inputs"), call.pop("labels"), **call)
