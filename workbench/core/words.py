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


def is_blank_token(token: str) -> bool:
    """Whether ``token`` spells no character a reader sees: whitespace, or the tokenizers' marks of a space
    (byte-level BPE's 'Ġ', SentencePiece's '▁') alone."""
    return not token.replace("▁", "").replace("Ġ", "").strip()


def read_bounds(spans, special=None) -> tuple[int, int] | None:
    """Where the model's first read character of a text is, and where its last ends, from its tokens' ``spans``
    (special tokens, and tokens of no character, left out); None without a token of the text."""
    kept = [span for i, span in enumerate(spans or []) if not (special is not None and special[i]) and span[1] > span[0]]
    return None if not kept else (min(s for s, _ in kept), max(e for _, e in kept))


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


def words_split_at_spaces(text: str, spans: Sequence[tuple[int, int]], words: Sequence[int | None]) -> list[int | None]:
    """``words`` (a fast tokenizer's word ids, with the tokens' ``spans`` in ``text``) renumbered so that no word
    holds whitespace: a token starts a word where whitespace comes before it or begins its span, and a token of
    whitespace alone (byte-level BPE's lone 'Ġ', SentencePiece's '▁') is a word of its own, so a word's mark does
    not reach over the space before it. Llama 2's, Mistral's and Gemma's tokenizers split no words before their
    model (no pre-tokenizer, or a Metaspace that does not split): every token of a text was word 0, and the whole
    text was its strongest word, one mark and a component's label. Words a tokenizer splits at spaces
    (WordPiece, byte-level BPE, T5's) keep their ids' grouping."""
    out: list[int | None] = []
    previous, end, blank, number = None, None, False, -1
    for (start, stop), word in zip(spans, words):
        if word is None:
            out.append(None)
            previous, end = None, None
            continue
        piece = text[start:stop]
        spaced = (end is not None and any(c.isspace() for c in text[end:start])) or piece[:1].isspace()
        if word != previous or spaced or blank:
            number += 1
        out.append(number)
        previous, end, blank = word, max(stop, end or 0), stop > start and not piece.strip()
    return out
