"""Reverse lookup: which components an example loads on, also for a text the model has not seen.

For an example of the run, its row of W. For a new text: its PEF (the same kind, parameters
and n_values as the run's) and the decomposition's ``transform`` with the components fixed
(NPEFF's W step for one example). Those are not quite what the fit gives its own examples:
the fit's W comes out of the joint steps, while ``transform`` solves for W with the final
components (on the tiny run a median 0.1% of an example's largest coefficient apart, at most
9%), as scikit-learn's ``NMF.fit_transform`` and ``transform`` differ.

A new example of a run of sentence pairs is a (first, second) pair, encoded as the run encoded its
pairs (longest first cut at the same max_length, token type ids kept): one text's PEF, or a pair's for
a run of single texts, would be of inputs the fit never saw.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence

import numpy as np
import pandas as pd

from ..core.defaults import N_VALUES
from ..core.arguments import positive_int
from ..core.words import read_bounds, word_positions, words_split_at_spaces
from ..models.text import are_pairs, is_pair
from .tables import scaled_coefficients


def loadings(coefficients: np.ndarray, components: np.ndarray, *, kind: str = "lrm", n: int | None = 10) -> pd.DataFrame:
    """The components one example loads on, largest scaled coefficient first (zeros left out).

    Columns: ``coefficient`` (W_ij), ``scaled`` (W_ij ‖g_j‖², comparable across components) and
    ``share`` (of the example's summed scaled coefficients). ``n``: how many to list (None: all).
    """
    if n is not None:
        n = positive_int(n, "n")  # [:0] would list none, [:-1] all but one
    w = np.asarray(coefficients, dtype=np.float64)
    if w.ndim != 1:  # W[:2] broadcast into numpy's own error
        raise ValueError(f"coefficients are one example's row of W (n_components,), got shape {w.shape}; for example "
                         "i pass W[i]")
    scaled = scaled_coefficients(w[None, :], components, kind)[0]
    total = scaled[w > 0].sum()
    order = np.argsort(-scaled, kind="stable")
    order = order[w[order] > 0][:n]
    return pd.DataFrame({"coefficient": w[order], "scaled": scaled[order],
                         "share": scaled[order] / total if total > 0 else 0.0},
                        index=pd.Index(order, name="component"))


def pefs_of_texts(model, tokenizer, decomposition, texts: Sequence, *, kind: str = "lrm",
                  n_values: int | None = N_VALUES, max_length: int = 64, device=None,
                  warn_of: int | None = None):
    """PEFs of ``texts`` over exactly the decomposition's parameters (however its run chose them), of
    ``kind`` with ``n_values`` kept per example, as the run's. Labels are not needed: a PEF is over the
    model's predicted distribution (its class slots), not the true label. ``texts``: strings, or (first,
    second) pairs of strings, encoded as ``run_model`` encodes them (``models.text.encode_texts``, with a
    ``TruncationWarning`` for those cut at ``max_length``; ``warn_of``: of the first ``warn_of`` texts alone, where
    the others are made from them)."""
    from ..models.text import encode_texts
    from ..runner import compute_pefs
    from .moves import differentiable, parameters_of

    _check_new_texts(texts)
    inputs = encode_texts(model, tokenizer, texts, max_length, warn=warn_of is None).inputs
    if warn_of:
        encode_texts(model, tokenizer, list(texts)[:warn_of], max_length)
    include = ["^" + re.escape(name) + "$" for name in decomposition.layout_.names]
    # a layer frozen after the run (a model given to the explorer) would be left out of the PEF, which then fits
    # no component of the decomposition
    with differentiable(parameters_of(model, decomposition.layout_)):
        return compute_pefs(model, inputs, kind=kind, n_values=n_values, include=include, device=device,
                            progress=False, check_resources=False)


def coefficients_of_texts(model, tokenizer, decomposition, texts: Sequence, **kwargs) -> tuple[np.ndarray, float]:
    """(W of ``texts``: (n_texts, n_components), seconds taken): :func:`pefs_of_texts` (keyword
    arguments go there), then the decomposition's ``transform``."""
    started = time.perf_counter()
    W = decomposition.transform(pefs_of_texts(model, tokenizer, decomposition, texts, **kwargs))
    return W, time.perf_counter() - started


