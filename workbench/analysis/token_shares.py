"""Token shares for reading: scores normalised over the visible tokens, and what is left out.

``highlights.token_scores`` splits an example's Fisher mass along a component exactly
into one share per token plus the share through parameters with no token axis (the
head): Σ_t score_t + head_share = 1. On a real model most of that mass can sit in the
head and in special tokens ([CLS] collects what the pooler reads), so shading the words
on the scale of all tokens leaves every word blank (MiniLM: [CLS] +0.034 beside
"terrible" +0.0008). A reader wants to know *which words* carry the component, and,
separately, *how much* of the mass words carry at all. So:

- ``visible``: each visible token's score over Σ |score| of the visible tokens (the words
  of the text; special tokens get 0), so Σ |visible| = 1 and the strongest word is shaded
  fully on any model;
- ``special_share`` and ``head_share``: the parts no word carries, as named numbers.

``visible_share`` (Σ score over the visible tokens) = 1 − special_share − head_share.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..core.words import word_positions

#: The share of a component's ‖g‖² in layers left out of the token scores from which a page notes it and the
#: log warns.
LEFT_OUT_NOTED = 0.01


@dataclass(frozen=True)
class TokenShares:
    """One example's token scores as read: normalised over its visible tokens, plus the parts no word carries."""

    visible: np.ndarray  # (n_tokens,) score / Σ_visible |score|; 0 at special tokens
    visible_share: float  # Σ of the raw scores over the visible tokens
    special_share: float  # Σ of the raw scores over the special tokens
    head_share: float  # through parameters without a token axis
    special: np.ndarray  # (n_tokens,) bool: the tokenizer's own tokens ([CLS], [SEP], <s>)


def strongest_word(visible: np.ndarray, skip: np.ndarray, words: Sequence[int | None] | None = None) -> list[int]:
    """The token positions of the word of the largest |share| (the sum of its pieces' shares), never a
    special token nor one of ``skip``: the word the shading draws strongest, whether it carries the
    component or cancels it (by the signed share, a word of 0% was underlined beside the fully shaded
    "not" that cancels it), and all of it: its strongest piece alone read '##lick' for the word "blick".
    Empty when no word carries any share."""
    visible, skip = np.asarray(visible, dtype=np.float64), np.asarray(skip, dtype=bool)
    if skip.all() or not np.any(visible[~skip]):
        return []
    groups = [[p for p in group if not skip[p]] for group in word_positions(words, len(visible))]
    groups = [group for group in groups if group]
    shares = [abs(visible[group].sum()) for group in groups]
    return groups[int(np.argmax(shares))]


def token_shares(scores: Sequence[float], special: Sequence[bool] | None, head_share: float) -> TokenShares:
    """Shares of one example from its raw token scores, which tokens are special, and its head share."""
    scores = np.asarray(scores, dtype=np.float64)
    special = np.zeros(len(scores), dtype=bool) if special is None else np.asarray(special, dtype=bool)
    if special.shape != scores.shape:
        raise ValueError(f"{len(special)} special flags for {len(scores)} token scores; pass one flag per token")
    visible = np.where(special, 0.0, scores)
    scale = np.abs(visible).sum()
    return TokenShares(
        visible=visible / scale if scale > 0 else visible,
        visible_share=float(visible.sum()),
        special_share=float(scores[special].sum()),
        head_share=float(head_share),
        special=special,
    )
