"""The arguments :class:`workbench.app.explore.RunExplorer` is opened with, checked before it reads the run, the
examples its readings of one example (lookup, deletion_effects) take, and what a dashboard's sweep can read."""

from __future__ import annotations

import os

import numpy as np

from ..core.arguments import item_index
from ..core.words import PAIR_SEPARATOR
from ..models.text import are_pairs, is_missing, is_pair, shown_text

SEPARATOR = PAIR_SEPARATOR.strip()  # ‖, however it is spaced when typed
TYPED_SEPARATOR = "||"


def check_model_and_tokenizer(model, tokenizer) -> None:
    """A model of the user's, with its tokenizer; or neither, for the run's own ``model/`` folder, which holds the
    tokenizer its PEFs were computed with. A tokenizer alone was dropped without a word for that folder's."""
    if model is not None and not callable(getattr(model, "named_parameters", None)):
        fix = ("; leave model= out to use the run's own model/ folder, or pass the model loaded, with its tokenizer "
               "(model, tokenizer = load_classifier(path), workbench.models.loading)" if isinstance(model, (str, os.PathLike))
               else "")  # a folder's path was refused as 'got str' with no word of what model= is for
        raise TypeError(f"model must be the run's model (a torch.nn.Module), got {type(model).__name__}{fix}")
    if tokenizer is not None and model is None:
        raise ValueError("tokenizer= was given without model=: without a model the explorer reads the run's model/ "
                         "folder, with the tokenizer saved there (the one its PEFs were computed with); pass model= "
                         "with it (a run whose model lives elsewhere), or leave tokenizer out")
    if tokenizer is None or not hasattr(tokenizer, "pad_token"):
        return
    # as the run's own folder is loaded: GPT-2's tokenizer, given without a padding token, failed at the first page
    # with transformers' "Asking to pad but the tokenizer does not have a padding token"
    if tokenizer.pad_token is None and getattr(tokenizer, "eos_token", None) is None:
        raise ValueError("tokenizer= has no padding token and no end-of-text token to pad with, so it cannot batch "
                         "texts of several lengths: give it the one the run's PEFs were computed with, e.g. "
                         "tokenizer.add_special_tokens({'pad_token': '[PAD]'}) (and model.resize_token_embeddings("
                         "len(tokenizer)) if the token is new)")
    from ..models.loading import pad_with_end_of_text

    pad_with_end_of_text(model, tokenizer)  # its end-of-text token, as run_model padded with


def typed_separator(text: str) -> str | None:
    """The mark between a pair's two texts in ``text`` as typed: the cards' ‖, or ``||`` where no ‖ is (no keyboard
    has ‖); None in one text."""
    if SEPARATOR in text:
        return SEPARATOR
    return TYPED_SEPARATOR if TYPED_SEPARATOR in text else None


def lookup_example(texts: list, example):
    """What ``RunExplorer.lookup`` reads for ``example``: the number of the run's example it is (a text, a pair as a
    tuple, or a pair as its card shows it), else the new example itself, checked by :func:`new_example`."""
    if isinstance(example, (int, np.integer)) and not isinstance(example, bool):
        return example
    if isinstance(example, str):
        for i, text in enumerate(texts):
            if shown_text(text) == example:
                return i
    example = new_example(texts, example, "lookup")
    if is_pair(example):  # as a tuple, or typed with ‖ (or ||) and spaces of its own
        for i, text in enumerate(texts):
            if text == example:
                return i
    return example


def example_to_read(texts: list, example, what: str):
    """The text or pair ``example`` is, for a reading that computes its PEF (``what``): the run's example of that
    number, or a new example (:func:`new_example`)."""
    if isinstance(example, (int, np.integer)) and not isinstance(example, bool):
        return texts[item_index(example, len(texts), "example", "examples")]
    return new_example(texts, example, what)


