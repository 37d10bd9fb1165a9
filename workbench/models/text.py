"""Texts and their tokens: texts cut by the tokenizer, and tokens spelled as the text spells them.

A text longer than the tokenizer's ``max_length`` loses its end (or, for prompts of
:class:`workbench.models.lm.ZeroShotClassifier`, its start), and its PEF is then the PEF of
the shorter text. :func:`warn_truncated` says how many were cut, so a run on long texts is
not mistaken for a run on the whole texts. :func:`spelled_tokens` shows tokens without the
tokenizer's marks ('Ġ', '▁', '##'), as the words a reader sees.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

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


def spelled_tokens(text: str, tokens: Sequence[str], spans: Sequence[tuple[int, int]] | None) -> list[str]:
    """Each token as ``text`` spells it (its character span, stripped), else as the tokenizer writes
    it: special tokens (empty spans), and every token when there are no spans (slow tokenizers)."""
    if spans is None:
        return list(tokens)
    return [(text[a:b].strip() or t) if b > a else t for t, (a, b) in zip(tokens, spans)]
