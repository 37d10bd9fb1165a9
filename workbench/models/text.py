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

from ..core.words import BLANK, PAIR_SEPARATOR, is_blank_token, words_split_at_spaces


class TruncationWarning(UserWarning):
    """Some texts were longer than the tokenizer's limit and were cut to it."""


#: The column of examples.parquet holding the second text of each pair; ``text`` keeps the first, so a
#: run of single texts (and every run written before pairs) reads as it did.
TEXT_PAIR_COLUMN = "text_pair"


def is_pair(text) -> bool:
    """Whether ``text`` is a pair of texts (as :func:`checked_texts` returns them: a tuple)."""
    return isinstance(text, tuple)


def are_pairs(texts: Sequence) -> bool:
    """Whether ``texts`` (as :func:`checked_texts` returns them: all pairs or none) are pairs of texts."""
    return len(texts) > 0 and is_pair(texts[0])


def shown_text(text) -> str:
    """An example as one string: its text, or a pair's two texts with :data:`PAIR_SEPARATOR` between."""
    return f"{text[0]}{PAIR_SEPARATOR}{text[1]}" if is_pair(text) else text


def checked_texts(texts, name: str = "texts") -> list:
    """``texts`` as a list of strings, or of (first, second) tuples for sentence pairs (an NLI premise and
    hypothesis, two questions); a mix, a member that is no string or a tuple of another length is refused."""
    import pandas as pd

    if isinstance(texts, pd.DataFrame):
        raise TypeError(f"{name} is a DataFrame; pass its text column as a list, or the pairs of its two text columns "
                        f"as tuples: list(zip(frame['premise'], frame['hypothesis']))")
    if isinstance(texts, str) or not isinstance(texts, Sequence | pd.Series | np.ndarray):
        raise TypeError(f"{name} must be a list of strings, or of (first, second) pairs of strings, one per example, "
                        f"got {type(texts).__name__}")
    texts = list(texts)
    if not texts:
        raise ValueError(f"{name} is empty: pass at least one example")
    pairs = [isinstance(t, (tuple, list, np.ndarray)) for t in texts]  # np.ndarray: a row of a (n, 2) array
    if any(pairs) and not all(pairs):
        single, pair = pairs.index(False), pairs.index(True)
        raise TypeError(f"{name} mixes pairs of texts and single texts (example {pair} is a pair, example {single} is "
                        f"a {type(texts[single]).__name__}): give every example as a (first, second) pair, or every "
                        "one as one string")
    _check_none_missing(texts, name, pairs=any(pairs))
    if not any(pairs):
        bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
        if bad:
            raise TypeError(f"{name} must be strings; example {bad[0]} is a {type(texts[bad[0]]).__name__}")
        return texts
    for i, t in enumerate(texts):
        if len(t) != 2:
            raise ValueError(f"{name}[{i}] has {len(t)} texts; a pair is (first, second), e.g. (premise, hypothesis): "
                             "join the texts of an example into two, or give one string per example")
        if not all(isinstance(part, str) for part in t):
            kinds = ", ".join(type(part).__name__ for part in t)
            raise TypeError(f"{name}[{i}] must be a pair of strings, got ({kinds}); e.g. (str(first), str(second))")
    return [(str(t[0]), str(t[1])) for t in texts]


def is_missing(value) -> bool:
    """None, NaN or pandas' NA: how a frame holds an empty cell."""
    import pandas as pd

    return not isinstance(value, str) and np.ndim(value) == 0 and bool(pd.isna(value))


