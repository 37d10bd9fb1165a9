"""Texts and their tokens: texts made into model inputs, texts cut by the tokenizer, and tokens
spelled as the text spells them.

:func:`encode_texts` is the one way the workbench turns texts into a model's inputs: the
tokenizer's for a classifier, the prompts of a language model read as a classifier
(:class:`workbench.models.lm.ZeroShotClassifier`, which has ``encode``), with each token's
characters in the text and, for prompts, which tokens are the template's.

A text longer than the tokenizer's ``max_length`` loses its end (or, for prompts of
:class:`workbench.models.lm.ZeroShotClassifier`, its start), and its PEF is then the PEF of
the shorter text. :func:`warn_truncated` says how many were cut, so a run on long texts is
not mistaken for a run on the whole texts. :func:`spelled_tokens` shows tokens without the
tokenizer's marks ('Ġ', '▁', '##'), as the words a reader sees.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


class TruncationWarning(UserWarning):
    """Some texts were longer than the tokenizer's limit and were cut to it."""


def truncated_rows(tokenizer, texts: Sequence[str], encoded, max_length: int) -> np.ndarray:
    """Indices of the ``texts`` whose tokens did not fit in ``max_length`` when ``encoded``
    (a tokenizer's output with ``truncation=True``): from the encodings' overflow for a
    fast tokenizer, else by tokenizing them again without the limit."""
    encodings = getattr(encoded, "encodings", None)
    if encodings is not None and len(encodings) == len(texts):
        return np.flatnonzero([len(e.overflowing) > 0 for e in encodings])
    lengths = [len(ids) for ids in tokenizer(list(texts), truncation=False)["input_ids"]]
    return np.flatnonzero(np.asarray(lengths) > max_length)


def warn_truncated(cut: np.ndarray, n_texts: int, max_length: int, where: str = "end", stacklevel: int = 3) -> None:
    """A :class:`TruncationWarning` with the count, when ``cut`` (indices) is not empty."""
    if len(cut) == 0:
        return
    warnings.warn(
        f"{len(cut)} of {n_texts} texts are longer than max_length={max_length} tokens and lost their {where} "
        f"(first: {list(map(int, cut[:5]))}); their PEFs are those of the cut texts. Raise max_length (up to the "
        "model's positions) or shorten the texts to keep them whole",
        TruncationWarning,
        stacklevel=stacklevel,
    )


#: How a token of whitespace alone is shown.
BLANK = "␣"


def spelled_tokens(text: str, tokens: Sequence[str], spans: Sequence[tuple[int, int]] | None) -> list[str]:
    """Each token as ``text`` spells it (its character span, stripped), else as the tokenizer writes
    it: special tokens (empty spans), and every token when there are no spans (slow tokenizers).
    A token of whitespace alone (SentencePiece's lone '▁', 'Ġ') is shown as '␣', not as the mark, nor
    as the next character, which ALBERT's and T5's tokenizers give as its span ('w', 'w', 'as')."""
    if spans is None:
        return list(tokens)
    return [BLANK if _whitespace_mark(t) and b > a else (text[a:b].strip() or BLANK) if b > a else t
            for t, (a, b) in zip(tokens, spans)]


def _whitespace_mark(token: str) -> bool:
    return bool(token) and not token.replace("▁", "").replace("Ġ", "").strip()


@dataclass
class EncodedTexts:
    """Texts as model inputs, and what each row's real tokens (those its mask keeps, in order) are."""

    inputs: dict  # input_ids, attention_mask (and token_type_ids): tensors, padded to the longest row
    strings: list[str]  # what was tokenized: the texts, or the prompts made of them
    text_starts: list[int]  # where each text starts in its string (0 without a template)
    template: list[np.ndarray]  # per row, per real token: True where it is the prompt's, not the text's
    special: list[np.ndarray]  # per row, per real token: the tokenizer's special tokens ([CLS], <s>) and the template's
    spans: list[list[tuple[int, int]]] | None = None  # per row, per real token: its characters in the string
    word_ids: list[list[int | None]] | None = None  # per row, per real token: its word (None: special or template)

    def text_spans(self, row: int) -> list[tuple[int, int]] | None:
        """The row's token spans in its text; the template's tokens (and special ones) get (0, 0).
        A token that takes the template's space before the text with the text's first word (GPT-2's
        'Ġthe', Llama's '▁the') is cut to the text's characters: its span began at -1, so the word was
        shown as '␣', never its example's strongest word and counted as '␣' in a component's tokens."""
        if self.spans is None:
            return None
        start = self.text_starts[row]
        return [(0, 0) if t else (max(a, start) - start, b - start) for (a, b), t in zip(self.spans[row], self.template[row])]


