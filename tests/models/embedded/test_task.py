"""The synthetic task: labels follow the stated strategies, shares and indices are right."""

import pandas as pd
import pytest

from workbench.models.embedded.task import (
    DEFAULT_MIX,
    MARKER_WORDS,
    MAX_WORDS,
    MULTI_FACTOR,
    NEGATIVE_WORDS,
    POSITIVE_WORDS,
    STRATEGIES,
    deciding_token_positions,
    make_examples,
    vocabulary,
)


@pytest.fixture(scope="module")
def examples():
    return make_examples(2000, seed=0)


def clause_polarity(words: list[str]) -> int:
    """Independent oracle for one clause: its one adjective, flipped by "not"."""
    adjectives = [w for w in words if w in POSITIVE_WORDS or w in NEGATIVE_WORDS]
    assert len(adjectives) == 1, words
    polarity = int(adjectives[0] in POSITIVE_WORDS)
    return 1 - polarity if "not" in words else polarity


def oracle_label(text: str) -> int:
    words = text.split(" ")
    markers = [w for w in words if w in MARKER_WORDS]
    if markers:
        return MARKER_WORDS[markers[0]]
    if "but" in words:
        return clause_polarity(words[words.index("but") + 1 :])
    return clause_polarity(words)


def oracle_strategy(text: str) -> str:
    """Which strategy decides, read off the sentence alone."""
    words = text.split(" ")
    if any(w in MARKER_WORDS for w in words):
        return "contrast+marker" if "but" in words else "marker"
    if "but" in words:
        return "contrast+negation" if "not" in words[words.index("but") :] else "contrast"
    return "negation" if "not" in words else "lexical"


def test_reproducible_for_same_seed_and_different_across_seeds():
    first, again, other = make_examples(300, seed=3), make_examples(300, seed=3), make_examples(300, seed=4)
    assert first.equals(again)
    assert (first["text"] != other["text"]).mean() > 0.8


def test_columns_and_types(examples):
    assert list(examples.columns) == ["text", "label", "strategy", "strategies", "deciding_words"]
    assert set(examples["label"]) == {0, 1}
    for row in examples.itertuples():
        assert isinstance(row.text, str) and isinstance(row.strategies, tuple)
        assert row.strategies == tuple(row.strategy.split("+"))
        assert all(name in STRATEGIES for name in row.strategies)
        assert row.strategy in STRATEGIES + MULTI_FACTOR


def test_labels_and_strategies_match_independent_oracle(examples):
    assert [oracle_label(t) for t in examples["text"]] == examples["label"].tolist()
    assert [oracle_strategy(t) for t in examples["text"]] == examples["strategy"].tolist()


def test_contrast_marker_examples_agree_on_both_strategies(examples):
    both = examples[examples["strategy"] == "contrast+marker"]
    assert len(both) > 100
    for text, label in zip(both["text"], both["label"]):
        words = text.split(" ")
        assert clause_polarity(words[words.index("but") + 1 :]) == label  # the contrast alone decides too
        assert sum(w in MARKER_WORDS for w in words) == 1


def test_nothing_before_but_predicts_the_label(examples):
    """Clause 1's polarity is independent of the label, or its adjective would decide as
    surely as the deciding words (a shortcut the models of task version 2 took)."""
    contrasts = examples[examples["text"].str.contains(" but ")]
    words = contrasts["text"].str.split(" ")
    first = words.map(lambda ws: clause_polarity([w for w in ws[: ws.index("but")] if w not in MARKER_WORDS]))
    agrees = (first == contrasts["label"]).mean()
    assert len(contrasts) > 500 and 0.45 < agrees < 0.55


def test_strategy_shares_follow_mix_and_labels_are_balanced(examples):
    shares = examples["strategy"].value_counts(normalize=True)
    for name, share in DEFAULT_MIX.items():
        assert abs(shares[name] - share) <= 0.05
    assert (examples.groupby("strategy")["label"].mean() - 0.5).abs().max() <= 0.01


def test_some_negations_do_not_decide(examples):
    words = examples["text"].str.split(" ")
    has_not = words.map(lambda ws: "not" in ws)
    not_deciding = pd.Series(
        ["not" not in [ws[i] for i in idx] for ws, idx in zip(words, examples["deciding_words"])],
        index=examples.index,
    )
    distractors = has_not & not_deciding
    assert 0.02 < distractors.mean() < 0.15
    assert set(examples.loc[distractors, "strategy"]) == {"contrast", "marker", "contrast+marker"}


