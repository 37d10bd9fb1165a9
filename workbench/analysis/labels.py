"""Short component labels built offline, from what the run already knows.

No hosted language model names the components: a label is the component's majority
attribute value (e.g. its strategy) when its top set is pure enough, the token that
carries the largest aggregated share of its top examples' Fisher mass along it (from
:mod:`.highlights`, when a model is at hand; shares discounted by how common the token
is, so a '.' that closes every example does not name the component), and its majority
label::

    marker 0.95 · 'blick' 0.62 · label 0

Each figure sits after the thing it measures: the attribute's purity, the token's share.
A component whose top set is not pure in any attribute says ``mixed``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ..core.words import is_blank_token, word_positions, words_split_at_spaces
from .tables import NAME_COLUMN

#: An attribute value names the component only when at least this share of its top set holds it.
MIN_PURITY = 0.6


def attribute_columns(table: pd.DataFrame) -> list[str]:
    """The attributes the table has a purity for, other than the label and prediction."""
    return [c[: -len("_purity")] for c in table.columns
            if c.endswith("_purity") and c[: -len("_purity")] not in ("label", "prediction")
            and c[: -len("_purity")] in table.columns]


def aggregate_tokens(tokens: Sequence[Sequence[str]], scores: Sequence[np.ndarray],
                     special: Sequence[Sequence[bool]] | None = None, *, weights: Sequence[float] | None = None,
                     idf: Mapping[str, float] | None = None, n_tokens: int = 3) -> list[tuple[str, float]]:
    """The tokens with the largest summed scores over several examples, with their shares.

    ``tokens``/``scores``: per example, its tokens and their shares of the example's mass
    (as :func:`.highlights.token_scores` gives them); special tokens are left out. A
    share is the token's summed positive score over the summed positive scores of all
    tokens, so shares of different tokens add up to at most 1. ``weights``: one per
    example (e.g. its coefficient), default equal.

    ``idf``: {token: inverse document frequency} (:func:`token_idf`); tokens are then
    ranked by share × idf, though the share is what is returned. A token every example
    holds (the closing '.') often carries much of each example's mass yet cannot tell
    the component's examples from others; the discount lets a rarer token that
    carries a fair share (a marker word) name the component, and a common token still
    wins when it carries most of the mass. Tokens missing from ``idf`` count as the rarest.
    """
    totals: dict[str, float] = defaultdict(float)
    weights = np.ones(len(tokens)) if weights is None else np.asarray(weights, dtype=np.float64)
    for k, (words, values) in enumerate(zip(tokens, scores)):
        skip = special[k] if special is not None else [False] * len(words)
        for word, value, is_special in zip(words, np.asarray(values, dtype=np.float64), skip):
            if not is_special and value > 0:
                totals[word] += weights[k] * value
    whole = sum(totals.values())
    if whole <= 0:
        return []
    rarest = max(idf.values(), default=1.0) if idf else 1.0
    weight = (lambda word: idf.get(word, rarest)) if idf else (lambda word: 1.0)
    ranked = sorted(totals.items(), key=lambda kv: (-kv[1] * weight(kv[0]), kv[0]))[:n_tokens]
    return [(word, value / whole) for word, value in ranked]


def token_idf(tokenizer, texts: Sequence) -> dict[str, float]:
    """{word: smoothed inverse document frequency over ``texts`` (strings, or pairs of them)}, ln((1 + n) / (1 + df)) + 1
    (scikit-learn's ``TfidfVectorizer`` with ``smooth_idf``): 1 for a word in every text. The
    words are the tokenizer's, its word pieces joined (:func:`word_groups`)."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    def words(text) -> list[str]:
        if isinstance(text, tuple):  # a pair of texts: the words of both
            return words(text[0]) + words(text[1])
        if not getattr(tokenizer, "is_fast", False):
            return tokenizer.tokenize(text)
        encoding = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        tokens = tokenizer.convert_ids_to_tokens(encoding["input_ids"])
        # the words encode_texts gives the scores: split at spaces, as Llama 2's tokenizer does not
        word_ids = words_split_at_spaces(text, encoding["offset_mapping"], encoding.word_ids())
        return [word for word, _, _ in word_groups(tokenizer, tokens, word_ids)]

    vectorizer = TfidfVectorizer(analyzer=words).fit(texts)
    return dict(zip(vectorizer.get_feature_names_out(), vectorizer.idf_.tolist()))


def component_label(row: pd.Series, attributes: Sequence[str], top_token: tuple[str, float] | None = None,
                    *, min_purity: float = MIN_PURITY) -> str:
    """The label of one component table row (see the module's docstring)."""
    if row.get("n_top") == 0:  # no example loads on it: nothing is mixed, there is nothing
        return "no examples"
    parts = []
    best = None
    for name in attributes:
        value, share = row.get(name), row.get(f"{name}_purity")
        if value is not None and share is not None and not pd.isna(share) and share >= min_purity:
            if best is None or share > best[1]:
                best = (value, float(share))
    parts.append(f"{best[0]} {best[1]:.2f}" if best is not None else "mixed")
    if top_token is not None:
        parts.append(f"'{top_token[0]}' {top_token[1]:.2f}")
    label = row.get("label")
    if label is not None and not pd.isna(label):
        label = label.item() if isinstance(label, np.generic) else label
        label = int(label) if isinstance(label, float) and float(label).is_integer() else label
        parts.append(f"label {label}")
    return " · ".join(parts)


def component_labels(table: pd.DataFrame, top_tokens: dict[int, list[tuple[str, float]]] | None = None, *,
                     min_purity: float = MIN_PURITY) -> pd.Series:
    """A label per row of a component table (index: component), named :data:`NAME_COLUMN`.

    ``top_tokens``: {component: [(token, share), ...]} from :func:`top_tokens` (optional).
    """
    attributes = attribute_columns(table)
    top_tokens = top_tokens or {}
    labels = [component_label(row, attributes, (top_tokens.get(j) or [None])[0], min_purity=min_purity)
              for j, row in table.iterrows()]
    return pd.Series(labels, index=table.index, name=NAME_COLUMN)


def word_groups(tokenizer, tokens: Sequence[str], word_ids: Sequence[int | None] | None,
                special: Sequence[bool] | None = None) -> list[tuple[str, list[int], bool]]:
    """[(word, its token positions, special)]: consecutive tokens of one word (a fast
    tokenizer's ``word_ids``) joined into the word they spell, so that MiniLM's 'b' '##lick'
    reads 'blick'; special tokens (no word) stand alone. Without ``word_ids``, one token each,
    special where ``special`` says (the tokenizer's mask: an unknown word's [UNK] is a word),
    else where the token is one of the tokenizer's special tokens."""
    if word_ids is None:
        if special is None:
            specials = set(tokenizer.all_special_tokens) - {getattr(tokenizer, "unk_token", None)}
            special = [t in specials for t in tokens]
        # a space token (ByT5's ' ', a lone 'Ġ') is no word to name
        return [(t, [p], bool(s) or is_blank_token(t)) for p, (t, s) in enumerate(zip(tokens, special))]
    groups = word_positions(word_ids, len(tokens))
    spelled = [None if word_ids[where[0]] is None else tokenizer.convert_tokens_to_string([tokens[q] for q in where]).strip()
               for where in groups]
    # a word that spells nothing (SentencePiece's lone '▁') is left out as special tokens are: it was a label's ''
    return [(tokens[where[0]], where, True) if word is None else (word, where, not word)
            for word, where in zip(spelled, groups)]


def top_tokens(model, tokenizer, decomposition, texts: Sequence[str], top_sets: dict[int, Sequence[int]], *,
               n_tokens: int = 3, max_length: int = 64, device=None, progress: bool = False
               ) -> dict[int, list[tuple[str, float]]]:
    """{component: its top words and their shares} aggregated over its top examples.

    ``top_sets``: {component: indices into ``texts`` of its top examples}. Each example's
    token scores are weighted equally and summed over the pieces of a word (:func:`word_groups`);
    the tokenizer's special tokens are left out; words are ranked by share discounted by how
    common they are in ``texts`` (:func:`aggregate_tokens`).
    """
    from tqdm.auto import tqdm

    from ..models.text import encode_texts
    from .highlights import token_scores

    idf = token_idf(tokenizer, texts)
    out = {}
    for j, rows in tqdm(top_sets.items(), desc="component labels", disable=not progress):
        rows = [int(i) for i in rows]
        if not rows:
            out[int(j)] = []
            continue
        encoded = encode_texts(model, tokenizer, [texts[i] for i in rows], max_length, warn=False, spans=True)
        scores = token_scores(model, decomposition, int(j), encoded.inputs, device=device)
        words, word_scores, special = [], [], []
        for k, example in enumerate(scores):
            kept = encoded.inputs["attention_mask"][k].bool()
            tokens = tokenizer.convert_ids_to_tokens(encoded.inputs["input_ids"][k][kept].tolist())
            word_ids = None if encoded.word_ids is None else encoded.word_ids[k]
            groups = word_groups(tokenizer, tokens, word_ids, encoded.special[k])
            words.append([word for word, _, _ in groups])
            word_scores.append(np.array([example.scores[where].sum() for _, where, _ in groups]))
            special.append([is_special for _, _, is_special in groups])
        out[int(j)] = aggregate_tokens(words, word_scores, special, idf=idf, n_tokens=n_tokens)
    return out


def with_names(table: pd.DataFrame, labels_file: Path) -> pd.DataFrame:
    """``table`` with a ``name`` column first: the saved labels (``labels.csv``, written by
    :meth:`RunExplorer.label_components`) where the run has them, else labels from the purities alone."""
    if NAME_COLUMN in table.columns:
        return table
    names = None
    if labels_file.exists():
        saved = pd.read_csv(labels_file, index_col="component", keep_default_na=False, dtype={NAME_COLUMN: str})[NAME_COLUMN]
        if saved.index.equals(table.index):
            names = saved
    if names is None:
        names = component_labels(table)
    return pd.concat([names.rename(NAME_COLUMN), table], axis=1)