def read_spans(model, tokenizer, text, max_length: int) -> dict:
    """``text``'s tokens as the run reads them, for a :class:`~workbench.app.results.Lookup` to mark where a cut
    at ``max_length`` stopped the model: ``spans`` (their characters in the text as shown) and ``special``;
    nothing where the tokenizer gives no spans (a slow one)."""
    from ..models.text import encode_texts

    encoded = encode_texts(model, tokenizer, [text], max_length, warn=False, spans=True)
    spans = encoded.text_spans(0)
    return {} if spans is None else {"spans": spans, "special": encoded.special[0].tolist()}


#: A text's coefficient at most this share of the largest of it and its deletions' is no coefficient: its drops are NaN.
NO_COEFFICIENT = 1e-6


def deletion_effects(model, tokenizer, decomposition, text, component: int, **kwargs) -> pd.DataFrame:
    """What ``text``'s coefficient on ``component`` depends on, by intervention: each word deleted in
    turn and the coefficient fitted again (:func:`coefficients_of_texts`; keyword arguments go
    there). The token shading says where the Fisher mass along the component flows; this says
    which words the coefficient needs. One row per word, largest drop first: ``word``, its
    ``start`` and ``stop`` in the text, the ``coefficient`` without it and the ``drop``, 1 − that
    over the text's own coefficient (fitted the same way; 1: the word carries all of it, below 0:
    the coefficient rises without it; NaN where the text loads on nothing, at most
    :data:`NO_COEFFICIENT` of the largest coefficient), and ``read``: whether the model reads the word
    at all (a word past the cut at ``max_length`` is not deleted and refitted; its coefficient and
    drop are NaN).

    ``text`` may be a (first, second) pair of texts, encoded as the run encodes pairs: its words are
    those the tokenizer's word ids group (as a card groups its tokens; "dog's" is three), in either
    text, and a column ``text`` after ``word`` says which, "first" or "second"; ``start`` and ``stop``
    are in that text. Deleting a text's only word leaves it empty, and the model reads the other alone."""
    if is_pair(text):
        _check_new_texts([text])
        words = _pair_words(tokenizer, text)
        edited = [tuple(_deleted(part, a, b) if i == side else part for i, part in enumerate(text))
                  for side, _, a, b in words]
        which = {"text": [PAIR_SIDES[side] for side, _, _, _ in words]}
        read = None  # a pair's words past the cut are refitted: deleting one may move the cut (longest first)
    else:
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"text must be a non-empty string, got {text!r}")
        words = [(0, m.group(), m.start(), m.end()) for m in re.finditer(r"\S+", text)]
        read = _read_words(model, tokenizer, text, words, kwargs.get("max_length", 64))
        edited, which = [_deleted(text, a, b) for (_, _, a, b), r in zip(words, read) if r], {}
    if len(words) < 2:
        raise ValueError(f"{text!r} is one word: without it no text is left to fit; pass a text of two words or more")
    # a cut text warned of as '71 of 71 texts' cut, its deletions counted with it
    W, _ = coefficients_of_texts(model, tokenizer, decomposition, [text, *edited], warn_of=1, **kwargs)
    own, without = float(W[0, component]), np.full(len(words), np.nan)
    without[slice(None) if read is None else read] = W[1:, component]
    # an own coefficient at float32's rounding beside those without a word (1e-17 beside 0.09, where the text loads
    # on nothing) is none: over it, drops read -3e15
    loads = own > NO_COEFFICIENT * max(own, float(np.nanmax(without, initial=0.0)))
    frame = pd.DataFrame({"word": [w for _, w, _, _ in words], **which, "start": [a for _, _, a, _ in words],
                          "stop": [b for _, _, _, b in words], "coefficient": without,
                          "drop": 1 - without / own if loads else np.nan,
                          **({} if read is None else {"read": read})})
    frame.attrs["coefficient"] = own  # the text's own, fitted as the deletions are
    return frame.sort_values("drop", ascending=False, kind="stable").reset_index(drop=True)