def _check_none_missing(texts: list, name: str, pairs: bool) -> None:
    """A text left out (a frame's empty cell, NaN) was told to be made a string, which would read 'nan' as a text."""
    missing = [(i, j) for i, t in enumerate(texts) for j, part in enumerate(t if pairs else [t])
               if is_missing(part) and (not pairs or len(t) == 2)]
    if not missing:
        return
    i, j = missing[0]
    which = f"the {('first', 'second')[j]} text of {name}[{i}]" if pairs else f"{name}[{i}]"
    value = texts[i][j] if pairs else texts[i]
    rows = sorted({i for i, _ in missing})
    raise ValueError(f"{which} is missing ({value!r}: an empty cell of a DataFrame reads as NaN); {len(rows)} examples "
                     f"lack a text (first: {rows[:5]}). Drop them with their labels, e.g. frame = "
                     "frame.dropna(subset=[the text columns]), or fill them with the text they stand for")


def example_texts(examples) -> list:
    """The examples' texts as a run's examples table holds them: strings, or (text, text_pair) tuples."""
    first = [str(t) for t in examples["text"]]
    if TEXT_PAIR_COLUMN not in examples:
        return first
    return list(zip(first, (str(t) for t in examples[TEXT_PAIR_COLUMN])))


def tokenized(tokenizer, texts: Sequence, **kwargs):
    """``tokenizer`` on ``texts``: single texts, or pairs as the tokenizer reads pairs (its second
    sequence, and token type ids, for the second texts)."""
    texts = list(texts)
    if are_pairs(texts):
        return tokenizer([t[0] for t in texts], [t[1] for t in texts], **kwargs)
    return tokenizer(texts, **kwargs)


def truncated_rows(tokenizer, texts: Sequence[str], encoded, max_length: int) -> np.ndarray:
    """Indices of the ``texts`` whose tokens did not fit in ``max_length`` when ``encoded``
    (a tokenizer's output with ``truncation=True``): from the encodings' overflow for a
    fast tokenizer, else by tokenizing them again without the limit."""
    encodings = getattr(encoded, "encodings", None)
    if encodings is not None and len(encodings) == len(texts):
        return np.flatnonzero([len(e.overflowing) > 0 for e in encodings])
    lengths = [len(ids) for ids in tokenized(tokenizer, texts, truncation=False)["input_ids"]]
    return np.flatnonzero(np.asarray(lengths) > max_length)


def warn_truncated(cut: np.ndarray, n_texts: int, max_length: int, where: str = "end", stacklevel: int = 3,
                   pairs: bool = False) -> None:
    """A :class:`TruncationWarning` with the count, when ``cut`` (indices) is not empty."""
    if len(cut) == 0:
        return
    what = (f"pairs of texts are longer together than max_length={max_length} tokens and lost the end of their "
            "longer text (both, when still too long)" if pairs
            else f"texts are longer than max_length={max_length} tokens and lost their {where}")
    warnings.warn(
        f"{len(cut)} of {n_texts} {what} "
        f"(first: {list(map(int, cut[:5]))}); their PEFs are those of the cut texts. Raise max_length (up to the "
        "model's positions) or shorten the texts to keep them whole",
        TruncationWarning,
        stacklevel=stacklevel,
    )




def spelled_tokens(text: str, tokens: Sequence[str], spans: Sequence[tuple[int, int]] | None) -> list[str]:
    """Each token as ``text`` spells it (its character span, stripped), else as the tokenizer writes
    it: special tokens (empty spans), and every token when there are no spans (slow tokenizers).
    A token of whitespace alone (SentencePiece's lone '▁', 'Ġ') is shown as '␣', not as the mark, nor
    as the next character, which ALBERT's and T5's tokenizers give as its span ('w', 'w', 'as')."""
    if spans is None:  # a slow tokenizer's space token (ByT5's ' ') was the strongest word of every example
        return [BLANK if t and is_blank_token(t) else t for t in tokens]
    return [BLANK if t and is_blank_token(t) and b > a else (text[a:b].strip() or BLANK) if b > a else t
            for t, (a, b) in zip(tokens, spans)]


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
    the tokenizer marks: an unknown word's [UNK] is a word of the text. Pairs of texts (tuples) are
    encoded as the tokenizer encodes pairs, cut longest first; their string is :func:`shown_text`, each
    token's span in its own text there, and the second text's words numbered after the first's."""
    texts = list(texts)
    fast = spans and getattr(tokenizer, "is_fast", False)
    if are_pairs(texts) and getattr(model, "prompts", None) is not None:
        raise ValueError("a language model read through a prompt takes one text per example, not pairs of texts; "
                         "join each pair into one text, or use a sequence classifier")
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