def expected_deciding_words(words: list[str], strategy: str) -> set[str]:
    """The words each strategy's definition says decide the label."""
    markers = {w for w in words if w in MARKER_WORDS}
    if strategy == "marker":
        return markers
    if strategy == "contrast+marker":
        return markers | expected_deciding_words([w for w in words if w not in MARKER_WORDS], "contrast")
    tail = words[words.index("but") :] if "but" in words else words
    decided = {w for w in tail if w in POSITIVE_WORDS or w in NEGATIVE_WORDS}
    if "not" in tail:
        decided.add("not")
    if "but" in words:
        decided.add("but")
    return decided


def test_deciding_words_point_at_expected_words(examples):
    for row in examples.itertuples():
        words = row.text.split(" ")
        picked = [words[i] for i in row.deciding_words]
        assert len(picked) == len(set(picked)) == len(expected_deciding_words(words, row.strategy))
        assert set(picked) == expected_deciding_words(words, row.strategy), row.text
        if "but" in words:
            assert all(i > words.index("but") or words[i] == "but" or words[i] in MARKER_WORDS for i in row.deciding_words)


def test_every_word_in_vocabulary_and_lengths_bounded(examples):
    vocab = vocabulary()
    assert vocab == sorted(set(vocab))
    used = {w for text in examples["text"] for w in text.split(" ")}
    assert used <= set(vocab)
    assert set(MARKER_WORDS) <= used
    lengths = examples["text"].str.split(" ").map(len)
    assert lengths.min() >= 5 and lengths.max() <= MAX_WORDS


def test_marker_words_are_used_nowhere_else():
    other = set(vocabulary()) - set(MARKER_WORDS)
    assert not set(MARKER_WORDS) & (other | set(POSITIVE_WORDS) | set(NEGATIVE_WORDS))
    assert sorted(MARKER_WORDS.values()) == [0, 1]


def test_custom_mix_and_bad_mix():
    only = make_examples(40, seed=1, mix={"contrast+negation": 1.0})
    assert set(only["strategy"]) == {"contrast+negation"} and len(only) == 40
    with pytest.raises(ValueError):
        make_examples(10, mix={"sarcasm": 1.0})


def test_excluded_texts_are_drawn_again_with_the_same_strategy_and_label():
    seen = frozenset(make_examples(2000, seed=0)["text"])
    plain = make_examples(300, seed=5)
    held_out = make_examples(300, seed=5, exclude=seen)
    assert plain["text"].isin(seen).sum() > 10  # without exclusion the sets share texts
    assert not held_out["text"].isin(seen).any()
    assert (held_out[["strategy", "label"]].to_numpy() == plain[["strategy", "label"]].to_numpy()).all()
    assert [oracle_label(t) for t in held_out["text"]] == held_out["label"].tolist()
    assert make_examples(300, seed=5, exclude=frozenset()).equals(plain)


def test_exclusion_that_leaves_nothing_is_a_clear_error():
    class Everything(frozenset):
        def __contains__(self, text):
            return True

    with pytest.raises(ValueError, match="all gave excluded texts"):
        make_examples(4, seed=0, exclude=Everything({"x"}))


def test_deciding_token_positions_word_level_and_split_words():
    row = {"deciding_words": (0, 3)}
    # [CLS] w0 w1 w2 w3 [SEP]: one token per word.
    assert deciding_token_positions(row, [None, 0, 1, 2, 3, None]) == [1, 4]
    # WordPiece: w0 split in three, w3 in two.
    word_ids = [None, 0, 0, 0, 1, 2, 3, 3, None]
    assert deciding_token_positions((0, 3), word_ids) == [1, 2, 3, 6, 7]
    assert deciding_token_positions([], word_ids) == []


def test_deciding_token_positions_accepts_frame_rows():
    frame = make_examples(5, seed=0)
    word_ids = [None, *range(MAX_WORDS), None]
    expected = [i + 1 for i in frame["deciding_words"][0]]
    assert deciding_token_positions(frame.iloc[0], word_ids) == expected
    assert deciding_token_positions(next(frame.itertuples()), word_ids) == expected