def encode_texts(model, tokenizer, texts: Sequence[str], max_length: int, *, warn: bool = True,
                 spans: bool = False) -> EncodedTexts:
    """``texts`` as the inputs of ``model``: the prompts of its ``encode`` when it has one (a language
    model read as a classifier: left padded, cut at the start), else the tokenizer's (padded to the
    longest text, cut at the end). ``warn``: a :class:`TruncationWarning` for texts that were cut;
    ``spans``: each token's characters and word (fast tokenizers only). Special tokens are those
    the tokenizer marks: an unknown word's [UNK] is a word of the text."""
    texts = list(texts)
    fast = spans and getattr(tokenizer, "is_fast", False)
    if getattr(model, "prompts", None) is None:
        encoded = _classifier_inputs(tokenizer, texts, max_length, warn, fast)
        reads = _reads(model)
        encoded.inputs = {k: v for k, v in encoded.inputs.items() if reads(k)}
        return encoded
    return _prompt_inputs(model, tokenizer, texts, max_length, warn, fast)


def _reads(model):
    """Whether the model's forward reads an input (a test of its name): a tokenizer of another family
    (BERT's, saved with a DistilBERT) adds token_type_ids, which the forward would swallow unread,
    with a warning at every call; our own tokenization leaves them out. A wrapper that passes its
    inputs on takes them all."""
    from ..core.validation import forward_inputs  # imports torch, which `import widgets` does without

    reads = forward_inputs(model)
    return (lambda name: True) if reads is None else set(reads[0]).__contains__


def _classifier_inputs(tokenizer, texts: list[str], max_length: int, warn: bool, fast: bool) -> EncodedTexts:
    encoded = tokenizer(texts, padding="longest", truncation=True, max_length=max_length, return_tensors="pt",
                        return_offsets_mapping=fast, return_special_tokens_mask=True)
    if warn:
        warn_truncated(truncated_rows(tokenizer, texts, encoded, max_length), len(texts), max_length, stacklevel=5)
    inputs = dict(encoded)
    offsets, marked = inputs.pop("offset_mapping", None), inputs.pop("special_tokens_mask")
    kept = [m.bool().tolist() for m in inputs["attention_mask"]]

    def real(rows) -> list[list]:  # each row's entries at the tokens its mask keeps
        return [[value for value, keep in zip(row, keep_row) if keep] for row, keep_row in zip(rows, kept)]

    special = [np.array(row, dtype=bool) for row in real(marked.tolist())]
    rows = None if offsets is None else real(offsets.tolist())
    words = None if offsets is None else real([encoded.word_ids(i) for i in range(len(texts))])
    no_template = [np.zeros(len(s), dtype=bool) for s in special]
    return EncodedTexts(inputs, texts, [0] * len(texts), no_template, special, _as_spans(rows), words)


def _prompt_inputs(model, tokenizer, texts: list[str], max_length: int, warn: bool, fast: bool) -> EncodedTexts:
    inputs = model.encode(texts, max_length, warn=warn, stacklevel=6)  # the warning names the caller's line, as a classifier's
    strings = model.prompts(texts)
    start = len(model.template.format(text="\x00").split("\x00")[0])  # where the text begins in its prompt
    # the prompts tokenized as ``encode`` does them: without the special tokens the tokenizer appends (an EOS),
    # cut alike (at the start); with the EOS each row had a flag and a span more than it has tokens
    encoded = tokenizer(strings, return_offsets_mapping=fast, return_special_tokens_mask=True)
    appended = model.appended_tokens

    def cut(row) -> list:
        row = list(row)
        return row[: len(row) - appended][-max_length:]

    special = [np.array(cut(m), dtype=bool) for m in encoded["special_tokens_mask"]]
    rows = _as_spans([cut(o) for o in encoded["offset_mapping"]] if fast else None)
    words = [cut(encoded.word_ids(i)) for i in range(len(strings))] if fast else None
    template = [np.zeros(len(s), dtype=bool) for s in special]  # unknown without spans (slow tokenizers)
    if rows is not None:
        template = [np.array([not _in_text(prompt, a, b, start, start + len(text)) for a, b in row])
                    for row, text, prompt in zip(rows, texts, strings)]
    special = [s | t for s, t in zip(special, template)]
    if words is not None:  # the template is no word of the text
        words = [[None if t else w for w, t in zip(row, flags)] for row, flags in zip(words, template)]
    return EncodedTexts(inputs, strings, [start] * len(texts), template, special, rows, words)


def _in_text(prompt: str, a: int, b: int, start: int, end: int) -> bool:
    """Whether the token spanning prompt[a:b] is of the text, prompt[start:end]: it covers some of the text
    and nothing of the template but whitespace. SentencePiece's "▁the" spans the space before the text's
    first word, which was read as the template's, and left that word out of every highlight."""
    low, high = max(a, start), min(b, end)
    return low < high and not prompt[a:low].strip() and not prompt[high:b].strip()


def _as_spans(rows) -> list[list[tuple[int, int]]] | None:
    return None if rows is None else [[tuple(map(int, span)) for span in row] for row in rows]
