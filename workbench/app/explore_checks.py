"""The arguments :class:`workbench.app.explore.RunExplorer` is opened with, checked before it reads the run."""

from __future__ import annotations

import numpy as np

from ..core.arguments import item_index
from ..models.text import are_pairs, is_pair, shown_text


def check_model_and_tokenizer(model, tokenizer) -> None:
    """A model of the user's, with its tokenizer; or neither, for the run's own ``model/`` folder, which holds the
    tokenizer its PEFs were computed with. A tokenizer alone was dropped without a word for that folder's."""
    if model is not None and not callable(getattr(model, "named_parameters", None)):
        raise TypeError(f"model must be the run's model (a torch.nn.Module), got {type(model).__name__}")
    if tokenizer is not None and model is None:
        raise ValueError("tokenizer= was given without model=: without a model the explorer reads the run's model/ "
                         "folder, with the tokenizer saved there (the one its PEFs were computed with); pass model= "
                         "with it (a run whose model lives elsewhere), or leave tokenizer out")


def lookup_example(texts: list, example):
    """What ``RunExplorer.lookup`` reads for ``example``: the number of the run's example it is (a text, a pair as a
    tuple, or a pair as its card shows it), else the new text itself. A new text of a run of pairs is refused: its
    PEF would be of one text, where the fit's are of pairs."""
    pairs = are_pairs(texts)
    if pairs and isinstance(example, (tuple, list)) and len(example) == 2 and all(isinstance(t, str) for t in example):
        example = shown_text(tuple(example))
    if not isinstance(example, str):
        return example
    for i, text in enumerate(texts):
        if shown_text(text) == example:
            return i
    if pairs and example.strip():
        raise ValueError("this run's examples are pairs of texts, and lookup computes a new example's PEF from one "
                         "text only; look up an example of the run by its number, or by its pair as a tuple")
    return example


def single_text(texts: list, example, what: str):
    """The text ``example`` is (an example's number, or a text), for a reading that edits one text (``what``); a
    pair of texts, or a text for a run of pairs, is refused: its PEF would be of one text, where the fit's are of pairs."""
    if isinstance(example, (int, np.integer)) and not isinstance(example, bool):
        example = texts[item_index(example, len(texts), "example", "examples")]
    if is_pair(example) or are_pairs(texts):
        raise ValueError(f"{what} edits one text, and this run's examples are pairs of texts, which it does not read "
                         "yet; read pairs with top_examples and lookup")
    return example