def new_example(texts: list, example, what: str):
    """``example`` as a new example of the run's kind, for ``what``: a (first, second) tuple for a run of pairs
    (given as a tuple, a list, or one string with ‖ between its texts, as a card shows a pair, or ``||``), a text for a run of
    single texts. The other kind is refused: its PEF would be of inputs the fit never saw (one text where the fit's
    are of pairs, or two sequences where they are of one), and not comparable with the run's."""
    if are_pairs(texts):
        separator = typed_separator(example) if isinstance(example, str) else None
        if separator and example.count(separator) == 1:  # typed, as a card shows a pair
            example = tuple(part.strip() for part in example.split(separator))
        if isinstance(example, str) and separator:
            raise ValueError(f"{what} of {example!r}: the text holds {separator} {example.count(separator)} times, "
                             f"where a pair typed as its card shows it has one between its two texts; pass the pair as "
                             f"a (first, second) tuple, which keeps a {separator} inside a text")
        if isinstance(example, str):
            raise ValueError(f"this run's examples are pairs of texts, and {what} of one text would compute a PEF "
                             "the fit never saw (one sequence, not two); type the new example with || (or "
                             f"{SEPARATOR}) between its texts ('a cat sat || an animal sat'), or pass it as a "
                             "(first, second) pair, e.g. ('a cat sat', 'an animal sat'), or an example of the run "
                             "by its number")
        if not _pair_like(example):
            raise TypeError(f"{what} takes an example number or a (first, second) pair of texts, got {example!r}"
                            f"{_what_is_wrong(example)}")
        if not any(t.strip() for t in example):
            raise ValueError(f"{what} takes an example number or a pair of texts not both blank, got {example!r}")
        return tuple(example)
    if _pair_like(example):
        raise ValueError(f"this run's examples are single texts, and {what} of a pair would compute a PEF the fit "
                         "never saw (two sequences, not one); pass one text, e.g. the pair joined: "
                         "first + ' ' + second, or run run_model on pairs to read pairs")
    if not isinstance(example, str):
        raise TypeError(f"{what} takes an example number or a non-empty text, got {example!r}{_what_is_wrong(example)}")
    if not example.strip():
        raise ValueError(f"{what} takes an example number or a non-empty text, got {example!r}")
    return example


def _what_is_wrong(example) -> str:
    """What makes ``example`` no text nor pair, and the fix, after a colon; "" when nothing more is to be said."""
    if isinstance(example, (bytes, bytearray)):
        return ": bytes, not a text; decode them first, e.g. example.decode('utf-8')"
    if not isinstance(example, (tuple, list)):
        return ""
    if len(example) != 2:
        return f": {len(example)} parts, where a pair has two texts, e.g. (premise, hypothesis)"
    for part, which in zip(example, ("first", "second")):
        if is_missing(part):
            return f": its {which} text is missing ({part!r}); give both texts of the pair"
        if isinstance(part, (bytes, bytearray)):
            return f": its {which} text is bytes; decode it first, e.g. text.decode('utf-8')"
        if not isinstance(part, str):
            return f": its {which} text is a {type(part).__name__}, where each of the two is a string"
    return ""


def _pair_like(example) -> bool:
    return isinstance(example, (tuple, list)) and len(example) == 2 and all(isinstance(t, str) for t in example)


def offsets_note(encoded, tokenizer) -> str:
    """A page's note when the tokenizer gives its tokens no characters (a slow, Python one): the cards show its tokens
    as it writes them, each a word of its own, which a reader would otherwise take for the workbench's misreading."""
    if encoded.spans is not None:
        return ""
    return (f"Tokens are shown as the tokenizer writes them, each read as a word: {type(tokenizer).__name__} is a slow "
            "(Python) tokenizer, which gives no token its characters in the text nor its word. With a fast tokenizer "
            "of the model (AutoTokenizer.from_pretrained(folder, use_fast=True), or one of the tokenizers library), the "
            "cards show the text as written and read words whole.")


def dashboard_sweep(explorer, component: int, sweep, notes: list):
    """The perturbation sweep a dashboard shows (None without ``sweep``), or None and a note in ``notes`` where the top
    set holds every example, so no baseline is left: the sweep the dashboard adds by default failed the dashboard
    whole on a small run, its histogram and tokens with it."""
    if not sweep:
        return None
    top, n = explorer.ranking(component)[: explorer.n_top], len(explorer.examples)
    if np.setdiff1d(np.arange(n), top).size:
        return explorer.sweep(component, sweep)
    smaller = f"open the run with a smaller top set (RunExplorer.open(path, n_top={n // 2})), or " if n > 1 else ""
    notes.append(f"No perturbation sweep: no example is left outside the top set ({len(top)} of the {n} examples) "
                 f"to compare with; {smaller}run it on more examples.")
    return None