def _classifier_inputs(tokenizer, texts: list, max_length: int, warn: bool, fast: bool) -> EncodedTexts:
    pairs = are_pairs(texts)
    encoded = tokenized(tokenizer, texts, padding="longest", truncation=True, max_length=max_length,
                        return_tensors="pt", return_offsets_mapping=fast, return_special_tokens_mask=True)
    if warn:
        warn_truncated(truncated_rows(tokenizer, texts, encoded, max_length), len(texts), max_length, stacklevel=5,
                       pairs=pairs)
    inputs = dict(encoded)
    offsets, marked = inputs.pop("offset_mapping", None), inputs.pop("special_tokens_mask")
    kept = [m.bool().tolist() for m in inputs["attention_mask"]]

    def real(rows) -> list[list]:  # each row's entries at the tokens its mask keeps
        return [[value for value, keep in zip(row, keep_row) if keep] for row, keep_row in zip(rows, kept)]

    special = [np.array(row, dtype=bool) for row in real(marked.tolist())]
    rows = None if offsets is None else real(offsets.tolist())
    words = None if offsets is None else real([encoded.word_ids(i) for i in range(len(texts))])
    if pairs and offsets is not None:
        rows, words = _pair_spans(encoded, texts, rows, words, real)
    no_template = [np.zeros(len(s), dtype=bool) for s in special]
    strings = [shown_text(t) for t in texts]
    rows = _as_spans(rows)
    return EncodedTexts(inputs, strings, [0] * len(texts), no_template, special, rows, _split_words(strings, rows, words))


def _split_words(strings: list[str], rows, words) -> list | None:
    return None if words is None else [words_split_at_spaces(s, r, w) for s, r, w in zip(strings, rows, words)]


def _pair_spans(encoded, texts: list, rows: list, words: list, real) -> tuple[list, list]:
    """Spans and word ids of pairs, made of one string (:func:`shown_text`): a fast tokenizer's offsets and
    word ids start again at 0 in the second text, so its tokens would shade the first text's characters, and
    the first text's last word and the second's first be one word where their ids meet."""
    sequences = real([encoded.sequence_ids(i) for i in range(len(texts))])
    spans, numbered = [], []
    for row, ids, seqs, (first, _) in zip(rows, words, sequences, texts):
        shift, after = len(first) + len(PAIR_SEPARATOR), 1 + max((w for w, s in zip(ids, seqs) if s == 0 and w is not None),
                                                                  default=-1)
        spans.append([(a + shift, b + shift) if s == 1 and b > a else (a, b) for (a, b), s in zip(row, seqs)])
        numbered.append([w + after if s == 1 and w is not None else w for w, s in zip(ids, seqs)])
    return spans, numbered


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
    return EncodedTexts(inputs, strings, [start] * len(texts), template, special, rows, _split_words(strings, rows, words))


def _in_text(prompt: str, a: int, b: int, start: int, end: int) -> bool:
    """Whether the token spanning prompt[a:b] is of the text, prompt[start:end]: it covers some of the text
    and nothing of the template but whitespace. SentencePiece's "▁the" spans the space before the text's
    first word, which was read as the template's, and left that word out of every highlight."""
    low, high = max(a, start), min(b, end)
    return low < high and not prompt[a:low].strip() and not prompt[high:b].strip()


def _as_spans(rows) -> list[list[tuple[int, int]]] | None:
    return None if rows is None else [[tuple(map(int, span)) for span in row] for row in rows]
