"""Reverse lookup: which components an example loads on, also for a text the model has not seen.

For an example of the run, its row of W. For a new text: its PEF (the same kind, parameters
and n_values as the run's) and the decomposition's ``transform`` with the components fixed
(NPEFF's W step for one example). Those are not quite what the fit gives its own examples:
the fit's W comes out of the joint steps, while ``transform`` solves for W with the final
components (on the tiny run a median 0.1% of an example's largest coefficient apart, at most
9%), as scikit-learn's ``NMF.fit_transform`` and ``transform`` differ.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence

import numpy as np
import pandas as pd

from ..core.defaults import N_VALUES
from ..core.arguments import positive_int
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


def pefs_of_texts(model, tokenizer, decomposition, texts: Sequence[str], *, kind: str = "lrm",
                  n_values: int | None = N_VALUES, max_length: int = 64, device=None):
    """PEFs of ``texts`` over exactly the decomposition's parameters (however its run chose them), of
    ``kind`` with ``n_values`` kept per example, as the run's. Labels are not needed: a PEF is over the
    model's predicted distribution (its class slots), not the true label."""
    from ..models.text import encode_texts
    from ..runner import compute_pefs

    if isinstance(texts, str) or len(texts) == 0 or not all(isinstance(t, str) and t.strip() for t in texts):
        raise ValueError("texts must be a list of non-empty strings, e.g. ['the plot was dull .']")
    inputs = encode_texts(model, tokenizer, texts, max_length).inputs
    include = ["^" + re.escape(name) + "$" for name in decomposition.layout_.names]
    return compute_pefs(model, inputs, kind=kind, n_values=n_values, include=include, device=device,
                        progress=False, check_resources=False)


def coefficients_of_texts(model, tokenizer, decomposition, texts: Sequence[str], **kwargs) -> tuple[np.ndarray, float]:
    """(W of ``texts``: (n_texts, n_components), seconds taken): :func:`pefs_of_texts` (keyword
    arguments go there), then the decomposition's ``transform``."""
    started = time.perf_counter()
    W = decomposition.transform(pefs_of_texts(model, tokenizer, decomposition, texts, **kwargs))
    return W, time.perf_counter() - started


def deletion_effects(model, tokenizer, decomposition, text: str, component: int, **kwargs) -> pd.DataFrame:
    """What ``text``'s coefficient on ``component`` depends on, by intervention: each word deleted in
    turn and the coefficient fitted again (:func:`coefficients_of_texts`; keyword arguments go
    there). The token shading says where the Fisher mass along the component flows; this says
    which words the coefficient needs. One row per word, largest drop first: ``word``, its
    ``start`` and ``stop`` in the text, the ``coefficient`` without it and the ``drop``, 1 − that
    over the text's own coefficient (fitted the same way; 1: the word carries all of it, below 0:
    the coefficient rises without it)."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"text must be a non-empty string, got {text!r}")
    words = [(m.group(), m.start(), m.end()) for m in re.finditer(r"\S+", text)]
    if len(words) < 2:
        raise ValueError(f"{text!r} is one word: without it no text is left to fit; pass a text of two words or more")
    edited = [(text[:start].rstrip() + " " + text[stop:].lstrip()).strip() for _, start, stop in words]
    W, _ = coefficients_of_texts(model, tokenizer, decomposition, [text, *edited], **kwargs)
    own, without = float(W[0, component]), W[1:, component].astype(np.float64)
    frame = pd.DataFrame({"word": [w for w, _, _ in words], "start": [a for _, a, _ in words],
                          "stop": [b for _, _, b in words], "coefficient": without,
                          "drop": 1 - without / own if own > 0 else np.nan})
    frame.attrs["coefficient"] = own  # the text's own, fitted as the deletions are
    return frame.sort_values("drop", ascending=False, kind="stable").reset_index(drop=True)
