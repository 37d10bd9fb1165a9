"""Texts cut by the tokenizer are counted in a warning (issue 19: they were cut silently)."""

import warnings

import pytest

from workbench.models.embedded.model import build_tokenizer, tokenize
from workbench.models.text import TruncationWarning, truncated_rows


def test_tokenize_warns_with_the_count_of_cut_texts():
    tokenizer = build_tokenizer()
    short, long = "a b", " ".join(["a"] * 30)
    with pytest.warns(TruncationWarning, match=r"2 of 3 texts are longer than max_length=8 tokens and lost their end "
                                               r"\(first: \[0, 2\]\)"):
        encoded = tokenize(tokenizer, [long, short, long], max_length=8)
    assert encoded["input_ids"].shape == (3, 8)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tokenize(tokenizer, [short, short], max_length=8)  # nothing cut: no warning
        tokenize(tokenizer, [long], max_length=8, warn=False)


def test_slow_path_counts_the_same_as_the_fast_one():
    tokenizer = build_tokenizer()
    texts = ["a b", " ".join(["a"] * 30), " ".join(["a"] * 6)]
    encoded = tokenizer(texts, truncation=True, max_length=8)
    fast = truncated_rows(tokenizer, texts, encoded, 8)
    slow = truncated_rows(tokenizer, texts, dict(encoded), 8)  # no encodings: tokenized again without the limit
    assert fast.tolist() == slow.tolist() == [1]