def _read_words(model, tokenizer, text: str, words, max_length: int) -> np.ndarray:
    """(n_words,) bool: whether the model reads any of each word's characters. A word past the cut at ``max_length``
    was deleted, refitted and shown at a drop of 0, read as 'the coefficient does not need it' where the model never
    read it (994 of the 1000 words of a long text, each a PEF). A slow tokenizer gives no characters: every word read."""
    where = read_spans(model, tokenizer, text, max_length)
    bounds = read_bounds(where["spans"], where["special"]) if where else None
    if bounds is None:
        return np.ones(len(words), bool)
    return np.array([a < bounds[1] and bounds[0] < b for _, _, a, b in words], dtype=bool)


#: What a deletion frame's ``text`` column calls the texts of a pair.
PAIR_SIDES = ("first", "second")


def _deleted(text: str, start: int, stop: int) -> str:
    """``text`` without its characters from ``start`` to ``stop``, its neighbours kept apart by one space."""
    return (text[:start].rstrip() + " " + text[stop:].lstrip()).strip()


def _pair_words(tokenizer, pair: tuple[str, str]) -> list[tuple[int, str, int, int]]:
    """(0 for the first text or 1 for the second, word, start, stop in that text) of each word of ``pair``, in order:
    the tokens one word id groups, split at the text's spaces as a card splits them (a slow tokenizer gives no word
    ids: then what whitespace separates). The pair is read whole: a word past max_length is listed too, as
    deleting it may move the cut (longest first)."""
    if not getattr(tokenizer, "is_fast", False):
        return [(side, m.group(), m.start(), m.end()) for side in (0, 1) for m in re.finditer(r"\S+", pair[side])]
    encoded = tokenizer(pair[0], pair[1], return_offsets_mapping=True, verbose=False)
    tokens = list(zip(encoded["offset_mapping"], encoded.word_ids(), encoded.sequence_ids()))
    found = []
    for side in (0, 1):  # word ids start again at 0 in the second text; a card splits each text's words at spaces
        spans = [span for span, _, s in tokens if s == side]
        words = words_split_at_spaces(pair[side], spans, [word for _, word, s in tokens if s == side])
        for positions in word_positions(words, len(spans)):
            used = [spans[p] for p in positions if words[p] is not None and spans[p][1] > spans[p][0]]
            if not used:
                continue
            a, b = min(start for start, _ in used), max(stop for _, stop in used)
            text = pair[side][a:b]  # byte-level BPE's spans hold the space before the word
            if text.strip():
                a += len(text) - len(text.lstrip())
                found.append((side, text.strip(), a, a + len(text.strip())))
    return found


def _check_new_texts(texts) -> None:
    """``texts`` as :func:`pefs_of_texts` reads them: non-empty strings, or (first, second) tuples of strings, not
    both blank (one may be: a pair's deletion of a text's only word leaves it empty)."""
    texts = [] if isinstance(texts, str) else list(texts)
    if are_pairs(texts):
        fine = all(is_pair(t) and len(t) == 2 and all(isinstance(x, str) for x in t) and any(x.strip() for x in t)
                   for t in texts)
    else:
        fine = bool(texts) and all(isinstance(t, str) and t.strip() for t in texts)
    if not fine:
        raise ValueError("texts must be a list of non-empty strings, e.g. ['the plot was dull .'], or of (first, "
                         "second) pairs of strings, e.g. [('a cat sat', 'an animal sat')]")
