"""Tokens grouped into the words they spell, from a fast tokenizer's ``word_ids``.

A word is read whole wherever one is named or marked: a component's label, an example's strongest
word, the marks over the words that carry a component. Its pieces alone read as no word: MiniLM cuts
"blick" into 'b' '##lick', and the strongest piece, '##lick', was named as the word.
"""

from __future__ import annotations

from collections.abc import Sequence

#: Between the two texts of a pair where one string shows both (a card, a text view, a lookup): no
#: token's span covers it, so it is never shaded nor read as a word of either text.
PAIR_SEPARATOR = "  ‖  "

#: How a token of whitespace alone is shown.
BLANK = "␣"


def word_positions(words: Sequence[int | None] | None, n_tokens: int) -> list[list[int]]:
    """The positions of ``n_tokens`` tokens grouped into words: consecutive tokens of one word id. A token of
    no word (special, a prompt's template) stands alone, as every token does without ``words`` (slow
    tokenizers give none)."""
    if words is None:
        return [[p] for p in range(n_tokens)]
    groups: list[list[int]] = []
    for p, word in enumerate(words[:n_tokens]):
        if word is not None and p > 0 and words[p - 1] == word:
            groups[-1].append(p)
        else:
            groups.append([p])
    return groups
