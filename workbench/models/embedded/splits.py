"""Analysis examples held out from what the model was trained and validated on.

The generator's sentences are short and drawn from a small space, so two sets drawn with
different seeds still share texts (seed 2000's 600 examples shared 130 texts with the
training set). :func:`analysis_examples` therefore rebuilds the training and validation
sets from the model's ``training.json`` and draws the analysis examples outside them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd

from .model import ANALYSIS_SEED_OFFSET, N_VALIDATION, VALIDATION_SEED_OFFSET
from .task import make_examples


def seen_texts(model_folder: str | os.PathLike) -> frozenset[str] | None:
    """The texts of the training and validation sets of an embedded model folder, rebuilt
    from its ``training.json``; None for a folder without one (a model trained elsewhere)."""
    record_path = Path(model_folder) / "training.json"
    if not record_path.is_file():
        return None
    record = json.loads(record_path.read_text())
    seed = int(record["seed"])
    mix = record.get("mix")  # recorded when training used another mix than the default
    train = make_examples(int(record["n_train"]), seed=seed, mix=mix)
    validation = make_examples(N_VALIDATION, seed=seed + VALIDATION_SEED_OFFSET, mix=mix)
    seen = frozenset(train["text"]) | frozenset(validation["text"])
    if record.get("init_from"):  # a fine-tune of a fine-tune saw its starting model's texts too
        seen |= seen_texts(record["init_from"]) or frozenset()
    return seen


def analysis_examples(n: int, seed: int = 0, model_folder: str | os.PathLike | None = None) -> pd.DataFrame:
    """``n`` examples drawn with ``seed + ANALYSIS_SEED_OFFSET``, none of whose texts the model
    in ``model_folder`` was trained or validated on (when its ``training.json`` says how)."""
    seen = seen_texts(model_folder) if model_folder is not None else None
    return make_examples(n, seed=seed + ANALYSIS_SEED_OFFSET, exclude=seen or frozenset())
